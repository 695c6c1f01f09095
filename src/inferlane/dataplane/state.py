"""What every handler of one gateway shares: the serving snapshot and the long-lived parts.

The snapshot reference is replaced whole on reload (one attribute assignment, atomic for the
event loop); a handler reads it once at the start of a request and keeps its own reference, so
in-flight requests and streams finish on the generation they started on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from inferlane.dataplane.admission import PoolGate
from inferlane.dataplane.h1client import UpstreamPool
from inferlane.dataplane.rate_limiting import RateLimitGuard
from inferlane.dataplane.resilience import ResilienceState
from inferlane.dataplane.upstream import UpstreamOptions
from inferlane.endpoints import EndpointStore
from inferlane.health.service import HealthService
from inferlane.health.settings import GATEWAY_REGION
from inferlane.health.tracker import HealthTracker
from inferlane.metrics.gateway import GatewayMetrics
from inferlane.routing.router import GatewaySnapshot, Router
from inferlane.routing.shadow import ShadowStats

RETIRE_SECONDS = 60.0


class PoolSignals:
    """Health's verdicts and the gateway's own load per pool, for steering between pools."""

    __slots__ = ("_in_flight", "_tracker")

    def __init__(self, tracker: HealthTracker, in_flight: dict[str, int]) -> None:
        self._tracker = tracker
        self._in_flight = in_flight

    def critical(self, pool: str) -> bool:
        return self._tracker.critical(pool)

    def latency(self, pool: str) -> float | None:
        return self._tracker.latency(pool)

    def outstanding(self, pool: str) -> int:
        return self._in_flight.get(pool, 0)


@dataclass(slots=True)
class GatewayState:
    snapshot: GatewaySnapshot
    upstream: UpstreamPool
    endpoints: EndpointStore = field(default_factory=EndpointStore)
    upstream_options: UpstreamOptions = field(default_factory=UpstreamOptions)
    router: Router = field(default_factory=Router)
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    ready: bool = False
    gates: dict[str, PoolGate] = field(default_factory=dict)  # flow control, by pool key
    rate_limits: RateLimitGuard | None = None
    resilience: ResilienceState = field(default_factory=ResilienceState)
    shadow: ShadowStats = field(default_factory=ShadowStats)
    mirror_in_flight: dict[tuple[str, int], int] = field(default_factory=dict)
    region: str = GATEWAY_REGION  # this process's health vantage point
    health: HealthService = field(init=False)
    signals: PoolSignals = field(init=False)  # what steering reads about pools
    pool_in_flight: dict[str, int] = field(default_factory=dict)  # requests sent, by pool key
    _background: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.health = HealthService(self.metrics.health, region=self.region)
        self.signals = PoolSignals(self.health.tracker, self.pool_in_flight)

    def swap(self, snapshot: GatewaySnapshot) -> None:
        """Serve ``snapshot``: pool gates and rate-limit backends follow it (a gate keeps its
        queue across reloads; a removed pool's gate stays until its queue drains)."""
        self.snapshot = snapshot
        self.metrics.config_generation.set(snapshot.generation)
        self.health.configure([*(pool.watched() for pool in snapshot.pools.values()),
                               *snapshot.backend_sets.values()])
        for key, pool in snapshot.pools.items():
            gate = self.gates.get(key)
            if pool.flow is None:
                continue
            if gate is None:
                self.gates[key] = PoolGate(key, pool.flow, self.endpoints.states,
                                           pool.endpoints, self.metrics)
            else:
                gate.reconfigure(pool.flow, pool.endpoints)
        for key, gate in list(self.gates.items()):
            current = snapshot.pools.get(key)
            if (current is None or current.flow is None) and not len(gate.controller):
                gate.close()
                del self.gates[key]
        self.resilience.retain({(rule.route, rule.rule_index)
                                for listener in snapshot.listeners
                                for rule in listener.routes.targets()})
        if self.rate_limits is None and snapshot.rate_limits:
            self.rate_limits = RateLimitGuard(self.metrics)
        if self.rate_limits is not None:
            for limiter in self.rate_limits.sync(snapshot.rate_limits):
                # Requests admitted under it may still charge tokens: close it a minute later.
                self._later(RETIRE_SECONDS, limiter.close)

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` in the background (mirror copies, retiring limiters); cancelled at
        shutdown."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def pool_completed(self, pool_key: str) -> None:
        """A request of the pool finished: capacity may have freed for its queue."""
        left = self.pool_in_flight.get(pool_key, 0) - 1
        if left > 0:
            self.pool_in_flight[pool_key] = left
        else:
            self.pool_in_flight.pop(pool_key, None)
        gate = self.gates.get(pool_key)
        if gate is not None:
            gate.pump()

    def _later(self, delay: float, close: Callable[[], Awaitable[None]]) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)
            await close()

        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no loop (building a state in a test): nothing to close later
            return
        self.spawn(run())

    async def close(self) -> None:
        """Stop timers and probes and close rate-limit backends (gateway shutdown)."""
        await self.health.stop()
        for gate in self.gates.values():
            gate.close()
        for task in list(self._background):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.rate_limits is not None:
            await self.rate_limits.close()
