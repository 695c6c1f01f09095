"""Endpoint health: monitors probe endpoints from several regions; verdicts steer routing.

The pure core: ``verdicts.py`` (probe results in, verdicts out: hysteresis per probe series,
majority across regions, Cloudflare monitor-group rules across members), ``outlier.py``
(passive health from request outcomes, Envoy outlier-detection semantics) and ``tracker.py``
(``HealthTracker``: both combined per pool into what the picker and steering read), with the
values they are configured by (``monitors.py``, ``settings.py``) and the report (``report.py``).
The I/O edges: ``probes/`` (one prober per monitor type), ``loop.py`` (probes on schedule),
``service.py`` (the gateway's health at run time) and ``agent.py`` (``inferlane probe``).
User guide: docs/health.md.
"""

from __future__ import annotations

from inferlane.health.outlier import Event, OutlierConfig, OutlierDetector, PoolView
from inferlane.health.verdicts import (
    GroupVerdict,
    Health,
    Member,
    MemberVerdict,
    PoolHealth,
    ProbeResult,
    ProbeSeries,
    RegionVote,
    Thresholds,
    group_verdict,
    member_verdict,
    pool_health,
)

__all__ = [
    "Event",
    "GroupVerdict",
    "Health",
    "Member",
    "MemberVerdict",
    "OutlierConfig",
    "OutlierDetector",
    "PoolHealth",
    "PoolView",
    "ProbeResult",
    "ProbeSeries",
    "RegionVote",
    "Thresholds",
    "group_verdict",
    "member_verdict",
    "pool_health",
]
