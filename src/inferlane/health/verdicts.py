"""Health verdicts: the pure core that turns probe results into endpoint and pool health.

Where it sits: monitor adapters (HTTP/TCP probes, run from several regions) feed ``ProbeResult``
values in; the routing layer reads the verdicts out to pick endpoints and fail pools over. This
module does no I/O and reads no clock: ``now`` and every timestamp are passed in (seconds, same
clock for all of them). The four steps, each a value in and a value out:

1. ``ProbeSeries`` — one (monitor, endpoint, region): hysteresis over consecutive results, like
   HAProxy's rise/fall. The verdict becomes HEALTHY after ``consecutive_up`` successes in a row
   and UNHEALTHY after ``consecutive_down`` failures in a row; any other run leaves it unchanged.
   A series starting UNKNOWN needs a full run too (no single probe decides). A result older than
   the last recorded one (a late answer) is ignored.
2. ``member_verdict`` — one (member, endpoint) across regions. A region whose latest vote is
   older than ``region_timeout`` (``now - at > region_timeout``) is dropped and listed as stale;
   when a region voted twice its newest vote counts. Of the fresh HEALTHY/UNHEALTHY votes, the
   endpoint is UNHEALTHY only when MORE than half say so (a tie stays HEALTHY, as Cloudflare).
   No fresh HEALTHY/UNHEALTHY vote → UNKNOWN.
3. ``group_verdict`` — one endpoint across the members of a monitor group (Cloudflare rules).
   Disabled members are ignored. ``monitoring_only`` members are reported
   (``monitoring_only_failed`` and the reason) but do not vote. Any ``must_be_healthy`` member
   that is UNHEALTHY makes the endpoint UNHEALTHY at once. Otherwise UNHEALTHY only when the
   unhealthy voting members are MORE than ``quorum`` of the voting members with a verdict (a
   tie stays HEALTHY); UNKNOWN members do not vote; no voting member with a verdict (e.g. all
   monitoring-only) → UNKNOWN. A member cannot be both ``monitoring_only`` and
   ``must_be_healthy``.
4. ``pool_health`` — a pool is critical when fewer than ``min_healthy`` of its endpoints are
   HEALTHY (UNKNOWN counts as not healthy).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


class Health(enum.StrEnum):
    """A verdict; UNKNOWN means there is not enough evidence either way."""

    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe's outcome at time ``at``; ``rtt`` in seconds when the probe got an answer."""

    ok: bool
    at: float
    rtt: float | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Consecutive results needed to turn HEALTHY (rise) or UNHEALTHY (fall)."""

    consecutive_up: int = 2
    consecutive_down: int = 2

    def __post_init__(self) -> None:
        for field, value in (("consecutive_up", self.consecutive_up),
                             ("consecutive_down", self.consecutive_down)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"health threshold {field} must be a whole number >= 1, "
                                 f"got {value!r}")


class ProbeSeries:
    """Hysteresis over one (monitor, endpoint, region)'s consecutive probe results."""

    __slots__ = ("_streak", "_streak_ok", "last", "thresholds", "verdict")

    def __init__(self, thresholds: Thresholds, initial: Health = Health.UNKNOWN) -> None:
        self.thresholds = thresholds
        self.verdict = initial
        self.last: ProbeResult | None = None
        self._streak = 0
        self._streak_ok = False

    def record(self, result: ProbeResult) -> Health | None:
        """Count ``result``; return the new verdict when it changes, else None."""
        if self.last is not None and result.at < self.last.at:
            return None
        if self._streak and self._streak_ok == result.ok:
            self._streak += 1
        else:
            self._streak, self._streak_ok = 1, result.ok
        self.last = result
        if result.ok:
            target, needed = Health.HEALTHY, self.thresholds.consecutive_up
        else:
            target, needed = Health.UNHEALTHY, self.thresholds.consecutive_down
        if self.verdict is target or self._streak < needed:
            return None
        self.verdict = target
        return target


@dataclass(frozen=True, slots=True)
class Member:
    """One monitor in a monitor group, with Cloudflare's member flags."""

    monitor: str
    enabled: bool = True
    monitoring_only: bool = False
    must_be_healthy: bool = False

    def __post_init__(self) -> None:
        if self.monitoring_only and self.must_be_healthy:
            raise ValueError(f"monitor group member {self.monitor!r}: monitoring_only and "
                             f"must_be_healthy exclude each other; set at most one")


@dataclass(frozen=True, slots=True)
class RegionVote:
    """A region's latest verdict for one (member, endpoint), reported at ``at``."""

    region: str
    verdict: Health
    at: float


@dataclass(frozen=True, slots=True)
class MemberVerdict:
    """One member's verdict for one endpoint across regions; ``stale_regions`` sorted by name."""

    verdict: Health
    healthy: int
    unhealthy: int
    stale_regions: tuple[str, ...]
    reason: str


