import math

import pytest

from inferlane.routing.cooldown import (
    BreakerState,
    CooldownConfig,
    Cooldowns,
    Transition,
)

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
KEY = "pool@10.0.0.1:8000"


def _opened(cooldowns: Cooldowns, now: float = 0.0, key: str = KEY) -> None:
    """Open ``key`` at ``now`` by failures in a row."""
    for _ in range(cooldowns.config.consecutive_failures):
        transition = cooldowns.record(key, now, ok=False)
    assert transition is not None
    assert transition.state is OPEN


@pytest.mark.parametrize(
    ("config", "outcomes", "opens_at", "reason"),
    [
        # F = failure, S = success, one every 0.1 s
        (CooldownConfig(), "FSFSF", 4, "3 of 5 recent requests failed"),
        (CooldownConfig(), "FSFS", None, None),
        (CooldownConfig(), "SFSFSF", None, None),  # 3 of 6 is not most
        (CooldownConfig(), "SFSFSFF", 6, "4 of 7 recent requests failed"),
        (CooldownConfig(), "FFFF", None, None),  # too few for a verdict
        (CooldownConfig(), "SSSSSSSSSSFFFFF", 14, "5 consecutive failures"),
        (CooldownConfig(), "SSSSSSSSSSFFFFSFFFF", None, None),  # a success breaks the row
        # a success never opens, even when the ratio says so; the next failure does
        (CooldownConfig(min_requests=4), "FFFS", None, None),
        (CooldownConfig(min_requests=4), "FFFSF", 4, "4 of 5 recent requests failed"),
        (CooldownConfig(min_requests=100, consecutive_failures=3), "FFF", 2,
         "3 consecutive failures"),
        (CooldownConfig(min_requests=100, consecutive_failures=3), "FFSFFSFF", None, None),
        (CooldownConfig(min_requests=1, failure_ratio=0.0), "S", None, None),
        (CooldownConfig(min_requests=1, failure_ratio=0.0), "SSSSF", 4,
         "1 of 5 recent requests failed"),
        (CooldownConfig(min_requests=1, failure_ratio=1.0, consecutive_failures=3), "FSFSFSFF",
         None, None),  # a ratio of 1 leaves only the row rule
        (CooldownConfig(min_requests=1, failure_ratio=1.0, consecutive_failures=3), "FSFFF", 4,
         "3 consecutive failures"),
    ],
)
def test_opens_by_ratio_or_row(config: CooldownConfig, outcomes: str, opens_at: int | None,
                               reason: str | None) -> None:
    cooldowns = Cooldowns(config)
    transitions = [cooldowns.record(KEY, i * 0.1, ok=outcome == "S")
                   for i, outcome in enumerate(outcomes)]
    expected: list[Transition | None] = [None] * len(outcomes)
    if opens_at is not None:
        assert reason is not None
        expected[opens_at] = Transition(KEY, OPEN, reason)
    assert transitions == expected
    now = len(outcomes) * 0.1
    assert cooldowns.state(KEY, now) is (CLOSED if opens_at is None else OPEN)
    assert cooldowns.allow(KEY, now) is (opens_at is None)


@pytest.mark.parametrize(
    ("failures_at", "opens"),
    [
        ([0.0, 0.1, 0.2, 0.3, 59.9], True),  # window 60 s: all five count
        ([0.0, 0.1, 0.2, 0.3, 60.0], False),  # the second [0, 1) has left the window
        ([0.0, 30.0, 59.0, 59.5, 60.0, 90.5], False),  # never five inside one window
        ([0.0, 30.0, 59.0, 59.5, 60.0, 90.5, 91.0], True),
        ([0.0, 1e7, 2e7, 3e7, 4e7], False),  # months apart
    ],
)
def test_failures_in_a_row_count_only_inside_the_window(failures_at: list[float],
                                                         opens: bool) -> None:
    cooldowns = Cooldowns(CooldownConfig(min_requests=100))
    transitions = [cooldowns.record(KEY, now, ok=False) for now in failures_at]
    assert (transitions[-1] is not None) is opens
    assert all(t is None for t in transitions[:-1])


