"""HealthTracker end to end with a fake clock: probe results and request outcomes in, Changes
and pool views out. The verdict rules themselves are tabled in ``test_health_verdicts.py`` and the
outlier detector in ``test_health_outlier.py``; here they are driven through the tracker (series
per (monitor, endpoint, region), regions going stale, views, drains, slow start, reloads).
"""

from __future__ import annotations

from typing import Any

import pytest

from inferlane.health.monitors import HttpCheck, MonitorSpec, MonitorType, ProbeTarget, TcpCheck
from inferlane.health.outlier import OutlierConfig
from inferlane.health.settings import GroupMember, PoolHealthSettings
from inferlane.health.tracker import (
    Change,
    HealthTracker,
    WatchedEndpoint,
    WatchedPool,
    agent_result_time,
)
from inferlane.health.verdicts import Health, Member, ProbeResult, Thresholds

POOL = "default/chat"
OWN = "gateway"  # the tracker's own region in these tests


def http(name: str = "http", *, up: int = 1, down: int = 1, port: int | None = None) -> MonitorSpec:
    return MonitorSpec(key=f"default/{name}", type=MonitorType.HTTP, http=HttpCheck(),
                       interval=1, timeout=0.5, thresholds=Thresholds(up, down), port=port)


def tcp(name: str = "tcp") -> MonitorSpec:
    return MonitorSpec(key=f"default/{name}", type=MonitorType.TCP, tcp=TcpCheck(), interval=1,
                       timeout=0.5, thresholds=Thresholds(1, 1))


HTTP = http()


def member(monitor: MonitorSpec = HTTP, **flags: bool) -> GroupMember:
    return GroupMember(Member(monitor.key, **flags), monitor)


def endpoint(i: int, *, weight: int = 1, port: int = 8000) -> WatchedEndpoint:
    return WatchedEndpoint(address=f"10.0.0.{i}:{port}", host=f"10.0.0.{i}", port=port,
                           model=f"model-{i}", weight=weight)


E1, E2, E3 = (endpoint(i).address for i in (1, 2, 3))


def watched(*, pool: str = POOL, members: tuple[GroupMember, ...] = (member(),),
            endpoints: tuple[WatchedEndpoint, ...] = (endpoint(1),),
            **settings: Any) -> WatchedPool:
    settings.setdefault("passive", None)
    settings.setdefault("slow_start", 0.0)
    return WatchedPool(PoolHealthSettings(pool=pool, members=members, **settings), endpoints)


def tracker_for(*pools: WatchedPool, now: float = 0.0) -> HealthTracker:
    tracker = HealthTracker(own_region=OWN)
    assert tracker.configure(pools, now) == []
    return tracker


def probe(tracker: HealthTracker, address: str, ok: bool, at: float, *,
          monitor: MonitorSpec = HTTP, region: str = OWN, rtt: float | None = None,
          now: float | None = None) -> list[Change]:
    result = ProbeResult(ok=ok, at=at, rtt=rtt, reason="" if ok else "HTTP 503")
    return tracker.record(monitor.key, address, region, result, at if now is None else now)


def verdict(tracker: HealthTracker, address: str, pool: str = POOL) -> Health:
    found = tracker.pool_state(pool)
    assert found is not None
    result: Health = found[1][address].verdict.verdict
    return result


def weights(tracker: HealthTracker, now: float, pool: str = POOL) -> dict[str, float] | None:
    view = tracker.view(pool, now)
    return None if view is None else dict(view.weights)


def endpoint_changes(changes: list[Change]) -> list[tuple[str, str]]:
    return [(c.endpoint, c.state) for c in changes if c.kind == "endpoint"]


# --- hysteresis through the tracker ---------------------------------------------------------


