"""Is an InferencePool saturated? The gate in front of the flow-control queues.

The data plane asks before dispatching: while the pool has an endpoint with capacity, requests
go straight through (or the queue is drained with ``FlowController.pop_next``); when none has,
arrivals wait in the queues. Per endpoint, with ``m`` its last good scrape::

    waiting_counted = m.waiting + max(0, in_flight_requests - m.waiting - m.running)
    saturation      = max(waiting_counted / queue_threshold, m.kv_usage / kv_threshold)

The second term of ``waiting_counted`` is the gateway's own view between scrapes: requests it sent
that no scrape shows yet. An endpoint that was never scraped, or whose scrape is older than
``staleness_seconds``, counts as saturated (1.0): we do not pile work onto what we cannot see.
``saturation >= 1`` means no capacity. Mind the boundary: ``waiting == queue_threshold`` is
saturated here (a ratio of 1), while the picker's ``saturation-filter`` still keeps such an
endpoint (it drops only ``>``), so the gate starts queuing one request before the filter drops.

The thresholds default to the picker's saturation filter (same upstream detector values).
Pure: ``now`` is monotonic seconds passed in by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from inferlane.scheduling.plugins.filter.saturation import (
    DEFAULT_KV_THRESHOLD,
    DEFAULT_QUEUE_THRESHOLD,
    DEFAULT_STALENESS_SECONDS,
)
from inferlane.scheduling.types import EndpointState

__all__ = ["PoolSaturation", "SaturationConfig", "SaturationDetector", "endpoint_saturation",
           "free_batch_slots"]


@dataclass(frozen=True, slots=True)
class SaturationConfig:
    """Thresholds of the saturation detector (upstream ``saturationDetector`` section)."""

    queue_threshold: float = DEFAULT_QUEUE_THRESHOLD  # waiting requests per endpoint, > 0
    kv_threshold: float = DEFAULT_KV_THRESHOLD  # KV-cache utilisation, in (0, 1]
    staleness_seconds: float = DEFAULT_STALENESS_SECONDS  # older scrapes count as saturated, > 0

    def __post_init__(self) -> None:
        if not (0 < self.queue_threshold < math.inf):
            raise ValueError(f"saturation queue_threshold must be a positive number of waiting "
                             f"requests, got {self.queue_threshold!r}")
        if not (0 < self.kv_threshold <= 1):
            raise ValueError(f"saturation kv_threshold must be in (0, 1] (a KV-cache fraction), "
                             f"got {self.kv_threshold!r}")
        if not (0 < self.staleness_seconds < math.inf):
            raise ValueError(f"saturation staleness_seconds must be a positive number of seconds, "
                             f"got {self.staleness_seconds!r}")


def endpoint_saturation(state: EndpointState, now: float, config: SaturationConfig) -> float:
    """0 = idle, >= 1 = saturated; stale or never scraped -> 1.0."""
    metrics = state.metrics
    if metrics is None or state.is_stale(now, config.staleness_seconds):
        return 1.0
    unreported = max(0, state.in_flight_requests - metrics.waiting - metrics.running)
    waiting = metrics.waiting + unreported
    return max(waiting / config.queue_threshold, metrics.kv_usage / config.kv_threshold)


def free_batch_slots(state: EndpointState, now: float, config: SaturationConfig) -> int | None:
    """Requests the endpoint's batch can still take without queueing, if its batch limit has
    been observed (``EndpointState.batch_limit``); None when unknown, 0 when stale, full or
    over the KV threshold. Requests in flight are the gateway's exact count; the scrape covers
    other clients (the larger of the two is taken)."""
    limit = state.batch_limit
    metrics = state.metrics
    if limit is None:
        return None
    if metrics is None or state.is_stale(now, config.staleness_seconds) \
            or metrics.kv_usage >= config.kv_threshold:
        return 0
    load = max(state.in_flight_requests, metrics.waiting + metrics.running)
    return max(limit - load, 0)


def _blind(states: Sequence[EndpointState]) -> bool:
    return bool(states) and all(state.metrics is None for state in states)


@dataclass(frozen=True, slots=True)
class PoolSaturation:
    """One assessment of a pool."""

    value: float  # mean over endpoints of min(endpoint_saturation, 1.0); 1.0 for no endpoints
    saturated: bool  # no endpoint has capacity (or there are no endpoints)
    endpoints: int
    with_capacity: int  # endpoints with endpoint_saturation < 1


class SaturationDetector:
    """Assesses a pool's endpoints against one ``SaturationConfig``."""

    __slots__ = ("batch_aware", "config")

    def __init__(self, config: SaturationConfig | None = None, *,
                 batch_aware: bool = False) -> None:
        self.config = config if config is not None else SaturationConfig()
        # batch_aware: an endpoint whose batch limit is known has room only while its batch
        # has a free slot (no request would wait at the server); unknown limits fall back to
        # the waiting-queue threshold.
        self.batch_aware = batch_aware

    def _saturation(self, state: EndpointState, now: float) -> float:
        if self.batch_aware:
            free = free_batch_slots(state, now, self.config)
            if free is not None:
                return 0.0 if free > 0 else 1.0
        return endpoint_saturation(state, now, self.config)

    def with_capacity(self, states: Sequence[EndpointState],
                      now: float) -> list[EndpointState]:
        """The endpoints below saturation: where the gateway may send a request now (all of
        them when none was ever scraped: see ``assess``)."""
        if _blind(states):
            return list(states)
        return [state for state in states if self._saturation(state, now) < 1.0]

    def assess(self, states: Sequence[EndpointState], now: float) -> PoolSaturation:
        """The pool's saturation. A pool none of whose endpoints was ever scraped successfully
        (servers without a metrics endpoint, or before the first scrape) is *unknown*, not
        saturated: flow control cannot see its load and must not hold its traffic; an endpoint
        whose metrics went stale still counts as saturated (it stopped answering)."""
        if not states:
            return PoolSaturation(value=1.0, saturated=True, endpoints=0, with_capacity=0)
        if _blind(states):
            return PoolSaturation(value=0.0, saturated=False, endpoints=len(states),
                                  with_capacity=len(states))
        total = 0.0
        with_capacity = 0
        for state in states:
            saturation = self._saturation(state, now)
            if saturation < 1.0:
                with_capacity += 1
                total += saturation
            else:
                total += 1.0
        return PoolSaturation(value=total / len(states), saturated=with_capacity == 0,
                              endpoints=len(states), with_capacity=with_capacity)
