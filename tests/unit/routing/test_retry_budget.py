import math

import pytest

from inferlane.routing.retry_budget import RetryBudget


def _requests(budget: RetryBudget, count: int, now: float) -> None:
    for _ in range(count):
        budget.record_request(now)


def _spend_all(budget: RetryBudget, now: float, limit: int = 10_000) -> int:
    """How many extra attempts the budget grants at ``now`` before it says no."""
    spent = 0
    while spent < limit and budget.try_spend(now):
        spent += 1
    return spent


@pytest.mark.parametrize(
    ("percent", "min_retries", "requests", "granted"),
    [
        (20.0, 3, 0, 3),  # the floor lets a quiet gateway retry
        (20.0, 3, 10, 3),  # 20 % of 10 is 2: the floor wins
        (20.0, 3, 15, 3),
        (20.0, 3, 20, 4),
        (20.0, 3, 100, 20),
        (20.0, 3, 101, 21),  # 20.2 allowed: the 21st retry is still below it
        (7.0, 0, 100, 7),  # 7 / 100 * 100 is 7.000000000000001 in floats; still 7
        (50.0, 0, 3, 2),
        (100.0, 0, 5, 5),
        (0.0, 0, 100, 0),  # no retries at all
        (0.0, 2, 100, 2),
        (250.0, 0, 2, 5),  # more retries than requests, if so configured
    ],
)
def test_budget_floor_and_percentage(percent: float, min_retries: int, requests: int,
                                     granted: int) -> None:
    budget = RetryBudget(percent=percent, min_retries=min_retries)
    _requests(budget, requests, now=0.0)
    assert _spend_all(budget, now=0.5) == granted
    assert budget.retries(0.5) == granted  # a refusal counts nothing
    assert budget.requests(0.5) == requests


@pytest.mark.parametrize(
    ("later", "requests", "retries", "granted"),
    [
        (9.999, 100, 20, 0),  # same window: all spent
        (10.0, 0, 0, 3),  # the second [0, 1) left the 10 s window: only the floor
        (10.5, 0, 0, 3),
        (3600.0, 0, 0, 3),
        (1e9, 0, 0, 3),  # a monotonic clock that jumped forward by decades
    ],
)
def test_window_slides(later: float, requests: int, retries: int, granted: int) -> None:
    budget = RetryBudget()
    _requests(budget, 100, now=0.2)
    assert _spend_all(budget, now=0.7) == 20
    assert budget.requests(later) == requests
    assert budget.retries(later) == retries
    assert _spend_all(budget, now=later) == granted


def test_window_drops_oldest_seconds_first() -> None:
    budget = RetryBudget(percent=10.0, min_retries=0, window=10.0)
    _requests(budget, 50, now=0.0)
    _requests(budget, 50, now=5.0)
    assert _spend_all(budget, now=6.0) == 10
    assert (budget.requests(9.9), budget.retries(9.9)) == (100, 10)
    assert (budget.requests(10.0), budget.retries(10.0)) == (50, 10)  # t=0 requests left
    assert _spend_all(budget, now=10.0) == 0  # 10 retries of 50 requests is over 10 %
    assert (budget.requests(14.9), budget.retries(14.9)) == (50, 10)
    assert (budget.requests(15.0), budget.retries(15.0)) == (0, 10)  # t=5 requests left
    assert _spend_all(budget, now=15.0) == 0
    assert (budget.requests(16.0), budget.retries(16.0)) == (0, 0)  # t=6 retries left


@pytest.mark.parametrize(("window", "gone_at"), [(10.0, 10.0), (2.5, 3.0), (0.1, 1.0)])
def test_fractional_windows_round_up_to_whole_seconds(window: float, gone_at: float) -> None:
    budget = RetryBudget(window=window)
    budget.record_request(0.0)
    assert budget.requests(gone_at - 0.001) == 1
    assert budget.requests(gone_at) == 0


def test_memory_stays_bounded_over_a_long_run() -> None:
    budget = RetryBudget(percent=20.0, min_retries=3, window=10.0)
    now = 0.0
    for step in range(20_000):
        now = step * 0.37
        budget.record_request(now)
        budget.try_spend(now)
        assert len(budget._buckets) <= 10
    assert budget.requests(now) in range(26, 29)  # about 10 s / 0.37 s
    now += 7 * 3600.0  # hours of silence
    assert (budget.requests(now), budget.retries(now)) == (0, 0)
    assert not budget._buckets


def test_clock_stepping_back_counts_into_the_newest_second() -> None:
    budget = RetryBudget(percent=0.0, min_retries=1)
    budget.record_request(100.0)
    budget.record_request(95.0)  # stepped back: counted at 100, not at 95
    assert budget.try_spend(94.0)
    assert not budget.try_spend(94.0)
    assert budget.requests(109.9) == 2
    assert budget.retries(109.9) == 1
    assert budget.requests(110.0) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"percent": -1.0}, "percent"),
        ({"percent": math.nan}, "percent"),
        ({"percent": math.inf}, "percent"),
        ({"min_retries": -1}, "min_retries"),
        ({"window": 0.0}, "window"),
        ({"window": -5.0}, "window"),
        ({"window": math.inf}, "window"),
        ({"window": math.nan}, "window"),
    ],
)
def test_rejects_bad_settings(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryBudget(**kwargs)  # type: ignore[arg-type]