@pytest.mark.parametrize(
    ("up", "down", "outcomes", "expected"),
    [
        pytest.param(2, 2, [True], {}, id="one-success-not-enough"),
        pytest.param(2, 2, [True, True], {1: ("healthy", "0 of 1 voting members unhealthy")},
                     id="rise-after-2"),
        pytest.param(2, 3, [True, True, False, False, False],
                     {1: ("healthy", "0 of 1 voting members unhealthy"),
                      4: ("unhealthy", "1 of 1 voting members unhealthy")},
                     id="fall-after-3"),
        pytest.param(2, 3, [True, True, False, False, True, False, False], {1: ("healthy", "")},
                     id="success-resets-the-fall-run"),
        pytest.param(1, 1, [False, True, True, False],
                     {0: ("unhealthy", "1 of 1"), 1: ("healthy", "0 of 1"),
                      3: ("unhealthy", "1 of 1")},
                     id="thresholds-1-follow-every-probe"),
        pytest.param(2, 2, [True, False, True, False], {}, id="flapping-stays-unknown"),
    ],
)
def test_hysteresis_changes(up: int, down: int, outcomes: list[bool],
                            expected: dict[int, tuple[str, str]]) -> None:
    monitor = http(up=up, down=down)
    tracker = tracker_for(watched(members=(member(monitor),), min_healthy=0))
    got: dict[int, tuple[str, str]] = {}
    for i, ok in enumerate(outcomes):
        for change in probe(tracker, E1, ok, float(i), monitor=monitor):
            assert change.kind == "endpoint"
            assert (change.pool, change.endpoint, change.region) == (POOL, E1, "")
            got[i] = (change.state, change.reason)
    assert got.keys() == expected.keys()
    for i, (state, reason) in expected.items():
        assert got[i][0] == state
        assert got[i][1].startswith(reason)


def test_unhealthy_endpoint_makes_a_one_endpoint_pool_critical_and_back() -> None:
    tracker = tracker_for(watched())
    assert probe(tracker, E1, False, 1.0) == [
        Change("endpoint", POOL, E1, "unhealthy", "1 of 1 voting members unhealthy "
                                                "(default/http from gateway: HTTP 503)"),
        Change("pool", POOL, "", "critical", "0 of 1 endpoints routable (minimum 1)"),
    ]
    assert tracker.critical(POOL)
    assert probe(tracker, E1, True, 2.0) == [
        Change("endpoint", POOL, E1, "healthy", "0 of 1 voting members unhealthy"),
        Change("pool", POOL, "", "ok", "1 of 1 endpoints routable (minimum 1)"),
    ]
    assert not tracker.critical(POOL)
    assert probe(tracker, E1, True, 3.0) == []


# --- monitor groups -------------------------------------------------------------------------

A, B, C = http("a"), http("b"), http("c")


@pytest.mark.parametrize(
    ("flags", "outcomes", "quorum", "expected", "reason"),
    [
        pytest.param([{}, {}, {"must_be_healthy": True}], [True, True, False], 0.5,
                     Health.UNHEALTHY, "critical member default/c failed",
                     id="must-be-healthy-fails-alone"),
        pytest.param([{}, {"must_be_healthy": True}], [True, True], 0.5, Health.HEALTHY,
                     "0 of 2 voting members unhealthy", id="must-be-healthy-passes"),
        pytest.param([{}, {}], [False, True], 0.5, Health.HEALTHY,
                     "1 of 2 voting members unhealthy (not more than 50%)", id="tie-stays-healthy"),
        pytest.param([{}, {}, {}], [False, False, True], 0.5, Health.UNHEALTHY,
                     "2 of 3 voting members unhealthy", id="2-of-3-unhealthy"),
        pytest.param([{}, {}, {}], [False, True, True], 0.25, Health.UNHEALTHY,
                     "1 of 3 voting members unhealthy", id="quorum-25-1-of-3"),
        pytest.param([{}, {}, {}], [False, False, True], 0.75, Health.HEALTHY,
                     "2 of 3 voting members unhealthy (not more than 75%)", id="quorum-75-2-of-3"),
        pytest.param([{}, {}, {"monitoring_only": True}], [True, True, False], 0.5,
                     Health.HEALTHY,
                     "0 of 2 voting members unhealthy; monitoring-only member default/c unhealthy",
                     id="monitoring-only-reported-not-voting"),
        pytest.param([{}, {"monitoring_only": True}, {"monitoring_only": True}],
                     [False, True, True], 0.5, Health.UNHEALTHY,
                     "1 of 1 voting members unhealthy", id="monitoring-only-passing-do-not-help"),
        pytest.param([{"monitoring_only": True}, {"monitoring_only": True}], [False, False], 0.5,
                     Health.UNKNOWN, "all enabled members are monitoring-only; monitoring-only "
                     "members default/a, default/b unhealthy", id="all-monitoring-only-unknown"),
    ],
)
def test_group_rules(flags: list[dict[str, bool]], outcomes: list[bool], quorum: float,
                     expected: Health, reason: str) -> None:
    monitors = (A, B, C)[:len(flags)]
    members = tuple(member(m, **f) for m, f in zip(monitors, flags, strict=True))
    tracker = tracker_for(watched(members=members, endpoints=(endpoint(1), endpoint(2)),
                                  quorum=quorum, min_healthy=0, panic_threshold_percent=0))
    for monitor, ok in zip(monitors, outcomes, strict=True):
        probe(tracker, E1, ok, 1.0, monitor=monitor)
    found = tracker.pool_state(POOL)
    assert found is not None
    group = found[1][E1].verdict
    assert (group.verdict, group.reason) == (expected, reason)
    # UNKNOWN is routable: only an UNHEALTHY verdict takes the endpoint out.
    assert tracker.endpoint_routable(POOL, E1, 1.0) is (expected is not Health.UNHEALTHY)


