"""Objective lookup and the time-budget header, table-driven."""

from __future__ import annotations

import pytest

from inferlane.routing.objectives import STANDARD, Objective, ObjectiveTable, parse_deadline_ms

CRITICAL = Objective("critical", priority=2, ttft_target=1.0)
BATCH = Objective("batch", priority=-1, deadline=30.0)
LEGACY = Objective("legacy-model", priority=2)
TABLE = ObjectiveTable(by_name={"critical": CRITICAL, "batch": BATCH},
                       by_model={"llama": LEGACY}, default=BATCH)


@pytest.mark.parametrize(
    ("header", "model", "expected"),
    [
        ("critical", "any", CRITICAL),  # the header names it
        ("critical", "llama", CRITICAL),  # the header wins over an InferenceModel
        (None, "llama", LEGACY),  # no header: the InferenceModel of the requested model
        ("unknown", "llama", LEGACY),  # an objective of another pool: as if no header
        (None, "other", BATCH),  # the pool's default objective
        ("", "other", BATCH),
    ],
)
def test_resolve(header: str | None, model: str, expected: Objective) -> None:
    assert TABLE.resolve(header, model) is expected


def test_without_objectives_everything_is_standard_priority_zero() -> None:
    resolved = ObjectiveTable().resolve("critical", "llama")
    assert resolved is STANDARD
    assert (resolved.priority, resolved.sheddable) == (0, False)
    assert BATCH.sheddable


@pytest.mark.parametrize(("value", "seconds"),
                         [(None, None), ("1500", 1.5), ("0.5", 0.0005), ("250.0", 0.25)])
def test_deadline_header(value: str | None, seconds: float | None) -> None:
    assert parse_deadline_ms(value) == seconds


@pytest.mark.parametrize(("value", "message"), [
    ("soon", "must be a number of milliseconds"),
    ("0", "positive"),
    ("-5", "positive"),
    ("inf", "positive"),
    ("nan", "positive"),
])
def test_bad_deadline_header(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_deadline_ms(value)
