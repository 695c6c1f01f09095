"""Simulated replicas over real loopback sockets (aiohttp client), in simulated fast time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson
import pytest

from inferlane.sim.engine import EngineConfig
from inferlane.sim.faults import FaultOptions
from inferlane.sim.fleet import Fleet, SimOptions, start_fleet

FAST = 0.02  # time scale: 8 ms steps take 0.16 ms


async def eventually(predicate: Callable[[], bool]) -> None:
    """Poll until ``predicate`` holds; fails the test after about five seconds."""
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def fleet_of(replicas: int = 1, **kwargs: Any) -> Fleet:
    models = kwargs.pop("models", ("sim-model",))
    return await start_fleet(replicas, 0, models=models,
                             options=SimOptions(time_scale=FAST, **kwargs))


@pytest.fixture
async def fleet() -> AsyncIterator[Fleet]:
    running = await fleet_of(loras=("sql",))
    yield running
    await running.stop()


def url(fleet: Fleet, path: str, replica: int = 0) -> str:
    return f"http://{fleet.addresses[replica]}{path}"


async def sse_events(response: aiohttp.ClientResponse) -> list[Any]:
    """Decode ``data:`` events; ``[DONE]`` is returned as the string "[DONE]"."""
    events: list[Any] = []
    async for line in response.content:
        if line.startswith(b"data: "):
            payload = line[6:].strip()
            events.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
    return events


async def test_chat_completion(fleet: Fleet, session: aiohttp.ClientSession) -> None:
    body = {"model": "sim-model", "messages": [{"role": "user", "content": "hello there"}]}
    async with session.post(url(fleet, "/v1/chat/completions"), json=body) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        answer = await response.json()
    assert answer["object"] == "chat.completion"
    assert answer["id"].startswith("chatcmpl-")
    choice = answer["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] == "stop"
    usage = answer["usage"]
    assert 16 <= usage["completion_tokens"] <= 128
    assert len(choice["message"]["content"].split()) == usage["completion_tokens"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    # The same prompt gives the same answer: outputs are seeded by the prompt.
    async with session.post(url(fleet, "/v1/chat/completions"), json=body) as response:
        again = await response.json()
    assert again["choices"][0]["message"] == choice["message"]


async def test_chat_stream(fleet: Fleet, session: aiohttp.ClientSession) -> None:
    body = {"model": "sql", "messages": [{"role": "user", "content": "hi"}], "stream": True,
            "max_tokens": 7, "stream_options": {"include_usage": True}}
    async with session.post(url(fleet, "/v1/chat/completions"), json=body) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = await sse_events(response)
    assert events[-1] == "[DONE]"
    chunks, usage = events[:-2], events[-2]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "sql" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    tokens = chunks[1:]
    assert len(tokens) == 7
    assert [c["choices"][0]["finish_reason"] for c in tokens] == [None] * 6 + ["length"]
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == 7


async def test_completion_stream_with_two_choices(fleet: Fleet,
                                                  session: aiohttp.ClientSession) -> None:
    body = {"prompt": "once upon a time", "stream": True, "max_tokens": 5, "n": 2}
    async with session.post(url(fleet, "/v1/completions"), json=body) as response:
        events = await sse_events(response)
    assert events[-1] == "[DONE]"
    by_index: dict[int, list[str]] = {0: [], 1: []}
    for chunk in events[:-1]:
        assert chunk["object"] == "text_completion"
        choice = chunk["choices"][0]
        by_index[choice["index"]].append(choice["text"])
    assert [len(v) for v in by_index.values()] == [5, 5]


async def test_embeddings(fleet: Fleet, session: aiohttp.ClientSession) -> None:
    body = {"model": "sim-model", "input": ["first text", "second text"]}
    async with session.post(url(fleet, "/v1/embeddings"), json=body) as response:
        answer = await response.json()
    assert answer["object"] == "list"
    assert [d["index"] for d in answer["data"]] == [0, 1]
    assert all(len(d["embedding"]) == 16 for d in answer["data"])
    assert answer["usage"]["prompt_tokens"] == 6


@pytest.mark.parametrize(
    ("path", "payload", "status"),
    [
        ("/v1/chat/completions", b"{not json", 400),
        ("/v1/chat/completions", b'{"model": "unknown", "messages": []}', 404),
        ("/v1/chat/completions", b'{"model": "sim-model"}', 400),
        ("/v1/completions", b'{"model": "sim-model"}', 400),
        ("/v1/embeddings", b"[]", 400),
    ],
)
async def test_invalid_requests(fleet: Fleet, session: aiohttp.ClientSession, path: str,
                                payload: bytes, status: int) -> None:
    async with session.post(url(fleet, path), data=payload,
                            headers={"Content-Type": "application/json"}) as response:
        assert response.status == status
        error = (await response.json())["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == status


async def test_models_health_and_metrics(fleet: Fleet, session: aiohttp.ClientSession) -> None:
    async with session.get(url(fleet, "/v1/models")) as response:
        models = await response.json()
    assert [m["id"] for m in models["data"]] == ["sim-model", "sql"]
    async with session.get(url(fleet, "/health")) as response:
        assert response.status == 200
        assert await response.read() == b""
    async with session.get(url(fleet, "/metrics")) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()
    for name in ("vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                 "vllm:cache_config_info", "vllm:lora_requests_info",
                 "vllm:time_to_first_token_seconds_bucket"):
        assert name in text


async def test_keep_alive_serves_several_requests_on_one_connection(fleet: Fleet) -> None:
    host, port = fleet.addresses[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        for _ in range(3):
            body = b'{"prompt": "abc", "max_tokens": 2}'
            writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            status = await reader.readline()
            assert status.startswith(b"HTTP/1.1 200")
            length = 0
            while (line := await reader.readline()) != b"\r\n":
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            assert orjson.loads(await reader.readexactly(length))["usage"]["completion_tokens"] == 2
    finally:
        writer.close()
        await writer.wait_closed()


async def test_prefix_cache_hit_on_the_second_request(fleet: Fleet,
                                                      session: aiohttp.ClientSession) -> None:
    prompt = "shared context " * 200
    cached = []
    for _ in range(2):
        async with session.post(url(fleet, "/v1/completions"),
                                json={"prompt": prompt, "max_tokens": 1}) as response:
            cached.append((await response.json())["usage"]["prompt_tokens_details"]
                          ["cached_tokens"])
    assert cached[0] == 0
    assert cached[1] > 600
    assert fleet.replicas[0].engine.stats.prefix_cache_hits == cached[1]


async def test_client_leaving_mid_stream_aborts_the_sequence(
        fleet: Fleet, session: aiohttp.ClientSession) -> None:
    engine = fleet.replicas[0].engine
    body = {"prompt": "a long story", "stream": True, "max_tokens": 10_000}
    response = await session.post(url(fleet, "/v1/completions"), json=body)
    await response.content.readline()  # the first token arrived, so the sequence is running
    assert engine.num_running == 1
    response.close()  # drop the connection
    await eventually(lambda: engine.aborted_requests == 1)
    assert engine.num_running == 0
    assert engine.kv_cache.used_blocks == 0
    assert engine.stats.finished["abort"] == 1


async def test_client_leaving_while_queued_aborts_the_request(
        session: aiohttp.ClientSession) -> None:
    fleet = await fleet_of(engine=EngineConfig(max_num_seqs=1))
    try:
        engine = fleet.replicas[0].engine
        first = asyncio.create_task(session.post(url(fleet, "/v1/completions"),
                                                 json={"prompt": "x", "max_tokens": 10_000}))
        await eventually(lambda: engine.num_running == 1)
        second = asyncio.create_task(session.post(url(fleet, "/v1/completions"),
                                                  json={"prompt": "y", "max_tokens": 5}))
        await eventually(lambda: engine.num_waiting == 1)
        second.cancel()
        await eventually(lambda: engine.aborted_requests == 1)
        assert engine.num_waiting == 0
        assert engine.num_running == 1
        first.cancel()
        await eventually(lambda: engine.aborted_requests == 2)
        await asyncio.gather(first, second, return_exceptions=True)
    finally:
        await fleet.stop()


async def test_error_rate_and_runtime_fault_change(fleet: Fleet,
                                                  session: aiohttp.ClientSession) -> None:
    replica = fleet.replicas[0]
    replica.faults = FaultOptions(error_rate=1.0)
    async with session.post(url(fleet, "/v1/completions"), json={"prompt": "x"}) as response:
        assert response.status == 500
        error = (await response.json())["error"]
    assert error["type"] == "InternalServerError"
    replica.faults = FaultOptions()
    async with session.post(url(fleet, "/v1/completions"), json={"prompt": "x"}) as response:
        assert response.status == 200
    assert replica.fault_injector.injected["error"] == 1


async def test_throttle_answers_429_with_retry_after(fleet: Fleet,
                                                     session: aiohttp.ClientSession) -> None:
    replica = fleet.replicas[0]
    replica.faults = FaultOptions(throttle_rate=1.0, throttle_retry_after_s=2)
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with session.post(url(fleet, "/v1/chat/completions"), json=body) as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "2"
        assert "retry-after-ms" not in response.headers
        assert response.content_type == "application/json"
        error = (await response.json())["error"]
    assert error["type"] == "RateLimitError"
    assert error["code"] == 429
    assert "retry after 2 s" in error["message"]
    replica.faults = FaultOptions(throttle_rate=1.0, throttle_retry_after_s=0.5)
    messages = {"model": "sim-model", "max_tokens": 8,
                "messages": [{"role": "user", "content": "hi"}]}
    async with session.post(url(fleet, "/v1/messages"), json=messages) as response:
        assert response.status == 429
        assert (response.headers["Retry-After"], response.headers["retry-after-ms"]) == (
            "1", "500")
        assert (await response.json())["error"]["type"] == "rate_limit_error"
    assert replica.fault_injector.injected["throttle"] == 2
    assert replica.engine.stats.prompt_tokens == 0  # never reached the engine
    async with session.get(url(fleet, "/metrics")) as response:
        assert 'kind="throttle"} 2.0' in await response.text()


async def test_fault_endpoint_replaces_faults_at_run_time(
        session: aiohttp.ClientSession) -> None:
    fleet = await fleet_of(replicas=2, faults=FaultOptions(hang_rate=0.5))
    try:
        async with session.get(url(fleet, "/sim/faults")) as response:
            assert response.status == 200
            assert await response.json() == {
                "error_rate": 0.0, "added_latency_ms": 0.0, "hang_rate": 0.5,
                "crash_after": None, "throttle_rate": 0.0, "throttle_retry_after_s": 1.0}
        async with session.post(url(fleet, "/sim/faults"), json={"error_rate": 1}) as response:
            assert response.status == 200
            answer = await response.json()
        # Replaced, not merged: hang_rate is back to its default.
        assert (answer["error_rate"], answer["hang_rate"]) == (1.0, 0.0)
        assert fleet.replicas[0].faults == FaultOptions(error_rate=1.0)
        assert fleet.replicas[1].faults == FaultOptions(hang_rate=0.5)  # only that replica
        async with session.post(url(fleet, "/v1/completions"), json={"prompt": "x"}) as response:
            assert response.status == 500
        async with session.post(url(fleet, "/sim/faults"), json={}) as response:
            assert response.status == 200
        async with session.post(url(fleet, "/v1/completions"), json={"prompt": "x"}) as response:
            assert response.status == 200
        # The control endpoint is not an inference request.
        assert fleet.replicas[0].fault_injector.requests_seen == 2
    finally:
        await fleet.stop()


@pytest.mark.parametrize(
    ("payload", "in_message"),
    [
        (b"{not json", "Invalid JSON"),
        (b"[1]", "must be a JSON object"),
        (b'{"error_rate": 1, "eror_rate": 1}', "unknown fault option(s) eror_rate"),
        (b'{"throttle_rate": 3}', "throttle_rate must be within [0, 1]"),
        (b'{"crash_after": "5"}', "crash_after must be an integer"),
    ],
)
async def test_fault_endpoint_rejects_bad_options(fleet: Fleet, session: aiohttp.ClientSession,
                                                  payload: bytes, in_message: str) -> None:
    before = fleet.replicas[0].faults
    async with session.post(url(fleet, "/sim/faults"), data=payload) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["type"] == "BadRequestError"
    assert in_message in error["message"]
    assert fleet.replicas[0].faults is before


async def test_hang_never_answers(session: aiohttp.ClientSession) -> None:
    fleet = await fleet_of(faults=FaultOptions(hang_rate=1.0))
    try:
        with pytest.raises(TimeoutError):
            await session.post(url(fleet, "/v1/completions"), json={"prompt": "x"},
                               timeout=aiohttp.ClientTimeout(total=0.3))
        assert fleet.replicas[0].fault_injector.injected["hang"] == 1
        assert fleet.replicas[0].engine.stats.prompt_tokens == 0
    finally:
        await fleet.stop()


async def test_added_latency_holds_requests_before_the_engine(
        session: aiohttp.ClientSession) -> None:
    fleet = await fleet_of(faults=FaultOptions(added_latency_ms=1e9))
    try:
        replica = fleet.replicas[0]
        pending = asyncio.create_task(session.post(url(fleet, "/v1/completions"),
                                                   json={"prompt": "x"}))
        await eventually(lambda: replica.fault_injector.requests_seen == 1)
        assert replica.engine.num_waiting + replica.engine.num_running == 0
        pending.cancel()
        await asyncio.gather(pending, return_exceptions=True)
    finally:
        await fleet.stop()


async def test_crash_after_resets_connections_and_stops_listening(
        session: aiohttp.ClientSession) -> None:
    fleet = await fleet_of(replicas=2, replica_faults={0: FaultOptions(crash_after=1)})
    try:
        body = {"prompt": "x", "max_tokens": 3}
        async with session.post(url(fleet, "/v1/completions"), json=body) as response:
            assert response.status == 200
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.post(url(fleet, "/v1/completions"), json=body)
        assert fleet.replicas[0].crashed
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(url(fleet, "/health"))
        # The other replica is unaffected.
        async with session.post(url(fleet, "/v1/completions", 1), json=body) as response:
            assert response.status == 200
        assert not fleet.all_crashed
    finally:
        await fleet.stop()


async def test_fleet_spreads_models_and_keeps_metrics_apart(
        session: aiohttp.ClientSession) -> None:
    fleet = await fleet_of(replicas=3, models=("a", "b"))
    try:
        assert [r.model for r in fleet.replicas] == ["a", "b", "a"]
        assert len(set(fleet.addresses)) == 3
        async with session.post(url(fleet, "/v1/completions", 1),
                                json={"model": "b", "prompt": "x", "max_tokens": 2}) as response:
            assert response.status == 200
        async with session.post(url(fleet, "/v1/completions", 1),
                                json={"model": "a", "prompt": "x"}) as response:
            assert response.status == 404
        totals = [r.engine.stats.generation_tokens for r in fleet.replicas]
        assert totals == [0, 2, 0]
        async with session.get(url(fleet, "/metrics", 1)) as response:
            assert 'vllm:generation_tokens_total{model_name="b",engine="0"} 2.0' in \
                await response.text()
    finally:
        await fleet.stop()


async def test_running_adapter_is_reported_while_streaming(
        fleet: Fleet, session: aiohttp.ClientSession) -> None:
    body = {"model": "sql", "prompt": "x", "stream": True, "max_tokens": 10_000}
    response = await session.post(url(fleet, "/v1/completions"), json=body)
    try:
        await response.content.readline()
        async with session.get(url(fleet, "/metrics")) as metrics:
            text = await metrics.text()
        assert 'running_lora_adapters="sql"' in text
    finally:
        response.close()
    await eventually(lambda: fleet.replicas[0].engine.num_running == 0)
