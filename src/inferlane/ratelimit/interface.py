"""The rate-limiter extension point: what the data plane calls, whichever backend holds state.

``MemoryRateLimiter`` (one process) and ``RedisRateLimiter`` (shared by replicas) implement it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from inferlane.ratelimit.window import Decision, Limit


@runtime_checkable
class RateLimiter(Protocol):
    """Per-key request and token budgets.

    ``key`` is an opaque string the caller builds (e.g. rule name, a hash of the API key, the
    model); it may identify a tenant, so it is never logged. ``now`` is wall-clock seconds
    (``time.time()``); a backend with its own shared clock may ignore it.
    """

    async def acquire(self, key: str, limit: Limit, now: float) -> Decision:
        """Admit or deny one request; an admitted request is counted, a denied one is not."""
        ...

    async def charge(self, key: str, tokens: int, now: float) -> None:
        """Add the tokens a finished response (or ended stream) used to ``key``'s budget."""
        ...

    async def close(self) -> None:
        """Release connections and state; the limiter is not used afterwards."""
        ...
