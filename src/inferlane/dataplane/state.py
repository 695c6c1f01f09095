"""What every handler of one gateway shares: the serving snapshot and the long-lived parts.

The snapshot reference is replaced whole on reload (one attribute assignment, atomic for the
event loop); a handler reads it once at the start of a request and keeps its own reference, so
in-flight requests and streams finish on the generation they started on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from inferlane.dataplane.h1client import UpstreamPool
from inferlane.dataplane.upstream import UpstreamOptions
from inferlane.endpoints import EndpointStore
from inferlane.metrics.gateway import GatewayMetrics
from inferlane.routing.router import GatewaySnapshot, Router


@dataclass(slots=True)
class GatewayState:
    snapshot: GatewaySnapshot
    upstream: UpstreamPool
    endpoints: EndpointStore = field(default_factory=EndpointStore)
    upstream_options: UpstreamOptions = field(default_factory=UpstreamOptions)
    router: Router = field(default_factory=Router)
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    ready: bool = False

    def swap(self, snapshot: GatewaySnapshot) -> None:
        self.snapshot = snapshot
        self.metrics.config_generation.set(snapshot.generation)
