"""The health-verdict core: tables of probe runs, region votes and member verdicts, fake clock.

Every ``now`` and ``at`` is a plain number; expected verdicts and reasons follow the rules in
``inferlane.health.verdicts``' docstring.
"""

from __future__ import annotations

import dataclasses

import pytest

from inferlane.health import (
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

H, U, X = Health.HEALTHY, Health.UNHEALTHY, Health.UNKNOWN


# --- ProbeSeries: hysteresis ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("thresholds", "initial", "outcomes", "changes", "final"),
    [
        pytest.param(Thresholds(), X, [True], [None], X, id="unknown-one-success-not-enough"),
        pytest.param(Thresholds(), X, [True, True], [None, H], H, id="unknown-rises-after-2"),
        pytest.param(Thresholds(), X, [False, False], [None, U], U, id="unknown-falls-after-2"),
        pytest.param(Thresholds(1, 1), X, [True], [H], H, id="threshold-1-first-probe-decides"),
        pytest.param(Thresholds(1, 1), X, [False, True], [U, H], H, id="threshold-1-follows"),
        pytest.param(Thresholds(), X, [True, False, True, False], [None] * 4, X,
                     id="unknown-flapping-stays-unknown"),
        pytest.param(Thresholds(), H, [False, True, False, True], [None] * 4, H,
                     id="healthy-flapping-stays-healthy"),
        pytest.param(Thresholds(), U, [True, False, True, False], [None] * 4, U,
                     id="unhealthy-flapping-stays-unhealthy"),
        pytest.param(Thresholds(consecutive_down=3), H, [False, False, False],
                     [None, None, U], U, id="fall-3"),
        pytest.param(Thresholds(consecutive_down=3), H, [False, False, True, False, False],
                     [None] * 5, H, id="success-resets-the-fall-run"),
        pytest.param(Thresholds(), U, [True, False, True, True], [None, None, None, H], H,
                     id="failure-resets-the-rise-run"),
        pytest.param(Thresholds(), H, [True, True, True], [None] * 3, H,
                     id="more-successes-no-change"),
        pytest.param(Thresholds(), X, [True, True, True, False, False],
                     [None, H, None, None, U], U, id="rise-then-fall"),
        pytest.param(Thresholds(consecutive_up=3, consecutive_down=1), X,
                     [True, True, False, True, True, True], [None, None, U, None, None, H], H,
                     id="asymmetric-rise-3-fall-1"),
    ],
)
def test_probe_series_hysteresis(thresholds: Thresholds, initial: Health, outcomes: list[bool],
                                 changes: list[Health | None], final: Health) -> None:
    series = ProbeSeries(thresholds, initial)
    assert series.verdict is initial
    assert series.last is None
    got = [series.record(ProbeResult(ok=ok, at=float(i))) for i, ok in enumerate(outcomes)]
    assert got == changes
    assert series.verdict is final
    assert series.last == ProbeResult(ok=outcomes[-1], at=float(len(outcomes) - 1))


def test_probe_series_ignores_a_late_result() -> None:
    series = ProbeSeries(Thresholds(1, 1))
    newer = ProbeResult(ok=True, at=10.0, rtt=0.02)
    assert series.record(newer) is H
    assert series.record(ProbeResult(ok=False, at=9.0, reason="timeout")) is None
    assert series.verdict is H
    assert series.last is newer


def test_probe_series_accepts_a_result_at_the_same_time() -> None:
    series = ProbeSeries(Thresholds(1, 1))
    series.record(ProbeResult(ok=True, at=5.0))
    assert series.record(ProbeResult(ok=False, at=5.0, reason="503")) is U
    assert series.last == ProbeResult(ok=False, at=5.0, reason="503")


@pytest.mark.parametrize("field", ["consecutive_up", "consecutive_down"])
@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_thresholds_reject_non_positive_whole_numbers(field: str, bad: object) -> None:
    with pytest.raises(ValueError, match=f"health threshold {field} must be a whole number >= 1"):
        Thresholds(**{field: bad})  # type: ignore[arg-type]


def test_values_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ProbeResult(ok=True, at=0.0).ok = False  # type: ignore[misc]


# --- member_verdict: majority of regions -----------------------------------------------------

