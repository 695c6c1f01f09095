"""Health metrics: verdicts and transitions of endpoints and pools, probes, ejections, regions.

Label values are config names (pool keys, endpoint addresses, monitor keys, region names), never
request input, so their number is bounded by the config.
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from inferlane.health.tracker import Change
from inferlane.health.verdicts import ProbeResult

_PROBE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_VERDICT_VALUE = {"healthy": 1, "unhealthy": 0, "unknown": -1}


class HealthMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.endpoint_healthy = Gauge(
            "inferlane_health_endpoint_verdict",
            "Monitor-group verdict of a pool endpoint: 1 healthy, 0 unhealthy, -1 unknown.",
            ["pool", "endpoint"], registry=r)
        self.transitions = Counter(
            "inferlane_health_transitions",
            "Health transitions: kind endpoint (to healthy/unhealthy/unknown/draining/"
            "undrained), pool (critical/ok), ejected/returned (outlier detection), region "
            "(stale/fresh/removed).",
            ["kind", "pool", "endpoint", "state"], registry=r)
        self.pool_critical = Gauge(
            "inferlane_health_pool_critical",
            "1 while fewer than minHealthy endpoints of the pool are routable.",
            ["pool"], registry=r)
        self.ejected = Gauge(
            "inferlane_health_endpoint_ejected",
            "1 while outlier detection keeps the endpoint out of new-request selection.",
            ["pool", "endpoint"], registry=r)
        self.region_stale = Gauge(
            "inferlane_health_region_stale",
            "1 while a probe region is dropped from the vote for not reporting.",
            ["region"], registry=r)
        self.probes = Counter(
            "inferlane_health_probes",
            "Probe results by monitor, region and result (ok/failed).",
            ["monitor", "region", "result"], registry=r)
        self.probe_rtt = Histogram(
            "inferlane_health_probe_rtt_seconds",
            "Round-trip time of probes that got an answer.",
            ["monitor", "region"], buckets=_PROBE_BUCKETS, registry=r)

    def probed(self, monitor: str, region: str, result: ProbeResult) -> None:
        """One probe result of ``monitor`` (its key) from ``region``, local or an agent's."""
        self.probes.labels(monitor, region, "ok" if result.ok else "failed").inc()
        if result.rtt is not None:
            self.probe_rtt.labels(monitor, region).observe(result.rtt)

    def changed(self, change: Change) -> None:
        self.transitions.labels(change.kind, change.pool, change.endpoint, change.state).inc()
        if change.kind == "endpoint" and change.state in _VERDICT_VALUE:
            self.endpoint_healthy.labels(change.pool, change.endpoint).set(
                _VERDICT_VALUE[change.state])
        elif change.kind == "pool":
            self.pool_critical.labels(change.pool).set(1 if change.state == "critical" else 0)
        elif change.kind in ("ejected", "returned"):
            self.ejected.labels(change.pool, change.endpoint).set(
                1 if change.kind == "ejected" else 0)
        elif change.kind == "region" and change.state == "removed":
            with contextlib.suppress(KeyError):  # never stale: it had no gauge
                self.region_stale.remove(change.region)
        elif change.kind == "region":
            self.region_stale.labels(change.region).set(1 if change.state == "stale" else 0)
