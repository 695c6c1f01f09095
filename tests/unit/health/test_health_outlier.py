"""OutlierDetector with a fake clock: thresholds, ejection times, limits, slow start, panic."""

from __future__ import annotations

import pytest

from inferlane.health.outlier import Event, OutlierConfig, OutlierDetector

# Large enough pools that the max-ejection-percent limit never gets in the way.
UNLIMITED = OutlierConfig(max_ejection_percent=100.0, panic_threshold_percent=0.0)


def pool(size: int) -> list[str]:
    return [f"10.0.0.{i}:8000" for i in range(1, size + 1)]


def fail(detector: OutlierDetector, key: str, now: float, times: int) -> list[Event]:
    """Record ``times`` failures on ``key`` at ``now``; return the events they produced."""
    events = [detector.record(key, now, ok=False) for _ in range(times)]
    return [event for event in events if event is not None]


A, B, C = pool(3)


# --- config -----------------------------------------------------------------------------------


def test_defaults_are_envoys() -> None:
    assert OutlierConfig() == OutlierConfig(5, 30.0, 300.0, 10.0, 50.0, 30.0, 0.1)


@pytest.mark.parametrize(("fields", "message"), [
    ({"consecutive_errors": 0}, "consecutive_errors must be >= 1"),
    ({"base_ejection": 0.0}, "base_ejection must be > 0"),
    ({"max_ejection": 10.0}, r"max_ejection \(10.0\) must be >= base_ejection \(30.0\)"),
    ({"max_ejection_percent": -1.0}, r"max_ejection_percent must be within \[0, 100\]"),
    ({"max_ejection_percent": 100.5}, "max_ejection_percent"),
    ({"panic_threshold_percent": 101.0}, "panic_threshold_percent"),
    ({"slow_start": -1.0}, "slow_start must be >= 0"),
    ({"min_weight": 0.0}, r"min_weight must be within \(0, 1\]"),
    ({"min_weight": 1.5}, "min_weight"),
])
def test_config_rejects_nonsense(fields: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OutlierConfig(**fields)  # type: ignore[arg-type]


def test_config_lists_every_problem() -> None:
    with pytest.raises(ValueError, match=r"consecutive_errors.*slow_start.*min_weight"):
        OutlierConfig(consecutive_errors=0, slow_start=-1, min_weight=2)


def test_default_config_is_used() -> None:
    assert OutlierDetector([A]).config == OutlierConfig()


# --- consecutive errors -----------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [1, 2, 5, 10])
def test_ejects_at_exactly_the_threshold(threshold: int) -> None:
    config = OutlierConfig(consecutive_errors=threshold, max_ejection_percent=100.0)
    detector = OutlierDetector(pool(3), config)
    assert fail(detector, A, 100.0, threshold - 1) == []
    assert detector.view(100.0).ejected == ()
    event = detector.record(A, 100.0, ok=False)
    assert event == Event(
        A, "ejected", 130.0, f"{threshold} consecutive errors: ejection #1 for 30s"
    )
    view = detector.view(100.0)
    assert view.ejected == (A,)
    assert A not in view.weights


@pytest.mark.parametrize(("outcomes", "ejected_after"), [
    ("FFFFF", 5),
    ("FFFFsFFFF", None),  # a success resets the count
    ("FFFFsFFFFF", 10),
    ("sFsFsFsFsFsF", None),
    ("FFsFFFFF", 8),
    ("sssssFFFFF", 10),
])
def test_success_resets_the_consecutive_count(outcomes: str, ejected_after: int | None) -> None:
    detector = OutlierDetector(pool(3), UNLIMITED)
    ejected_at = None
    for position, outcome in enumerate(outcomes, start=1):
        event = detector.record(A, 0.0, ok=outcome == "s")
        if event is not None:
            assert event.kind == "ejected"
            ejected_at = position
    assert ejected_at == ejected_after


def test_other_endpoints_do_not_share_a_count() -> None:
    detector = OutlierDetector(pool(3), UNLIMITED)
    for _ in range(4):
        assert detector.record(A, 0.0, ok=False) is None
        assert detector.record(B, 0.0, ok=False) is None
    assert detector.view(0.0).ejected == ()


def test_results_while_ejected_are_ignored() -> None:
    detector = OutlierDetector(pool(3), UNLIMITED)
    fail(detector, A, 0.0, 5)
    # Stale in-flight results: neither failures nor successes change anything.
    assert fail(detector, A, 10.0, 20) == []
    assert detector.record(A, 10.0, ok=True) is None
    assert detector.view(29.9).ejected == (A,)
    assert detector.record(A, 30.0, ok=False) == Event(A, "returned", None, "ejection time elapsed")
    assert fail(detector, A, 30.0, 3) == []  # count restarted at ejection: 4 so far
    assert [e.kind for e in fail(detector, A, 30.0, 1)] == ["ejected"]


def test_unknown_key_is_ignored() -> None:
    detector = OutlierDetector([A])
    assert fail(detector, "10.9.9.9:1", 0.0, 10) == []
    assert detector.record("10.9.9.9:1", 0.0, ok=True) is None
    assert set(detector.view(0.0).weights) == {A}


# --- ejection time: times_ejected * base, capped ----------------------------------------------


@pytest.mark.parametrize(("base", "cap", "durations"), [
    (30.0, 300.0, [30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 300, 300]),
    (10.0, 25.0, [10, 20, 25, 25]),
    (5.0, 5.0, [5, 5, 5]),
    (0.5, 300.0, [0.5, 1.0, 1.5]),
])
def test_ejection_time_grows_linearly_and_is_capped(
    base: float, cap: float, durations: list[float]
) -> None:
    config = OutlierConfig(consecutive_errors=1, base_ejection=base, max_ejection=cap)
    detector = OutlierDetector(pool(3), config)
    now = 1000.0
    for number, duration in enumerate(durations, start=1):
        # Fail again the moment the previous ejection ends: no time to decay.
        event = detector.record(A, now, ok=False)
        assert event is not None
        assert event.kind == "ejected"
        assert event.until == pytest.approx(now + duration)
        assert event.reason == f"1 consecutive errors: ejection #{number} for {duration:g}s"
        assert detector.view(now + duration - 0.01).ejected == (A,)
        assert detector.view(now + duration).ejected == ()
        now += duration


def test_return_and_re_ejection_in_one_record_reports_the_ejection() -> None:
    detector = OutlierDetector(pool(3), OutlierConfig(consecutive_errors=1))
    detector.record(A, 0.0, ok=False)
    event = detector.record(A, 30.0, ok=False)
    assert event is not None
    assert (event.kind, event.until) == ("ejected", 90.0)
    assert detector.record(A, 90.0, ok=True) == Event(A, "returned", None, "ejection time elapsed")


def test_returned_event_is_reported_once() -> None:
    detector = OutlierDetector(pool(3), UNLIMITED)
    fail(detector, A, 0.0, 5)
    assert detector.view(31.0).ejected == ()  # view reads only; the event is still pending
    assert detector.record(A, 31.0, ok=True) == Event(A, "returned", None, "ejection time elapsed")
    assert detector.record(A, 32.0, ok=True) is None
    assert detector.record(A, 33.0, ok=False) is None


# --- max ejection percent ---------------------------------------------------------------------


@pytest.mark.parametrize(("size", "max_percent", "most_ejected"), [
    (1, 10.0, 1),  # at least one may always be ejected
    (2, 10.0, 1),
    (3, 10.0, 1),
    (10, 10.0, 1),  # exactly 10 %
    (19, 10.0, 1),
    (20, 10.0, 2),
    (20, 0.0, 1),  # even 0 % lets one go
    (2, 50.0, 1),
    (3, 50.0, 1),
    (4, 50.0, 2),
    (10, 33.0, 3),
    (3, 100.0, 3),
])
def test_max_ejection_percent(size: int, max_percent: float, most_ejected: int) -> None:
    config = OutlierConfig(max_ejection_percent=max_percent, panic_threshold_percent=0.0)
    endpoints = pool(size)
    detector = OutlierDetector(endpoints, config)
    events = [event for key in endpoints for event in fail(detector, key, 0.0, 5)]
    assert [event.key for event in events] == endpoints[:most_ejected]
    assert detector.view(0.0).ejected == tuple(endpoints[:most_ejected])


def test_refused_ejection_keeps_counting_and_ejects_when_room_appears() -> None:
    endpoints = pool(10)
    first, second = endpoints[:2]
    detector = OutlierDetector(endpoints, OutlierConfig(panic_threshold_percent=0.0))
    assert [e.key for e in fail(detector, first, 0.0, 5)] == [first]
    assert fail(detector, second, 0.0, 12) == []  # refused 8 times: no room
    assert fail(detector, second, 29.0, 1) == []  # first still ejected
    # first's ejection ended at 30 (no record needed): the very next failure ejects second.
    events = fail(detector, second, 30.0, 1)
    assert [(e.key, e.kind, e.until) for e in events] == [(second, "ejected", 60.0)]
    assert events[0].reason.startswith("14 consecutive errors")


def test_success_clears_a_refused_count() -> None:
    endpoints = pool(10)
    detector = OutlierDetector(endpoints, OutlierConfig(panic_threshold_percent=0.0))
    fail(detector, endpoints[0], 0.0, 5)
    fail(detector, endpoints[1], 0.0, 7)
    detector.record(endpoints[1], 0.0, ok=True)
    assert fail(detector, endpoints[1], 30.0, 4) == []


# --- return and slow start --------------------------------------------------------------------


@pytest.mark.parametrize(("config", "now", "weight"), [
    (OutlierConfig(), 29.999, None),  # still ejected
    (OutlierConfig(), 30.0, 0.1),  # returns at min_weight
    (OutlierConfig(), 37.5, 0.325),  # a quarter of the ramp
    (OutlierConfig(), 45.0, 0.55),
    (OutlierConfig(), 59.0, 0.97),
    (OutlierConfig(), 60.0, 1.0),
    (OutlierConfig(), 500.0, 1.0),
    (OutlierConfig(min_weight=0.5), 30.0, 0.5),
    (OutlierConfig(min_weight=0.5), 45.0, 0.75),
    (OutlierConfig(min_weight=1.0), 30.0, 1.0),
    (OutlierConfig(min_weight=0.01), 31.0, 0.01 + 0.99 / 30),
    (OutlierConfig(slow_start=0.0), 30.0, 1.0),  # disabled
    (OutlierConfig(slow_start=10.0), 35.0, 0.55),
    (OutlierConfig(slow_start=10.0), 40.0, 1.0),
])
def test_slow_start_ramp(config: OutlierConfig, now: float, weight: float | None) -> None:
    detector = OutlierDetector(pool(3), config)
    fail(detector, A, 0.0, config.consecutive_errors)
    view = detector.view(now)
    if weight is None:
        assert A not in view.weights
        assert view.ejected == (A,)
    else:
        assert view.weights[A] == pytest.approx(weight)
        assert view.ejected == ()
    assert view.weights[B] == view.weights[C] == 1.0


def test_slow_start_runs_from_the_end_of_the_ejection_not_from_the_record() -> None:
    detector = OutlierDetector(pool(3))
    fail(detector, A, 0.0, 5)
    detector.record(A, 45.0, ok=True)  # noticed late
    assert detector.view(45.0).weights[A] == pytest.approx(0.55)


def test_new_endpoints_start_at_full_weight() -> None:
    detector = OutlierDetector(pool(3))
    view = detector.view(0.0)
    assert dict(view.weights) == {A: 1.0, B: 1.0, C: 1.0}
    assert (view.ejected, view.draining, view.panic) == ((), (), False)


def test_view_weights_are_read_only() -> None:
    view = OutlierDetector([A]).view(0.0)
    with pytest.raises(TypeError):
        view.weights[A] = 0.5  # type: ignore[index]


# --- panic ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "ejected", "threshold", "panic"), [
    (4, 0, 50.0, False),
    (4, 1, 50.0, False),
    (4, 2, 50.0, False),  # exactly 50 % available: not below
    (4, 3, 50.0, True),
    (10, 5, 50.0, False),
    (10, 6, 50.0, True),
    (2, 1, 50.0, False),
    (1, 1, 50.0, True),  # the single endpoint was ejected
    (4, 4, 0.0, False),  # 0 disables panic
    (4, 1, 80.0, True),
    (4, 0, 100.0, False),
    (4, 1, 100.0, True),
    (0, 0, 50.0, False),  # an empty pool has nothing to spread over
])
def test_panic_at_the_threshold(size: int, ejected: int, threshold: float, panic: bool) -> None:
    config = OutlierConfig(max_ejection_percent=100.0, panic_threshold_percent=threshold)
    endpoints = pool(size)
    detector = OutlierDetector(endpoints, config)
    for key in endpoints[:ejected]:
        fail(detector, key, 0.0, 5)
    view = detector.view(1.0)
    assert view.panic is panic
    assert view.ejected == tuple(endpoints[:ejected])
    if panic:
        assert dict(view.weights) == dict.fromkeys(endpoints, 1.0)
    else:
        assert list(view.weights) == endpoints[ejected:]


