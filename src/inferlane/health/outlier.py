"""Passive health for one pool: Envoy-style outlier detection, sans-IO.

The data plane reports every finished upstream attempt with :meth:`OutlierDetector.record`
(``ok=False`` for a 5xx, a connect failure or a timeout) and asks :meth:`OutlierDetector.view`
which endpoints new requests may use, and at what weight, before the scheduler picks one. Nothing
here sleeps, reads a clock or touches a socket: the caller passes ``now`` (monotonic seconds) and
acts on the returned :class:`Event` and :class:`PoolView`.

Design notes (the rules the brief left open, decided here):

- *Ejection.* ``consecutive_errors`` failures in a row eject an endpoint for
  ``min(base_ejection * times_ejected, max_ejection)``, counting this ejection. Ejecting resets
  the consecutive count. Results that arrive for an endpoint while it is ejected (stale in-flight
  requests) are ignored, successes included.
- *Max ejection percent.* The pool for every percentage is the non-draining endpoints. An ejection
  is allowed when ``ejected + 1 <= max_ejection_percent % of the pool``, or when no endpoint is
  ejected at all (so one endpoint may always be ejected, even from a pool of one). A refused
  ejection leaves the count growing; the next failure retries.
- *Return.* An ejection ends at its ``until`` time. Whether an endpoint is ejected is always
  computed from ``now``, so :meth:`~OutlierDetector.view` is a pure read and never loses
  anything; :meth:`~OutlierDetector.record` on an endpoint whose ejection has ended reports the
  ``"returned"`` event once, then handles the result. If that same result ejects it again
  (``consecutive_errors == 1``), only the ``"ejected"`` event is returned.
- *Slow start* is measured from the end of the ejection, not from when someone noticed it, so the
  ramp does not depend on traffic: ``min_weight + (1 - min_weight) * elapsed / slow_start``.
  Brand-new endpoints start at full weight, and a drain alone never triggers slow start.
- *Decay.* ``times_ejected`` resets to 0 once an endpoint has not been ejected for
  ``max_ejection`` seconds since its last ejection ended (as Envoy, "healthy" means "not ejected":
  failures below the threshold, or refused ejections, do not stop the decay). It is applied lazily
  at the next ejection, which is the only place the count is read.
- *Drain.* A draining endpoint gets no weight, is listed only in ``draining``, is not counted in
  the pool or as ejected, and its results are ignored (apart from reporting a pending return). A
  running ejection keeps its clock while draining, so undraining an endpoint that is still within
  its ejection leaves it ejected.
- *Panic.* When fewer than ``panic_threshold_percent`` of the non-draining endpoints are available,
  every non-draining endpoint (ejected ones too) is usable at weight 1. An empty pool (or one that
  is all draining) is not in panic; it simply has no weights.
- Results for keys the detector does not know (e.g. removed by a reload while in flight) are
  ignored; draining an unknown key is a caller error (:class:`KeyError`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

__all__ = ["Event", "OutlierConfig", "OutlierDetector", "PoolView"]


@dataclass(frozen=True, slots=True)
class OutlierConfig:
    """Outlier-detection settings for one pool (defaults are Envoy's)."""

    consecutive_errors: int = 5
    base_ejection: float = 30.0
    max_ejection: float = 300.0
    max_ejection_percent: float = 10.0
    panic_threshold_percent: float = 50.0
    slow_start: float = 30.0
    min_weight: float = 0.1

    def __post_init__(self) -> None:
        problems = []
        if self.consecutive_errors < 1:
            problems.append(f"consecutive_errors must be >= 1, got {self.consecutive_errors}")
        if self.base_ejection <= 0:
            problems.append(f"base_ejection must be > 0 seconds, got {self.base_ejection}")
        if self.max_ejection < self.base_ejection:
            problems.append(
                f"max_ejection ({self.max_ejection}) must be >= "
                f"base_ejection ({self.base_ejection})"
            )
        for name in ("max_ejection_percent", "panic_threshold_percent"):
            value = getattr(self, name)
            if not 0 <= value <= 100:
                problems.append(f"{name} must be within [0, 100], got {value}")
        if self.slow_start < 0:
            problems.append(f"slow_start must be >= 0 seconds (0 disables), got {self.slow_start}")
        if not 0 < self.min_weight <= 1:
            problems.append(f"min_weight must be within (0, 1], got {self.min_weight}")
        if problems:
            raise ValueError("invalid outlier detection config: " + "; ".join(problems))


@dataclass(frozen=True, slots=True)
class Event:
    """A change of an endpoint's passive health, for logs and metrics.

    ``until`` is when an ejection ends; ``None`` for ``"returned"``.
    """

    key: str
    kind: Literal["ejected", "returned"]
    until: float | None
    reason: str


@dataclass(frozen=True, slots=True)
class PoolView:
    """Which endpoints new requests may use at one instant.

    ``weights`` holds every usable endpoint with a weight in (0, 1]; an endpoint missing from it
    must not get new requests. ``ejected`` and ``draining`` are in pool order.
    """

    weights: Mapping[str, float]
    ejected: tuple[str, ...]
    draining: tuple[str, ...]
    panic: bool


@dataclass(slots=True)
class _EndpointState:
    consecutive_errors: int = 0
    times_ejected: int = 0
    # End of the running or most recent ejection; the slow-start and decay anchor.
    ejection_end: float | None = None
    return_reported: bool = True
    draining: bool = False

    def ejected_at(self, now: float) -> bool:
        return self.ejection_end is not None and now < self.ejection_end


class OutlierDetector:
    """Passive health state of one pool's endpoints, keyed by ``"host:port"`` strings."""

    def __init__(self, endpoints: Iterable[str], config: OutlierConfig = OutlierConfig()) -> None:
        self._config = config
        self._endpoints: dict[str, _EndpointState] = {key: _EndpointState() for key in endpoints}

    @property
    def config(self) -> OutlierConfig:
        return self._config

    def set_endpoints(self, endpoints: Iterable[str]) -> None:
        """Replace the pool's members: kept keys keep their state, new keys start healthy."""
        old = self._endpoints
        self._endpoints = {key: old.get(key) or _EndpointState() for key in endpoints}

    def drain(self, key: str, draining: bool = True) -> None:
        """Stop (or resume) sending new requests to ``key``; in-flight requests are unaffected."""
        state = self._endpoints.get(key)
        if state is None:
            raise KeyError(f"cannot drain endpoint {key!r}: it is not in this pool")
        state.draining = draining

    def record(self, key: str, now: float, *, ok: bool) -> Event | None:
        """Account one finished attempt on ``key``; return the health change it caused, if any."""
        state = self._endpoints.get(key)
        if state is None or state.ejected_at(now):
            return None
        event: Event | None = None
        if not state.return_reported:
            state.return_reported = True
            event = Event(key, "returned", None, "ejection time elapsed")
        if state.draining:
            return event
        if ok:
            state.consecutive_errors = 0
            return event
        state.consecutive_errors += 1
        if state.consecutive_errors < self._config.consecutive_errors or not self._room_to_eject(
            now
        ):
            return event
        return self._eject(key, state, now)

    def returns(self, now: float) -> list[Event]:
        """The ``"returned"`` events of ejections that ended by ``now`` and were not reported
        yet (by ``record``), so a return is seen without waiting for traffic."""
        events = []
        for key, state in self._endpoints.items():
            if not state.return_reported and not state.ejected_at(now):
                state.return_reported = True
                events.append(Event(key, "returned", None, "ejection time elapsed"))
        return events

    def uneject(self, key: str, now: float) -> Event | None:
        """End ``key``'s running ejection now (active health saw it recover); slow start
        begins. Returns the ``"returned"`` event, or None when it was not ejected."""
        state = self._endpoints.get(key)
        if state is None or not state.ejected_at(now):
            return None
        state.ejection_end = now
        state.return_reported = True
        state.consecutive_errors = 0
        return Event(key, "returned", None, "active health checks pass again")

    def ejected_until(self, key: str, now: float) -> float | None:
        """When the running ejection of ``key`` ends; None when it is not ejected."""
        state = self._endpoints.get(key)
        if state is None or not state.ejected_at(now):
            return None
        return state.ejection_end

    def view(self, now: float) -> PoolView:
        """The endpoints new requests may use at ``now``, and their weights."""
        ejected: list[str] = []
        draining: list[str] = []
        weights: dict[str, float] = {}
        for key, state in self._endpoints.items():
            if state.draining:
                draining.append(key)
            elif state.ejected_at(now):
                ejected.append(key)
            else:
                weights[key] = self._slow_start_weight(state, now)
        pool_size = len(weights) + len(ejected)
        panic = len(weights) * 100 < self._config.panic_threshold_percent * pool_size
        if panic:
            weights = {key: 1.0 for key, state in self._endpoints.items() if not state.draining}
        return PoolView(MappingProxyType(weights), tuple(ejected), tuple(draining), panic)

    def _room_to_eject(self, now: float) -> bool:
        pool_size = 0
        ejected = 0
        for state in self._endpoints.values():
            if not state.draining:
                pool_size += 1
                ejected += state.ejected_at(now)
        return ejected == 0 or (ejected + 1) * 100 <= self._config.max_ejection_percent * pool_size

    def _eject(self, key: str, state: _EndpointState, now: float) -> Event:
        config = self._config
        errors = state.consecutive_errors
        if state.ejection_end is not None and now - state.ejection_end >= config.max_ejection:
            state.times_ejected = 0
        state.times_ejected += 1
        duration = min(config.base_ejection * state.times_ejected, config.max_ejection)
        state.ejection_end = now + duration
        state.return_reported = False
        state.consecutive_errors = 0
        reason = f"{errors} consecutive errors: ejection #{state.times_ejected} for {duration:g}s"
        return Event(key, "ejected", state.ejection_end, reason)

    def _slow_start_weight(self, state: _EndpointState, now: float) -> float:
        config = self._config
        if state.ejection_end is None or config.slow_start == 0:
            return 1.0
        elapsed = now - state.ejection_end
        if elapsed >= config.slow_start:
            return 1.0
        return config.min_weight + (1.0 - config.min_weight) * elapsed / config.slow_start