def test_disabled_member_neither_probed_nor_voting() -> None:
    disabled = member(B, enabled=False)
    tracker = tracker_for(watched(members=(member(A), disabled)))
    assert [m.key for m, _ in tracker.probe_plan(OWN)] == [A.key]
    assert not tracker.is_watched(B.key, E1, OWN)
    probe(tracker, E1, True, 1.0, monitor=A)
    assert probe(tracker, E1, False, 2.0, monitor=B) == []
    assert tracker.series(B.key, E1, OWN) is None
    assert verdict(tracker, E1) is Health.HEALTHY


# --- regions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        pytest.param({"us": True, "eu": True, "ap": True}, Health.HEALTHY, id="all-up"),
        pytest.param({"us": True, "eu": True, "ap": False}, Health.HEALTHY, id="one-down"),
        pytest.param({"us": True, "eu": False, "ap": False}, Health.UNHEALTHY, id="two-down"),
        pytest.param({"us": True, "eu": False}, Health.HEALTHY, id="tie-1-1-healthy"),
        pytest.param({"ap": False}, Health.UNHEALTHY, id="only-one-region-reported-down"),
    ],
)
def test_regions_vote_by_majority(outcomes: dict[str, bool], expected: Health) -> None:
    tracker = tracker_for(watched(regions=("us", "eu", "ap")))
    for region, ok in outcomes.items():
        probe(tracker, E1, ok, 1.0, region=region)
    assert verdict(tracker, E1) is expected


def test_region_goes_stale_is_dropped_from_the_vote_and_comes_back() -> None:
    tracker = tracker_for(watched(regions=("us", "eu", "ap"), region_timeout=30.0))
    probe(tracker, E1, True, 0.0, region="us")
    probe(tracker, E1, True, 0.0, region="eu")
    probe(tracker, E1, False, 0.0, region="ap")  # 1 of 3 down
    assert verdict(tracker, E1) is Health.HEALTHY
    probe(tracker, E1, True, 20.0, region="us")
    probe(tracker, E1, True, 20.0, region="eu")
    assert tracker.tick(30.0) == []  # 30 s without a report is not yet more than 30
    changes = tracker.tick(31.0)
    assert changes == [Change("region", "", "", "stale",
                              "region ap sent no report for 31 s; dropped from the vote", "ap")]
    assert tracker.stale_regions() == {"ap"}
    assert tracker.tick(32.0) == []  # reported once
    # eu turns down: with the stale "ap" down vote it would be 2 of 3; without it a 1-1 tie.
    assert probe(tracker, E1, False, 40.0, region="eu") == []
    assert verdict(tracker, E1) is Health.HEALTHY
    found = tracker.pool_state(POOL)
    assert found is not None
    (_, member_verdict), = found[1][E1].members
    assert member_verdict.stale_regions == ("ap",)
    # ap reports again (down): fresh, and now 2 of 3 regions are down.
    assert probe(tracker, E1, False, 45.0, region="ap") == [
        Change("region", "", "", "fresh", "region ap reports again", "ap"),
        Change("endpoint", POOL, E1, "unhealthy", "1 of 1 voting members unhealthy "
                                                "(default/http from eu: HTTP 503)"),
        Change("pool", POOL, "", "critical", "0 of 1 endpoints routable (minimum 1)"),
    ]
    assert tracker.stale_regions() == frozenset()


def test_every_region_stale_makes_the_endpoint_unknown_and_routable() -> None:
    tracker = tracker_for(watched(regions=("us", "eu"), region_timeout=10.0,
                                  panic_threshold_percent=0))
    probe(tracker, E1, False, 0.0, region="us")
    probe(tracker, E1, False, 0.0, region="eu")
    assert not tracker.endpoint_routable(POOL, E1, 0.0)
    changes = tracker.tick(11.0)
    assert [(c.kind, c.state, c.region) for c in changes] == [
        ("region", "stale", "us"), ("region", "stale", "eu"),
        ("endpoint", "unknown", ""), ("pool", "ok", "")]
    assert tracker.endpoint_routable(POOL, E1, 11.0)


