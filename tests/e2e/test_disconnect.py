"""A client that goes away cancels the work upstream.

The simulated replica counts requests aborted because their client (here: the gateway)
disconnected in ``inferlane_sim_aborted_requests_total``; the gateway counts its own clients
leaving in ``inferlane_client_disconnects_total``. Both must move, within a bounded wait, when a
client drops a stream or gives up on a slow non-streaming request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import openai
import pytest

from .conftest import (
    GatewayProcess,
    SimFleet,
    gateway_doc,
    metric_value,
    poll,
    poll_async,
    pool_doc,
    replica_docs,
    route_doc,
    running_stack,
    write_config,
)

pytestmark = pytest.mark.e2e

MODEL = "m-slow"
LONG = 15000  # tokens: ~12 s of generation at this time scale unless aborted
ABORT_WAIT = 10.0  # bounded wait for the counters to move


@dataclass(frozen=True, slots=True)
class SlowStack:
    sim: SimFleet
    gateway: GatewayProcess


@pytest.fixture(scope="module")
def slow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlowStack]:
    log_dir = tmp_path_factory.mktemp("disconnect")
    with running_stack(log_dir) as stack:
        sim = stack.sim(replicas=1, models=[MODEL], time_scale=0.1)
        config = write_config(log_dir / "gateway.yaml", [
            gateway_doc(),
            *replica_docs("slow", sim.replicas, {"app": "slow"}),
            pool_doc("pool-slow", {"app": "slow"}),
            route_doc("route-slow", [MODEL], "pool-slow"),
        ])
        yield SlowStack(sim, stack.gateway(config))


def counters(stack: SlowStack) -> tuple[float, float]:
    """(sim aborted requests, gateway client disconnects)."""
    return (stack.sim.aborted(),
            stack.gateway.metric("inferlane_client_disconnects_total", pool="default/pool-slow"))


def in_flight(stack: SlowStack) -> float:
    return stack.gateway.metric("inferlane_requests_in_flight", pool="default/pool-slow")


def running_on_sim(stack: SlowStack) -> float:
    return metric_value(stack.sim.metrics(stack.sim.replicas[0]), "vllm:num_requests_running")


async def test_dropping_a_stream_aborts_the_generation_upstream(slow_stack: SlowStack) -> None:
    aborted_before, disconnects_before = await asyncio.to_thread(counters, slow_stack)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "talk forever"}],
            "max_tokens": LONG, "stream": True}

    async with aiohttp.ClientSession() as session:
        response = await session.post(f"{slow_stack.gateway.api_base}/chat/completions",
                                      json=body)
        try:
            assert response.status == 200
            received = b""
            for _ in range(1000):  # a few chunks, bounded
                received += await asyncio.wait_for(response.content.readany(), timeout=30)
                if received.count(b"data: ") >= 3:
                    break
            assert received.count(b"data: ") >= 3
            assert b"[DONE]" not in received
        finally:
            response.close()  # drops the connection mid-stream

    await poll_async(lambda: counters(slow_stack)[0] >= aborted_before + 1 or None,
                     "the sim to abort the generation", ABORT_WAIT)
    await poll_async(lambda: counters(slow_stack)[1] >= disconnects_before + 1 or None,
                     "the gateway to count the client disconnect", ABORT_WAIT)
    await poll_async(lambda: running_on_sim(slow_stack) == 0 or None,
                     "the sim to stop generating", ABORT_WAIT)
    await poll_async(lambda: in_flight(slow_stack) == 0 or None,
                     "the gateway to forget the request", ABORT_WAIT)


def test_giving_up_on_a_slow_request_aborts_it_upstream(slow_stack: SlowStack) -> None:
    aborted_before, disconnects_before = counters(slow_stack)

    with slow_stack.gateway.client(timeout=1.0) as client, \
            pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "take your time"}],
            max_tokens=LONG)

    poll(lambda: counters(slow_stack)[0] >= aborted_before + 1 or None,
         "the sim to abort the generation", ABORT_WAIT)
    poll(lambda: counters(slow_stack)[1] >= disconnects_before + 1 or None,
         "the gateway to count the client disconnect", ABORT_WAIT)
    poll(lambda: running_on_sim(slow_stack) == 0 or None, "the sim to stop generating",
         ABORT_WAIT)
    poll(lambda: in_flight(slow_stack) == 0 or None, "the gateway to forget the request",
         ABORT_WAIT)
