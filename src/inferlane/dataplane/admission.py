"""Flow control at the data plane: one ``PoolGate`` per pool around the sans-IO core.

The decisions (is the pool saturated, which queued request goes next, what expired) are
``inferlane.flowcontrol``'s; this adapter owns what the core must not: the futures requests wait
on, the timers for TTLs and deadlines, and the metrics. The request path::

    arrival ─► gate.admit ─┬─ pool has capacity and nobody waits: go now (no queue)
                           ├─ sheddable (priority < 0) and it would have to wait: RequestShed (429)
                           └─ queued ─► granted by pump() ─► pick ─► dispatch ─► gate.dispatched
    pick chooses among gate.endpoints_with_capacity(): endpoints the gate sees room on (for
    released and positive-priority requests: below the release threshold, when any is)
                                 └─ TTL / deadline / displaced / queue full: 503 or 429

Two thresholds (hysteresis): requests start to queue when no endpoint is below
``saturationDetector`` (5 waiting by default); while some wait, one is released only to an
endpoint with a free batch slot (its batch limit learned from scrapes that showed requests
waiting), or, before a limit is known, one with fewer waiting than the release threshold (1).
Sustained overload thus waits here — by priority, fair between flows — instead of in the
servers' first-come queues, while at normal load the picker keeps its freedom (cache affinity)
up to 5 waiting.

Grants are serialised: ``pump`` lets one queued request go, and the next only after that one
was dispatched (``dispatched``), so the saturation it reads already counts the request before
(the store's in-flight view changes at dispatch). Completions, new scrapes (a tick while
requests wait) and arrivals call ``pump`` again.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from inferlane.errors import DeadlineExceeded, QueueFull, QueueTimeout, RequestError, RequestShed
from inferlane.flowcontrol import (
    ExpiryReason,
    FlowController,
    Outcome,
    QueuedRequest,
    RejectReason,
    SaturationDetector,
    endpoint_saturation,
)
from inferlane.metrics.gateway import GatewayMetrics
from inferlane.routing.objectives import Objective
from inferlane.scheduling.framework import StatesFn
from inferlane.scheduling.interfaces import Endpoint
from inferlane.scheduling.pool import FlowSettings
from inferlane.scheduling.types import EndpointState

TICK_SECONDS = 0.05  # re-check saturation this often while requests wait (the scrape interval)
RETRY_AFTER_SECONDS = 1


@dataclass(frozen=True, slots=True)
class Ticket:
    """Proof of admission; ``granted`` when it came out of the queue (then the gate waits for
    ``dispatched`` before granting the next)."""

    granted: bool
    waited: float = 0.0
    # Where the request may go (the picker chooses among these); None: anywhere in the pool.
    endpoints: tuple[Endpoint, ...] | None = None


FAST_PASS = Ticket(granted=False)


def _retry_after(seconds: float = RETRY_AFTER_SECONDS) -> dict[str, str]:
    return {"retry-after": str(max(1, math.ceil(seconds)))}


class PoolGate:
    """Admission for one InferencePool; not thread-safe (one event loop owns it)."""

    def __init__(self, pool_key: str, settings: FlowSettings, states: StatesFn,
                 endpoints: Sequence[Endpoint], metrics: GatewayMetrics,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pool_key = pool_key
        self.settings = settings
        self.controller = FlowController(settings.queue)
        self.detector = SaturationDetector(settings.saturation)
        self.release_detector = SaturationDetector(settings.release, batch_aware=True)
        self._states = states
        self._endpoints = tuple(endpoints)
        self._metrics = metrics
        self._clock = clock
        self._granting = False
        self._expiry: asyncio.TimerHandle | None = None
        self._expiry_at = math.inf
        self._tick: asyncio.TimerHandle | None = None
        self._published: set[int] = set()  # priorities with a queue gauge set
        self._published_flows: set[tuple[str, str]] = set()  # (priority, flow label)

    # -- configuration -------------------------------------------------------------------------

    def reconfigure(self, settings: FlowSettings, endpoints: Sequence[Endpoint]) -> None:
        """A reload: new limits for future admissions; queued requests keep their place."""
        if settings != self.settings:
            self.settings = settings
            self.controller.reconfigure(settings.queue)
            self.detector = SaturationDetector(settings.saturation)
            self.release_detector = SaturationDetector(settings.release, batch_aware=True)
        self._endpoints = tuple(endpoints)
        self.pump()

    def endpoints_with_capacity(self, ticket: Ticket = FAST_PASS,
                                priority: int = 0) -> tuple[Endpoint, ...]:
        """Where an admitted request may go; the picker chooses among these, so a request lands
        where the gate saw room, not where a scrape up to 50 ms old looked emptiest.

        A request released from the queue, or one of positive priority, goes to an endpoint
        below the release threshold (a free batch slot, or no request waiting) when there is
        one — the servers' queues are first come first served, so that is where priority is
        kept — else to the least loaded endpoints below saturation. Others go to any endpoint
        below saturation; all endpoints when none is. ``admit`` puts the answer on its ticket.
        """
        states = self._states(self._endpoints)
        now = self._clock()
        return self._destinations(states, self.detector.with_capacity(states, now),
                                  ticket.granted or priority > 0, now)

    def _destinations(self, states: Sequence[EndpointState], roomy: Sequence[EndpointState],
                      strict: bool, now: float) -> tuple[Endpoint, ...]:
        if strict:
            release = self.release_detector.with_capacity(states, now)
            if release:
                roomy = release
            elif len(roomy) > 1:  # every server queues: the shortest queues, then
                config = self.detector.config
                loads = [endpoint_saturation(state, now, config) for state in roomy]
                least = min(loads)
                roomy = [state for state, load in zip(roomy, loads, strict=True)
                         if load == least]
        if not roomy or len(roomy) == len(self._endpoints):
            return self._endpoints
        return tuple(state.endpoint for state in roomy)

    def publish_saturation(self) -> None:
        """Set the pool-saturation gauge to the pool's state now."""
        assessed = self.detector.assess(self._states(self._endpoints), self._clock())
        self._metrics.child(self._metrics.pool_saturation, self.pool_key).set(assessed.value)

    # -- the request path ----------------------------------------------------------------------

    async def admit(self, objective: Objective, flow_id: str, size_bytes: int,
                    deadline: float | None) -> Ticket:
        """Wait until the request may be dispatched; raises the RequestError that answers it
        otherwise. ``deadline`` is absolute (the clock's seconds)."""
        now = self._clock()
        priority = objective.priority
        states = self._states(self._endpoints)
        roomy = self.detector.with_capacity(states, now)  # empty: the pool is saturated
        if roomy and not self._granting and not len(self.controller):
            # While anything waits, everyone queues: the queue sets the order.
            return Ticket(granted=False, endpoints=self._destinations(
                states, roomy, priority > 0, now))
        if objective.sheddable:  # it would have to wait: the pool is saturated, or was
            self._count(priority, "shed")
            raise RequestShed(
                f"InferencePool {self.pool_key} is saturated and this request's objective "
                f"is sheddable (priority {priority}); retry later.", headers=_retry_after())
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        item = QueuedRequest(handle=future, priority=priority, flow_id=flow_id,
                             size_bytes=size_bytes, enqueued_at=now, deadline=deadline)
        admission = self.controller.enqueue(item, now)
        for displaced in admission.displaced:
            self._fail(displaced, "displaced", RequestShed(
                f"InferencePool {self.pool_key} is saturated and higher-priority requests "
                f"took this request's place in the queue; retry later.",
                headers=_retry_after()))
        if admission.outcome is Outcome.REJECTED:
            reason = admission.reason or RejectReason.QUEUE_FULL
            self._count(priority, "queue-full")
            raise QueueFull(
                f"InferencePool {self.pool_key} is saturated and its queue for priority "
                f"{priority} is full ({reason.value}); retry later.", headers=_retry_after())
        self._publish()
        self._arm_expiry()
        self.pump()
        try:
            await future
        except asyncio.CancelledError:
            if self.controller.remove(item):
                self._publish()
            elif future.done() and not future.cancelled() and future.exception() is None:
                self.dispatched(Ticket(granted=True))  # granted, then the client left
            raise
        released = self._clock()
        metrics = self._metrics
        metrics.child(metrics.queue_wait, self.pool_key, str(priority),
                      metrics.flow_label(flow_id or "-")).observe(released - now)
        states = self._states(self._endpoints)
        return Ticket(granted=True, waited=released - now, endpoints=self._destinations(
            states, self.detector.with_capacity(states, released), True, released))

    def dispatched(self, ticket: Ticket) -> None:
        """The request ``ticket`` admitted was sent (or failed before sending): next, please."""
        if ticket.granted:
            self._granting = False
            self.pump()

    def pump(self) -> None:
        """Grant the next queued request if the pool has capacity (one at a time)."""
        if self._granting or not len(self.controller):
            return
        now = self._clock()
        self._expire(now)
        if not len(self.controller):
            return
        if self.release_detector.assess(self._states(self._endpoints), now).saturated:
            self._arm_tick()
            return
        item = self.controller.pop_next(now)
        self._publish()
        if item is None:
            return
        future = item.handle
        assert isinstance(future, asyncio.Future)
        self._granting = True
        future.set_result(None)

    # -- timers --------------------------------------------------------------------------------

    def _arm_tick(self) -> None:
        if self._tick is None:
            self._tick = asyncio.get_running_loop().call_later(TICK_SECONDS, self._on_tick)

    def _on_tick(self) -> None:
        self._tick = None
        self.pump()
        self.publish_saturation()  # the gauge (also refreshed when /metrics is read)
        self._publish_flows()
        if len(self.controller) and not self._granting:
            self._arm_tick()

    def _arm_expiry(self) -> None:
        at = self.controller.next_expiry()
        if at is None or at >= self._expiry_at:
            return
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry_at = at
        self._expiry = asyncio.get_running_loop().call_later(
            max(0.0, at - self._clock()), self._on_expiry)

    def _on_expiry(self) -> None:
        self._expiry = None
        self._expiry_at = math.inf
        self._expire(self._clock())
        self._arm_expiry()

    def _expire(self, now: float) -> None:
        for item, reason in self.controller.expire(now):
            waited = now - item.enqueued_at
            if reason is ExpiryReason.DEADLINE:
                self._fail(item, "deadline", DeadlineExceeded(
                    f"The request's time budget ran out after {waited:.3f} s in the queue of "
                    f"InferencePool {self.pool_key} (saturated).", headers=_retry_after()))
            else:
                self._fail(item, "ttl", QueueTimeout(
                    f"The request waited {waited:.1f} s (the queue TTL) for InferencePool "
                    f"{self.pool_key} to have capacity.", headers=_retry_after()))
        self._publish()

    # -- helpers -------------------------------------------------------------------------------

    def _fail(self, item: QueuedRequest, reason: str, error: RequestError) -> None:
        self._count(item.priority, reason)
        future = item.handle
        assert isinstance(future, asyncio.Future)
        if not future.done():
            future.set_exception(error)

    def _count(self, priority: int, reason: str) -> None:
        self._metrics.child(self._metrics.flow_rejections, self.pool_key, str(priority),
                            reason).inc()

    def _publish(self) -> None:
        """Band gauges, on every change (cheap: a handful of bands)."""
        metrics = self._metrics
        bands = self.controller.band_stats()
        for band in bands:
            metrics.child(metrics.queue_requests, self.pool_key, str(band.priority)).set(
                band.requests)
        seen = {band.priority for band in bands}
        for priority in self._published - seen:  # emptied bands read 0, not their last value
            metrics.child(metrics.queue_requests, self.pool_key, str(priority)).set(0)
        self._published = seen
        if not bands and self._published_flows:
            self._publish_flows()

    def _publish_flows(self) -> None:
        """Per-flow gauges, on the tick (flows can be many; labels are bounded)."""
        metrics = self._metrics
        counts: dict[tuple[str, str], int] = {}
        for band in self.controller.band_stats():
            priority = str(band.priority)
            for flow, length in self.controller.flow_lengths(band.priority).items():
                label = (priority, metrics.flow_label(flow or "-"))
                counts[label] = counts.get(label, 0) + length
        for label in self._published_flows - counts.keys():
            counts[label] = 0
        for (priority, flow), length in counts.items():
            metrics.child(metrics.queue_flow_requests, self.pool_key, priority, flow).set(length)
        self._published_flows = {label for label, length in counts.items() if length}

    def close(self) -> None:
        for handle in (self._tick, self._expiry):
            if handle is not None:
                handle.cancel()
        self._tick = self._expiry = None
