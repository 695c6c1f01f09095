"""Per-backend circuit breakers ("cooldowns") for the fallback/retry path.

The fallback path asks ``allow`` before an attempt to a key (a provider's label; pool endpoints
are judged by their pool's health, ``health/``, instead) and reports it with ``record``, or
``hold`` for a 429's Retry-After (back-pressure, not ill health): a failing backend is skipped
instead of costing every request a timeout. Outcomes count in whole-second buckets per key, at
most ``ceil(window)`` of them.

- OPEN turns HALF_OPEN lazily, when the key is next looked at on or after ``until``. One probe
  goes; if its caller never reports (crashed, cancelled) the slot frees after ``probe_timeout``.
- Any outcome reported while HALF_OPEN decides: ok closes, failure reopens for twice the last
  failure cooldown (capped). Outcomes reported while OPEN answer attempts sent before: ignored.
- ``hold`` never doubles: a probe failing after a hold opens for ``duration``.
- Past ``max_keys``, the least recently used CLOSED keys without failures are forgotten (they
  hold nothing a fresh key would not); others are kept.
"""

from __future__ import annotations

import enum
import itertools
import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class CooldownConfig:
    window: float = 60.0  # seconds of recent outcomes considered
    min_requests: int = 5  # no ratio verdict on fewer outcomes in the window
    failure_ratio: float = 0.5  # a failure opens when failures / total > this ("most")
    consecutive_failures: int = 5  # ...or after this many failures in a row
    duration: float = 30.0  # first cooldown; doubles on each failed probe
    max_duration: float = 300.0
    probe_timeout: float = 60.0  # a probe that never reports frees the slot after this

    def __post_init__(self) -> None:
        if not (0 < self.window < math.inf and 0 < self.probe_timeout < math.inf
                and 0 < self.duration <= self.max_duration < math.inf
                and self.min_requests >= 1 and self.consecutive_failures >= 1
                and 0.0 <= self.failure_ratio <= 1.0):
            raise ValueError(f"invalid {self!r}: seconds must be finite and > 0 with duration <= "
                             "max_duration, counts >= 1 and failure_ratio in [0, 1]")


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass(frozen=True, slots=True)
class Transition:
    key: str
    state: BreakerState  # the state entered
    reason: str  # e.g. "6 of 10 recent requests failed", "probe succeeded"


@dataclass(slots=True)
class _Breaker:
    state: BreakerState = BreakerState.CLOSED
    buckets: deque[list[int]] = field(default_factory=deque)  # [second, failures, total]
    failures: int = 0
    total: int = 0
    consecutive: int = 0
    until: float = 0.0  # OPEN: when the next probe may go
    last_duration: float | None = None  # of the last failure-driven open; None after closing
    probe_since: float | None = None  # HALF_OPEN: when the outstanding probe went

    def advance(self, now: float, span: int) -> BreakerState:
        if self.state is BreakerState.OPEN and now >= self.until:
            self.state, self.probe_since = BreakerState.HALF_OPEN, None
        horizon = math.floor(now) - span  # buckets at or before it have left the window
        while self.buckets and self.buckets[0][0] <= horizon:
            _, failures, total = self.buckets.popleft()
            self.failures -= failures
            self.total -= total
        # The failures in a row are the newest ones, and buckets leave oldest first.
        self.consecutive = min(self.consecutive, self.failures)
        return self.state

    def add(self, now: float, *, ok: bool) -> None:
        second, failed = math.floor(now), 0 if ok else 1
        if not self.buckets or self.buckets[-1][0] < second:  # a clock stepping back: newest
            self.buckets.append([second, 0, 0])
        self.buckets[-1][1] += failed
        self.buckets[-1][2] += 1
        self.failures, self.total = self.failures + failed, self.total + 1
        self.consecutive = 0 if ok else self.consecutive + 1

    def enter(self, state: BreakerState, until: float = 0.0,
              last_duration: float | None = None) -> None:
        self.state, self.until, self.probe_since = state, until, None
        self.last_duration = last_duration
        self.buckets.clear()  # a fresh window once closed again
        self.failures = self.total = self.consecutive = 0


