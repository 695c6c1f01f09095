"""A pool at run time: its endpoints, scheduler, model rewrites, objectives and flow control."""

from __future__ import annotations

from dataclasses import dataclass, field

from inferlane.flowcontrol import FlowControlConfig, SaturationConfig
from inferlane.health.settings import default_settings
from inferlane.health.tracker import WatchedEndpoint, WatchedPool
from inferlane.routing.objectives import ObjectiveTable
from inferlane.routing.rewrite import ModelRewriteTable
from inferlane.scheduling.framework import Scheduler
from inferlane.scheduling.interfaces import Endpoint

DEFAULT_RELEASE_QUEUE_DEPTH = 1

# Modes whose profile reads nothing the scraper provides: their endpoints are not scraped.
METRIC_FREE_MODES = frozenset({"round-robin", "random"})


@dataclass(frozen=True, slots=True)
class FlowSettings:
    """How the gateway queues a saturated pool's requests (None on a pool: no queueing)."""

    queue: FlowControlConfig
    saturation: SaturationConfig  # when requests start to queue (and where new ones may go)
    # While requests wait, where a queued one may be released: stricter (1 waiting by default)
    # so overload waits in the gateway's queue, which is by priority and fair, not in the
    # servers', which are first come first served.
    release: SaturationConfig = field(default_factory=lambda: SaturationConfig(
        queue_threshold=DEFAULT_RELEASE_QUEUE_DEPTH))


@dataclass(frozen=True, slots=True)
class PoolRuntime:
    key: str  # "namespace/name"
    name: str
    endpoints: tuple[Endpoint, ...]
    scheduler: Scheduler
    rewrites: ModelRewriteTable
    load_balancing: str = "default"
    # What the scheduler was built from; an unchanged spec keeps its scheduler (and what it has
    # learned: prefix index, sessions) across reloads.
    scheduler_spec: str = ""
    needs_metrics: bool = True
    objectives: ObjectiveTable = field(default_factory=ObjectiveTable)
    flow: FlowSettings | None = None
    context_window: int | None = None  # tokens (annotation inferlane.dev/context-window)
    # Monitors, regions, outlier detection and endpoint weights (HealthCheckPolicy, ModelServer).
    # None (a pool built without a config, in tests): default settings, every weight 1.
    health: WatchedPool | None = None

    def watched(self) -> WatchedPool:
        if self.health is not None:
            return self.health
        return WatchedPool(default_settings(self.key),
                           tuple(WatchedEndpoint(e.address, e.host, e.port)
                                 for e in self.endpoints))
