"""Fault injection for simulated replicas: decide per request, the server acts.

``FaultInjector.decide()`` is pure apart from its seeded RNG, so a given ``--seed`` replays the
same sequence of errors and hangs. Only inference requests count (``/health`` and ``/metrics`` do
not), so a gateway's 50 ms scrapes never trigger ``crash_after``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True, slots=True)
class FaultOptions:
    """Faults of one replica. Durations are simulated (multiplied by the time scale)."""

    error_rate: float = 0.0  # fraction of requests answered 500
    added_latency_ms: float = 0.0  # delay before a request enters the engine
    hang_rate: float = 0.0  # fraction of requests accepted and never answered
    crash_after: int | None = None  # the replica dies when request crash_after + 1 arrives

    def __post_init__(self) -> None:
        for name in ("error_rate", "hang_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"fault option {name} must be within [0, 1], got {value}")
        if self.added_latency_ms < 0:
            raise ValueError(f"added_latency_ms must be >= 0, got {self.added_latency_ms}")
        if self.crash_after is not None and self.crash_after < 0:
            raise ValueError(f"crash_after must be >= 0, got {self.crash_after}")


class FaultAction(Enum):
    NONE = "none"
    ERROR = "error"
    HANG = "hang"
    CRASH = "crash"


class FaultInjector:
    """Counts inference requests and draws the fault, if any, for each."""

    __slots__ = ("_rng", "injected", "options", "requests_seen")

    def __init__(self, options: FaultOptions, seed: int) -> None:
        self.options = options
        self._rng = random.Random(seed)
        self.requests_seen = 0
        self.injected: dict[str, int] = {"error": 0, "hang": 0, "crash": 0}

    def decide(self) -> FaultAction:
        options = self.options
        self.requests_seen += 1
        if options.crash_after is not None and self.requests_seen > options.crash_after:
            return self._count(FaultAction.CRASH)
        # Draw both numbers every time so changing one rate does not reshuffle the other.
        error_draw, hang_draw = self._rng.random(), self._rng.random()
        if error_draw < options.error_rate:
            return self._count(FaultAction.ERROR)
        if hang_draw < options.hang_rate:
            return self._count(FaultAction.HANG)
        return FaultAction.NONE

    def _count(self, action: FaultAction) -> FaultAction:
        self.injected[action.value] += 1
        return action
