"""Fault injection for simulated replicas: decide per request, the server acts.

``FaultInjector.decide()`` is pure apart from its seeded RNG, so a given ``--seed`` replays the
same sequence of errors, throttles and hangs. Only inference requests count (``/health``,
``/metrics`` and ``/sim/faults`` do not), so a gateway's 50 ms scrapes never trigger
``crash_after``.

Faults change at run time (``POST /sim/faults`` on a replica, or ``replica.faults = ...``
in-process): ``FaultOptions.from_json`` is the strict parser of that endpoint's body and
``FaultOptions.to_json`` its answer, so what ``GET /sim/faults`` returns can be posted back.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any, TypedDict


class FaultOptionsJSON(TypedDict):
    """The wire form of ``FaultOptions`` (``GET``/``POST /sim/faults``)."""

    error_rate: float
    added_latency_ms: float
    hang_rate: float
    crash_after: int | None
    throttle_rate: float
    throttle_retry_after_s: float


_RATES = ("error_rate", "hang_rate", "throttle_rate")


@dataclass(frozen=True, slots=True)
class FaultOptions:
    """Faults of one replica. Durations are simulated (multiplied by the time scale), except
    ``throttle_retry_after_s``: it is a header value the client acts on in its own wall time,
    as it would for the rate limiter in front of a real server."""

    error_rate: float = 0.0  # fraction of requests answered 500
    added_latency_ms: float = 0.0  # delay before a request enters the engine
    hang_rate: float = 0.0  # fraction of requests accepted and never answered
    crash_after: int | None = None  # the replica dies when request crash_after + 1 arrives
    throttle_rate: float = 0.0  # fraction of requests answered 429 with a Retry-After
    throttle_retry_after_s: float = 1.0  # that Retry-After, in wall seconds (not scaled)

    def __post_init__(self) -> None:
        for name in _RATES:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"fault option {name} must be within [0, 1], got {value}")
        for name in ("added_latency_ms", "throttle_retry_after_s"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"fault option {name} must be a finite number >= 0, "
                                 f"got {value}")
        if self.crash_after is not None and self.crash_after < 0:
            raise ValueError(f"fault option crash_after must be >= 0, got {self.crash_after}")

    @classmethod
    def from_json(cls, document: object) -> FaultOptions:
        """Strictly parse a decoded JSON object of fields (absent ones take their defaults);
        ValueError names the offending field and says what is accepted."""
        if not isinstance(document, dict):
            raise ValueError("the fault options must be a JSON object, e.g. "
                             '{"error_rate": 1.0}; {} clears every fault')
        known = [f.name for f in fields(cls)]
        unknown = sorted(str(key) for key in document if key not in known)
        if unknown:
            raise ValueError(f"unknown fault option(s) {', '.join(unknown)}; "
                             f"known: {', '.join(known)}")
        values: dict[str, Any] = {}
        for name, value in document.items():
            if name == "crash_after":
                if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                    raise ValueError(f"fault option crash_after must be an integer >= 0 or "
                                     f"null, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"fault option {name} must be a number, got {value!r}")
            values[name] = value
        return cls(**values)

    def to_json(self) -> FaultOptionsJSON:
        return FaultOptionsJSON(
            error_rate=self.error_rate, added_latency_ms=self.added_latency_ms,
            hang_rate=self.hang_rate, crash_after=self.crash_after,
            throttle_rate=self.throttle_rate,
            throttle_retry_after_s=self.throttle_retry_after_s)


def retry_after_headers(seconds: float) -> dict[str, str]:
    """Headers of an injected 429: ``Retry-After`` in whole seconds (RFC 9110 allows no
    fraction, so rounded up), plus OpenAI's ``retry-after-ms`` when the value has one."""
    headers = {"Retry-After": str(math.ceil(seconds))}
    if seconds != math.ceil(seconds):
        headers["retry-after-ms"] = str(round(seconds * 1000))
    return headers


class FaultAction(Enum):
    NONE = "none"
    ERROR = "error"
    HANG = "hang"
    CRASH = "crash"
    THROTTLE = "throttle"


class FaultInjector:
    """Counts inference requests and draws the fault, if any, for each."""

    __slots__ = ("_rng", "injected", "options", "requests_seen")

    def __init__(self, options: FaultOptions, seed: int) -> None:
        self.options = options
        self._rng = random.Random(seed)
        self.requests_seen = 0
        self.injected: dict[str, int] = {action.value: 0 for action in FaultAction
                                         if action is not FaultAction.NONE}

    def decide(self) -> FaultAction:
        options = self.options
        self.requests_seen += 1
        if options.crash_after is not None and self.requests_seen > options.crash_after:
            return self._count(FaultAction.CRASH)
        # Draw every number every time so changing one rate does not reshuffle the others.
        error_draw, hang_draw, throttle_draw = (self._rng.random(), self._rng.random(),
                                                self._rng.random())
        # A rate limiter sits in front of the server: a throttled request never reaches it.
        if throttle_draw < options.throttle_rate:
            return self._count(FaultAction.THROTTLE)
        if error_draw < options.error_rate:
            return self._count(FaultAction.ERROR)
        if hang_draw < options.hang_rate:
            return self._count(FaultAction.HANG)
        return FaultAction.NONE

    def _count(self, action: FaultAction) -> FaultAction:
        self.injected[action.value] += 1
        return action
