"""Sliding-window rate-limit arithmetic and the in-process backend.

Admission control at the front of the request path: before routing, the data plane asks a
``RateLimiter`` whether a key (tenant, API key, optionally model) may send one more request this
minute; after the response it charges the tokens the ``usage`` reported. This module is the pure
core — no I/O, no clock (``now`` is passed in) — plus ``MemoryRateLimiter``, the backend that
keeps every key's counters in this process. The Redis backend runs the same arithmetic in a Lua
script and reuses ``decide`` for everything but the admission bit.

Design notes:

- Two fixed windows of ``WINDOW_SECONDS`` (previous and current), as Cloudflare and nginx do:
  ``estimate = previous * (1 - elapsed_fraction_of_current) + current``, computed as
  ``previous * (60 - elapsed_seconds) / 60 + current``. Exact enough, O(1) memory per key, and
  one atomic script in Redis.
- A request is admitted when ``request_estimate + 1 <= requests_per_minute`` and
  ``token_estimate < tokens_per_minute``; only then is the request counted. Tokens are not known
  at admission: ``charge`` adds them to the current window once the response (or stream) ends,
  so one long answer may overshoot the token budget. The next admission sees it.
- A denial counts nothing, whichever limit denied it.
- A clock that steps back never rolls windows back: the newer counts stay current.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

WINDOW_SECONDS = 60.0

REQUESTS = "requests"
TOKENS = "tokens"


def _check_per_minute(field: str, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"rate limit {field} must be a whole number >= 1 or None (unlimited), "
                         f"got {value!r}")


@dataclass(frozen=True, slots=True)
class Limit:
    """One key's budget per minute; None means unlimited."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None

    def __post_init__(self) -> None:
        _check_per_minute("requests_per_minute", self.requests_per_minute)
        _check_per_minute("tokens_per_minute", self.tokens_per_minute)


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one admission.

    ``remaining_requests`` counts the requests still admissible now, after this one;
    ``remaining_tokens`` the tokens below the budget (rounded up, so > 0 exactly while the token
    limit still admits). Both are None when that limit is unlimited.
    """

    allowed: bool
    limited_by: str | None = None  # REQUESTS or TOKENS when denied
    retry_after: float = 0.0  # seconds, > 0 when denied
    remaining_requests: int | None = None
    remaining_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class WindowCounts:
    """What one key used in the previous and the current window, before this request."""

    previous_requests: int = 0
    current_requests: int = 0
    previous_tokens: int = 0
    current_tokens: int = 0


def window_index(now: float) -> int:
    """The number of the fixed window holding ``now`` (wall seconds)."""
    return math.floor(now / WINDOW_SECONDS)


def elapsed_seconds(now: float) -> float:
    """How far ``now`` is into its window, in seconds: [0, WINDOW_SECONDS)."""
    return now - window_index(now) * WINDOW_SECONDS


def _estimate(previous: int, current: int, elapsed: float) -> float:
    # Divided last, so whole-second times and counts give exact results (tests compute by hand).
    # The Redis script repeats this expression operation for operation.
    return previous * (WINDOW_SECONDS - elapsed) / WINDOW_SECONDS + current


def _seconds_until(previous: int, current: int, budget: int, elapsed: float,
                   strict: bool) -> float:
    """Seconds from now until the estimate falls to ``budget`` (``<`` when strict, else ``<=``).

    Assumes no further traffic: the previous window decays linearly through the current one, then
    the current window becomes the previous one and decays through the next.
    """
    if current < budget and previous > 0:
        # Inside the current window, where previous * (W - e) / W == budget - current.
        wait = WINDOW_SECONDS - (budget - current) * WINDOW_SECONDS / previous - elapsed
    else:
        # In the next window, where current * (W - e) / W == budget.
        decay = WINDOW_SECONDS - budget * WINDOW_SECONDS / current if current > budget else 0.0
        wait = WINDOW_SECONDS - elapsed + decay
    # Whole seconds, at least one; strictly after the moment when equality still denies. The
    # nanosecond of slack keeps float noise from adding a second.
    whole = math.floor(wait + 1e-9) + 1 if strict else math.ceil(wait - 1e-9)
    return float(max(1, whole))


def decide(limit: Limit, counts: WindowCounts, now: float) -> Decision:
    """Admit or deny one request against ``limit``, given what the key used before it."""
    elapsed = elapsed_seconds(now)
    rpm, tpm = limit.requests_per_minute, limit.tokens_per_minute
    request_estimate = _estimate(counts.previous_requests, counts.current_requests, elapsed)
    token_estimate = _estimate(counts.previous_tokens, counts.current_tokens, elapsed)
    requests_denied = rpm is not None and request_estimate + 1 > rpm
    tokens_denied = tpm is not None and token_estimate >= tpm
    allowed = not (requests_denied or tokens_denied)
    if allowed:
        request_estimate += 1
    remaining_requests = None if rpm is None else max(0, math.floor(rpm - request_estimate))
    remaining_tokens = None if tpm is None else max(0, math.ceil(tpm - token_estimate))
    if allowed:
        return Decision(True, remaining_requests=remaining_requests,
                        remaining_tokens=remaining_tokens)
    waits = []
    if requests_denied and rpm is not None:
        waits.append(_seconds_until(counts.previous_requests, counts.current_requests, rpm - 1,
                                    elapsed, strict=False))
    if tokens_denied and tpm is not None:
        waits.append(_seconds_until(counts.previous_tokens, counts.current_tokens, tpm,
                                    elapsed, strict=True))
    # Both limits must admit again, so the longer wait counts.
    return Decision(False, limited_by=REQUESTS if requests_denied else TOKENS,
                    retry_after=max(waits), remaining_requests=remaining_requests,
                    remaining_tokens=remaining_tokens)


@dataclass(slots=True)
class SlidingWindowCounter:
    """One key's previous and current window, for requests and for tokens."""

    index: int = 0  # the current window's number
    previous_requests: int = 0
    current_requests: int = 0
    previous_tokens: int = 0
    current_tokens: int = 0

    def _roll(self, now: float) -> None:
        index = window_index(now)
        if index <= self.index:
            return
        if index == self.index + 1:
            self.previous_requests = self.current_requests
            self.previous_tokens = self.current_tokens
        else:
            self.previous_requests = self.previous_tokens = 0
        self.current_requests = self.current_tokens = 0
        self.index = index

    def check_and_count(self, limit: Limit, now: float) -> Decision:
        """Decide one admission at ``now``; an admitted request is counted."""
        self._roll(now)
        decision = decide(limit, WindowCounts(self.previous_requests, self.current_requests,
                                              self.previous_tokens, self.current_tokens), now)
        if decision.allowed:
            self.current_requests += 1
        return decision

    def charge(self, tokens: int, now: float) -> None:
        """Add the tokens a finished response used to the window of ``now``."""
        validate_tokens(tokens)
        self._roll(now)
        self.current_tokens += tokens


