"""``InferenceProber`` against the simulator (in-process) and a fake chat server that records
what the probe sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from inferlane.health.probes import InferenceProber, Probers

from .conftest import (
    SHORT,
    SIM_MODEL,
    Tls,
    http_monitor,
    inference_monitor,
    serving,
    set_faults,
    target,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def inference_prober() -> AsyncIterator[InferenceProber]:
    prober = InferenceProber()
    try:
        yield prober
    finally:
        await prober.close()


async def test_inference_against_the_simulator(inference_prober: InferenceProber,
                                               sim: int) -> None:
    result = await inference_prober.probe(inference_monitor(), target(sim, model=SIM_MODEL))
    assert result.ok, result.reason
    assert result.reason.startswith("answered in ")
    assert result.rtt is not None


async def test_inference_unknown_model(inference_prober: InferenceProber, sim: int) -> None:
    result = await inference_prober.probe(inference_monitor(model="nope"),
                                          target(sim, model=SIM_MODEL))
    assert (result.ok, result.reason) == (False, "HTTP 404: The model `nope` does not exist.")


async def test_inference_fails_while_health_passes(tls: Tls, sim: int) -> None:
    await set_faults(sim, error_rate=1.0)
    async with Probers(tls_context=tls.client) as probers:
        health = await probers.probe(http_monitor(), target(sim))
        answer = await probers.probe(inference_monitor(), target(sim, model=SIM_MODEL))
    assert (health.ok, health.reason) == (True, "HTTP 200")
    assert (answer.ok, answer.reason) == (
        False, "HTTP 500: Simulated internal server error on replica 0 (injected fault).")


async def test_inference_over_the_latency_threshold(inference_prober: InferenceProber,
                                                    sim: int) -> None:
    await set_faults(sim, added_latency_ms=300)
    result = await inference_prober.probe(inference_monitor(latency_threshold=0.05),
                                          target(sim, model=SIM_MODEL))
    assert not result.ok
    assert result.reason.startswith("answered in "), result.reason
    assert result.reason.endswith(" s, over the 0.05 s threshold"), result.reason


async def test_inference_hang_times_out(inference_prober: InferenceProber, sim: int) -> None:
    await set_faults(sim, hang_rate=1.0)
    result = await inference_prober.probe(inference_monitor(timeout=SHORT),
                                          target(sim, model=SIM_MODEL))
    assert (result.ok, result.reason, result.rtt) == (False, "timed out after 0.2 s", None)


async def test_inference_expected_text_missing(inference_prober: InferenceProber,
                                               sim: int) -> None:
    monitor = inference_monitor(expected_text="zebra-crossing")
    result = await inference_prober.probe(monitor, target(sim, model=SIM_MODEL))
    assert not result.ok
    assert result.reason.startswith("answer '"), result.reason
    assert result.reason.endswith(" lacks 'zebra-crossing'"), result.reason


async def test_inference_refused(inference_prober: InferenceProber, refused_port: int) -> None:
    result = await inference_prober.probe(inference_monitor(), target(refused_port, "m"))
    assert (result.ok, result.reason, result.rtt) == (False, "connection refused", None)


CHAT_PATH = "/custom/chat"
BODIES = web.AppKey("bodies", list)


@pytest.fixture
async def fake_chat() -> AsyncIterator[tuple[int, list[Any]]]:
    """Answers every chat completion with "OK." and records the request bodies."""
    async def chat(request: web.Request) -> web.Response:
        request.app[BODIES].append(orjson.loads(await request.read()))
        return web.json_response({"choices": [
            {"index": 0, "message": {"role": "assistant", "content": "OK."}}]})

    app = web.Application()
    app[BODIES] = []
    app.router.add_post(CHAT_PATH, chat)
    async with serving(app) as port:
        yield port, app[BODIES]


async def test_inference_request_and_expected_text(
        inference_prober: InferenceProber, fake_chat: tuple[int, list[Any]]) -> None:
    port, bodies = fake_chat
    monitor = inference_monitor(path=CHAT_PATH, model="tiny", prompt="Say ok", max_tokens=2,
                                expected_text="ok")
    result = await inference_prober.probe(monitor, target(port, model="ignored"))
    assert result.ok, result.reason
    assert bodies == [{"model": "tiny", "messages": [{"role": "user", "content": "Say ok"}],
                       "max_tokens": 2, "stream": False}]


async def test_inference_without_any_model_sends_nothing(
        inference_prober: InferenceProber, fake_chat: tuple[int, list[Any]]) -> None:
    port, bodies = fake_chat
    result = await inference_prober.probe(inference_monitor(path=CHAT_PATH), target(port))
    assert not result.ok
    assert result.reason.startswith("no model to ask"), result.reason
    assert bodies == []
