"""PoolGate: the flow-control adapter with real futures and timers, fake endpoint states.

The states are plain objects the test changes (a saturated pool is one whose only endpoint has
5 requests waiting); the clock is the event loop's, but nothing asserts on durations: each test
drives the gate by marking the pool free and calling ``pump``/``dispatched`` and asserts on
which request was let through, in what order, and how the others were answered.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from inferlane.dataplane.admission import FAST_PASS, PoolGate, Ticket
from inferlane.errors import DeadlineExceeded, QueueFull, QueueTimeout, RequestShed
from inferlane.flowcontrol import BandConfig, FlowControlConfig, SaturationConfig
from inferlane.metrics.gateway import GatewayMetrics
from inferlane.routing.objectives import Objective
from inferlane.scheduling.interfaces import Endpoint
from inferlane.scheduling.pool import FlowSettings
from inferlane.scheduling.types import EndpointState, ServerMetrics

ENDPOINT = Endpoint("default/s0", "10.0.0.1", 8000)
CRITICAL = Objective("critical", priority=2)
STANDARD = Objective("standard", priority=0)
SHEDDABLE = Objective("batch", priority=-1)


class Pool:
    """One endpoint whose scraped queue the test sets: 5 waiting = saturated."""

    def __init__(self) -> None:
        self.state = EndpointState(ENDPOINT)
        self.free()

    def saturate(self) -> None:
        self.state.metrics = ServerMetrics(waiting=5, scraped_at=time.monotonic())

    def free(self) -> None:
        self.state.metrics = ServerMetrics(waiting=0, scraped_at=time.monotonic())

    def states(self, endpoints: object) -> list[EndpointState]:
        return [self.state]


def gate_for(pool: Pool, queue: FlowControlConfig | None = None) -> tuple[PoolGate,
                                                                          GatewayMetrics]:
    metrics = GatewayMetrics()
    settings = FlowSettings(queue=queue or FlowControlConfig(), saturation=SaturationConfig())
    return PoolGate("default/pool", settings, pool.states, [ENDPOINT], metrics), metrics


def rejected(metrics: GatewayMetrics, reason: str) -> float:
    total = 0.0
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name == "inferlane_flow_rejected_total" \
                    and sample.labels.get("reason") == reason:
                total += sample.value
    return total


async def test_a_pool_with_capacity_lets_requests_through_without_queueing() -> None:
    pool = Pool()
    gate, _ = gate_for(pool)
    passed = await gate.admit(SHEDDABLE, "", 10, None)
    assert not passed.granted
    assert passed.endpoints == (ENDPOINT,)
    assert not (await gate.admit(CRITICAL, "t", 10, None)).granted
    assert len(gate.controller) == 0


async def test_sheddable_requests_are_shed_only_when_the_pool_is_saturated() -> None:
    pool = Pool()
    gate, metrics = gate_for(pool)
    pool.saturate()
    with pytest.raises(RequestShed) as shed:
        await gate.admit(SHEDDABLE, "", 10, None)
    assert shed.value.status == 429
    assert shed.value.headers["retry-after"] == "1"
    assert rejected(metrics, "shed") == 1
    pool.free()
    assert not (await gate.admit(SHEDDABLE, "", 10, None)).granted
    gate.close()


async def test_queued_requests_go_by_priority_one_grant_at_a_time() -> None:
    pool = Pool()
    gate, _ = gate_for(pool)
    pool.saturate()
    order: list[str] = []

    async def request(name: str, objective: Objective) -> Ticket:
        ticket = await gate.admit(objective, name, 10, None)
        order.append(name)
        return ticket

    tasks = [asyncio.create_task(request(name, objective)) for name, objective in
             [("s1", STANDARD), ("s2", STANDARD), ("c1", CRITICAL), ("b1", SHEDDABLE)]]
    await asyncio.sleep(0)
    assert tasks[3].done()
    assert isinstance(tasks[3].exception(), RequestShed)
    assert len(gate.controller) == 3
    pool.free()
    gate.pump()
    ticket = await tasks[2]  # the critical request first, though it came last
    assert order == ["c1"]
    assert ticket.granted
    gate.pump()  # a second pump grants nothing until the first was dispatched
    await asyncio.sleep(0)
    assert order == ["c1"]
    gate.dispatched(ticket)
    second = await tasks[0]
    gate.dispatched(second)
    gate.dispatched(await tasks[1])
    assert order == ["c1", "s1", "s2"]
    gate.close()


async def test_an_arrival_does_not_overtake_requests_queued_at_its_priority() -> None:
    pool = Pool()
    gate, _ = gate_for(pool)
    pool.saturate()
    first = asyncio.create_task(gate.admit(STANDARD, "", 10, None))
    await asyncio.sleep(0)
    pool.free()  # capacity appears, but nobody pumped yet
    second = asyncio.create_task(gate.admit(STANDARD, "", 10, None))
    ticket = await first
    assert not second.done()  # queued behind the first, not let through on the fast path
    gate.dispatched(ticket)
    assert (await second).granted
    gate.close()


async def test_deadline_and_ttl_answer_queued_requests_at_once() -> None:
    pool = Pool()
    gate, metrics = gate_for(pool, FlowControlConfig(queue_ttl=0.05))
    pool.saturate()
    loop_now = time.monotonic()
    with pytest.raises(DeadlineExceeded) as late:
        await gate.admit(STANDARD, "", 10, loop_now + 0.01)
    assert late.value.status == 503
    assert "time budget" in late.value.message
    with pytest.raises(QueueTimeout):
        await gate.admit(STANDARD, "", 10, None)
    assert (rejected(metrics, "deadline"), rejected(metrics, "ttl")) == (1, 1)
    assert len(gate.controller) == 0
    gate.close()


async def test_a_full_band_answers_queue_full_and_higher_priority_displaces_lower() -> None:
    pool = Pool()
    queue = FlowControlConfig(max_requests=2, bands=(BandConfig(priority=0, max_requests=1),))
    gate, metrics = gate_for(pool, queue)
    pool.saturate()
    standard = asyncio.create_task(gate.admit(STANDARD, "", 10, None))
    await asyncio.sleep(0)
    with pytest.raises(QueueFull) as full:
        await gate.admit(STANDARD, "", 10, None)  # band 0 holds one request at most
    assert full.value.status == 503
    assert full.value.headers["retry-after"] == "1"
    elevated = asyncio.create_task(gate.admit(Objective("elevated", priority=1), "", 10, None))
    await asyncio.sleep(0)
    assert len(gate.controller) == 2  # the global limit
    critical = asyncio.create_task(gate.admit(CRITICAL, "", 10, None))
    await asyncio.sleep(0)
    # The critical arrival took the standard request's place (lowest band below it).
    with pytest.raises(RequestShed):
        await standard
    assert (rejected(metrics, "queue-full"), rejected(metrics, "displaced")) == (1, 1)
    pool.free()
    gate.pump()
    gate.dispatched(await critical)
    gate.dispatched(await elevated)
    assert len(gate.controller) == 0
    gate.close()


async def test_a_client_leaving_the_queue_frees_its_place_and_a_granted_one_its_grant() -> None:
    pool = Pool()
    gate, _ = gate_for(pool)
    pool.saturate()
    leaving = asyncio.create_task(gate.admit(STANDARD, "", 10, None))
    staying = asyncio.create_task(gate.admit(STANDARD, "", 10, None))
    await asyncio.sleep(0)
    leaving.cancel()
    await asyncio.sleep(0)
    assert len(gate.controller) == 1
    pool.free()
    gate.pump()
    granted = await staying
    # A request granted and then abandoned must not hold the gate: the next one still goes.
    third = asyncio.create_task(gate.admit(STANDARD, "", 10, None))
    await asyncio.sleep(0)
    assert not third.done()  # the grant is still out
    gate.dispatched(granted)
    assert (await third).granted
    gate.close()


async def test_a_granted_request_cancelled_before_it_runs_releases_the_grant() -> None:
    pool = Pool()
    gate, _ = gate_for(pool)
    pool.saturate()
    first = asyncio.create_task(gate.admit(STANDARD, "", 10, None))
    second = asyncio.create_task(gate.admit(STANDARD, "", 10, None))
    await asyncio.sleep(0)
    pool.free()
    gate.pump()  # grants the first ...
    first.cancel()  # ... whose client leaves before it resumes
    with pytest.raises(asyncio.CancelledError):
        await first
    gate.dispatched(await second)  # the grant was handed on, not lost
    gate.close()


async def test_released_and_high_priority_requests_go_where_a_batch_slot_is_free() -> None:
    now = time.monotonic()
    full = EndpointState(Endpoint("default/full", "10.0.0.2", 8000),
                         ServerMetrics(running=16, waiting=0, scraped_at=now), batch_limit=16)
    open_slot = EndpointState(Endpoint("default/open", "10.0.0.3", 8000),
                              ServerMetrics(running=15, waiting=0, scraped_at=now),
                              batch_limit=16)
    queued = EndpointState(Endpoint("default/queued", "10.0.0.4", 8000),
                           ServerMetrics(running=16, waiting=5, scraped_at=now), batch_limit=16)
    states = [full, open_slot, queued]
    endpoints = [s.endpoint for s in states]
    gate = PoolGate("default/pool", FlowSettings(FlowControlConfig(), SaturationConfig()),
                    lambda _: states, endpoints, GatewayMetrics())
    # A standard request on the fast path may go anywhere below 5 waiting ...
    assert gate.endpoints_with_capacity(FAST_PASS, 0) == (full.endpoint, open_slot.endpoint)
    # ... a critical one, or one released from the queue, only where it will not wait.
    assert gate.endpoints_with_capacity(FAST_PASS, 2) == (open_slot.endpoint,)
    assert gate.endpoints_with_capacity(Ticket(granted=True), 0) == (open_slot.endpoint,)
    open_slot.in_flight_requests = 16  # we just sent it one: no free slot anywhere now
    # Then the least loaded: "open" now has one request waiting (ours), "full" none.
    assert gate.endpoints_with_capacity(Ticket(granted=True), 0) == (full.endpoint,)
    assert gate.endpoints_with_capacity(FAST_PASS, 0) == (full.endpoint, open_slot.endpoint)
    gate.close()
