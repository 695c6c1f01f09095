"""The Redis backend against a real ``redis-server`` over loopback (see tests/conftest.py).

The script uses the server's clock, so these tests cannot pin the time: each one runs well
within a few seconds, where a window boundary passing mid-test changes no outcome asserted here
(a request counted in the previous window still weighs > 90 % of itself for 6 s).
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from inferlane.errors import InferlaneError
from inferlane.ratelimit import (
    REQUESTS,
    TOKENS,
    Limit,
    RateLimitBackendError,
    RateLimiter,
    RedisRateLimiter,
)

pytestmark = pytest.mark.integration

KEY = "rule|0123abcd|model"
NOW = 0.0  # ignored by the Redis backend: the server's TIME rules
PASSWORD = "s3cret-Pa55word"
GENEROUS_TIMEOUT = 5.0  # for tests about correctness, not latency, on a loaded machine


@pytest.fixture
def key_prefix() -> str:
    """A prefix of this test's own: tests share one Redis server."""
    return f"test:{uuid.uuid4().hex}:"


@pytest.fixture
async def limiter(redis_server: str, key_prefix: str) -> AsyncIterator[RedisRateLimiter]:
    limiter = RedisRateLimiter(redis_server, key_prefix=key_prefix, timeout=GENEROUS_TIMEOUT)
    try:
        yield limiter
    finally:
        await limiter.close()