def test_panic_gives_slow_starting_endpoints_full_weight_and_skips_draining() -> None:
    config = OutlierConfig(max_ejection_percent=100.0)
    detector = OutlierDetector(pool(4), config)
    d = pool(4)[3]
    fail(detector, A, 0.0, 5)  # back at 30, slow-starting
    fail(detector, B, 20.0, 5)
    fail(detector, C, 20.0, 5)
    detector.drain(d)
    view = detector.view(31.0)  # 1 of 3 non-draining available
    assert view.panic
    assert dict(view.weights) == {A: 1.0, B: 1.0, C: 1.0}
    assert (view.ejected, view.draining) == ((B, C), (d,))


def test_draining_does_not_cause_panic() -> None:
    endpoints = pool(4)
    detector = OutlierDetector(endpoints)
    for key in endpoints[1:]:
        detector.drain(key)
    view = detector.view(0.0)
    assert not view.panic
    assert dict(view.weights) == {A: 1.0}


# --- drain ------------------------------------------------------------------------------------


def test_drain_removes_weight_and_undrain_restores_it() -> None:
    detector = OutlierDetector(pool(3))
    detector.drain(B)
    view = detector.view(0.0)
    assert dict(view.weights) == {A: 1.0, C: 1.0}
    assert (view.draining, view.ejected) == ((B,), ())
    detector.drain(B, draining=False)
    assert detector.view(0.0).weights[B] == 1.0  # a drain alone never slow-starts


