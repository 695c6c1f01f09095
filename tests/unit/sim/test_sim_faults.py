"""Fault decisions: seeded, counted, and crash_after exact."""

from __future__ import annotations

from typing import Any

import pytest

from inferlane.sim.faults import FaultAction, FaultInjector, FaultOptions, retry_after_headers


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
        (FaultOptions(throttle_rate=1.0), [FaultAction.THROTTLE] * 5),
        # A rate limiter in front of the server answers first; a crash beats everything.
        (FaultOptions(throttle_rate=1.0, error_rate=1.0, hang_rate=1.0),
         [FaultAction.THROTTLE] * 5),
        (FaultOptions(throttle_rate=1.0, crash_after=2),
         [FaultAction.THROTTLE] * 2 + [FaultAction.CRASH] * 3),
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
    injector.options = FaultOptions(throttle_rate=1.0)
    injector.decide()
    assert injector.requests_seen == 4
    assert injector.injected == {"error": 3, "hang": 0, "crash": 0, "throttle": 1}


def test_changing_one_rate_keeps_the_others_draws() -> None:
    errors_only = decisions(FaultOptions(error_rate=0.3), 200)
    # Throttling only ever turns a decision into THROTTLE; the rest stay as they were.
    with_throttle = decisions(FaultOptions(error_rate=0.3, throttle_rate=0.2), 200)
    assert FaultAction.THROTTLE in with_throttle
    assert all(b is FaultAction.THROTTLE or a is b
               for a, b in zip(errors_only, with_throttle, strict=True))


@pytest.mark.parametrize(
    "kwargs",
    [{"error_rate": 1.5}, {"hang_rate": -0.1}, {"added_latency_ms": -1}, {"crash_after": -1},
     {"throttle_rate": 2.0}, {"throttle_rate": float("nan")}, {"throttle_retry_after_s": -1},
     {"throttle_retry_after_s": float("inf")}, {"added_latency_ms": float("nan")}],
)
def test_invalid_options(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        FaultOptions(**kwargs)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({}, FaultOptions()),
        ({"error_rate": 1}, FaultOptions(error_rate=1.0)),
        ({"throttle_rate": 1.0, "throttle_retry_after_s": 2},
         FaultOptions(throttle_rate=1.0, throttle_retry_after_s=2.0)),
        ({"crash_after": 3, "hang_rate": 0.5}, FaultOptions(crash_after=3, hang_rate=0.5)),
        ({"crash_after": None}, FaultOptions()),
    ],
)
def test_from_json(document: dict[str, Any], expected: FaultOptions) -> None:
    assert FaultOptions.from_json(document) == expected


def test_json_round_trip() -> None:
    options = FaultOptions(error_rate=0.5, added_latency_ms=3.0, crash_after=7,
                           throttle_rate=0.25, throttle_retry_after_s=1.5)
    assert FaultOptions.from_json(dict(options.to_json())) == options


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "must be a JSON object"),
        ({"error_rat": 1.0}, "unknown fault option.*error_rat.*known: error_rate"),
        ({"error_rate": "1"}, "error_rate must be a number"),
        ({"error_rate": True}, "error_rate must be a number"),
        ({"error_rate": 1.5}, r"error_rate must be within \[0, 1\]"),
        ({"crash_after": 1.5}, "crash_after must be an integer"),
        ({"crash_after": -1}, "crash_after must be >= 0"),
        ({"throttle_retry_after_s": None}, "throttle_retry_after_s must be a number"),
        ({"throttle_retry_after_s": -2}, "throttle_retry_after_s must be a finite number"),
    ],
)
def test_from_json_rejects(document: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultOptions.from_json(document)


@pytest.mark.parametrize(
    ("seconds", "headers"),
    [
        (1.0, {"Retry-After": "1"}),
        (0.0, {"Retry-After": "0"}),
        (2, {"Retry-After": "2"}),
        (0.25, {"Retry-After": "1", "retry-after-ms": "250"}),
        (1.5, {"Retry-After": "2", "retry-after-ms": "1500"}),
    ],
)
def test_retry_after_headers(seconds: float, headers: dict[str, str]) -> None:
    assert retry_after_headers(seconds) == headers
