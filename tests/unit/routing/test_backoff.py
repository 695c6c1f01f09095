import math

import pytest

from inferlane.routing.backoff import backoff_delay


@pytest.mark.parametrize(
    ("retry", "base", "cap", "unit", "expected"),
    [
        (0, 0.5, 10.0, 0.0, 0.0),  # full jitter reaches down to no wait
        (0, 0.5, 10.0, 0.5, 0.25),
        (1, 0.5, 10.0, 0.5, 0.5),
        (2, 0.5, 10.0, 0.5, 1.0),
        (3, 0.5, 10.0, 0.75, 3.0),
        (4, 0.5, 10.0, 0.5, 4.0),
        (5, 0.5, 10.0, 0.5, 5.0),  # 16 s capped to 10
        (50, 0.5, 10.0, 0.5, 5.0),
        (1_000_000, 0.5, 10.0, 0.5, 5.0),  # 2**retry would overflow a float
        (10**30, 0.5, 10.0, 0.5, 5.0),
        (1_000_000, 0.0, 10.0, 0.5, 0.0),  # zero base stays zero however late
        (3, 1.0, 0.0, 0.9, 0.0),  # zero cap: never wait
        (2, 1e-310, 10.0, 0.5, 1e-310 * 2),  # a subnormal base still doubles exactly
    ],
)
def test_backoff_delay(retry: int, base: float, cap: float, unit: float,
                       expected: float) -> None:
    assert backoff_delay(retry, base=base, cap=cap, unit=unit) == expected


def test_delay_stays_below_the_ceiling() -> None:
    units = [i / 100 for i in range(100)]
    for retry in range(8):
        ceiling = min(10.0, 0.5 * 2**retry)
        assert all(0.0 <= backoff_delay(retry, base=0.5, cap=10.0, unit=u) < ceiling
                   for u in units)


@pytest.mark.parametrize(
    ("retry", "base", "cap", "unit", "message"),
    [
        (-1, 0.5, 10.0, 0.5, "retry number"),
        (0, -0.5, 10.0, 0.5, "base"),
        (0, math.nan, 10.0, 0.5, "base"),
        (0, math.inf, 10.0, 0.5, "base"),
        (0, 0.5, -1.0, 0.5, "cap"),
        (0, 0.5, math.inf, 0.5, "cap"),
        (0, 0.5, math.nan, 0.5, "cap"),
        (0, 0.5, 10.0, -0.1, "unit"),
        (0, 0.5, 10.0, 1.0, "unit"),
        (0, 0.5, 10.0, math.nan, "unit"),
    ],
)
def test_backoff_delay_rejects_bad_input(retry: int, base: float, cap: float, unit: float,
                                         message: str) -> None:
    with pytest.raises(ValueError, match=message):
        backoff_delay(retry, base=base, cap=cap, unit=unit)
