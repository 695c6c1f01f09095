"""How one pool's health is decided, as built from a ``HealthCheckPolicy``: frozen values.

A pool is watched by one monitor or one monitor group (``members``; a lone monitor is a group of
one voting member), probed from ``regions``; ``min_healthy`` is its critical threshold and
``passive`` its outlier detection (None: off).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from inferlane.health.monitors import MonitorSpec
from inferlane.health.outlier import OutlierConfig
from inferlane.health.verdicts import Member

# The vantage point of the gateway process itself unless ``inferlane serve --region`` names it.
GATEWAY_REGION = "gateway"


@dataclass(frozen=True, slots=True)
class GroupMember:
    """A member's flags and the monitor it runs."""

    member: Member
    monitor: MonitorSpec


@dataclass(frozen=True, slots=True)
class PoolHealthSettings:
    """``source`` names what the pool references (``"MonitorGroup ns/name"``, ``"Monitor
    ns/name"``, or ``""`` for passive-only), for reports. ``region_timeout``: a region whose
    latest report for a (member, endpoint) is older is dropped from the vote."""

    pool: str  # pool key "namespace/name"
    source: str = ""
    members: tuple[GroupMember, ...] = ()
    quorum: float = 0.5
    regions: tuple[str, ...] = (GATEWAY_REGION,)
    region_timeout: float = 30.0
    min_healthy: int = 1
    passive: OutlierConfig | None = field(default_factory=OutlierConfig)
    # Slow start after an active-health recovery (outlier returns use passive.slow_start).
    slow_start: float = 30.0
    panic_threshold_percent: float = 50.0

    @property
    def active(self) -> bool:
        return bool(self.members)


def default_settings(pool: str) -> PoolHealthSettings:
    """A pool without a HealthCheckPolicy: no monitors, Envoy-default outlier detection."""
    return PoolHealthSettings(pool=pool)