def test_draining_endpoints_are_never_ejected() -> None:
    detector = OutlierDetector(pool(3), UNLIMITED)
    detector.drain(A)
    assert fail(detector, A, 0.0, 50) == []
    detector.drain(A, draining=False)
    assert fail(detector, A, 0.0, 4) == []  # in-flight results while draining did not count
    assert [e.kind for e in fail(detector, A, 0.0, 1)] == ["ejected"]


def test_draining_endpoints_are_not_counted_in_the_ejection_limit() -> None:
    endpoints = pool(20)
    detector = OutlierDetector(endpoints, OutlierConfig(panic_threshold_percent=0.0))
    for key in endpoints[10:]:
        detector.drain(key)
    # 10 non-draining endpoints: 10 % allows one, not the two a pool of 20 would.
    events = [e for key in endpoints[:10] for e in fail(detector, key, 0.0, 5)]
    assert [e.key for e in events] == [endpoints[0]]


def test_draining_an_ejected_endpoint_frees_its_slot_and_keeps_its_clock() -> None:
    detector = OutlierDetector(pool(3), OutlierConfig(panic_threshold_percent=0.0))
    fail(detector, A, 0.0, 5)
    detector.drain(A)
    view = detector.view(1.0)
    assert (view.ejected, view.draining, A in view.weights) == ((), (A,), False)
    assert [e.key for e in fail(detector, B, 1.0, 5)] == [B]  # A no longer counts as ejected
    detector.drain(A, draining=False)
    assert detector.view(29.0).ejected == (A, B)
    assert detector.view(30.0).weights[A] == pytest.approx(0.1)


