"""The sliding-window arithmetic and the memory backend, with a fake clock (``now`` values).

Expected numbers are computed by hand from
``estimate = previous * (60 - elapsed) / 60 + current``; windows are [0, 60), [60, 120), ...
"""

from __future__ import annotations

import pytest

from inferlane.ratelimit import (
    REQUESTS,
    TOKENS,
    Decision,
    Limit,
    MemoryRateLimiter,
    RateLimiter,
    SlidingWindowCounter,
    WindowCounts,
    decide,
)

KEY = "rule|0123abcd|model"


async def admitted(limiter: MemoryRateLimiter, limit: Limit, times: list[float],
                   key: str = KEY) -> list[bool]:
    return [(await limiter.acquire(key, limit, now)).allowed for now in times]


# -- decide: one admission from given counts -------------------------------------------------

DECIDE_CASES = [
    # (id, limit, counts, now, expected decision)
    ("unlimited", Limit(), WindowCounts(10**6, 10**6, 10**9, 10**9), 30.0,
     Decision(True)),
    ("first-request", Limit(requests_per_minute=3), WindowCounts(), 0.0,
     Decision(True, remaining_requests=2)),
    ("last-request-fits", Limit(requests_per_minute=3), WindowCounts(0, 2), 2.0,
     Decision(True, remaining_requests=0)),
    # rpm 3, 3 used in window 0: at t=80 the estimate is 3 * 40/60 = 2 and the 4th fits;
    # from t=3 that is 77 s.
    ("rpm-full", Limit(requests_per_minute=3), WindowCounts(0, 3), 3.0,
     Decision(False, REQUESTS, 77.0, remaining_requests=0)),
    # 60 used in window 0; at t=75 the estimate is 60 * 45/60 = 45, so 15 more fit.
    ("slid-estimate", Limit(requests_per_minute=60), WindowCounts(60, 0), 75.0,
     Decision(True, remaining_requests=14)),
    ("slid-estimate-full", Limit(requests_per_minute=60), WindowCounts(60, 15), 75.0,
     Decision(False, REQUESTS, 1.0, remaining_requests=0)),
    # At t=76 the previous window weighs 44: 44 + 15 + 1 = 60 fits exactly.
    ("slid-estimate-one-second-later", Limit(requests_per_minute=60), WindowCounts(60, 15), 76.0,
     Decision(True, remaining_requests=0)),
    # rpm 1, one request in the previous window: it weighs > 0 until the window's end.
    ("rpm-one", Limit(requests_per_minute=1), WindowCounts(1, 0), 90.0,
     Decision(False, REQUESTS, 30.0, remaining_requests=0)),
    ("tokens-below", Limit(tokens_per_minute=100), WindowCounts(0, 1, 0, 99), 1.0,
     Decision(True, remaining_tokens=1)),
    # 250 tokens at tpm 100: at t=96 the estimate is 250 * 24/60 = 100 (still denied, strict),
    # so from t=2 the first whole second after is 95.
    ("tokens-overshot", Limit(tokens_per_minute=100), WindowCounts(0, 1, 0, 250), 2.0,
     Decision(False, TOKENS, 95.0, remaining_tokens=0)),
    # 120 tokens in window 0, 0 now, t=70: estimate 120 * 50/60 = 100: denied; 100 reached at
    # t=70 exactly, so the first whole second after it.
    ("tokens-at-budget", Limit(tokens_per_minute=100), WindowCounts(0, 0, 120, 0), 70.0,
     Decision(False, TOKENS, 1.0, remaining_tokens=0)),
    ("tokens-half-window", Limit(tokens_per_minute=100), WindowCounts(0, 0, 120, 0), 90.0,
     Decision(True, remaining_tokens=40)),
    # Both exceeded: requests reported, the longer wait (requests: t=120; tokens: t=114) counts.
    ("both-exceeded", Limit(requests_per_minute=1, tokens_per_minute=10),
     WindowCounts(0, 1, 0, 100), 1.0,
     Decision(False, REQUESTS, 119.0, remaining_requests=0, remaining_tokens=0)),
    ("tokens-deny-requests-fine", Limit(requests_per_minute=5, tokens_per_minute=10),
     WindowCounts(0, 1, 0, 10), 1.0,
     Decision(False, TOKENS, 60.0, remaining_requests=4, remaining_tokens=0)),
]