NOW = 100.0
TIMEOUT = 30.0


def votes(*spec: tuple[str, Health, float]) -> list[RegionVote]:
    return [RegionVote(region, verdict, at) for region, verdict, at in spec]


@pytest.mark.parametrize(
    ("region_votes", "expected"),
    [
        pytest.param([], MemberVerdict(X, 0, 0, (), "no fresh region vote"), id="no-votes"),
        pytest.param(votes(("us", H, 100)), MemberVerdict(H, 1, 0, (), "0 of 1 regions unhealthy"),
                     id="one-healthy"),
        pytest.param(votes(("us", U, 100)), MemberVerdict(U, 0, 1, (), "1 of 1 regions unhealthy"),
                     id="one-unhealthy"),
        pytest.param(votes(("us", H, 100), ("eu", H, 95), ("ap", U, 99)),
                     MemberVerdict(H, 2, 1, (), "1 of 3 regions unhealthy (not more than half)"),
                     id="majority-healthy"),
        pytest.param(votes(("us", U, 100), ("eu", U, 95), ("ap", H, 99)),
                     MemberVerdict(U, 1, 2, (), "2 of 3 regions unhealthy"),
                     id="majority-unhealthy"),
        pytest.param(votes(("us", U, 100), ("eu", H, 95)),
                     MemberVerdict(H, 1, 1, (), "1 of 2 regions unhealthy (not more than half)"),
                     id="tie-1-1-stays-healthy"),
        pytest.param(votes(("us", U, 100), ("eu", H, 95), ("ap", U, 90), ("sa", H, 90)),
                     MemberVerdict(H, 2, 2, (), "2 of 4 regions unhealthy (not more than half)"),
                     id="tie-2-2-stays-healthy"),
        pytest.param(votes(("us", U, 100), ("eu", H, 95), ("ap", X, 99), ("sa", X, 99)),
                     MemberVerdict(H, 1, 1, (), "1 of 2 regions unhealthy (not more than half)"),
                     id="unknown-regions-do-not-vote"),
        pytest.param(votes(("us", X, 100)),
                     MemberVerdict(X, 0, 0, (), "no fresh region has a verdict"),
                     id="only-unknown-votes"),
        pytest.param(votes(("us", H, 100), ("eu-west", U, 58), ("ap", U, 60)),
                     MemberVerdict(H, 1, 0, ("ap", "eu-west"),
                                   "0 of 1 regions unhealthy; region ap stale (last report 40 s "
                                   "ago); region eu-west stale (last report 42 s ago)"),
                     id="stale-regions-dropped-and-listed-sorted"),
        pytest.param(votes(("us", U, 70), ("eu", H, 69.9)),
                     MemberVerdict(U, 0, 1, ("eu",), "1 of 1 regions unhealthy; "
                                   "region eu stale (last report 30 s ago)"),
                     id="age-equal-to-timeout-is-fresh"),
        pytest.param(votes(("us", H, 10), ("eu", U, 0)),
                     MemberVerdict(X, 0, 0, ("eu", "us"),
                                   "no fresh region vote; region eu stale (last report 100 s ago); "
                                   "region us stale (last report 90 s ago)"),
                     id="all-stale-unknown"),
        pytest.param(votes(("us", U, 50), ("us", H, 90), ("us", U, 80)),
                     MemberVerdict(H, 1, 0, (), "0 of 1 regions unhealthy"),
                     id="a-region-voting-twice-counts-its-newest-vote"),
        pytest.param(votes(("us", H, 105)), MemberVerdict(H, 1, 0, (), "0 of 1 regions unhealthy"),
                     id="vote-from-slightly-ahead-clock-is-fresh"),
    ],
)
def test_member_verdict(region_votes: list[RegionVote], expected: MemberVerdict) -> None:
    assert member_verdict(region_votes, NOW, region_timeout=TIMEOUT) == expected


def test_member_verdict_rejects_negative_timeout() -> None:
    with pytest.raises(ValueError, match="region_timeout must be >= 0"):
        member_verdict([], NOW, region_timeout=-1.0)


# --- group_verdict: Cloudflare monitor-group rules -------------------------------------------


def mv(verdict: Health) -> MemberVerdict:
    return MemberVerdict(verdict, int(verdict is H), int(verdict is U), (), "")


