"""Which objective a request runs under: its priority, TTFT target and default time budget.

Pure lookup, built per pool from InferenceObjectives (chosen by the
``x-gateway-inference-objective`` header), the older InferenceModels (chosen by the requested
model) and the pool's ``inferlane.dev/default-objective``. An objective header naming no
objective of the pool falls back like a request without one: with weighted splits across pools
an objective usually exists in only some of them, and a request must not fail for that.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

OBJECTIVE_HEADER: Final = "x-gateway-inference-objective"
FAIRNESS_HEADER: Final = "x-gateway-inference-fairness-id"
DEADLINE_HEADER: Final = "x-inferlane-deadline-ms"


@dataclass(frozen=True, slots=True)
class Objective:
    name: str  # "" for the built-in default
    priority: int = 0
    ttft_target: float | None = None  # seconds
    deadline: float | None = None  # default time budget, seconds

    @property
    def sheddable(self) -> bool:
        return self.priority < 0


STANDARD: Final = Objective("")


@dataclass(frozen=True, slots=True)
class ObjectiveTable:
    by_name: Mapping[str, Objective] = field(default_factory=dict)
    by_model: Mapping[str, Objective] = field(default_factory=dict)
    default: Objective = STANDARD

    def resolve(self, header: str | None, model: str) -> Objective:
        if header:
            found = self.by_name.get(header)
            if found is not None:
                return found
        return self.by_model.get(model, self.default)


def parse_deadline_ms(value: str | None) -> float | None:
    """Seconds from ``x-inferlane-deadline-ms`` (a positive number of milliseconds); None when
    absent. ValueError with the reason otherwise."""
    if value is None:
        return None
    try:
        milliseconds = float(value)
    except ValueError:
        raise ValueError(f"{DEADLINE_HEADER} must be a number of milliseconds, got "
                         f"{value[:40]!r}") from None
    if not milliseconds > 0 or milliseconds == float("inf"):
        raise ValueError(f"{DEADLINE_HEADER} must be a positive number of milliseconds")
    return milliseconds / 1000.0