@pytest.fixture
async def raw_redis(redis_server: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


async def test_ping(limiter: RedisRateLimiter) -> None:
    await limiter.ping()
    assert isinstance(limiter, RateLimiter)


async def test_rpm_limit(limiter: RedisRateLimiter) -> None:
    limit = Limit(requests_per_minute=3)
    decisions = [await limiter.acquire(KEY, limit, NOW) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining_requests for d in decisions[:3]] == [2, 1, 0]
    denied = decisions[3]
    assert denied.limited_by == REQUESTS
    assert 1.0 <= denied.retry_after <= 120.0
    assert denied.retry_after.is_integer()
    assert denied.remaining_tokens is None


async def test_tpm_after_charge(limiter: RedisRateLimiter) -> None:
    limit = Limit(tokens_per_minute=100)
    first = await limiter.acquire(KEY, limit, NOW)
    assert (first.allowed, first.remaining_tokens) == (True, 100)
    await limiter.charge(KEY, 99, NOW)
    second = await limiter.acquire(KEY, limit, NOW)  # 99 < 100: admitted, may overshoot
    assert (second.allowed, second.remaining_tokens) == (True, 1)
    await limiter.charge(KEY, 500, NOW)
    denied = await limiter.acquire(KEY, limit, NOW)
    assert (denied.allowed, denied.limited_by, denied.remaining_tokens) == (False, TOKENS, 0)
    assert 1.0 <= denied.retry_after <= 120.0


async def test_a_denial_counts_nothing(limiter: RedisRateLimiter) -> None:
    both = Limit(requests_per_minute=5, tokens_per_minute=100)
    assert (await limiter.acquire(KEY, both, NOW)).remaining_requests == 4
    await limiter.charge(KEY, 150, NOW)
    for _ in range(3):
        denied = await limiter.acquire(KEY, both, NOW)
        assert (denied.allowed, denied.limited_by, denied.remaining_requests) == \
            (False, TOKENS, 4)
    requests_only = Limit(requests_per_minute=5)
    results = [(await limiter.acquire(KEY, requests_only, NOW)).allowed for _ in range(5)]
    assert results == [True] * 4 + [False]


async def test_unlimited_and_keys_are_independent(limiter: RedisRateLimiter) -> None:
    assert all([(await limiter.acquire("free", Limit(), NOW)).allowed for _ in range(20)])
    one = Limit(requests_per_minute=1)
    assert [(await limiter.acquire("a", one, NOW)).allowed for _ in range(2)] == [True, False]
    assert (await limiter.acquire("b", one, NOW)).allowed


async def test_keys_are_hash_tagged_and_expire(limiter: RedisRateLimiter, raw_redis: Redis,
                                               key_prefix: str) -> None:
    await limiter.acquire(KEY, Limit(requests_per_minute=10), NOW)
    await limiter.charge(KEY, 42, NOW)
    names = sorted([name async for name in raw_redis.scan_iter(match=f"{key_prefix}*")])
    assert len(names) == 2, names
    requests_key, tokens_key = names
    assert requests_key.startswith(f"{key_prefix}{{{KEY}}}:r:")
    assert tokens_key.startswith(f"{key_prefix}{{{KEY}}}:t:")
    assert await raw_redis.get(tokens_key) == "42"
    for name in names:
        assert 0 < await raw_redis.ttl(name) <= 120


async def test_two_replicas_share_one_budget(redis_server: str, key_prefix: str) -> None:
    """Two gateway replicas (two limiters, two connection pools) see one budget."""
    replica_a = RedisRateLimiter(redis_server, key_prefix=key_prefix, timeout=GENEROUS_TIMEOUT)
    replica_b = RedisRateLimiter(redis_server, key_prefix=key_prefix, timeout=GENEROUS_TIMEOUT)
    limit = Limit(requests_per_minute=10)
    try:
        from_a = [(await replica_a.acquire(KEY, limit, NOW)).allowed for _ in range(6)]
        from_b = [(await replica_b.acquire(KEY, limit, NOW)).allowed for _ in range(4)]
        assert from_a + from_b == [True] * 10
        assert not (await replica_a.acquire(KEY, limit, NOW)).allowed
        assert not (await replica_b.acquire(KEY, limit, NOW)).allowed
        await replica_a.charge("tokens", 1000, NOW)
        denied = await replica_b.acquire("tokens", Limit(tokens_per_minute=1000), NOW)
        assert (denied.allowed, denied.limited_by) == (False, TOKENS)
    finally:
        await replica_a.close()
        await replica_b.close()


async def test_concurrent_acquires_are_atomic(limiter: RedisRateLimiter) -> None:
    limit = Limit(requests_per_minute=20)
    decisions = await asyncio.gather(*(limiter.acquire(KEY, limit, NOW) for _ in range(50)))
    assert sum(d.allowed for d in decisions) == 20
    assert {d.limited_by for d in decisions if not d.allowed} == {REQUESTS}


async def test_the_script_is_loaded_again_after_a_script_flush(limiter: RedisRateLimiter,
                                                               raw_redis: Redis) -> None:
    limit = Limit(requests_per_minute=5)
    assert (await limiter.acquire(KEY, limit, NOW)).allowed
    await raw_redis.script_flush()
    assert (await limiter.acquire(KEY, limit, NOW)).remaining_requests == 3
    await limiter.charge(KEY, 1, NOW)


# -- failures --------------------------------------------------------------------------------

def closed_port() -> int:
    """A loopback port that nobody listens on (bound, then closed: connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def assert_backend_error(call: Callable[[], Any], within: float,
                               address: str) -> RateLimitBackendError:
    started = time.monotonic()
    with pytest.raises(RateLimitBackendError) as caught:
        await call()
    elapsed = time.monotonic() - started
    assert elapsed < within, f"took {elapsed:.2f}s"
    message = str(caught.value)
    assert address in message
    assert PASSWORD not in message
    assert caught.value.__cause__ is None  # redis-py's exception (and its arguments) is dropped
    return caught.value


async def test_unreachable_redis_raises_quickly_without_the_password() -> None:
    port = closed_port()
    limiter = RedisRateLimiter(f"redis://default:{PASSWORD}@127.0.0.1:{port}/0", timeout=0.25)
    try:
        assert PASSWORD not in limiter.address
        address = f"redis://127.0.0.1:{port}/0"
        error = await assert_backend_error(
            lambda: limiter.acquire(KEY, Limit(requests_per_minute=1), NOW), 2.0, address)
        assert isinstance(error, InferlaneError)
        await assert_backend_error(lambda: limiter.charge(KEY, 10, NOW), 2.0, address)
        await assert_backend_error(limiter.ping, 2.0, address)
    finally:
        await limiter.close()


async def test_a_silent_server_is_bounded_by_the_timeout() -> None:
    """A peer that accepts TCP but never answers: each call gives up after ``timeout``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel completes handshakes; nothing ever reads or answers
        port = silent.getsockname()[1]
        limiter = RedisRateLimiter(f"redis://127.0.0.1:{port}/0", timeout=0.3,
                                   password=PASSWORD)
        try:
            error = await assert_backend_error(
                lambda: limiter.acquire(KEY, Limit(requests_per_minute=1), NOW), 2.0,
                f"127.0.0.1:{port}")
            assert "TimeoutError" in str(error)
        finally:
            await limiter.close()


async def test_a_stopped_redis_fails_and_a_restarted_one_heals(
        start_redis: Callable[[], Any]) -> None:
    server = start_redis()
    limiter = RedisRateLimiter(server.url, timeout=1.0)
    limit = Limit(requests_per_minute=100)
    try:
        assert (await limiter.acquire(KEY, limit, NOW)).allowed
        server.stop()
        await assert_backend_error(lambda: limiter.acquire(KEY, limit, NOW), 3.0, server.url)
        server.start()  # same port, empty state
        # The pooled connection died with the old server; the one retry reconnects.
        assert (await limiter.acquire(KEY, limit, NOW)).remaining_requests == 99
    finally:
        await limiter.close()
