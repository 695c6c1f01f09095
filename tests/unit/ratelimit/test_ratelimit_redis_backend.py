"""The Redis backend's pure parts and argument checks: no server, no sockets opened.

Behaviour against a real Redis is in tests/integration/ratelimit/test_ratelimit_redis.py.
"""

from __future__ import annotations

import pytest

from inferlane.ratelimit import REQUESTS, TOKENS, Decision, RedisRateLimiter
from inferlane.ratelimit.redis_backend import _override, redacted_address

PASSWORD = "s3cret-Pa55word"


@pytest.mark.parametrize(("url", "expected"), [
    ("redis://user:pw@10.0.0.5:6379/0", "redis://10.0.0.5:6379/0"),
    ("rediss://:pw@[::1]:6380/2?password=pw", "rediss://[::1]:6380/2"),
    ("unix:///run/redis.sock?db=0&password=pw", "unix:///run/redis.sock"),
    ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
])
def test_redacted_address(url: str, expected: str) -> None:
    assert redacted_address(url) == expected


def test_invalid_url_is_a_value_error_without_the_password() -> None:
    with pytest.raises(ValueError, match="invalid Redis URL") as caught:
        RedisRateLimiter(f"http://user:{PASSWORD}@example.invalid/")
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize("timeout", [0.0, -1.0])
def test_timeout_must_be_positive(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        RedisRateLimiter("redis://127.0.0.1:1/0", timeout=timeout)


async def test_construction_and_zero_charges_do_no_io() -> None:
    # Port 1 on loopback refuses connections: any I/O here would raise RateLimitBackendError.
    limiter = RedisRateLimiter("redis://127.0.0.1:1/0", password=PASSWORD)
    try:
        assert limiter.address == "redis://127.0.0.1:1/0"
        await limiter.charge("key", 0, 0.0)
        with pytest.raises(ValueError, match="whole number >= 0"):
            await limiter.charge("key", -3, 0.0)
    finally:
        await limiter.close()


@pytest.mark.parametrize(("decision", "allowed", "expected"), [
    (Decision(False, TOKENS, 30.0, remaining_requests=2, remaining_tokens=0), True,
     Decision(True, remaining_requests=0, remaining_tokens=0)),
    (Decision(True, remaining_requests=4), False,
     Decision(False, REQUESTS, 1.0, remaining_requests=0)),
])
def test_the_scripts_verdict_wins(decision: Decision, allowed: bool, expected: Decision) -> None:
    assert _override(decision, allowed) == expected
