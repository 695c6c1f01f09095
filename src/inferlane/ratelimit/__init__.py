"""Per-key request and token rate limits (RPM / TPM): admission control for the data plane.

Where it sits: after the route is matched and before a request is queued or dispatched, the data
plane calls ``RateLimiter.acquire(key, limit, now)`` and answers 429 when the ``Decision`` denies;
when the response (or stream) ends it calls ``charge(key, usage_tokens, now)``. The arithmetic —
a sliding-window counter over two fixed one-minute windows — is pure (``window.py``); the state
lives in this process (``MemoryRateLimiter``) or in a Redis server shared by every gateway
replica (``RedisRateLimiter``, which raises ``RateLimitBackendError`` when Redis fails; the data
plane decides whether to fail open or closed). See README.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inferlane.errors import RateLimitBackendError
from inferlane.ratelimit.interface import RateLimiter
from inferlane.ratelimit.redis_backend import RedisRateLimiter
from inferlane.ratelimit.window import (
    REQUESTS,
    TOKENS,
    WINDOW_SECONDS,
    Decision,
    Limit,
    MemoryRateLimiter,
    SlidingWindowCounter,
    WindowCounts,
    decide,
)

if TYPE_CHECKING:
    # mypy proves here that both backends satisfy the protocol.
    def _backends(memory: MemoryRateLimiter, redis: RedisRateLimiter) -> tuple[RateLimiter, ...]:
        return memory, redis


__all__ = [
    "REQUESTS",
    "TOKENS",
    "WINDOW_SECONDS",
    "Decision",
    "Limit",
    "MemoryRateLimiter",
    "RateLimitBackendError",
    "RateLimiter",
    "RedisRateLimiter",
    "SlidingWindowCounter",
    "WindowCounts",
    "decide",
]
