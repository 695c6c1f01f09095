"""``HealthService``: the gateway's health at run time (the asyncio edge around the tracker).

It owns the ``HealthTracker`` (verdicts), the probers and the ``ProbeLoop`` of the gateway's own
region, a once-a-second tick (regions going stale, ejections ending), and turns every
``Change`` into a log line with its reason and metrics. Probe agents' reports come in through
``receive`` (the admin endpoint authenticates them first). The data plane reads
``tracker.view``/``tracker.critical`` and reports request outcomes with ``record_request``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from inferlane.health.loop import ProbeLoop
from inferlane.health.monitors import MonitorSpec, ProbeTarget
from inferlane.health.probes import Probers
from inferlane.health.tracker import Change, HealthTracker, WatchedPool, agent_result_time
from inferlane.health.verdicts import ProbeResult
from inferlane.metrics.health import HealthMetrics

log = logging.getLogger("inferlane.health")

TICK_SECONDS = 0.5
MAX_REPORT_RESULTS = 10_000  # one agent report


class ReportError(ValueError):
    """An agent report the gateway cannot use (the message says why)."""


class HealthService:
    def __init__(self, metrics: HealthMetrics, *, region: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.region = region
        self.tracker = HealthTracker(own_region=region)
        self._metrics = metrics
        self._clock = clock
        self._probers: Probers | None = None
        self._loop: ProbeLoop | None = None
        self._ticker: asyncio.Task[None] | None = None

    def configure(self, pools: Iterable[WatchedPool]) -> None:
        """Watch ``pools`` (at start and on every reload)."""
        self.emit(self.tracker.configure(pools, self._clock()))
        if self._loop is not None:
            self._loop.sync(self.tracker.probe_plan(self.region))

    async def start(self) -> None:
        self._probers = Probers()
        self._loop = ProbeLoop(self._probers.probe, self._probed)
        self._loop.sync(self.tracker.probe_plan(self.region))
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._loop is not None:
            await self._loop.close()
            self._loop = None
        if self._probers is not None:
            await self._probers.close()
            self._probers = None

    @property
    def probing(self) -> int:
        """Probe tasks of this region."""
        return len(self._loop) if self._loop is not None else 0

    def record_request(self, pool: str, endpoint: str, *, ok: bool) -> None:
        """Passive health: a request attempt to ``endpoint`` of ``pool`` finished."""
        changes = self.tracker.record_request(pool, endpoint, self._clock(), ok=ok)
        if changes:
            self.emit(changes)

    def receive(self, region: str, results: Sequence[Mapping[str, Any]]) -> int:
        """An agent's report: results of ``region`` (each ``monitor``, ``endpoint``, ``ok``,
        ``rtt``, ``reason``, ``age`` seconds before sending). Returns how many were used
        (results for series nobody watches any more are dropped). ReportError when bad."""
        if region == self.region:
            raise ReportError(f"region {region!r} is this gateway's own region; give the "
                              "agent another name")
        if region not in self.tracker.regions():
            raise ReportError(f"region {region!r} is not in the regions of any "
                              "HealthCheckPolicy")
        if len(results) > MAX_REPORT_RESULTS:
            raise ReportError(f"a report holds at most {MAX_REPORT_RESULTS} results")
        now = self._clock()
        used = 0
        changes: list[Change] = []
        for index, item in enumerate(results):
            try:
                monitor, endpoint = str(item["monitor"]), str(item["endpoint"])
                ok, age = item["ok"], float(item["age"])
                rtt = item.get("rtt")
                result = ProbeResult(ok=bool(ok), at=agent_result_time(now, age),
                                     rtt=None if rtt is None else float(rtt),
                                     reason=str(item.get("reason", ""))[:500])
                if not isinstance(ok, bool):
                    raise TypeError("ok must be true or false")
            except (KeyError, TypeError, ValueError) as error:
                raise ReportError(f"results[{index}]: {error}") from None
            if not self.tracker.is_watched(monitor, endpoint, region):
                continue
            used += 1
            self._metrics.probed(monitor, region, result)
            changes += self.tracker.record(monitor, endpoint, region, result, now)
        self.emit(changes)
        return used

    def _probed(self, monitor: MonitorSpec, target: ProbeTarget, result: ProbeResult) -> None:
        self._metrics.probed(monitor.key, self.region, result)
        self.emit(self.tracker.record(monitor.key, target.endpoint, self.region, result,
                                      self._clock()))

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            self.emit(self.tracker.tick(self._clock()))

    def emit(self, changes: Iterable[Change]) -> None:
        """A log line and metrics for each change."""
        for change in changes:
            self._metrics.changed(change)
            bad = change.state in ("unhealthy", "critical", "ejected", "stale", "draining")
            level = logging.WARNING if bad else logging.INFO
            if change.kind == "region":
                log.log(level, "health: %s", change.reason)
            elif change.kind == "pool":
                log.log(level, "health: pool %s is %s: %s", change.pool, change.state,
                        change.reason)
            else:
                log.log(level, "health: endpoint %s of pool %s is %s: %s", change.endpoint,
                        change.pool, change.state, change.reason)