def voter(name: str, verdict: Health, **flags: bool) -> tuple[Member, MemberVerdict]:
    return Member(name, **flags), mv(verdict)


CRITICAL = {"must_be_healthy": True}
WATCH = {"monitoring_only": True}
OFF = {"enabled": False}


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        pytest.param([voter("a", H), voter("b", H), voter("c", H)],
                     GroupVerdict(H, "0 of 3 voting members unhealthy", 3, 0, ()),
                     id="all-healthy"),
        pytest.param([voter("a", U), voter("b", U), voter("c", H)],
                     GroupVerdict(U, "2 of 3 voting members unhealthy", 3, 2, ()),
                     id="more-than-half-unhealthy"),
        pytest.param([voter("a", U), voter("b", H), voter("c", H)],
                     GroupVerdict(H, "1 of 3 voting members unhealthy (not more than 50%)", 3, 1,
                                  ()),
                     id="minority-unhealthy"),
        pytest.param([voter("a", U), voter("b", H)],
                     GroupVerdict(H, "1 of 2 voting members unhealthy (not more than 50%)", 2, 1,
                                  ()),
                     id="tie-1-1-stays-healthy"),
        pytest.param([voter("a", U), voter("b", U), voter("c", H), voter("d", H)],
                     GroupVerdict(H, "2 of 4 voting members unhealthy (not more than 50%)", 4, 2,
                                  ()),
                     id="tie-2-2-stays-healthy"),
        pytest.param([voter("inference", U, **CRITICAL), voter("b", H), voter("c", H)],
                     GroupVerdict(U, "critical member inference failed", 3, 1, ("inference",)),
                     id="critical-member-overrides-majority"),
        pytest.param([voter("a", U, **CRITICAL), voter("b", U, **CRITICAL), voter("c", H)],
                     GroupVerdict(U, "critical members a, b failed", 3, 2, ("a", "b")),
                     id="two-critical-members-named"),
        pytest.param([voter("a", H, **CRITICAL), voter("b", U), voter("c", H)],
                     GroupVerdict(H, "1 of 3 voting members unhealthy (not more than 50%)", 3, 1,
                                  ()),
                     id="healthy-critical-member-votes-normally"),
        pytest.param([voter("a", X, **CRITICAL), voter("b", H)],
                     GroupVerdict(H, "0 of 1 voting members unhealthy", 1, 0, ()),
                     id="unknown-critical-member-neither-fails-nor-votes"),
        pytest.param([voter("a", U, **CRITICAL, **OFF), voter("b", H)],
                     GroupVerdict(H, "0 of 1 voting members unhealthy", 1, 0, ()),
                     id="disabled-critical-member-ignored"),
        pytest.param([voter("a", H), voter("x", U, **WATCH), voter("y", U, **WATCH)],
                     GroupVerdict(H, "0 of 1 voting members unhealthy; monitoring-only members "
                                  "x, y unhealthy", 1, 0, (), ("x", "y")),
                     id="monitoring-only-reported-not-voting"),
        pytest.param([voter("a", H), voter("x", H, **WATCH), voter("y", X, **WATCH)],
                     GroupVerdict(H, "0 of 1 voting members unhealthy", 1, 0, ()),
                     id="healthy-monitoring-only-not-reported"),
        pytest.param([voter("a", U, **CRITICAL), voter("x", U, **WATCH)],
                     GroupVerdict(U, "critical member a failed; monitoring-only member x "
                                  "unhealthy", 1, 1, ("a",), ("x",)),
                     id="critical-and-monitoring-only-both-reported"),
        pytest.param([voter("a", H), voter("b", U, **OFF), voter("c", U, **OFF)],
                     GroupVerdict(H, "0 of 1 voting members unhealthy", 1, 0, ()),
                     id="disabled-members-ignored"),
        pytest.param([voter("x", U, **WATCH), voter("y", H, **WATCH)],
                     GroupVerdict(X, "all enabled members are monitoring-only; monitoring-only "
                                  "member x unhealthy", 0, 0, (), ("x",)),
                     id="all-monitoring-only-unknown"),
        pytest.param([], GroupVerdict(X, "no enabled member", 0, 0, ()), id="no-members"),
        pytest.param([voter("a", U, **OFF)], GroupVerdict(X, "no enabled member", 0, 0, ()),
                     id="all-disabled"),
        pytest.param([voter("a", X), voter("b", X), voter("x", H, **WATCH)],
                     GroupVerdict(X, "no voting member has a verdict yet", 0, 0, ()),
                     id="all-voting-members-unknown"),
        pytest.param([voter("a", U), voter("b", H), voter("c", X), voter("d", X)],
                     GroupVerdict(H, "1 of 2 voting members unhealthy (not more than 50%)", 2, 1,
                                  ()),
                     id="unknown-members-do-not-vote"),
    ],
)
def test_group_verdict(members: list[tuple[Member, MemberVerdict]],
                       expected: GroupVerdict) -> None:
    assert group_verdict(members) == expected


