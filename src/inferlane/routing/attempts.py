"""The attempt plan of one request: which backend next, after which failure, and when to stop.

Pure: the data plane reports each attempt's outcome and gets back the next step. The rules::

    chain = [backend the split chose] + TrafficPolicy fallbacks (duplicates dropped)
    skipped before any attempt: a provider in cooldown, a pool with no routable endpoint
    (health), a backend whose context window the prompt (+ max_tokens) cannot fit
    after a failure (only ever before the client saw a byte):
      4xx / ok                 → give up (the answer is the answer)
      connect-failure, pool    → same pool again, another endpoint (up to connect_retries;
                                  outside the retry budget: nothing reached a server)
      timeout / 5xx / 429      → same backend again if retry.attempts allow (and codes match),
                                  after a jittered backoff; a 429 whose Retry-After is longer
                                  than retryAfterMax is not waited out
      otherwise                → next backend in the chain if the class is in fallback.on
      every extra attempt must fit the rule's retry budget, else give up

Cooldown bookkeeping of providers happens here too: failures that say "this backend is broken"
(connect, timeout, 5xx) count against its breaker, a 429 holds it for its Retry-After, and
anything the backend answered sensibly (2xx, 4xx) counts as alive. Pool endpoints report to
their pool's health (outlier detection) instead, which every route shares.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from inferlane.routing.backends import BackendRef
from inferlane.routing.backoff import backoff_delay
from inferlane.routing.cooldown import Cooldowns, Transition
from inferlane.routing.failures import PASSIVE_FAILURES, RETRIABLE, FailureClass
from inferlane.routing.resilience import FailurePolicy
from inferlane.routing.retry_budget import RetryBudget

DEFAULT_HOLD = 1.0  # seconds a 429 without Retry-After keeps a backend aside


class StepKind(enum.StrEnum):
    RETRY = "retry"  # the same backend again
    FALLBACK = "fallback"  # the next backend of the chain
    GIVE_UP = "give-up"


@dataclass(frozen=True, slots=True)
class Step:
    kind: StepKind
    backend: BackendRef | None = None
    delay: float = 0.0  # seconds to wait first
    reason: str = ""  # why (give-up: why not further; fallback: the failure class)


@dataclass(frozen=True, slots=True)
class Skip:
    """A backend passed over before any attempt (reported in metrics)."""

    backend: BackendRef
    reason: str  # "cooldown" | "unhealthy" | "context-window-exceeded" | ...


class AttemptPlan:
    """One request's way through its chain of backends."""

    __slots__ = ("_available", "_budget", "_chain", "_cooldowns", "_fits", "_next_index",
                 "_policy", "_retries", "_started", "attempts", "current", "skipped",
                 "transitions")

    def __init__(self, chain: Sequence[BackendRef], policy: FailurePolicy, *,
                 budget: RetryBudget, cooldowns: Cooldowns | None,
                 fits: Callable[[BackendRef], bool] = lambda _: True,
                 pool_available: Callable[[BackendRef, float], bool] = lambda _b, _t: True
                 ) -> None:
        unique: list[BackendRef] = []
        for backend in chain:
            if backend not in unique:
                unique.append(backend)
        self._chain = tuple(unique)
        self._policy = policy
        self._budget = budget
        self._cooldowns = cooldowns
        self._fits = fits
        self._available = pool_available
        self._started = 0.0
        self._next_index = 0
        self._retries = 0  # on the current backend
        self.current: BackendRef | None = None
        self.attempts = 0
        self.skipped: list[Skip] = []
        self.transitions: list[Transition] = []  # breaker changes to log and count

    def first(self, now: float) -> BackendRef | None:
        """The first backend to try; None when every one was skipped (``skipped`` says why:
        the caller may ``force`` a cooling one, or answer that nothing fits)."""
        self._budget.record_request(now)
        self._started = now
        backend = self._advance(now)
        if backend is not None:
            self.attempts = 1
        return backend

    @property
    def chain(self) -> tuple[BackendRef, ...]:
        return self._chain

    @property
    def last(self) -> bool:
        """Whether the current backend is the chain's last: nothing else could be tried."""
        return self._next_index >= len(self._chain)

    def force(self, backend: BackendRef) -> None:
        """Try ``backend`` although it was skipped (nothing else is left)."""
        self.current = backend
        self._retries = 0
        self.attempts = max(self.attempts, 1)

    def succeeded(self, breaker_key: str, now: float) -> None:
        """The attempt got an answer the backend meant (2xx, or a 4xx about the request).
        An empty ``breaker_key`` reports to no breaker (pool endpoints: health does)."""
        if self._cooldowns is not None and breaker_key:
            self._note(self._cooldowns.record(breaker_key, now, ok=True))

    def failed(self, failure: FailureClass, *, status: int, breaker_key: str, now: float,
               retry_after: float | None = None, unit: float = 0.0,
               same_possible: bool = True) -> Step:
        """The attempt failed before the client saw a byte: what next. ``unit`` is a uniform
        draw in [0, 1) for the backoff jitter; ``same_possible`` is false when the current
        backend has nothing left to try (a pool whose every endpoint this request tried)."""
        if failure is FailureClass.RATE_LIMITED and retry_after is None:
            retry_after = DEFAULT_HOLD  # what the breaker holds it for: do not retry sooner
        self._account(failure, breaker_key, now, retry_after)
        if failure not in RETRIABLE:
            return Step(StepKind.GIVE_UP, reason=f"{failure} is not retried")
        current = self.current
        assert current is not None, "failed() before first()"
        retry = self._policy.retry
        if same_possible and self._may_retry_same(current, failure, status, retry_after):
            # Another endpoint after a refused connection adds no load anywhere (nothing
            # reached a server): outside the budget, which caps extra load.
            free = failure is FailureClass.CONNECT and current.is_pool
            if not free and not self._budget.try_spend(now, self._started):
                return Step(StepKind.GIVE_UP, reason="retry budget exhausted")
            delay = 0.0
            if not (failure is FailureClass.CONNECT and current.is_pool):
                delay = backoff_delay(self._retries, base=retry.backoff_base,
                                      cap=retry.backoff_max, unit=unit)
                # A pool's retry goes to another endpoint: this one's Retry-After is its own.
                if retry_after is not None and not current.is_pool:
                    delay = max(delay, retry_after)
            self._retries += 1
            self.attempts += 1
            return Step(StepKind.RETRY, current, delay, str(failure))
        if failure not in self._policy.fallback_on:
            return Step(StepKind.GIVE_UP, reason=f"{failure} does not trigger a fallback")
        if self._next_index >= len(self._chain):
            return Step(StepKind.GIVE_UP, reason="no fallback left")
        backend = self._advance(now)
        if backend is None:
            # A fixed reason (it is a metric label); ``skipped`` says which and why.
            return Step(StepKind.GIVE_UP, reason="every fallback is skipped")
        if not self._budget.try_spend(now, self._started):
            return Step(StepKind.GIVE_UP, reason="retry budget exhausted")
        self.attempts += 1
        return Step(StepKind.FALLBACK, backend, 0.0, str(failure))

    def unusable(self, reason: str, now: float) -> Step:
        """The current backend cannot take this request at all (a fallback provider whose
        dialect has no equivalent for one of its fields): on to the next; no budget is spent,
        nothing was sent."""
        assert self.current is not None
        self.skipped.append(Skip(self.current, reason))
        backend = self._advance(now)
        if backend is None:
            return Step(StepKind.GIVE_UP, reason="no fallback can take the request")
        return Step(StepKind.FALLBACK, backend, 0.0, reason)

    def _may_retry_same(self, backend: BackendRef, failure: FailureClass, status: int,
                        retry_after: float | None) -> bool:
        retry = self._policy.retry
        if failure is FailureClass.CONTEXT_WINDOW:
            return False
        if failure is FailureClass.CONNECT and backend.is_pool:
            return self._retries < max(retry.connect_retries, retry.attempts)
        if self._retries >= retry.attempts:
            return False
        if retry_after is not None and retry_after > retry.retry_after_max \
                and not backend.is_pool:
            return False  # not worth waiting out (a 429's or a 503's Retry-After)
        return not (retry.codes and status and status not in retry.codes)

    def _advance(self, now: float) -> BackendRef | None:
        while self._next_index < len(self._chain):
            backend = self._chain[self._next_index]
            self._next_index += 1
            if not self._fits(backend):
                self.skipped.append(Skip(backend, str(FailureClass.CONTEXT_WINDOW)))
                continue
            if backend.is_pool:
                if not self._available(backend, now):  # health: no endpoint routable
                    self.skipped.append(Skip(backend, "unhealthy"))
                    continue
            elif self._cooldowns is not None and not self._cooldowns.allow(backend.label, now):
                self.skipped.append(Skip(backend, "cooldown"))
                continue
            self.current = backend
            self._retries = 0
            return backend
        return None

    def _account(self, failure: FailureClass, key: str, now: float,
                 retry_after: float | None) -> None:
        cooldowns = self._cooldowns
        if cooldowns is None or not key:
            return
        if failure is FailureClass.RATE_LIMITED:
            self._note(cooldowns.hold(key, now, retry_after if retry_after is not None
                                      else DEFAULT_HOLD))
        elif failure in PASSIVE_FAILURES:
            self._note(cooldowns.record(key, now, ok=False))
        else:
            self._note(cooldowns.record(key, now, ok=True))

    def _note(self, transition: Transition | None) -> None:
        if transition is not None:
            self.transitions.append(transition)


def fits_context(prompt_tokens: int, max_tokens: int | None,
                 windows: Mapping[BackendRef, int | None]) -> Callable[[BackendRef], bool]:
    """The pre-check: does the request's estimated size fit each backend's context window?"""
    needed = prompt_tokens + (max_tokens or 0)

    def fits(backend: BackendRef) -> bool:
        window = windows.get(backend)
        return window is None or needed <= window

    return fits