@pytest.mark.parametrize(("limit", "counts", "now", "expected"),
                         [case[1:] for case in DECIDE_CASES], ids=[c[0] for c in DECIDE_CASES])
def test_decide(limit: Limit, counts: WindowCounts, now: float, expected: Decision) -> None:
    assert decide(limit, counts, now) == expected


@pytest.mark.parametrize(("rpm", "index", "previous", "current", "now"), [
    (3, 0, 0, 3, 3.0), (60, 1, 60, 15, 75.0), (1, 1, 1, 0, 90.0), (7, 1, 7, 2, 61.5),
    (3, 0, 0, 3, 59.9), (10, 3, 4, 9, 200.25),
])
def test_retry_after_is_when_the_request_fits(rpm: int, index: int, previous: int, current: int,
                                              now: float) -> None:
    """Retrying after ``retry_after`` (no other traffic) is admitted; a second earlier is not."""
    limit = Limit(requests_per_minute=rpm)

    def counter() -> SlidingWindowCounter:
        return SlidingWindowCounter(index, previous_requests=previous, current_requests=current)

    decision = counter().check_and_count(limit, now)
    assert not decision.allowed
    assert decision.retry_after >= 1
    assert decision.retry_after.is_integer()
    if decision.retry_after > 1:
        assert not counter().check_and_count(limit, now + decision.retry_after - 1).allowed
    assert counter().check_and_count(limit, now + decision.retry_after).allowed


# -- Limit ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("fields", [
    {"requests_per_minute": 0}, {"requests_per_minute": -5}, {"tokens_per_minute": 0},
    {"requests_per_minute": True}, {"tokens_per_minute": 1.5},
])
def test_limit_rejects_non_positive_or_non_integer(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="whole number >= 1"):
        Limit(**fields)  # type: ignore[arg-type]


def test_limit_is_frozen_value() -> None:
    assert Limit(3, 100) == Limit(requests_per_minute=3, tokens_per_minute=100)
    with pytest.raises(AttributeError):
        Limit().requests_per_minute = 5  # type: ignore[misc]


# -- the memory backend over time ----------------------------------------------------------------

async def test_rpm_at_the_limit() -> None:
    limiter = MemoryRateLimiter()
    limit = Limit(requests_per_minute=3)
    assert await admitted(limiter, limit, [0.0, 10.0, 20.0, 30.0, 59.0]) == \
        [True, True, True, False, False]


async def test_estimate_slides_across_the_window_boundary() -> None:
    """60 rpm, 60 used in window 0: at t=75 the estimate is 45, so exactly 15 more fit."""
    limiter = MemoryRateLimiter()
    limit = Limit(requests_per_minute=60)
    assert all(await admitted(limiter, limit, [float(i) for i in range(60)]))
    results = await admitted(limiter, limit, [75.0] * 16)
    assert results == [True] * 15 + [False]
    denied = await limiter.acquire(KEY, limit, 75.0)
    assert denied == Decision(False, REQUESTS, 1.0, remaining_requests=0)
    assert (await limiter.acquire(KEY, limit, 76.0)).allowed  # 44 + 15 + 1 = 60


async def test_windows_two_apart_forget_everything() -> None:
    limiter = MemoryRateLimiter()
    limit = Limit(requests_per_minute=2)
    assert await admitted(limiter, limit, [0.0, 1.0, 2.0]) == [True, True, False]
    assert await admitted(limiter, limit, [125.0, 125.0, 125.0]) == [True, True, False]


async def test_tokens_are_checked_against_charged_tokens_with_one_overshoot() -> None:
    limiter = MemoryRateLimiter()
    limit = Limit(tokens_per_minute=100)
    first = await limiter.acquire(KEY, limit, 0.0)
    assert first == Decision(True, remaining_tokens=100)
    await limiter.charge(KEY, 99, 1.0)
    second = await limiter.acquire(KEY, limit, 2.0)  # 99 < 100: admitted, and may overshoot
    assert second == Decision(True, remaining_tokens=1)
    await limiter.charge(KEY, 500, 3.0)
    denied = await limiter.acquire(KEY, limit, 4.0)
    assert (denied.allowed, denied.limited_by, denied.remaining_tokens) == (False, TOKENS, 0)
    # 599 tokens decay below 100 after 60 + 60 * (1 - 100/599) ≈ 109.98 s.
    assert denied.retry_after == 106.0
    assert not (await limiter.acquire(KEY, limit, 109.0)).allowed
    assert (await limiter.acquire(KEY, limit, 110.0)).allowed