def member_verdict(votes: Sequence[RegionVote], now: float, *,
                   region_timeout: float) -> MemberVerdict:
    """Combine region votes by majority; see the module docstring for the rules."""
    if region_timeout < 0:
        raise ValueError(f"region_timeout must be >= 0 seconds, got {region_timeout!r}")
    newest: dict[str, RegionVote] = {}
    for vote in votes:
        seen = newest.get(vote.region)
        if seen is None or vote.at > seen.at:
            newest[vote.region] = vote
    fresh = [v for v in newest.values() if now - v.at <= region_timeout]
    stale = sorted((v for v in newest.values() if now - v.at > region_timeout),
                   key=lambda v: v.region)
    healthy = sum(v.verdict is Health.HEALTHY for v in fresh)
    unhealthy = sum(v.verdict is Health.UNHEALTHY for v in fresh)
    deciding = healthy + unhealthy
    if deciding == 0:
        verdict = Health.UNKNOWN
        reason = "no fresh region has a verdict" if fresh else "no fresh region vote"
    else:
        verdict = Health.UNHEALTHY if 2 * unhealthy > deciding else Health.HEALTHY
        reason = f"{unhealthy} of {deciding} regions unhealthy"
        if unhealthy and verdict is Health.HEALTHY:
            reason += " (not more than half)"
    notes = [f"region {v.region} stale (last report {now - v.at:.0f} s ago)" for v in stale]
    return MemberVerdict(verdict=verdict, healthy=healthy, unhealthy=unhealthy,
                         stale_regions=tuple(v.region for v in stale),
                         reason="; ".join([reason, *notes]))


@dataclass(frozen=True, slots=True)
class GroupVerdict:
    """One endpoint's verdict across a monitor group's members.

    ``voting`` counts the voting members with a HEALTHY/UNHEALTHY verdict, ``unhealthy`` those of
    them that are UNHEALTHY; ``critical_failed`` names the UNHEALTHY must-be-healthy members and
    ``monitoring_only_failed`` the UNHEALTHY monitoring-only ones (alerts, no vote).
    """

    verdict: Health
    reason: str
    voting: int
    unhealthy: int
    critical_failed: tuple[str, ...]
    monitoring_only_failed: tuple[str, ...] = ()


def _names(kind: str, names: Sequence[str]) -> str:
    plural = "s" if len(names) > 1 else ""
    return f"{kind} member{plural} {', '.join(names)}"


def group_verdict(members: Sequence[tuple[Member, MemberVerdict]], *,
                  quorum: float = 0.5) -> GroupVerdict:
    """Combine members' verdicts with Cloudflare's monitor-group rules (module docstring)."""
    if not 0 <= quorum < 1:
        raise ValueError(f"monitor group quorum must be in [0, 1), got {quorum!r}")
    enabled = [(m, v.verdict) for m, v in members if m.enabled]
    watched = tuple(m.monitor for m, h in enabled
                    if m.monitoring_only and h is Health.UNHEALTHY)
    ballots = [(m, h) for m, h in enabled if not m.monitoring_only and h is not Health.UNKNOWN]
    critical = tuple(m.monitor for m, h in ballots if m.must_be_healthy and h is Health.UNHEALTHY)
    voting = len(ballots)
    unhealthy = sum(h is Health.UNHEALTHY for _, h in ballots)
    if critical:
        verdict, reason = Health.UNHEALTHY, f"{_names('critical', critical)} failed"
    elif voting == 0:
        verdict = Health.UNKNOWN
        if not enabled:
            reason = "no enabled member"
        elif all(m.monitoring_only for m, _ in enabled):
            reason = "all enabled members are monitoring-only"
        else:
            reason = "no voting member has a verdict yet"
    else:
        # Compare the ratio, not unhealthy > quorum * voting: 0.57 * 100 rounds below 57, while
        # 57 / 100 rounds to the same float as 0.57, so an exact tie stays a tie.
        over = unhealthy / voting > quorum
        verdict = Health.UNHEALTHY if over else Health.HEALTHY
        reason = f"{unhealthy} of {voting} voting members unhealthy"
        if unhealthy and not over:
            reason += f" (not more than {quorum:.0%})"
    if watched:
        reason += f"; {_names('monitoring-only', watched)} unhealthy"
    return GroupVerdict(verdict=verdict, reason=reason, voting=voting, unhealthy=unhealthy,
                        critical_failed=critical, monitoring_only_failed=watched)


@dataclass(frozen=True, slots=True)
class PoolHealth:
    """A pool's endpoint count; ``critical`` when fewer than ``min_healthy`` are HEALTHY."""

    healthy: int
    total: int
    min_healthy: int
    critical: bool
    reason: str


def pool_health(endpoint_verdicts: Mapping[str, Health], *, min_healthy: int) -> PoolHealth:
    """Count a pool's HEALTHY endpoints against its ``min_healthy`` threshold."""
    if isinstance(min_healthy, bool) or not isinstance(min_healthy, int) or min_healthy < 0:
        raise ValueError(f"pool min_healthy must be a whole number >= 0, got {min_healthy!r}")
    healthy = sum(h is Health.HEALTHY for h in endpoint_verdicts.values())
    total = len(endpoint_verdicts)
    critical = healthy < min_healthy
    reason = f"{healthy} of {total} endpoints healthy (minimum {min_healthy})"
    if critical:
        reason += "; pool critical"
    return PoolHealth(healthy=healthy, total=total, min_healthy=min_healthy, critical=critical,
                      reason=reason)