def test_own_region_never_goes_stale() -> None:
    tracker = tracker_for(watched(regions=(OWN,), region_timeout=10.0))
    probe(tracker, E1, True, 0.0)
    assert tracker.region_seen() == {}
    assert tracker.tick(100.0)[0] == Change("endpoint", POOL, E1, "unknown",
                                            "no voting member has a verdict yet")
    assert tracker.stale_regions() == frozenset()


@pytest.mark.parametrize(("now", "age", "at"), [(100.0, 3.0, 97.0), (100.0, 0.0, 100.0),
                                                (100.0, -2.0, 100.0)])
def test_agent_result_time(now: float, age: float, at: float) -> None:
    assert agent_result_time(now, age) == at


def test_agent_result_is_dated_by_its_age_and_the_region_by_receipt() -> None:
    tracker = tracker_for(watched(regions=("eu",), region_timeout=10.0))
    at = agent_result_time(50.0, 8.0)
    probe(tracker, E1, False, at, region="eu", now=50.0)
    series = tracker.series(HTTP.key, E1, "eu")
    assert series is not None
    assert series.last is not None
    assert series.last.at == 42.0
    assert tracker.region_seen() == {"eu": 50.0}
    # The result counts until it is older than the timeout (42 + 10), the region until 50 + 10.
    assert tracker.tick(52.0) == []
    assert verdict(tracker, E1) is Health.UNHEALTHY
    assert [c.state for c in tracker.tick(52.5)] == ["unknown", "ok"]
    assert [c.state for c in tracker.tick(60.5)] == ["stale"]


# --- shared series --------------------------------------------------------------------------


def test_one_series_serves_two_pools() -> None:
    tracker = tracker_for(watched(pool="default/a"),
                          watched(pool="default/b", endpoints=(endpoint(1), endpoint(2))))
    changes = probe(tracker, E1, False, 1.0)
    assert endpoint_changes(changes) == [(E1, "unhealthy"), (E1, "unhealthy")]
    assert {c.pool for c in changes if c.kind == "endpoint"} == {"default/a", "default/b"}
    assert verdict(tracker, E1, "default/a") is verdict(tracker, E1, "default/b")
    assert tracker.probe_plan(OWN) == [
        (HTTP, ProbeTarget(E1, "10.0.0.1", 8000, "model-1")),
        (HTTP, ProbeTarget(E2, "10.0.0.2", 8000, "model-2")),
    ]


# --- probe plan -----------------------------------------------------------------------------


def test_probe_plan_per_region() -> None:
    health_port = http("health", port=9000)
    tracker = tracker_for(
        watched(pool="default/a", regions=(OWN, "eu"), members=(member(), member(health_port)),
                endpoints=(endpoint(1), endpoint(2))),
        watched(pool="default/b", regions=("eu",), endpoints=(endpoint(2), endpoint(3))),
        watched(pool="default/c", regions=("us",), members=(member(tcp()),)),
    )
    assert tracker.regions() == {OWN, "eu", "us"}
    plan = [(m.key, t) for m, t in tracker.probe_plan("eu")]
    assert plan == [
        (HTTP.key, ProbeTarget(E1, "10.0.0.1", 8000, "model-1")),
        (HTTP.key, ProbeTarget(E2, "10.0.0.2", 8000, "model-2")),
        (health_port.key, ProbeTarget(E1, "10.0.0.1", 9000, "model-1")),
        (health_port.key, ProbeTarget(E2, "10.0.0.2", 9000, "model-2")),
        (HTTP.key, ProbeTarget(E3, "10.0.0.3", 8000, "model-3")),
    ]
    assert len(tracker.probe_plan(OWN)) == 4  # pool a only
    assert [(m.key, t.endpoint) for m, t in tracker.probe_plan("us")] == [("default/tcp", E1)]
    assert tracker.probe_plan("nowhere") == []


# --- views ----------------------------------------------------------------------------------


def test_view_fast_path_when_nothing_limits() -> None:
    tracker = tracker_for(watched(endpoints=(endpoint(1), endpoint(2))))
    assert tracker.view(POOL, 0.0) is None
    probe(tracker, E1, True, 1.0)
    probe(tracker, E2, True, 1.0)
    assert tracker.view(POOL, 1.0) is None
    assert tracker.view("default/unknown", 1.0) is None


