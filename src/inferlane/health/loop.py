"""``ProbeLoop``: runs a probe plan on schedule (the I/O edge around the probers).

Used by the gateway for its own region and by ``inferlane probe`` agents for theirs: each
(monitor, endpoint) of the plan gets one task that probes, hands the result to ``sink``, and
sleeps ``interval`` plus a random ``jitter`` share of it (the first probe waits only the jitter,
so verdicts form quickly after start). ``sync`` applies a new plan: unchanged entries keep
running (no burst of probes on reload), changed ones restart, removed ones stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence

from inferlane.health.monitors import MonitorSpec, ProbeTarget
from inferlane.health.verdicts import ProbeResult

log = logging.getLogger("inferlane.health")

Sink = Callable[[MonitorSpec, ProbeTarget, ProbeResult], None]
Probe = Callable[[MonitorSpec, ProbeTarget], Awaitable[ProbeResult]]


class ProbeLoop:
    def __init__(self, probe: Probe, sink: Sink, *,
                 rng: random.Random | None = None) -> None:
        self._probe = probe
        self._sink = sink
        self._random = rng or random.Random()
        self._tasks: dict[tuple[str, str], tuple[MonitorSpec, ProbeTarget, asyncio.Task[None]]] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def sync(self, plan: Sequence[tuple[MonitorSpec, ProbeTarget]]) -> None:
        wanted = {(monitor.key, target.endpoint): (monitor, target) for monitor, target in plan}
        for key in list(self._tasks):
            monitor, target, task = self._tasks[key]
            if wanted.get(key) != (monitor, target):
                task.cancel()
                del self._tasks[key]
        loop = asyncio.get_running_loop()
        for key, (monitor, target) in wanted.items():
            if key not in self._tasks:
                task = loop.create_task(self._run(monitor, target),
                                        name=f"probe {monitor.key} {target.endpoint}")
                self._tasks[key] = (monitor, target, task)

    async def _run(self, monitor: MonitorSpec, target: ProbeTarget) -> None:
        spread = monitor.jitter * monitor.interval
        await asyncio.sleep(self._random.uniform(0, spread))
        while True:
            started = time.monotonic()
            result = await self._probe(monitor, target)
            try:
                self._sink(monitor, target, result)
            except Exception:
                log.exception("health: handling the result of %s on %s failed", monitor.key,
                              target.endpoint)
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(monitor.interval - elapsed, 0.0)
                                + self._random.uniform(0, spread))

    async def close(self) -> None:
        tasks = [task for _, _, task in self._tasks.values()]
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
