"""Every failure answers in OpenAI's error shape with the right status, and the gateway serves on.

Each test ends with ``assert_still_serving``: a normal request through the same gateway process
succeeds afterwards. Malformed bodies are sent with raw aiohttp (the SDK cannot produce them);
everything else goes through the ``openai`` SDK, whose exception types are part of the contract.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from .conftest import (
    HOST,
    LIMITED_A,
    MAX_BODY_BYTES,
    MODEL_A,
    MODEL_DEAD,
    MODEL_EMPTY,
    MODEL_ERROR,
    MODEL_HANG,
    MODEL_HANG_BACKEND,
    GatewayProcess,
    SharedStack,
    SimReplica,
    Stack,
    assert_openai_error,
    gateway_doc,
    pool_doc,
    replica_docs,
    route_doc,
    write_config,
)

pytestmark = pytest.mark.e2e

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]
CHAT = "/v1/chat/completions"
LONG = 15000  # max_tokens of a stream that lasts seconds unless something breaks it


class StreamReader:
    """Counts content chunks of a chat stream; calls ``after_three`` once three arrived."""

    def __init__(self, after_three: Callable[[], None] | None = None) -> None:
        self.received = 0
        self._after_three = after_three

    def read(self, stream: Iterable[ChatCompletionChunk]) -> None:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                self.received += 1
                if self.received == 3 and self._after_three is not None:
                    self._after_three()


def assert_still_serving(gateway: GatewayProcess, model: str = MODEL_A) -> None:
    with gateway.client() as client:
        completion = client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=2)
    assert completion.choices[0].message.content, gateway.describe()


def sdk_error_body(error: openai.APIStatusError) -> object:
    return error.response.json()


async def post_raw(gateway: GatewayProcess, body: bytes,
                   path: str = CHAT) -> tuple[int, object, str]:
    """Status, body (parsed when JSON, else the text) and content type of a raw POST."""
    async with aiohttp.ClientSession() as session, session.post(
            f"{gateway.base_url}{path}", data=body,
            headers={"content-type": "application/json"}) as response:
        content_type = response.headers.get("content-type", "")
        text = await response.text()
        payload = json.loads(text) if content_type.startswith("application/json") else text
        return response.status, payload, content_type


# -- 400: the request itself is wrong --------------------------------------------------------


@pytest.mark.parametrize(("body", "param"), [
    pytest.param(b'{"model": "m-a", "messages": [', None, id="invalid-json"),
    pytest.param(b'[{"model": "m-a", "messages": []}]', None, id="json-array"),
    pytest.param(b'{"messages": [{"role": "user", "content": "hi"}]}', "model",
                 id="missing-model"),
    pytest.param(b'{"model": 7, "messages": [{"role": "user", "content": "hi"}]}', "model",
                 id="model-not-a-string"),
    pytest.param(b"", None, id="empty-body"),
])
async def test_malformed_request_is_400(shared_stack: SharedStack, body: bytes,
                                        param: str | None) -> None:
    status, payload, content_type = await post_raw(shared_stack.gateway, body)

    assert status == 400
    assert content_type.startswith("application/json")
    error = assert_openai_error(payload)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    await asyncio.to_thread(assert_still_serving, shared_stack.gateway)


async def test_model_name_with_a_line_break_is_400(shared_stack: SharedStack) -> None:
    # The model name becomes the X-Gateway-Model-Name header upstream; JSON allows CR/LF in it.
    body = json.dumps({"model": "ctl-x\r\nX-Injected: 1", "messages": MESSAGES}).encode()

    status, payload, content_type = await post_raw(shared_stack.gateway, body)

    assert (status, content_type.split(";")[0]) == (400, "application/json"), payload
    error = assert_openai_error(payload)
    assert error["param"] == "model"
    await asyncio.to_thread(assert_still_serving, shared_stack.gateway)


def test_unknown_model_is_404_model_not_found(shared_stack: SharedStack) -> None:
    with shared_stack.gateway.client() as client, pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=MESSAGES)

    assert caught.value.status_code == 404
    assert caught.value.code == "model_not_found"
    error = assert_openai_error(sdk_error_body(caught.value), code="model_not_found")
    assert "no-such-model" in error["message"]
    assert error["param"] == "model"
    assert_still_serving(shared_stack.gateway)


def test_body_over_the_limit_is_413(shared_stack: SharedStack) -> None:
    huge = [{"role": "user", "content": "x" * (MAX_BODY_BYTES + 1024)}]
    with shared_stack.gateway.client() as client, \
            pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=MODEL_A, messages=huge)

    assert caught.value.status_code == 413
    assert_openai_error(sdk_error_body(caught.value), code="request_too_large")
    assert_still_serving(shared_stack.gateway)


async def test_chunked_body_over_the_limit_is_413(shared_stack: SharedStack) -> None:
    piece = b" " * 4096

    async def chunked_body() -> AsyncIterator[bytes]:  # no content-length: read until the limit
        yield b'{"model": "m-a", "padding": "'
        for _ in range(MAX_BODY_BYTES // len(piece) + 4):
            yield piece
        yield b'"}'

    async with aiohttp.ClientSession() as session, session.post(
            f"{shared_stack.gateway.base_url}{CHAT}", data=chunked_body(),
            headers={"content-type": "application/json"}) as response:
        assert response.status == 413
        assert_openai_error(await response.json(), code="request_too_large")
    await asyncio.to_thread(assert_still_serving, shared_stack.gateway)


# -- 5xx: nowhere to send it, or the model server failed -------------------------------------


def test_pool_without_model_servers_is_503(shared_stack: SharedStack) -> None:
    with shared_stack.gateway.client() as client, \
            pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model=MODEL_EMPTY, messages=MESSAGES)

    assert caught.value.status_code == 503
    error = assert_openai_error(sdk_error_body(caught.value), code="no_endpoint_available")
    assert "pool-empty" in error["message"]
    assert_still_serving(shared_stack.gateway)


def test_closed_model_server_port_is_502_naming_the_pool(shared_stack: SharedStack) -> None:
    with shared_stack.gateway.client() as client, \
            pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model=MODEL_DEAD, messages=MESSAGES)

    assert caught.value.status_code == 502
    error = assert_openai_error(sdk_error_body(caught.value))
    assert "pool-dead" in error["message"]
    assert shared_stack.dead_address in error["message"]
    assert_still_serving(shared_stack.gateway)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("model", [MODEL_HANG, MODEL_HANG_BACKEND],
                         ids=["request-timeout", "backendRequest-timeout"])
def test_hanging_model_server_is_504_after_the_route_timeout(shared_stack: SharedStack,
                                                             model: str, stream: bool) -> None:
    with shared_stack.gateway.client() as client, \
            pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model=model, messages=MESSAGES, stream=stream)

    assert caught.value.status_code == 504
    error = assert_openai_error(sdk_error_body(caught.value), code="upstream_timeout")
    assert "pool-hang" in error["message"]
    assert_still_serving(shared_stack.gateway)


def test_stream_outliving_the_route_timeout_ends_with_an_error_event(
        shared_stack: SharedStack) -> None:
    # 1s route timeout; the stream would take several seconds.
    reader = StreamReader()
    with shared_stack.gateway.client() as client:
        stream = client.chat.completions.create(model=LIMITED_A, messages=MESSAGES,
                                                max_tokens=LONG, stream=True)
        with stream, pytest.raises(openai.APIError) as caught:
            reader.read(stream)

    assert not isinstance(caught.value, openai.APIStatusError)  # after the 200, as SSE
    assert 0 < reader.received < LONG
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "upstream_stream_interrupted"
    assert_still_serving(shared_stack.gateway)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_model_server_error_is_relayed_with_its_status_and_body(
        shared_stack: SharedStack, stream: bool) -> None:
    with shared_stack.gateway.client() as client, \
            pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model=MODEL_ERROR, messages=MESSAGES, stream=stream)

    assert caught.value.status_code == 500
    assert caught.value.response.headers["x-inferlane-endpoint"] == \
        shared_stack.error_replica.address
    error = assert_openai_error(sdk_error_body(caught.value))
    assert "injected fault" in error["message"]  # the model server's own words
    assert_still_serving(shared_stack.gateway)


def test_model_server_validation_error_is_relayed_as_400(shared_stack: SharedStack) -> None:
    with shared_stack.gateway.client() as client, \
            pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL_A, messages=[])

    assert caught.value.status_code == 400
    assert caught.value.response.headers["x-inferlane-endpoint"] in {
        r.address for r in shared_stack.pool_a}
    error = assert_openai_error(sdk_error_body(caught.value))
    assert error["param"] == "messages"
    assert_still_serving(shared_stack.gateway)


def test_connection_stays_usable_after_a_413(shared_stack: SharedStack) -> None:
    # The refused body is not read; the next request on the same connection must not be
    # parsed out of its leftovers (the server may also close the connection instead).
    connection = http.client.HTTPConnection(HOST, shared_stack.gateway.port, timeout=30)
    try:
        big = b'{"model": "m-a", "padding": "' + b"x" * (MAX_BODY_BYTES * 2) + b'"}'
        connection.request("POST", CHAT, body=big, headers={"content-type": "application/json"})
        refused = connection.getresponse()
        assert refused.status == 413
        assert_openai_error(json.loads(refused.read()), code="request_too_large")
        good = json.dumps({"model": MODEL_A, "messages": MESSAGES, "max_tokens": 2})
        connection.request("POST", CHAT, body=good, headers={"content-type": "application/json"})
        answer = connection.getresponse()
        assert answer.status == 200, answer.read()
        assert json.loads(answer.read())["choices"][0]["message"]["content"]
    finally:
        connection.close()


# -- paths and methods ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_unknown_path_is_404_json(shared_stack: SharedStack, method: str) -> None:
    async with aiohttp.ClientSession() as session, session.request(
            method, f"{shared_stack.gateway.base_url}/v1/nothing-here", json={"model": MODEL_A},
    ) as response:
        assert response.status == 404
        assert response.headers["content-type"].startswith("application/json")
        error = assert_openai_error(await response.json(), code="not_found")
        assert "/v1/nothing-here" in error["message"]
    await asyncio.to_thread(assert_still_serving, shared_stack.gateway)


async def test_get_on_chat_completions_is_405(shared_stack: SharedStack) -> None:
    async with aiohttp.ClientSession() as session, session.get(
            f"{shared_stack.gateway.base_url}{CHAT}") as response:
        assert response.status == 405
        assert response.headers["allow"] == "POST"
        assert_openai_error(await response.json(), code="method_not_allowed")
    await asyncio.to_thread(assert_still_serving, shared_stack.gateway)


# -- a burst of garbage does not hurt good requests -------------------------------------------


async def test_malformed_burst_does_not_affect_concurrent_good_requests(
        shared_stack: SharedStack) -> None:
    gateway = shared_stack.gateway
    garbage = [b"{", b"[]", b"null", b'{"model": 1}', b'{"model": ""}', b"\xff\xfe\x00",
               b'{"model": "m-a", "messages": "' + b"\x00" * 100]
    bad_total = 70
    good_total = 30

    async with aiohttp.ClientSession() as session, gateway.async_client() as client:
        async def bad(index: int) -> int:
            async with session.post(f"{gateway.base_url}{CHAT}",
                                    data=garbage[index % len(garbage)]) as response:
                assert_openai_error(await response.json())
                return response.status

        async def good(index: int) -> str | None:
            completion = await client.chat.completions.create(
                model=MODEL_A, messages=[{"role": "user", "content": f"good {index}"}],
                max_tokens=3)
            return completion.choices[0].message.content

        results = await asyncio.gather(*(bad(i) for i in range(bad_total)),
                                       *(good(i) for i in range(good_total)),
                                       return_exceptions=True)

    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, failures[:3]
    assert results[:bad_total] == [400] * bad_total
    assert all(results[bad_total:])


# -- a model server dying mid-stream ----------------------------------------------------------


def two_pool_config(crash_replicas: Sequence[SimReplica], ok_replicas: Sequence[SimReplica],
                    crash_model: str, ok_model: str) -> list[dict[str, Any]]:
    return [
        gateway_doc(),
        *replica_docs("crash", crash_replicas, {"app": "crash"}),
        *replica_docs("ok", ok_replicas, {"app": "ok"}),
        pool_doc("pool-crash", {"app": "crash"}),
        pool_doc("pool-ok", {"app": "ok"}),
        route_doc("route-crash", [crash_model], "pool-crash"),
        route_doc("route-ok", [ok_model], "pool-ok"),
    ]


def consume_broken_stream(gateway: GatewayProcess, model: str,
                          break_it: Callable[[openai.OpenAI], None]) -> openai.APIError:
    """Start a long stream, call ``break_it`` once it flows, return the error the SDK raised."""
    with gateway.client() as client:
        reader = StreamReader(after_three=lambda: break_it(client))
        stream = client.chat.completions.create(model=model, messages=MESSAGES,
                                                max_tokens=LONG, stream=True)
        with stream, pytest.raises(openai.APIError) as caught:
            reader.read(stream)
    assert 3 <= reader.received < LONG, "the stream neither started nor broke off"
    return caught.value


def test_replica_crash_mid_stream_ends_the_stream_with_an_error_event(stack: Stack,
                                                                       tmp_path: Path) -> None:
    # Replica 0 dies (TCP RST on every connection) when its second request arrives.
    sim = stack.sim(replicas=2, models=["m-crash", "m-ok"], time_scale=0.2,
                    extra=["--crash-after", "0:1"])
    config = write_config(tmp_path / "gateway.yaml", two_pool_config(
        sim.serving("m-crash"), sim.serving("m-ok"), "m-crash", "m-ok"))
    gateway = stack.gateway(config)
    second: list[openai.APIStatusError] = []

    def second_request(client: openai.OpenAI) -> None:
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="m-crash", messages=MESSAGES, max_tokens=2)
        second.append(caught.value)

    error = consume_broken_stream(gateway, "m-crash", second_request)

    assert not isinstance(error, openai.APIStatusError)  # reported in-band, after the 200
    assert isinstance(error.body, dict)
    assert error.body["code"] == "upstream_stream_interrupted"
    assert "pool-crash" in error.body["message"]
    assert second[0].status_code == 502
    assert_openai_error(sdk_error_body(second[0]))
    assert_still_serving(gateway, "m-ok")


def test_killed_model_server_mid_stream_ends_the_stream_with_an_error_event(
        stack: Stack, tmp_path: Path) -> None:
    doomed = stack.sim(replicas=1, models=["m-doomed"], time_scale=0.2)
    healthy = stack.sim(replicas=1, models=["m-ok"], time_scale=0.05)
    config = write_config(tmp_path / "gateway.yaml", two_pool_config(
        doomed.replicas, healthy.replicas, "m-doomed", "m-ok"))
    gateway = stack.gateway(config)

    error = consume_broken_stream(gateway, "m-doomed",
                                  lambda client: doomed.send_signal(signal.SIGKILL))

    assert not isinstance(error, openai.APIStatusError)
    assert isinstance(error.body, dict)
    assert error.body["code"] == "upstream_stream_interrupted"
    assert "pool-crash" in error.body["message"]
    doomed.wait_exit(timeout=10)
    assert_still_serving(gateway, "m-ok")