def test_view_leaves_out_unhealthy_endpoints() -> None:
    tracker = tracker_for(watched(endpoints=(endpoint(1), endpoint(2), endpoint(3))))
    probe(tracker, E2, False, 1.0)
    view = tracker.view(POOL, 1.0)
    assert view is not None
    assert dict(view.weights) == {E1: 1.0, E3: 1.0}
    assert (view.critical, view.panic) == (False, False)
    probe(tracker, E2, True, 2.0)
    assert tracker.view(POOL, 2.0) is None


def test_critical_below_min_healthy() -> None:
    tracker = tracker_for(watched(endpoints=(endpoint(1), endpoint(2)), min_healthy=2,
                                  panic_threshold_percent=0))
    assert probe(tracker, E1, False, 1.0) == [
        Change("endpoint", POOL, E1, "unhealthy", "1 of 1 voting members unhealthy "
                                                "(default/http from gateway: HTTP 503)"),
        Change("pool", POOL, "", "critical", "1 of 2 endpoints routable (minimum 2)"),
    ]
    view = tracker.view(POOL, 1.0)
    assert view is not None
    assert (dict(view.weights), view.critical, view.panic) == ({E2: 1.0}, True, False)
    assert probe(tracker, E1, True, 2.0)[-1] == Change(
        "pool", POOL, "", "ok", "2 of 2 endpoints routable (minimum 2)")
    assert tracker.view(POOL, 2.0) is None


E4 = endpoint(4).address


@pytest.mark.parametrize(
    ("panic_percent", "down", "expected", "panic"),
    [
        pytest.param(50.0, [E2, E3], {E1: 1.0, E2: 1.0, E3: 1.0}, True,
                     id="1-of-3-below-50-panics"),
        pytest.param(50.0, [E2], {E1: 1.0, E3: 1.0}, False, id="2-of-3-no-panic"),
        pytest.param(0.0, [E2, E3], {E1: 1.0}, False, id="threshold-0-disables"),
        pytest.param(80.0, [E2], {E1: 1.0, E2: 1.0, E3: 1.0}, True,
                     id="2-of-3-below-80-panics"),
    ],
)
def test_panic(panic_percent: float, down: list[str], expected: dict[str, float],
               panic: bool) -> None:
    # Endpoint 4 is draining (weight 0): never in the weights, not counted in the pool.
    tracker = tracker_for(watched(endpoints=(endpoint(1), endpoint(2), endpoint(3),
                                             endpoint(4, weight=0)),
                                  panic_threshold_percent=panic_percent, min_healthy=0))
    for address in down:
        probe(tracker, address, False, 1.0)
    view = tracker.view(POOL, 1.0)
    assert view is not None
    assert (dict(view.weights), view.panic) == (expected, panic)


def test_drain_by_admin_call() -> None:
    tracker = tracker_for(watched(endpoints=(endpoint(1), endpoint(2), endpoint(3)),
                                  min_healthy=0))
    assert tracker.drain(POOL, E1, True, 1.0) == [
        Change("endpoint", POOL, E1, "draining", "admin call")]
    assert weights(tracker, 1.0) == {E2: 1.0, E3: 1.0}
    assert not tracker.endpoint_routable(POOL, E1, 1.0)
    # Panic (1 of 2 routable is not below 50 %; 0 of 2 is) never brings a draining one back.
    probe(tracker, E2, False, 2.0)
    assert weights(tracker, 2.0) == {E3: 1.0}
    probe(tracker, E3, False, 3.0)
    view = tracker.view(POOL, 3.0)
    assert view is not None
    assert view.panic
    assert dict(view.weights) == {E2: 1.0, E3: 1.0}
    assert tracker.drain(POOL, E1, False, 4.0) == [
        Change("endpoint", POOL, E1, "undrained", "admin call")]
    assert weights(tracker, 4.0) == {E1: 1.0, E2: 1.0, E3: 1.0}  # 1 of 3 routable: panic


def test_drain_changes_criticality() -> None:
    tracker = tracker_for(watched(endpoints=(endpoint(1), endpoint(2)), min_healthy=2))
    assert tracker.drain(POOL, E1, True, 1.0) == [
        Change("endpoint", POOL, E1, "draining", "admin call"),
        Change("pool", POOL, "", "critical", "1 of 2 endpoints routable (minimum 2)"),
    ]
    assert tracker.drain(POOL, E1, False, 2.0)[-1].state == "ok"