def test_draining_endpoint_still_reports_its_return() -> None:
    detector = OutlierDetector(pool(3), UNLIMITED)
    fail(detector, A, 0.0, 5)
    detector.drain(A)
    assert detector.record(A, 10.0, ok=False) is None
    assert detector.record(A, 30.0, ok=False) == Event(A, "returned", None, "ejection time elapsed")
    assert detector.record(A, 30.0, ok=False) is None


def test_draining_an_unknown_endpoint_is_an_error() -> None:
    detector = OutlierDetector([A])
    with pytest.raises(KeyError, match="not in this pool"):
        detector.drain(B)


# --- set_endpoints ----------------------------------------------------------------------------


def test_set_endpoints_keeps_state_of_kept_keys() -> None:
    detector = OutlierDetector([A, B], UNLIMITED)
    fail(detector, A, 0.0, 5)  # ejected once, until 30
    fail(detector, B, 0.0, 4)
    detector.drain(B)
    detector.drain(B, draining=False)
    detector.drain(A)
    detector.set_endpoints([C, B, A])
    view = detector.view(10.0)
    assert list(view.weights) == [C, B]  # pool order follows the new list
    assert view.draining == (A,)
    detector.drain(A, draining=False)
    assert detector.view(10.0).ejected == (A,)
    assert [e.key for e in fail(detector, B, 10.0, 1)] == [B]  # count of 4 was kept
    assert detector.record(A, 30.0, ok=True) is not None  # pending return kept
    assert fail(detector, A, 30.0, 5)[0].until == 90.0  # second ejection: 60 s