def test_row_shrinks_as_its_oldest_failures_leave_the_window() -> None:
    cooldowns = Cooldowns(CooldownConfig(window=10.0, min_requests=100, consecutive_failures=3))
    for now, ok in [(0.0, False), (0.5, False), (1.0, True), (2.0, False), (2.5, False)]:
        assert cooldowns.record(KEY, now, ok=ok) is None
    # At 10.5 the two failures of second 0 are gone, the two of second 2 still in a row.
    assert cooldowns.record(KEY, 10.5, ok=False) == Transition(KEY, OPEN,
                                                                "3 consecutive failures")


def test_half_open_lets_exactly_one_probe_through() -> None:
    cooldowns = Cooldowns()  # 30 s first cooldown
    _opened(cooldowns, now=100.0)
    assert cooldowns.open_until(KEY) == 130.0
    assert not cooldowns.allow(KEY, 129.9)
    assert cooldowns.state(KEY, 129.9) is OPEN
    assert cooldowns.state(KEY, 130.0) is HALF_OPEN
    assert cooldowns.open_until(KEY) is None
    assert cooldowns.allow(KEY, 130.0)  # this caller is the probe
    assert not cooldowns.allow(KEY, 130.0)
    assert not cooldowns.allow(KEY, 150.0)
    assert cooldowns.record(KEY, 151.0, ok=True) == Transition(KEY, CLOSED, "probe succeeded")
    assert cooldowns.allow(KEY, 151.0)
    assert cooldowns.allow(KEY, 151.0)
    assert cooldowns.snapshot(151.0) == {}  # a closed key starts from a clean window


@pytest.mark.parametrize(
    ("second_caller_at", "allowed"),
    [(30.0, False), (89.9, False), (90.0, True), (500.0, True)],
)
def test_probe_that_never_reports_frees_the_slot(second_caller_at: float, allowed: bool) -> None:
    cooldowns = Cooldowns()  # probe_timeout 60 s
    _opened(cooldowns)
    assert cooldowns.allow(KEY, 30.0)
    assert cooldowns.allow(KEY, second_caller_at) is allowed
    if allowed:  # the late caller became the probe: the slot is taken again
        assert not cooldowns.allow(KEY, second_caller_at)


def test_failed_probes_double_the_cooldown_up_to_the_cap() -> None:
    cooldowns = Cooldowns(CooldownConfig(duration=30.0, max_duration=100.0))
    _opened(cooldowns)
    now, untils = 0.0, []
    for _ in range(4):
        now = cooldowns.open_until(KEY) or 0.0
        assert cooldowns.allow(KEY, now)
        transition = cooldowns.record(KEY, now, ok=False)
        assert transition is not None
        assert transition.state is OPEN
        assert transition.reason.startswith("probe failed")
        untils.append(cooldowns.open_until(KEY))
    assert untils == [30.0 + 60.0, 90.0 + 100.0, 190.0 + 100.0, 290.0 + 100.0]
    assert cooldowns.allow(KEY, 390.0)
    assert cooldowns.record(KEY, 390.0, ok=True) is not None
    _opened(cooldowns, now=400.0)  # closing reset the cooldown to its first length
    assert cooldowns.open_until(KEY) == 430.0


def test_outcomes_while_open_are_ignored_and_late_ones_decide_half_open() -> None:
    cooldowns = Cooldowns()
    _opened(cooldowns)
    assert cooldowns.record(KEY, 10.0, ok=True) is None  # sent before it opened
    assert cooldowns.record(KEY, 10.0, ok=False) is None
    assert cooldowns.open_until(KEY) == 30.0
    # Reported after the cooldown without anyone asking: it is evidence all the same.
    assert cooldowns.record(KEY, 31.0, ok=False) == Transition(
        KEY, OPEN, "probe failed; cooling down 60 s")
    assert cooldowns.open_until(KEY) == 91.0


def test_hold_keeps_a_closed_key_off_without_counting_a_failure() -> None:
    cooldowns = Cooldowns()
    cooldowns.record(KEY, 0.0, ok=True)
    assert cooldowns.hold(KEY, 5.0, 10.0) == Transition(KEY, OPEN,
                                                         "rate limited; retry after 10 s")
    assert cooldowns.open_until(KEY) == 15.0
    assert cooldowns.snapshot(5.0) == {KEY: {"state": "open", "until": 15.0, "failures": 0,
                                             "total": 0}}
    assert not cooldowns.allow(KEY, 14.9)
    assert cooldowns.allow(KEY, 15.0)  # the usual probe afterwards
    # A hold is no failure: the probe failing opens for the first cooldown, not double.
    assert cooldowns.record(KEY, 16.0, ok=False) == Transition(
        KEY, OPEN, "probe failed; cooling down 30 s")
    assert cooldowns.open_until(KEY) == 46.0