@pytest.mark.parametrize(("pool", "address", "message"), [
    ("default/nope", E1, "no pool 'default/nope' is watched"),
    (POOL, "10.9.9.9:1", "pool default/chat has no endpoint '10.9.9.9:1'"),
])
def test_drain_unknown_raises(pool: str, address: str, message: str) -> None:
    tracker = tracker_for(watched())
    with pytest.raises(KeyError, match=message):
        tracker.drain(pool, address, True, 0.0)


def test_weight_zero_drains_from_the_start() -> None:
    tracker = tracker_for(watched(endpoints=(endpoint(1), endpoint(2, weight=0))))
    assert weights(tracker, 0.0) == {E1: 1.0}
    assert not tracker.endpoint_routable(POOL, E2, 0.0)


def test_configured_weights_are_relative_to_the_largest() -> None:
    tracker = tracker_for(watched(endpoints=(endpoint(1, weight=1), endpoint(2, weight=2))))
    assert weights(tracker, 0.0) == {E1: 0.5, E2: 1.0}
    probe(tracker, E2, False, 1.0)
    assert weights(tracker, 1.0) == {E1: 0.5}


# --- slow start -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("slow_start", "samples"),
    [
        pytest.param(10.0, [(5.0, 0.1), (7.5, 0.325), (10.0, 0.55), (14.0, 0.91), (15.0, None)],
                     id="ramp-over-10s"),
        pytest.param(0.0, [(5.0, None)], id="slow-start-0-disables"),
    ],
)
def test_slow_start_after_recovery(slow_start: float,
                                   samples: list[tuple[float, float | None]]) -> None:
    tracker = tracker_for(watched(endpoints=(endpoint(1), endpoint(2)), slow_start=slow_start))
    probe(tracker, E1, True, 0.0)
    assert tracker.view(POOL, 0.0) is None  # a first HEALTHY verdict does not ramp
    probe(tracker, E1, False, 1.0)
    assert weights(tracker, 1.0) == {E2: 1.0}
    probe(tracker, E1, True, 5.0)
    for now, weight in samples:
        got = weights(tracker, now)
        if weight is None:
            assert got is None
        else:
            assert got == {E1: pytest.approx(weight), E2: 1.0}


# --- passive health -------------------------------------------------------------------------

PASSIVE = OutlierConfig(consecutive_errors=3, base_ejection=10.0, max_ejection=100.0,
                        slow_start=10.0)


def test_passive_ejection_and_return() -> None:
    tracker = tracker_for(watched(endpoints=(endpoint(1), endpoint(2)), passive=PASSIVE))
    assert tracker.record_request(POOL, E1, 1.0, ok=False) == []
    assert tracker.record_request(POOL, E1, 1.0, ok=False) == []
    assert tracker.record_request(POOL, E1, 1.0, ok=False) == [
        Change("ejected", POOL, E1, "ejected", "3 consecutive errors: ejection #1 for 10s")]
    assert weights(tracker, 1.0) == {E2: 1.0}
    assert not tracker.endpoint_routable(POOL, E1, 10.9)
    # Back after 10 s, ramping over the outlier slow start (10 s, from 0.1).
    assert weights(tracker, 11.0) == {E1: pytest.approx(0.1), E2: 1.0}
    assert weights(tracker, 16.0) == {E1: pytest.approx(0.55), E2: 1.0}
    assert tracker.record_request(POOL, E1, 16.0, ok=True) == [
        Change("returned", POOL, E1, "returned", "ejection time elapsed")]
    assert tracker.view(POOL, 21.0) is None


def test_passive_ejection_can_make_the_pool_critical() -> None:
    tracker = tracker_for(watched(endpoints=(endpoint(1), endpoint(2)), min_healthy=2,
                                  passive=PASSIVE))
    for _ in range(2):
        tracker.record_request(POOL, E1, 1.0, ok=False)
    assert [c.kind for c in tracker.record_request(POOL, E1, 1.0, ok=False)] == [
        "ejected", "pool"]
    assert tracker.critical(POOL)
    assert [(c.kind, c.state) for c in tracker.tick(11.0)] == [("returned", "returned"),
                                                                ("pool", "ok")]
    assert tracker.tick(12.0) == []  # reported once


def test_passive_off_ignores_requests() -> None:
    tracker = tracker_for(watched(passive=None))
    for _ in range(10):
        assert tracker.record_request(POOL, E1, 1.0, ok=False) == []
    assert tracker.outlier(POOL) is None
    assert tracker.view(POOL, 1.0) is None
    assert tracker.record_request("default/nope", E1, 1.0, ok=False) == []


