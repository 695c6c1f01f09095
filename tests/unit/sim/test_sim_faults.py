"""Fault decisions: seeded, counted, and crash_after exact."""

from __future__ import annotations

from typing import Any

import pytest

from inferlane.sim.faults import FaultAction, FaultInjector, FaultOptions


def decisions(options: FaultOptions, count: int, seed: int = 1) -> list[FaultAction]:
    injector = FaultInjector(options, seed)
    return [injector.decide() for _ in range(count)]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (FaultOptions(), [FaultAction.NONE] * 5),
        (FaultOptions(error_rate=1.0), [FaultAction.ERROR] * 5),
        (FaultOptions(hang_rate=1.0), [FaultAction.HANG] * 5),
        (FaultOptions(crash_after=3), [FaultAction.NONE] * 3 + [FaultAction.CRASH] * 2),
        (FaultOptions(crash_after=0, error_rate=1.0), [FaultAction.CRASH] * 5),
    ],
)
def test_decisions(options: FaultOptions, expected: list[FaultAction]) -> None:
    assert decisions(options, 5) == expected


def test_rates_are_seeded_and_roughly_right() -> None:
    options = FaultOptions(error_rate=0.2)
    first = decisions(options, 1000)
    assert first == decisions(options, 1000)
    assert first != decisions(options, 1000, seed=2)
    assert 120 < first.count(FaultAction.ERROR) < 280


def test_counts_by_kind() -> None:
    injector = FaultInjector(FaultOptions(error_rate=1.0), 0)
    for _ in range(3):
        injector.decide()
    assert injector.requests_seen == 3
    assert injector.injected["error"] == 3


@pytest.mark.parametrize(
    "kwargs",
    [{"error_rate": 1.5}, {"hang_rate": -0.1}, {"added_latency_ms": -1}, {"crash_after": -1}],
)
def test_invalid_options(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        FaultOptions(**kwargs)