@pytest.mark.parametrize(
    ("quorum", "unhealthy", "voting", "verdict"),
    [
        pytest.param(0.0, 0, 3, H, id="q0-none-unhealthy"),
        pytest.param(0.0, 1, 3, U, id="q0-any-unhealthy"),
        pytest.param(0.25, 1, 4, H, id="q25-tie"),
        pytest.param(0.25, 2, 4, U, id="q25-over"),
        pytest.param(0.7, 7, 10, H, id="q70-tie"),
        pytest.param(0.7, 8, 10, U, id="q70-over"),
        pytest.param(0.57, 57, 100, H, id="q57-exact-tie-despite-float-rounding"),
        pytest.param(0.57, 58, 100, U, id="q57-over"),
        pytest.param(0.99, 3, 3, U, id="q99-all-unhealthy"),
    ],
)
def test_group_verdict_custom_quorum(quorum: float, unhealthy: int, voting: int,
                                     verdict: Health) -> None:
    members = [voter(f"m{i}", U if i < unhealthy else H) for i in range(voting)]
    result = group_verdict(members, quorum=quorum)
    assert (result.verdict, result.voting, result.unhealthy) == (verdict, voting, unhealthy)


@pytest.mark.parametrize("quorum", [-0.1, 1.0, 1.5])
def test_group_verdict_rejects_quorum_outside_0_1(quorum: float) -> None:
    with pytest.raises(ValueError, match=r"quorum must be in \[0, 1\)"):
        group_verdict([], quorum=quorum)


def test_member_cannot_be_monitoring_only_and_critical() -> None:
    with pytest.raises(ValueError, match="member 'probe': monitoring_only and must_be_healthy"):
        Member("probe", monitoring_only=True, must_be_healthy=True)


# --- pool_health -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoints", "min_healthy", "expected"),
    [
        pytest.param({"a": H, "b": U, "c": X}, 2,
                     PoolHealth(1, 3, 2, True, "1 of 3 endpoints healthy (minimum 2); "
                                "pool critical"),
                     id="below-minimum-critical-unknown-not-healthy"),
        pytest.param({"a": H, "b": H, "c": U}, 2,
                     PoolHealth(2, 3, 2, False, "2 of 3 endpoints healthy (minimum 2)"),
                     id="at-minimum-not-critical"),
        pytest.param({"a": U}, 0,
                     PoolHealth(0, 1, 0, False, "0 of 1 endpoints healthy (minimum 0)"),
                     id="minimum-0-never-critical"),
        pytest.param({}, 1, PoolHealth(0, 0, 1, True, "0 of 0 endpoints healthy (minimum 1); "
                                       "pool critical"),
                     id="empty-pool-critical"),
        pytest.param({"a": H}, 2, PoolHealth(1, 1, 2, True, "1 of 1 endpoints healthy "
                                             "(minimum 2); pool critical"),
                     id="minimum-above-total-always-critical"),
    ],
)
def test_pool_health(endpoints: dict[str, Health], min_healthy: int,
                     expected: PoolHealth) -> None:
    assert pool_health(endpoints, min_healthy=min_healthy) == expected


@pytest.mark.parametrize("bad", [-1, True, 1.0])
def test_pool_health_rejects_bad_minimum(bad: object) -> None:
    with pytest.raises(ValueError, match="pool min_healthy must be a whole number >= 0"):
        pool_health({}, min_healthy=bad)  # type: ignore[arg-type]
