"""The simulator's Anthropic Messages endpoint: a replica over loopback, in simulated fast time.

Proves ``/v1/messages`` answers through the chat path (same prompt, same words as
``/v1/chat/completions``), in Anthropic's shapes: the message, the SSE events in order with usage
in ``message_delta``, ``max_tokens`` as a cap, and errors (translation 400s, unknown model 404,
injected 500) as ``{"type": "error", "error": {"type", "message"}}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson
import pytest

from inferlane.sim.anthropic import error_body, parse_messages
from inferlane.sim.faults import FaultOptions
from inferlane.sim.fleet import Fleet, SimOptions, start_fleet
from inferlane.sim.protocol import APIError, ServedModels

FAST = 0.02
HEADERS = {"x-api-key": "not-checked", "anthropic-version": "2023-06-01"}
CONVERSATION = {
    "system": "You are terse.",
    "messages": [{"role": "user", "content": "hello there"},
                 {"role": "assistant", "content": "hi"},
                 {"role": "user", "content": [{"type": "text", "text": "tell me more"}]}],
}
CHAT_MESSAGES = [{"role": "system", "content": "You are terse."},
                 {"role": "user", "content": "hello there"},
                 {"role": "assistant", "content": "hi"},
                 {"role": "user", "content": "tell me more"}]


async def eventually(predicate: Callable[[], bool]) -> None:
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


@pytest.fixture
async def fleet() -> AsyncIterator[Fleet]:
    running = await start_fleet(1, 0, models=("sim-model",),
                                options=SimOptions(time_scale=FAST, loras=("sql",)))
    yield running
    await running.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=HEADERS) as client:
        yield client


def messages_url(fleet: Fleet, path: str = "/v1/messages") -> str:
    return f"http://{fleet.addresses[0]}{path}"


async def sse_events(response: aiohttp.ClientResponse) -> list[tuple[str, Any]]:
    """(event name, decoded data) pairs of an Anthropic stream."""
    events: list[tuple[str, Any]] = []
    name = ""
    async for line in response.content:
        if line.startswith(b"event: "):
            name = line[7:].strip().decode()
        elif line.startswith(b"data: "):
            events.append((name, orjson.loads(line[6:])))
    return events


# -- pure parts ----------------------------------------------------------------------------

SERVED = ServedModels("sim-model", ("sql",))


@pytest.mark.parametrize(("body", "status", "param", "in_message"), [
    ([], 400, None, "JSON object"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, 400, "model", "model"),
    ({"model": "sim-model", "messages": [{"role": "user", "content": "x"}]}, 400, "max_tokens",
     "max_tokens"),
    ({"model": "sim-model", "max_tokens": 5, "top_k": 3,
      "messages": [{"role": "user", "content": "x"}]}, 400, "top_k", "top_k"),
    ({"model": "sim-model", "max_tokens": 5, "messages": []}, 400, "messages", "at least one"),
    ({"model": "other", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, 404,
     "model", "`other` does not exist"),
])
def test_parse_messages_rejects(body: object, status: int, param: str | None,
                                in_message: str) -> None:
    with pytest.raises(APIError) as caught:
        parse_messages(body, SERVED)
    assert caught.value.status == status
    assert caught.value.param == param
    assert in_message in caught.value.message


def test_parse_messages_is_a_chat_request_whose_max_tokens_is_a_cap() -> None:
    parsed = parse_messages({"model": "sql", "max_tokens": 7, "stream": True, **CONVERSATION},
                            SERVED)
    assert (parsed.endpoint, parsed.model, parsed.lora) == ("chat", "sql", "sql")
    assert (parsed.max_tokens, parsed.natural_stop) == (7, True)
    assert (parsed.stream, parsed.include_usage) == (True, True)  # usage asked internally


@pytest.mark.parametrize(("status", "error_type"), [
    (400, "invalid_request_error"), (404, "not_found_error"), (429, "rate_limit_error"),
    (500, "api_error")])
def test_error_body_has_anthropic_types(status: int, error_type: str) -> None:
    assert orjson.loads(error_body(APIError(status, "what happened"))) == {
        "type": "error", "error": {"type": error_type, "message": "what happened"}}


# -- over HTTP -----------------------------------------------------------------------------

async def test_message_is_the_chat_answer_in_anthropic_format(
        fleet: Fleet, session: aiohttp.ClientSession) -> None:
    body = {"model": "sim-model", "max_tokens": 1024, **CONVERSATION}
    async with session.post(messages_url(fleet), json=body) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        message = await response.json()
    chat_body = {"model": "sim-model", "messages": CHAT_MESSAGES}
    async with session.post(messages_url(fleet, "/v1/chat/completions"),
                            json=chat_body) as response:
        chat = await response.json()
    assert message["id"].startswith("msg_")
    assert (message["type"], message["role"], message["model"]) == (
        "message", "assistant", "sim-model")
    # Under max_tokens the output has its natural length: the same words chat writes.
    assert message["content"] == [{"type": "text",
                                   "text": chat["choices"][0]["message"]["content"]}]
    assert (message["stop_reason"], message["stop_sequence"]) == ("end_turn", None)
    usage = message["usage"]
    assert usage["input_tokens"] + usage["cache_read_input_tokens"] \
        == chat["usage"]["prompt_tokens"]
    assert usage["output_tokens"] == chat["usage"]["completion_tokens"]


async def test_max_tokens_caps_the_output(fleet: Fleet, session: aiohttp.ClientSession) -> None:
    body = {"model": "sql", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}
    async with session.post(messages_url(fleet), json=body) as response:
        assert response.status == 200
        message = await response.json()
    assert message["model"] == "sql"
    assert message["stop_reason"] == "max_tokens"
    assert message["usage"]["output_tokens"] == 3
    assert len(message["content"][0]["text"].split()) == 3


async def test_stream_sends_anthropic_events_with_usage(
        fleet: Fleet, session: aiohttp.ClientSession) -> None:
    body = {"model": "sim-model", "max_tokens": 1024, **CONVERSATION}
    async with session.post(messages_url(fleet), json=body) as response:
        whole = await response.json()
    async with session.post(messages_url(fleet), json={**body, "stream": True}) as response:
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        events = await sse_events(response)
    names = [name for name, _ in events]
    deltas = [data["delta"]["text"] for name, data in events if name == "content_block_delta"]
    assert names == ["message_start", "content_block_start", *["content_block_delta"] * len(deltas),
                     "content_block_stop", "message_delta", "message_stop"]
    assert all(name == data["type"] for name, data in events)
    start = events[0][1]["message"]
    assert start["id"].startswith("msg_")
    assert (start["model"], start["role"], start["content"]) == ("sim-model", "assistant", [])
    assert events[1][1]["content_block"] == {"type": "text", "text": ""}
    assert "".join(deltas) == whole["content"][0]["text"]
    end = events[-2][1]
    assert end["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert end["usage"]["output_tokens"] == len(deltas) == whole["usage"]["output_tokens"]
    assert end["usage"]["input_tokens"] > 0


@pytest.mark.parametrize(("body", "status", "error_type", "in_message"), [
    (b"{not json", 400, "invalid_request_error", "Invalid JSON"),
    (orjson.dumps({"model": "sim-model", "max_tokens": 8, "top_k": 5,
                   "messages": [{"role": "user", "content": "x"}]}),
     400, "invalid_request_error", "'top_k'"),
    (orjson.dumps({"model": "nope", "max_tokens": 8,
                   "messages": [{"role": "user", "content": "x"}]}),
     404, "not_found_error", "`nope`"),
])
async def test_errors_are_anthropic_shaped(fleet: Fleet, session: aiohttp.ClientSession,
                                           body: bytes, status: int, error_type: str,
                                           in_message: str) -> None:
    async with session.post(messages_url(fleet), data=body,
                            headers={"Content-Type": "application/json"}) as response:
        assert response.status == status
        error = await response.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == error_type
    assert in_message in error["error"]["message"]


async def test_injected_faults_apply(fleet: Fleet, session: aiohttp.ClientSession) -> None:
    replica = fleet.replicas[0]
    replica.faults = FaultOptions(error_rate=1.0)
    body = {"model": "sim-model", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}
    async with session.post(messages_url(fleet), json=body) as response:
        assert response.status == 500
        error = await response.json()
    assert error["error"]["type"] == "api_error"
    assert "injected fault" in error["error"]["message"]
    assert replica.fault_injector.injected["error"] == 1


async def test_client_leaving_mid_stream_aborts_the_sequence(
        session: aiohttp.ClientSession) -> None:
    # Natural outputs of 10k tokens: the stream is still running when the client leaves.
    fleet = await start_fleet(1, 0, models=("sim-model",), options=SimOptions(
        time_scale=FAST, min_output_tokens=10_000, max_output_tokens=10_000))
    try:
        engine = fleet.replicas[0].engine
        body = {"model": "sim-model", "max_tokens": 10_000, "stream": True,
                "messages": [{"role": "user", "content": "a long story"}]}
        response = await session.post(messages_url(fleet), json=body)
        await response.content.readline()  # message_start: the first token arrived
        assert engine.num_running == 1
        response.close()
        await eventually(lambda: engine.aborted_requests == 1)
        assert engine.num_running == 0
        assert engine.kv_cache.used_blocks == 0
    finally:
        await fleet.stop()