# --- reloads --------------------------------------------------------------------------------


def test_reload_keeps_series_verdicts_drains_and_ejections() -> None:
    pool = watched(endpoints=(endpoint(1), endpoint(2), endpoint(3)), passive=PASSIVE,
                   min_healthy=0)
    tracker = tracker_for(pool)
    assert tracker.generation == 1
    probe(tracker, E1, False, 1.0)
    tracker.drain(POOL, E2, True, 1.0)
    for _ in range(3):
        tracker.record_request(POOL, E3, 1.0, ok=False)
    series = tracker.series(HTTP.key, E1, OWN)
    outlier = tracker.outlier(POOL)
    before = weights(tracker, 2.0)
    assert before == {E1: 1.0, E3: 1.0}  # none routable: panic, the drained one kept out

    assert tracker.configure([pool], 2.0) == []
    assert tracker.generation == 2
    assert tracker.series(HTTP.key, E1, OWN) is series
    assert tracker.outlier(POOL) is outlier
    assert verdict(tracker, E1) is Health.UNHEALTHY
    assert weights(tracker, 2.0) == before


def test_reload_keeps_an_unhealthy_endpoint_out() -> None:
    pool = watched(endpoints=(endpoint(1), endpoint(2)))
    tracker = tracker_for(pool)
    probe(tracker, E1, False, 1.0)
    assert weights(tracker, 1.0) == {E2: 1.0}
    tracker.configure([pool], 2.0)
    assert weights(tracker, 2.0) == {E2: 1.0}
    assert not tracker.endpoint_routable(POOL, E1, 2.0)


def test_reload_drops_series_of_removed_endpoints_and_monitors() -> None:
    tracker = tracker_for(watched(members=(member(A), member(B)),
                                  endpoints=(endpoint(1), endpoint(2))))
    for monitor in (A, B):
        for address in (E1, E2):
            probe(tracker, address, True, 1.0, monitor=monitor, rtt=0.01)
    assert tracker.configure([watched(members=(member(A),), endpoints=(endpoint(1),))],
                             2.0) == []
    assert tracker.series(A.key, E1, OWN) is not None
    assert tracker.rtt(A.key, E1, OWN) == 0.01
    for key in ((A.key, E2, OWN), (B.key, E1, OWN), (B.key, E2, OWN)):
        assert tracker.series(*key) is None
        assert tracker.rtt(*key) is None
    assert tracker.pools() == [POOL]
    assert tracker.configure([], 3.0) == []
    assert (tracker.pools(), tracker.generation) == ([], 3)
    assert tracker.series(A.key, E1, OWN) is None
    assert tracker.settings(POOL) is None


def test_reload_applies_new_thresholds_to_kept_series() -> None:
    tracker = tracker_for(watched(members=(member(http(down=1)),)))
    probe(tracker, E1, True, 1.0)
    tracker.configure([watched(members=(member(http(down=3)),))], 2.0)
    assert probe(tracker, E1, False, 3.0) == []
    assert probe(tracker, E1, False, 4.0) == []
    assert endpoint_changes(probe(tracker, E1, False, 5.0)) == [(E1, "unhealthy")]


def test_record_for_an_unwatched_series_is_ignored() -> None:
    tracker = tracker_for(watched(regions=(OWN, "eu")))
    unwatched = [("default/other", E1, OWN), (HTTP.key, "10.9.9.9:1", OWN),
                 (HTTP.key, E1, "us")]
    for monitor, address, region in unwatched:
        assert tracker.record(monitor, address, region, ProbeResult(False, 1.0), 1.0) == []
        assert tracker.series(monitor, address, region) is None
        assert not tracker.is_watched(monitor, address, region)
    assert tracker.region_seen() == {}
    assert verdict(tracker, E1) is Health.UNKNOWN


# --- latency --------------------------------------------------------------------------------