def validate_tokens(tokens: int) -> None:
    """ValueError unless ``tokens`` is a whole number >= 0 (what ``charge`` accepts)."""
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        raise ValueError(f"charged tokens must be a whole number >= 0, got {tokens!r}")


class MemoryRateLimiter:
    """Rate limits kept in this process; the default backend of a single gateway.

    Bounded: beyond ``max_keys`` the least recently used key is forgotten (it starts afresh if it
    comes back). The methods are async only to share ``RateLimiter`` with the Redis backend; they
    never await, so check-and-count is atomic on the event loop.
    """

    def __init__(self, *, max_keys: int = 100_000) -> None:
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ValueError(f"max_keys must be a whole number >= 1, got {max_keys!r}")
        self.max_keys = max_keys
        self._counters: OrderedDict[str, SlidingWindowCounter] = OrderedDict()

    def __len__(self) -> int:
        return len(self._counters)

    def __contains__(self, key: object) -> bool:
        return key in self._counters

    def _counter(self, key: str) -> SlidingWindowCounter:
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = SlidingWindowCounter()
            if len(self._counters) > self.max_keys:
                self._counters.popitem(last=False)
        else:
            self._counters.move_to_end(key)
        return counter

    async def acquire(self, key: str, limit: Limit, now: float) -> Decision:
        return self._counter(key).check_and_count(limit, now)

    async def charge(self, key: str, tokens: int, now: float) -> None:
        validate_tokens(tokens)
        if tokens:
            self._counter(key).charge(tokens, now)

    async def close(self) -> None:
        self._counters.clear()
