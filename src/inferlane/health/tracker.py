"""``HealthTracker``: every health fact of the gateway in one sans-IO object, and the verdicts.

Where it sits::

    probes (this process, region R0) ─┐
    probe agents (regions R1..Rn) ────┼─► record() ──► ProbeSeries per (monitor, endpoint, region)
    request outcomes (the data plane) ─► record_request() ──► OutlierDetector per pool
                                                    │
                      evaluate: member_verdict (regions) ─► group_verdict (members)
                                                    │          + ejections, drains, weights
                                                    ▼
               view(pool) ─► the picker's candidates and weights; critical(pool) ─► steering

Nothing here reads a clock or does I/O: callers pass ``now`` (monotonic seconds) and act on the
returned ``Change`` values (log lines, metrics). One probe series serves every pool that watches
the same endpoint with the same monitor from the same region.

Routing rules (documented for users in docs/health.md):

- An endpoint is *routable* unless its group verdict is UNHEALTHY, it is ejected by outlier
  detection, or it is draining (admin call or ModelServer weight 0). UNKNOWN (no verdict yet,
  e.g. just started, or every region stale) is routable: absence of evidence takes nobody out.
- A pool is *critical* when fewer than ``min_healthy`` of its non-draining endpoints are
  routable. Below ``panic_threshold_percent`` routable, the pool panics: every non-draining
  endpoint gets traffic again (spreading load beats overloading the few left).
- Slow start: an endpoint that turns routable again after an UNHEALTHY verdict ramps its share
  linearly over ``slow_start`` seconds (an ejection's return ramps over the outlier settings').
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

from inferlane.health.monitors import MonitorSpec, ProbeTarget
from inferlane.health.outlier import OutlierDetector
from inferlane.health.settings import PoolHealthSettings
from inferlane.health.verdicts import (
    GroupVerdict,
    Health,
    Member,
    MemberVerdict,
    ProbeResult,
    ProbeSeries,
    RegionVote,
    group_verdict,
    member_verdict,
)

MIN_RAMP_WEIGHT = 0.1  # an endpoint's share when its slow start begins


@dataclass(frozen=True, slots=True)
class WatchedEndpoint:
    """One pool endpoint as health sees it (``address`` is the key everywhere)."""

    address: str
    host: str
    port: int
    model: str = ""  # first served model, for inference monitors without one
    weight: int = 1  # ModelServer weight; 0 = draining


@dataclass(frozen=True, slots=True)
class WatchedPool:
    settings: PoolHealthSettings
    endpoints: tuple[WatchedEndpoint, ...]


@dataclass(frozen=True, slots=True)
class Change:
    """A health transition, for a log line and metrics."""

    kind: Literal["endpoint", "pool", "ejected", "returned", "region"]
    pool: str
    endpoint: str  # "" for pool and region changes
    state: str  # the state entered: a Health value, "critical"/"ok", "ejected"/"returned",
    #             "stale"/"fresh"/"removed"
    reason: str
    region: str = ""  # region changes


@dataclass(frozen=True, slots=True)
class PoolView:
    """Which endpoints new requests of a pool may use, and at what relative weight in (0, 1].
    An endpoint missing from ``weights`` gets no new requests."""

    weights: Mapping[str, float]
    critical: bool
    panic: bool
    routable: int = 0  # endpoints neither UNHEALTHY, ejected nor draining (panic aside)


@dataclass(slots=True)
class _EndpointState:
    verdict: GroupVerdict
    members: tuple[tuple[Member, MemberVerdict], ...]
    recovered_at: float | None = None  # end of the last UNHEALTHY verdict (slow-start anchor)
    admin_drain: bool = False


@dataclass(slots=True)
class _PoolState:
    watched: WatchedPool
    outlier: OutlierDetector | None
    endpoints: dict[str, _EndpointState] = field(default_factory=dict)
    critical: bool = False
    quiet: bool = True  # nothing limits any endpoint: the picker may use the pool as it is
    weights: dict[str, int] = field(default_factory=dict)  # ModelServer weights; 0 drains


_NO_VERDICT = GroupVerdict(Health.UNKNOWN, "no monitor", 0, 0, ())


class HealthTracker:
    """See the module docstring."""

    def __init__(self, *, own_region: str = "gateway") -> None:
        self.own_region = own_region
        self._pools: dict[str, _PoolState] = {}
        self._series: dict[tuple[str, str, str], ProbeSeries] = {}
        self._region_seen: dict[str, float] = {}  # latest report of each agent region
        self._stale_regions: set[str] = set()
        self._rtt: dict[tuple[str, str, str], float] = {}  # EWMA probe RTT per series
        self.generation = 0  # bumped by configure: agents refetch their plan

    # -- configuration ------------------------------------------------------------------------

    def configure(self, pools: Iterable[WatchedPool], now: float) -> list[Change]:
        """Watch exactly ``pools``; kept pools and series keep their state."""
        old = self._pools
        self._pools = {}
        for watched in pools:
            key = watched.settings.pool
            previous = old.get(key)
            passive = watched.settings.passive
            addresses = [e.address for e in watched.endpoints]
            outlier = None
            if passive is not None:
                config = replace(passive, panic_threshold_percent=0.0)  # panic is decided here
                if previous is not None and previous.outlier is not None \
                        and previous.outlier.config == config:
                    outlier = previous.outlier
                    outlier.set_endpoints(addresses)
                else:
                    outlier = OutlierDetector(addresses, config)
            # Not quiet: kept verdicts, drains, ejections and new weights must reach the next
            # view(), which returns to the fast path itself when nothing limits the pool.
            state = _PoolState(watched=watched, outlier=outlier, quiet=False,
                               weights={e.address: e.weight for e in watched.endpoints})
            for address in addresses:
                kept = previous.endpoints.get(address) if previous is not None else None
                state.endpoints[address] = kept or _EndpointState(_NO_VERDICT, ())
            if outlier is not None:  # draining endpoints are not in the ejection budget
                for endpoint in watched.endpoints:
                    outlier.drain(endpoint.address, self._draining(state, endpoint.address))
            if previous is not None:
                state.critical = previous.critical
            self._pools[key] = state
        wanted = {(m.monitor.key, e.address, region): m.monitor.thresholds
                  for pool in self._pools.values()
                  for m in pool.watched.settings.members
                  for e in pool.watched.endpoints
                  for region in pool.watched.settings.regions}
        for series_key, series in list(self._series.items()):
            if series_key in wanted:
                series.thresholds = wanted[series_key]  # a reload may change rise/fall
            else:
                del self._series[series_key]
                self._rtt.pop(series_key, None)
        regions = self.regions()
        removed: list[Change] = []
        for region in [r for r in self._region_seen if r not in regions]:
            del self._region_seen[region]  # no policy lists it any more
            self._stale_regions.discard(region)
            removed.append(Change("region", "", "", "removed",
                                  f"region {region} is in no HealthCheckPolicy any more", region))
        self.generation += 1
        return removed + self._evaluate_all(now)

    def pools(self) -> list[str]:
        return list(self._pools)

    def settings(self, pool: str) -> PoolHealthSettings | None:
        state = self._pools.get(pool)
        return state.watched.settings if state is not None else None

    # -- probes -------------------------------------------------------------------------------

    def probe_plan(self, region: str) -> list[tuple[MonitorSpec, ProbeTarget]]:
        """What ``region`` must probe: each (monitor, endpoint) once, disabled members not."""
        plan: dict[tuple[str, str], tuple[MonitorSpec, ProbeTarget]] = {}
        for pool in self._pools.values():
            settings = pool.watched.settings
            if region not in settings.regions:
                continue
            for group_member in settings.members:
                if not group_member.member.enabled:
                    continue
                monitor = group_member.monitor
                for endpoint in pool.watched.endpoints:
                    port = monitor.port if monitor.port is not None else endpoint.port
                    plan.setdefault((monitor.key, endpoint.address), (monitor, ProbeTarget(
                        endpoint=endpoint.address, host=endpoint.host, port=port,
                        model=endpoint.model)))
        return list(plan.values())

    def regions(self) -> set[str]:
        """Every region some pool probes from."""
        return {r for pool in self._pools.values() for r in pool.watched.settings.regions}

    def record(self, monitor: str, endpoint: str, region: str, result: ProbeResult,
               now: float) -> list[Change]:
        """One probe result of ``region``; False-y list when nothing changed. Results for
        series no pool watches (a reload removed them meanwhile) are ignored."""
        series_key = (monitor, endpoint, region)
        series = self._series.get(series_key)
        if series is None:
            watching = self._watching(monitor, endpoint, region)
            if not watching:
                return []
            thresholds = watching[0].thresholds
            series = self._series[series_key] = ProbeSeries(thresholds)
        if region != self.own_region:
            self._region_seen[region] = max(self._region_seen.get(region, now), now)
        if result.rtt is not None:
            previous = self._rtt.get(series_key)
            self._rtt[series_key] = (result.rtt if previous is None
                                     else previous + 0.3 * (result.rtt - previous))
        series.record(result)
        changes: list[Change] = []
        if region in self._stale_regions:
            self._stale_regions.discard(region)
            changes.append(Change("region", "", "", "fresh", f"region {region} reports again",
                                  region))
        for pool in self._pools.values():
            if endpoint in pool.endpoints and any(
                    m.monitor.key == monitor for m in pool.watched.settings.members):
                changes += self._evaluate(pool, endpoint, now)
        return changes

    def is_watched(self, monitor: str, endpoint: str, region: str) -> bool:
        return bool(self._watching(monitor, endpoint, region))

    def _watching(self, monitor: str, endpoint: str, region: str) -> list[MonitorSpec]:
        found = []
        for pool in self._pools.values():
            settings = pool.watched.settings
            if region not in settings.regions or endpoint not in pool.endpoints:
                continue
            found += [m.monitor for m in settings.members
                      if m.monitor.key == monitor and m.member.enabled]
        return found

    def tick(self, now: float) -> list[Change]:
        """Re-evaluate what time alone changes: regions going stale, ejections ending."""
        changes: list[Change] = []
        timeout: dict[str, float] = {}  # a region is stale when every pool has dropped it
        for pool in self._pools.values():
            settings = pool.watched.settings
            for region in settings.regions:
                timeout[region] = max(timeout.get(region, 0.0), settings.region_timeout)
        for region, seen in self._region_seen.items():
            limit = timeout.get(region)
            if limit is not None and now - seen > limit and region not in self._stale_regions:
                self._stale_regions.add(region)
                changes.append(Change("region", "", "", "stale",
                                      f"region {region} sent no report for {now - seen:.0f} s; "
                                      "dropped from the vote", region))
        for pool in self._pools.values():
            if pool.outlier is not None:
                changes += [Change("returned", pool.watched.settings.pool, event.key, "returned",
                                   event.reason) for event in pool.outlier.returns(now)]
        return changes + self._evaluate_all(now)

    # -- passive health -----------------------------------------------------------------------

    def record_request(self, pool: str, endpoint: str, now: float, *, ok: bool) -> list[Change]:
        """A finished request attempt (``ok=False``: 5xx, connect failure, timeout)."""
        state = self._pools.get(pool)
        if state is None or state.outlier is None:
            return []
        event = state.outlier.record(endpoint, now, ok=ok)
        if event is None:
            return []
        state.quiet = False
        changes = [Change("ejected" if event.kind == "ejected" else "returned", pool, endpoint,
                          event.kind, event.reason)]
        return changes + self._pool_critical(state, now)

    def drain(self, pool: str, endpoint: str, draining: bool, now: float) -> list[Change]:
        """Admin drain: no new requests (in-flight ones finish). KeyError when unknown."""
        state = self._pools.get(pool)
        if state is None:
            raise KeyError(f"no pool {pool!r} is watched")
        found = state.endpoints.get(endpoint)
        if found is None:
            raise KeyError(f"pool {pool} has no endpoint {endpoint!r}")
        found.admin_drain = draining
        if state.outlier is not None:
            state.outlier.drain(endpoint, self._draining(state, endpoint))
        state.quiet = False
        change = Change("endpoint", pool, endpoint, "draining" if draining else "undrained",
                        "admin call")
        return [change, *self._pool_critical(state, now)]

    # -- reading ------------------------------------------------------------------------------

    def view(self, pool: str, now: float) -> PoolView | None:
        """Candidates and weights for new requests; None when nothing limits the pool (the
        fast path: use every endpoint as is) or the pool is not watched."""
        state = self._pools.get(pool)
        if state is None or state.quiet:
            return None
        view = self._view(state, now)
        if len(view.weights) == len(state.endpoints) and not view.critical \
                and not view.panic and all(w == 1.0 for w in view.weights.values()):
            state.quiet = True  # ejections ended, ramps done: back to the fast path
            return None
        return view

    def critical(self, pool: str) -> bool:
        state = self._pools.get(pool)
        return state is not None and state.critical

    def latency(self, pool: str) -> float | None:
        """Mean EWMA probe RTT of the pool's voting members over its endpoints and regions
        (Cloudflare's pool latency), None before any RTT."""
        state = self._pools.get(pool)
        if state is None:
            return None
        settings = state.watched.settings
        samples = [rtt for m in settings.members
                   if m.member.enabled and not m.member.monitoring_only
                   for e in state.endpoints for r in settings.regions
                   if (rtt := self._rtt.get((m.monitor.key, e, r))) is not None]
        return sum(samples) / len(samples) if samples else None

    def report(self, now: float) -> dict[str, Any]:
        """Everything, JSON-able, for ``GET /admin/health`` (times as seconds ago)."""
        from inferlane.health.report import build_report  # one-way: report reads the tracker

        return build_report(self, now)

    # -- the verdict machinery ----------------------------------------------------------------

    def series(self, monitor: str, endpoint: str, region: str) -> ProbeSeries | None:
        return self._series.get((monitor, endpoint, region))

    def rtt(self, monitor: str, endpoint: str, region: str) -> float | None:
        return self._rtt.get((monitor, endpoint, region))

    def pool_state(self, pool: str) -> tuple[WatchedPool, Mapping[str, Any]] | None:
        """(what is watched, address -> endpoint state) for the report."""
        state = self._pools.get(pool)
        if state is None:
            return None
        return state.watched, MappingProxyType(state.endpoints)

    def outlier(self, pool: str) -> OutlierDetector | None:
        state = self._pools.get(pool)
        return state.outlier if state is not None else None

    def region_seen(self) -> Mapping[str, float]:
        return MappingProxyType(self._region_seen)

    def stale_regions(self) -> frozenset[str]:
        return frozenset(self._stale_regions)

    def endpoint_routable(self, pool: str, endpoint: str, now: float) -> bool:
        state = self._pools.get(pool)
        if state is None:
            return True
        return endpoint in self._view(state, now).weights

    def _evaluate_all(self, now: float) -> list[Change]:
        changes: list[Change] = []
        for pool in self._pools.values():
            for address in list(pool.endpoints):
                changes += self._evaluate(pool, address, now, critical=False)
            changes += self._pool_critical(pool, now)
        return changes

    def _evaluate(self, pool: _PoolState, address: str, now: float, *,
                  critical: bool = True) -> list[Change]:
        settings = pool.watched.settings
        if not settings.members:
            return self._pool_critical(pool, now) if critical else []
        members = []
        for group_member in settings.members:
            votes = []
            for region in settings.regions:
                series = self._series.get((group_member.monitor.key, address, region))
                if series is not None and series.last is not None:
                    votes.append(RegionVote(region, series.verdict, series.last.at))
            members.append((group_member.member,
                            member_verdict(votes, now, region_timeout=settings.region_timeout)))
        verdict = group_verdict(members, quorum=settings.quorum)
        state = pool.endpoints[address]
        before = state.verdict.verdict
        state.verdict, state.members = verdict, tuple(members)
        changes: list[Change] = []
        if verdict.verdict is not before:
            if before is Health.UNHEALTHY:
                state.recovered_at = now
                # The monitors saw it down and up again: a passive ejection ends too (Envoy's
                # successful_active_health_check_uneject_host, on recovery only).
                event = (pool.outlier.uneject(address, now) if pool.outlier is not None
                         and verdict.verdict is Health.HEALTHY else None)
                if event is not None:
                    changes.append(Change("returned", settings.pool, address, "returned",
                                          event.reason))
            pool.quiet = False
            changes.append(Change("endpoint", settings.pool, address, str(verdict.verdict),
                                  self._why(verdict, members, address, settings.regions)))
        if critical:
            changes += self._pool_critical(pool, now)
        return changes

    def _why(self, verdict: GroupVerdict, members: list[tuple[Member, MemberVerdict]],
             address: str, regions: tuple[str, ...]) -> str:
        """The group's reason plus what the failing members' probes last said."""
        if verdict.verdict is not Health.UNHEALTHY:
            return verdict.reason
        causes = []
        for member, member_verdict_ in members:
            if member_verdict_.verdict is not Health.UNHEALTHY:
                continue
            for region in regions:
                series = self._series.get((member.monitor, address, region))
                if series is not None and series.verdict is Health.UNHEALTHY \
                        and series.last is not None:
                    causes.append(f"{member.monitor} from {region}: {series.last.reason}")
                    break
        return f"{verdict.reason} ({'; '.join(causes)})" if causes else verdict.reason

    def _pool_critical(self, pool: _PoolState, now: float) -> list[Change]:
        view = self._view(pool, now)
        if view.critical is pool.critical:
            return []
        pool.critical = view.critical
        settings = pool.watched.settings
        reason = (f"{view.routable} of {len(pool.endpoints)} endpoints routable "
                  f"(minimum {settings.min_healthy})")
        return [Change("pool", settings.pool, "", "critical" if view.critical else "ok", reason)]

    @staticmethod
    def _draining(pool: _PoolState, address: str) -> bool:
        return pool.endpoints[address].admin_drain or pool.weights.get(address, 1) == 0

    def _view(self, pool: _PoolState, now: float) -> PoolView:
        settings = pool.watched.settings
        passive = pool.outlier.view(now) if pool.outlier is not None else None
        ejected = set(passive.ejected) if passive is not None else set()
        configured = pool.weights
        top = max(configured.values(), default=1) or 1
        open_: dict[str, float] = {}
        routable: dict[str, float] = {}
        for address, state in pool.endpoints.items():
            if self._draining(pool, address):
                continue
            share = configured.get(address, 1) / top
            open_[address] = share
            if state.verdict.verdict is Health.UNHEALTHY or address in ejected:
                continue
            # One ramp at a time: a monitor's recovery that ends an ejection starts both.
            ramp = _ramp(state.recovered_at, settings.slow_start, now)
            if passive is not None:
                ramp = min(ramp, passive.weights.get(address, 1.0))
            routable[address] = share * ramp
        critical = len(routable) < settings.min_healthy
        panic = bool(open_) and len(routable) * 100 < settings.panic_threshold_percent * len(
            open_)
        weights = open_ if panic else routable
        return PoolView(MappingProxyType(weights), critical=critical, panic=panic,
                        routable=len(routable))


def _ramp(recovered_at: float | None, slow_start: float, now: float) -> float:
    if recovered_at is None or slow_start <= 0:
        return 1.0
    elapsed = now - recovered_at
    if elapsed >= slow_start:
        return 1.0
    return MIN_RAMP_WEIGHT + (1.0 - MIN_RAMP_WEIGHT) * max(elapsed, 0.0) / slow_start


def agent_result_time(now: float, age: float) -> float:
    """When an agent's result happened on our clock: its age when sent, taken off receipt."""
    return now - max(age, 0.0)
