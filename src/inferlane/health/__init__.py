"""Endpoint health: monitors probe endpoints from several regions; verdicts steer routing.

Today this holds the pure cores, not yet wired into the request path (issue 6 groundwork):
``verdicts.py`` — probe results in, health verdicts out: hysteresis per probe series, majority
across regions, Cloudflare monitor-group rules across members, the pool's ``min_healthy``
threshold; ``outlier.py`` — passive health from request outcomes, Envoy outlier-detection
semantics (ejection, max ejection share, panic, slow start, drain). Monitors, probe agents and
the routing that reads the verdicts come later.
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
