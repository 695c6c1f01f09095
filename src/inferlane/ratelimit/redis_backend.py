"""The Redis backend: rate limits shared by every gateway replica through one Redis server.

Same arithmetic as ``window.py``, run where the counters live: ``acquire`` is one round trip, a
Lua script that reads the key's four windows, decides, counts an admitted request and sets the
expiry — atomically, since Redis runs a script alone. The window number comes from the server's
``TIME``, so replicas with skewed clocks still share one window; the ``now`` arguments are
ignored. The script returns the counts and the server time it used, and ``decide`` turns them
into the ``Decision`` (remaining budgets, ``retry_after``) exactly as the memory backend does.

Keys: ``{prefix}{{key}}:r:{window}`` (requests) and ``{prefix}{{key}}:t:{window}`` (tokens).
The braces are a hash tag: in a Redis Cluster all of one key's windows live in one slot, so
the script may build the window names itself from its one declared key, the base name.

Every Redis failure (refused, reset, timed out, error reply) is mapped here to
``RateLimitBackendError`` naming the Redis address without credentials. Each call is bounded by
``timeout`` as a whole; a dropped pooled connection is retried once, within that bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from inferlane.errors import RateLimitBackendError
from inferlane.ratelimit.window import (
    REQUESTS,
    WINDOW_SECONDS,
    Decision,
    Limit,
    WindowCounts,
    decide,
    validate_tokens,
)

# ARGV: requests per minute, tokens per minute (0 = unlimited), window seconds.
# Returns {admitted 0/1, server seconds, server microseconds, the four counts before this request}.
# The float expressions mirror window.elapsed_seconds and window.decide operation for operation,
# so Lua and Python reach the same verdict on the same counts.
_ACQUIRE_SCRIPT = """
local base = KEYS[1]
local rpm, tpm, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local seconds, micros = tonumber(clock[1]), tonumber(clock[2])
local now = seconds + micros / 1000000
local index = math.floor(now / window)
local elapsed = now - index * window
local current = string.format('%d', index)
local previous = string.format('%d', index - 1)
local request_key = base .. ':r:' .. current
local counts = redis.call('MGET', request_key, base .. ':r:' .. previous,
                          base .. ':t:' .. current, base .. ':t:' .. previous)
local current_requests = tonumber(counts[1]) or 0
local previous_requests = tonumber(counts[2]) or 0
local current_tokens = tonumber(counts[3]) or 0
local previous_tokens = tonumber(counts[4]) or 0
local admitted = 1
if rpm > 0 and previous_requests * (window - elapsed) / window + current_requests + 1 > rpm then
  admitted = 0
end
if tpm > 0 and previous_tokens * (window - elapsed) / window + current_tokens >= tpm then
  admitted = 0
end
if admitted == 1 then
  redis.call('INCR', request_key)
  redis.call('EXPIRE', request_key, 2 * window)
end
return {admitted, seconds, micros, previous_requests, current_requests,
        previous_tokens, current_tokens}
"""

# ARGV: tokens, window seconds. Adds to the token window of the server's now.
_CHARGE_SCRIPT = """
local window = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local key = KEYS[1] .. ':t:' .. string.format('%d', math.floor(now / window))
redis.call('INCRBY', key, ARGV[1])
redis.call('EXPIRE', key, 2 * window)
return 1
"""


def redacted_address(url: str) -> str:
    """``url`` without userinfo, query or fragment: safe for messages and logs."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"


class RedisRateLimiter:
    """Rate limits in one Redis server, shared by all gateway replicas that point at it.

    Connects lazily: construction does no I/O; ``ping`` checks the server at startup. Close with
    ``close`` on shutdown. ``password`` (e.g. read from the environment variable the config
    names) is used when the URL carries none. ``timeout`` bounds each call as a whole.
    """

    def __init__(self, url: str, *, key_prefix: str = "inferlane:rl:", timeout: float = 0.25,
                 password: str | None = None) -> None:
        if timeout <= 0:
            raise ValueError(f"Redis rate-limit timeout must be > 0 seconds, got {timeout!r}")
        self.address = redacted_address(url)
        self.key_prefix = key_prefix
        self.timeout = timeout
        in_url = urlsplit(url).password
        secrets = (in_url, unquote(in_url) if in_url else None, password)
        self._secrets = tuple(secret for secret in secrets if secret)
        try:
            self._client: Redis = Redis.from_url(
                url,
                password=password,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                # One immediate retry heals a pooled connection the server dropped; the overall
                # bound below keeps a down server from costing more than ``timeout``.
                retry=Retry(NoBackoff(), 1),
            )
        except ValueError as error:
            raise ValueError(f"invalid Redis URL for rate limits ({self.address}): "
                             f"{self._scrub(str(error))}") from None
        self._acquire_script = self._client.register_script(_ACQUIRE_SCRIPT)
        self._charge_script = self._client.register_script(_CHARGE_SCRIPT)

    def _base_key(self, key: str) -> str:
        return f"{self.key_prefix}{{{key}}}"

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    @contextmanager
    def _mapped(self, action: str) -> Iterator[None]:
        try:
            yield
        except (RedisError, OSError, TimeoutError) as error:
            # asyncio.timeout raises a bare TimeoutError; redis-py's messages name the host only.
            reason = self._scrub(str(error)).rstrip(".") or f"no answer within {self.timeout:g}s"
            raise RateLimitBackendError(
                f"rate-limit backend redis at {self.address} failed to {action}: "
                f"{type(error).__name__}: {reason}; check that Redis is running and reachable"
            ) from None

    async def _call(self, action: str, call: Awaitable[Any]) -> Any:
        with self._mapped(action):
            async with asyncio.timeout(self.timeout):
                return await call

    async def acquire(self, key: str, limit: Limit, now: float) -> Decision:
        """Admit or deny one request of ``key``; ``now`` is ignored (the server's clock rules)."""
        window = int(WINDOW_SECONDS)
        reply = await self._call("check a rate limit", self._acquire_script(
            keys=[self._base_key(key)],
            args=[limit.requests_per_minute or 0, limit.tokens_per_minute or 0, window]))
        admitted, seconds, micros, *counts = (int(value) for value in cast(list[Any], reply))
        server_now = seconds + micros / 1000000
        decision = decide(limit, WindowCounts(*counts), server_now)
        if decision.allowed != bool(admitted):
            # Cannot happen while the script mirrors ``decide``; the script's verdict is the one
            # that counted, so it wins.
            decision = _override(decision, bool(admitted))
        return decision

    async def charge(self, key: str, tokens: int, now: float) -> None:
        """Add ``tokens`` to the key's current token window; ``now`` is ignored."""
        validate_tokens(tokens)
        if tokens:
            await self._call("charge tokens", self._charge_script(
                keys=[self._base_key(key)], args=[tokens, int(WINDOW_SECONDS)]))

    async def ping(self) -> None:
        """Raise ``RateLimitBackendError`` unless Redis answers within the timeout."""
        await self._call("answer PING", self._client.ping())

    async def close(self) -> None:
        await self._client.aclose()


def _override(decision: Decision, allowed: bool) -> Decision:
    """``decision`` with the script's verdict: no budget left either way, a second's wait."""
    remaining_requests = None if decision.remaining_requests is None else 0
    remaining_tokens = None if decision.remaining_tokens is None else 0
    if allowed:
        return Decision(True, remaining_requests=remaining_requests,
                        remaining_tokens=remaining_tokens)
    return Decision(False, limited_by=decision.limited_by or REQUESTS, retry_after=1.0,
                    remaining_requests=remaining_requests, remaining_tokens=remaining_tokens)