class Cooldowns:
    def __init__(self, config: CooldownConfig = CooldownConfig(), *, max_keys: int = 4096) -> None:
        if max_keys < 1:
            raise ValueError(f"cooldown max_keys must be >= 1, got {max_keys}")
        self.config = config
        self._max_keys = max_keys
        self._span = math.ceil(config.window)
        self._breakers: OrderedDict[str, _Breaker] = OrderedDict()  # least recently used first
        self._not_closed: set[str] = set()  # keys OPEN or HALF_OPEN: empty on the fast path

    def allow(self, key: str, now: float) -> bool:
        """Whether an attempt may go to ``key`` now; True hands a half-open key's probe slot."""
        breaker = self._breakers.get(key)
        if breaker is None:
            return True
        self._breakers.move_to_end(key)
        state = breaker.advance(now, self._span)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN or (
                breaker.probe_since is not None
                and now < breaker.probe_since + self.config.probe_timeout):
            return False
        breaker.probe_since = now
        return True

    def available(self, key: str, now: float) -> bool:
        """Whether ``allow`` would say yes, without taking a half-open key's probe slot (to
        filter candidates before one is chosen; the chosen one then calls ``allow``)."""
        breaker = self._breakers.get(key)
        if breaker is None:
            return True
        state = breaker.advance(now, self._span)
        if state is BreakerState.CLOSED:
            return True
        return state is BreakerState.HALF_OPEN and (
            breaker.probe_since is None or now >= breaker.probe_since + self.config.probe_timeout)

    @property
    def quiet(self) -> bool:
        """No breaker is open or half-open: every key is available (a cheap check for the
        request path, which then skips per-endpoint lookups)."""
        return not self._not_closed

    def record(self, key: str, now: float, *, ok: bool) -> Transition | None:
        """Report one attempt's outcome; returns the state change it caused, if any."""
        return self._note(self._record(key, now, ok=ok))

    def _note(self, transition: Transition | None) -> Transition | None:
        if transition is not None:
            if transition.state is BreakerState.CLOSED:
                self._not_closed.discard(transition.key)
            else:
                self._not_closed.add(transition.key)
        return transition

    def _record(self, key: str, now: float, *, ok: bool) -> Transition | None:
        breaker = self._touch(key, now)
        config = self.config
        if breaker.state is BreakerState.OPEN:
            return None
        if breaker.state is BreakerState.HALF_OPEN:
            if ok:
                breaker.enter(BreakerState.CLOSED)
                return Transition(key, BreakerState.CLOSED, "probe succeeded")
            last = breaker.last_duration
            duration = config.duration if last is None else min(2 * last, config.max_duration)
            breaker.enter(BreakerState.OPEN, now + duration, duration)
            return Transition(key, BreakerState.OPEN, f"probe failed; cooling down {duration:g} s")
        breaker.add(now, ok=ok)
        if ok:
            return None
        if breaker.consecutive >= config.consecutive_failures:
            reason = f"{breaker.consecutive} consecutive failures"
        elif (breaker.total >= config.min_requests
              and breaker.failures > config.failure_ratio * breaker.total):
            reason = f"{breaker.failures} of {breaker.total} recent requests failed"
        else:
            return None
        breaker.enter(BreakerState.OPEN, now + config.duration, config.duration)
        return Transition(key, BreakerState.OPEN, reason)

    def hold(self, key: str, now: float, seconds: float) -> Transition | None:
        """Keep attempts off ``key`` for ``seconds`` (a 429's Retry-After), not as a failure."""
        return self._note(self._hold(key, now, seconds))

    def _hold(self, key: str, now: float, seconds: float) -> Transition | None:
        if not math.isfinite(seconds):
            raise ValueError(f"cooldown hold must be a finite number of seconds, got {seconds}")
        if seconds <= 0:
            return None
        breaker = self._touch(key, now)
        if breaker.state is BreakerState.OPEN:
            breaker.until = max(breaker.until, now + seconds)
            return None
        breaker.enter(BreakerState.OPEN, now + seconds, breaker.last_duration)
        return Transition(key, BreakerState.OPEN, f"rate limited; retry after {seconds:g} s")

    def state(self, key: str, now: float) -> BreakerState:
        breaker = self._breakers.get(key)
        return BreakerState.CLOSED if breaker is None else breaker.advance(now, self._span)

    def open_until(self, key: str) -> float | None:
        """When ``key``'s cooldown ends if it is OPEN (possibly already past), else None."""
        breaker = self._breakers.get(key)
        return breaker.until if breaker is not None and breaker.state is BreakerState.OPEN else None

    def snapshot(self, now: float) -> dict[str, dict[str, object]]:
        """Keys not CLOSED or with failures in the window, for /admin JSON and metrics."""
        view: dict[str, dict[str, object]] = {}
        for key, breaker in self._breakers.items():
            state = breaker.advance(now, self._span)
            if state is not BreakerState.CLOSED or breaker.failures:
                until = breaker.until if state is BreakerState.OPEN else None
                view[key] = {"state": str(state), "until": until,
                             "failures": breaker.failures, "total": breaker.total}
        return view

    def _touch(self, key: str, now: float) -> _Breaker:
        breaker = self._breakers.get(key)
        if breaker is None:
            self._make_room(now)
            breaker = self._breakers[key] = _Breaker()
        self._breakers.move_to_end(key)
        breaker.advance(now, self._span)
        return breaker

    def _make_room(self, now: float) -> None:
        excess = len(self._breakers) + 1 - self._max_keys
        if excess > 0:
            forgettable = (key for key, breaker in self._breakers.items()
                           if breaker.advance(now, self._span) is BreakerState.CLOSED
                           and not breaker.failures)
            for key in list(itertools.islice(forgettable, excess)):
                del self._breakers[key]