def test_set_endpoints_forgets_removed_keys_and_adds_new_ones_healthy() -> None:
    detector = OutlierDetector([A, B], UNLIMITED)
    fail(detector, A, 0.0, 5)
    fail(detector, B, 0.0, 4)
    detector.drain(B)
    detector.set_endpoints([C])
    assert fail(detector, A, 1.0, 5) == []  # removed: results are ignored
    view = detector.view(1.0)
    assert (dict(view.weights), view.ejected, view.draining) == ({C: 1.0}, (), ())
    detector.set_endpoints([A, B, C])
    view = detector.view(1.0)
    assert dict(view.weights) == {A: 1.0, B: 1.0, C: 1.0}  # back as brand new: full weight
    assert fail(detector, B, 1.0, 4) == []  # the old count is gone
    assert fail(detector, A, 1.0, 5)[0].until == 31.0  # times_ejected starts over


def test_set_endpoints_tolerates_duplicates() -> None:
    detector = OutlierDetector([A, A, B], UNLIMITED)
    fail(detector, A, 0.0, 4)
    detector.set_endpoints([A, B, A])
    assert [e.key for e in fail(detector, A, 0.0, 1)] == [A]
    assert list(detector.view(0.0).weights) == [B]


# --- decay of times_ejected -------------------------------------------------------------------


@pytest.mark.parametrize(("earlier_ejections", "healthy_for", "next_duration"), [
    (1, 0.0, 60.0),
    (1, 299.0, 60.0),
    (1, 300.0, 30.0),  # healthy for max_ejection: reset
    (1, 1000.0, 30.0),
    (3, 299.999, 120.0),
    (3, 300.0, 30.0),
    (12, 0.0, 300.0),
    (12, 300.0, 30.0),
])
def test_times_ejected_decays_after_max_ejection_healthy(
    earlier_ejections: int, healthy_for: float, next_duration: float
) -> None:
    detector = OutlierDetector(pool(3), OutlierConfig(consecutive_errors=1))
    now = 0.0
    for _ in range(earlier_ejections):
        event = detector.record(A, now, ok=False)
        assert event is not None
        assert event.until is not None
        now = event.until
    event = detector.record(A, now + healthy_for, ok=False)
    assert event is not None
    assert event.until == pytest.approx(now + healthy_for + next_duration)


def test_failures_below_the_threshold_do_not_stop_the_decay() -> None:
    detector = OutlierDetector(pool(3), UNLIMITED)
    fail(detector, A, 0.0, 5)  # until 30
    for t in range(30, 330, 10):
        fail(detector, A, float(t), 4)
        detector.record(A, float(t), ok=True)
    assert fail(detector, A, 330.0, 5)[0].until == 360.0