@pytest.mark.parametrize(
    ("seconds", "until"),
    [(5.0, 30.0), (20.0, 30.0), (25.0, 35.0), (0.0, 30.0), (-3.0, 30.0)],
)
def test_hold_only_ever_extends_an_open_cooldown(seconds: float, until: float) -> None:
    cooldowns = Cooldowns()
    _opened(cooldowns)
    assert cooldowns.hold(KEY, 10.0, seconds) is None  # no state change
    assert cooldowns.open_until(KEY) == until


@pytest.mark.parametrize("seconds", [0.0, -1.0])
def test_hold_for_no_time_does_nothing(seconds: float) -> None:
    cooldowns = Cooldowns()
    assert cooldowns.hold(KEY, 0.0, seconds) is None
    assert cooldowns.state(KEY, 0.0) is CLOSED
    assert cooldowns.snapshot(0.0) == {}


@pytest.mark.parametrize("seconds", [math.inf, -math.inf, math.nan])
def test_hold_rejects_endless_seconds(seconds: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        Cooldowns().hold(KEY, 0.0, seconds)


def test_hold_during_half_open_keeps_the_doubling_where_it_was() -> None:
    cooldowns = Cooldowns()
    _opened(cooldowns)  # 30 s
    assert cooldowns.allow(KEY, 30.0)  # probe...
    assert cooldowns.hold(KEY, 31.0, 5.0) == Transition(  # ...answered 429, Retry-After: 5
        KEY, OPEN, "rate limited; retry after 5 s")
    assert not cooldowns.allow(KEY, 35.9)
    assert cooldowns.allow(KEY, 36.0)  # a new probe slot, not the old one's timeout
    assert cooldowns.record(KEY, 37.0, ok=False) == Transition(
        KEY, OPEN, "probe failed; cooling down 60 s")


def test_unknown_keys_are_closed_and_leave_no_trace() -> None:
    cooldowns = Cooldowns(max_keys=1)
    assert cooldowns.allow("never-seen", 0.0)
    assert cooldowns.state("never-seen", 0.0) is CLOSED
    assert cooldowns.open_until("never-seen") is None
    assert cooldowns.snapshot(0.0) == {}
    assert not cooldowns._breakers


def test_snapshot_lists_keys_that_are_not_healthy() -> None:
    cooldowns = Cooldowns()
    for key, ok in [("a", True), ("b", False), ("b", True)]:
        cooldowns.record(key, 0.0, ok=ok)
    _opened(cooldowns, now=0.0, key="c")
    _opened(cooldowns, now=0.0, key="d")
    assert cooldowns.snapshot(29.0) == {
        "b": {"state": "closed", "until": None, "failures": 1, "total": 2},
        "c": {"state": "open", "until": 30.0, "failures": 0, "total": 0},
        "d": {"state": "open", "until": 30.0, "failures": 0, "total": 0},
    }
    assert cooldowns.allow("d", 30.0)
    assert cooldowns.snapshot(30.0) == {
        "b": {"state": "closed", "until": None, "failures": 1, "total": 2},
        "c": {"state": "half-open", "until": None, "failures": 0, "total": 0},
        "d": {"state": "half-open", "until": None, "failures": 0, "total": 0},
    }
    assert "b" not in cooldowns.snapshot(60.0)  # its failure left the window


def test_open_key_in_snapshot_has_its_until() -> None:
    cooldowns = Cooldowns()
    _opened(cooldowns, now=2.0)
    assert cooldowns.snapshot(3.0) == {KEY: {"state": "open", "until": 32.0, "failures": 0,
                                             "total": 0}}


def test_clock_stepping_back_counts_into_the_newest_second() -> None:
    cooldowns = Cooldowns(CooldownConfig(window=10.0, min_requests=100, consecutive_failures=3))
    cooldowns.record(KEY, 100.0, ok=False)
    cooldowns.record(KEY, 95.0, ok=False)  # counted at 100, so it lives until 110
    assert cooldowns.snapshot(109.9)[KEY]["failures"] == 2
    assert cooldowns.snapshot(110.0) == {}


@pytest.mark.parametrize(
    ("history", "new_key", "kept"),
    [
        # (key, ok) recorded in order at t=0; max_keys=3; then `new_key` records a success
        ([("a", True), ("b", True), ("c", True)], "d", ["b", "c", "d"]),  # least recent goes
        ([("a", True), ("b", True), ("c", True), ("a", True)], "d", ["c", "a", "d"]),
        ([("a", False), ("b", True), ("c", True)], "d", ["a", "c", "d"]),  # failures stay
        ([("a", False), ("b", False), ("c", False)], "d", ["a", "b", "c", "d"]),  # none to drop
        ([("a", True), ("b", True), ("c", True)], "a", ["b", "c", "a"]),  # no new key
    ],
)
def test_max_keys_forgets_least_recently_used_healthy_keys(
        history: list[tuple[str, bool]], new_key: str, kept: list[str]) -> None:
    cooldowns = Cooldowns(max_keys=3)
    for key, ok in history:
        cooldowns.record(key, 0.0, ok=ok)
    cooldowns.record(new_key, 1.0, ok=True)
    assert list(cooldowns._breakers) == kept


def test_max_keys_keeps_open_keys_and_catches_up_once_they_heal() -> None:
    cooldowns = Cooldowns(CooldownConfig(window=10.0), max_keys=2)
    for key in "abc":
        _opened(cooldowns, now=0.0, key=key)
    cooldowns.allow("a", 1.0)  # still open; a lookup counts as use
    assert list(cooldowns._breakers) == ["b", "c", "a"]
    for key in "bc":
        assert cooldowns.allow(key, 30.0)
        assert cooldowns.record(key, 30.0, ok=True) is not None
    cooldowns.record("d", 31.0, ok=True)  # two healthy keys to drop: back under the limit
    assert list(cooldowns._breakers) == ["a", "d"]


def test_a_failure_leaving_the_window_makes_a_key_forgettable() -> None:
    cooldowns = Cooldowns(CooldownConfig(window=10.0), max_keys=1)
    cooldowns.record("a", 0.0, ok=False)
    cooldowns.hold("b", 5.0, 1.0)
    assert list(cooldowns._breakers) == ["a", "b"]
    cooldowns.record("c", 10.0, ok=True)
    assert list(cooldowns._breakers) == ["b", "c"]  # b is cooling down: kept past the limit


@pytest.mark.parametrize(
    "kwargs",
    [
        {"window": 0.0},
        {"window": math.inf},
        {"window": math.nan},
        {"duration": 0.0},
        {"duration": 400.0},  # longer than max_duration
        {"max_duration": math.inf},
        {"probe_timeout": -1.0},
        {"probe_timeout": math.inf},
        {"min_requests": 0},
        {"consecutive_failures": 0},
        {"failure_ratio": -0.1},
        {"failure_ratio": 1.1},
        {"failure_ratio": math.nan},
    ],
)
def test_config_rejects_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="invalid CooldownConfig"):
        CooldownConfig(**kwargs)  # type: ignore[arg-type]


def test_max_keys_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_keys"):
        Cooldowns(max_keys=0)


def test_config_and_states_read_as_documented() -> None:
    assert CooldownConfig(duration=300.0).max_duration == 300.0  # equal to the cap is fine
    assert [str(state) for state in BreakerState] == ["closed", "open", "half-open"]


def test_quiet_while_no_breaker_is_open_or_half_open() -> None:
    cooldowns = Cooldowns(CooldownConfig(consecutive_failures=2, duration=1.0))
    assert cooldowns.quiet
    cooldowns.record("a", 0.0, ok=True)
    cooldowns.record("a", 0.0, ok=False)
    assert cooldowns.quiet  # failures alone do not open it
    cooldowns.record("a", 0.0, ok=False)
    assert not cooldowns.quiet
    assert cooldowns.allow("a", 1.5)  # half-open: the probe
    assert not cooldowns.quiet
    cooldowns.record("a", 1.6, ok=True)
    assert cooldowns.quiet
    cooldowns.hold("b", 2.0, 1.0)
    assert not cooldowns.quiet