async def test_a_denial_counts_nothing() -> None:
    limiter = MemoryRateLimiter()
    both = Limit(requests_per_minute=5, tokens_per_minute=100)
    assert (await limiter.acquire(KEY, both, 0.0)).remaining_requests == 4
    await limiter.charge(KEY, 150, 1.0)
    for now in (2.0, 3.0, 4.0):
        denied = await limiter.acquire(KEY, both, now)
        assert (denied.allowed, denied.limited_by) == (False, TOKENS)
        assert denied.remaining_requests == 4
    # Only the first request was counted: with the token limit gone, 4 more fit.
    requests_only = Limit(requests_per_minute=5)
    assert await admitted(limiter, requests_only, [5.0] * 5) == [True] * 4 + [False]


async def test_unlimited_admits_everything_and_reports_no_budget() -> None:
    limiter = MemoryRateLimiter()
    assert all(await admitted(limiter, Limit(), [0.0] * 1000))
    assert await limiter.acquire(KEY, Limit(), 0.0) == Decision(True)


async def test_keys_are_independent() -> None:
    limiter = MemoryRateLimiter()
    limit = Limit(requests_per_minute=1)
    assert await admitted(limiter, limit, [0.0, 0.0], key="a") == [True, False]
    assert await admitted(limiter, limit, [0.0], key="b") == [True]


async def test_a_clock_stepping_back_keeps_the_newer_window() -> None:
    limiter = MemoryRateLimiter()
    limit = Limit(requests_per_minute=2)
    assert await admitted(limiter, limit, [130.0, 131.0]) == [True, True]
    assert not (await limiter.acquire(KEY, limit, 50.0)).allowed


@pytest.mark.parametrize("tokens", [-1, 1.5, True])
async def test_charge_rejects_bad_token_counts(tokens: object) -> None:
    limiter = MemoryRateLimiter()
    with pytest.raises(ValueError, match="whole number >= 0"):
        await limiter.charge(KEY, tokens, 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="whole number >= 0"):
        SlidingWindowCounter().charge(tokens, 0.0)  # type: ignore[arg-type]


async def test_charging_zero_tokens_creates_no_key() -> None:
    limiter = MemoryRateLimiter()
    await limiter.charge(KEY, 0, 0.0)
    assert len(limiter) == 0


@pytest.mark.parametrize("max_keys", [0, -1, True])
def test_max_keys_must_be_positive(max_keys: int) -> None:
    with pytest.raises(ValueError, match="max_keys"):
        MemoryRateLimiter(max_keys=max_keys)


async def test_least_recently_used_keys_are_dropped_beyond_max_keys() -> None:
    limiter = MemoryRateLimiter(max_keys=2)
    limit = Limit(requests_per_minute=1)
    assert await admitted(limiter, limit, [0.0], key="a") == [True]
    assert await admitted(limiter, limit, [0.0], key="b") == [True]
    await limiter.charge("a", 5, 1.0)  # touches "a": now "b" is the least recently used
    assert await admitted(limiter, limit, [2.0], key="c") == [True]
    assert ("a" in limiter, "b" in limiter, "c" in limiter) == (True, False, True)
    assert len(limiter) == 2
    assert await admitted(limiter, limit, [3.0], key="a") == [False]  # kept its count
    assert await admitted(limiter, limit, [3.0], key="b") == [True]  # forgotten: starts afresh


async def test_close_forgets_every_key() -> None:
    limiter = MemoryRateLimiter()
    await limiter.acquire(KEY, Limit(requests_per_minute=1), 0.0)
    await limiter.close()
    assert len(limiter) == 0


def test_memory_backend_is_a_rate_limiter() -> None:
    assert isinstance(MemoryRateLimiter(), RateLimiter)