def test_latency_is_the_mean_ewma_rtt_of_voting_members() -> None:
    watching = http("watching")
    tracker = tracker_for(watched(members=(member(A), member(B), member(watching,
                                                                        monitoring_only=True)),
                                  endpoints=(endpoint(1), endpoint(2)), regions=(OWN, "eu")))
    assert tracker.latency(POOL) is None
    probe(tracker, E1, True, 1.0, monitor=A, rtt=0.100)
    probe(tracker, E1, True, 2.0, monitor=A, rtt=0.200)  # EWMA: 0.1 + 0.3 * (0.2 - 0.1)
    assert tracker.rtt(A.key, E1, OWN) == pytest.approx(0.130)
    probe(tracker, E2, True, 1.0, monitor=B, region="eu", rtt=0.050)
    probe(tracker, E2, False, 2.0, monitor=B, region="eu")  # no answer: EWMA unchanged
    probe(tracker, E1, True, 1.0, monitor=watching, rtt=5.0)  # monitoring-only: not counted
    assert tracker.latency(POOL) == pytest.approx((0.130 + 0.050) / 2)
    assert tracker.latency("default/nope") is None


def test_draining_endpoints_stay_out_of_the_ejection_budget_and_dropped_regions_are_forgotten(
) -> None:
    """With two of ten endpoints draining, the 10 % ejection budget counts the other eight:
    the first ejection is allowed (one always may be), the second is not (2/8 > 10 %)."""
    from inferlane.health.outlier import OutlierConfig
    from inferlane.health.settings import PoolHealthSettings
    from inferlane.health.tracker import HealthTracker, WatchedEndpoint, WatchedPool

    endpoints = tuple(WatchedEndpoint(f"10.0.0.{i}:8000", f"10.0.0.{i}", 8000,
                                      weight=0 if i < 2 else 1) for i in range(10))
    settings = PoolHealthSettings(pool="p", passive=OutlierConfig(consecutive_errors=1),
                                  regions=("gateway", "eu"))
    tracker = HealthTracker()
    tracker.configure([WatchedPool(settings, endpoints)], 0.0)
    kinds = [c.kind for c in tracker.record_request("p", "10.0.0.2:8000", 1.0, ok=False)]
    assert kinds[0] == "ejected"
    assert tracker.record_request("p", "10.0.0.3:8000", 1.0, ok=False) == []
    view = tracker.view("p", 1.0)
    assert view is not None
    assert "10.0.0.3:8000" in view.weights
    assert "10.0.0.0:8000" not in view.weights  # weight 0: draining

    from inferlane.health.monitors import HttpCheck, MonitorSpec, MonitorType
    from inferlane.health.settings import GroupMember
    from inferlane.health.verdicts import Member, ProbeResult

    monitor = MonitorSpec(key="d/m", type=MonitorType.HTTP, http=HttpCheck(), interval=1,
                          timeout=0.5)
    watched = PoolHealthSettings(pool="p", members=(GroupMember(Member("d/m"), monitor),),
                                 regions=("gateway", "eu"))
    tracker.configure([WatchedPool(watched, endpoints)], 2.0)
    tracker.record("d/m", "10.0.0.2:8000", "eu", ProbeResult(ok=True, at=2.0), 2.0)
    assert set(tracker.region_seen()) == {"eu"}
    tracker.configure([WatchedPool(PoolHealthSettings(pool="p"), endpoints)], 3.0)
    assert dict(tracker.region_seen()) == {}


def test_monitors_seeing_a_recovery_end_a_passive_ejection_but_passing_probes_alone_do_not(
) -> None:
    """A passive ejection of an endpoint the monitors keep calling healthy stays (they may not
    see what real requests hit), but one the monitors saw go down and come back ends with the
    recovery (slow start from there)."""
    tracker = tracker_for(watched(endpoints=(endpoint(1), endpoint(2)), passive=PASSIVE,
                                  min_healthy=0))
    probe(tracker, E1, True, 1.0)  # rise/fall of 1 in this module
    for _ in range(3):
        tracker.record_request(POOL, E1, 3.0, ok=False)
    assert tracker.outlier(POOL).ejected_until(E1, 3.0) == 13.0  # type: ignore[union-attr]
    assert [c.kind for c in probe(tracker, E1, True, 4.0)] == []  # still ejected
    assert not tracker.endpoint_routable(POOL, E1, 4.0)
    probe(tracker, E1, False, 5.0)
    changes = probe(tracker, E1, True, 8.0)
    assert [(c.kind, c.state) for c in changes] == [("returned", "returned"),
                                                    ("endpoint", "healthy")]
    assert changes[0].reason == "active health checks pass again"
    view = tracker.view(POOL, 8.0)
    assert view is not None
    assert view.weights[E1] == pytest.approx(0.1)  # one ramp (not the two multiplied)
    view = tracker.view(POOL, 13.0)
    assert view is not None
    assert view.weights[E1] == pytest.approx(0.1 + 0.9 * 5 / 10)
    assert tracker.tick(20.0) == []  # the return was reported once
