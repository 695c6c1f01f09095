"""Rate limits at the data plane: find the client key, ask the backends, charge tokens later.

The policies that apply and their budgets come from the snapshot (``routing.rate_limits``); the
counters live in a backend per policy (``ratelimit.MemoryRateLimiter`` in this process or
``ratelimit.RedisRateLimiter`` shared by replicas), kept across reloads while the policy's
backend settings stay the same. Client keys (API keys) are hashed before they are used as
counter keys or metric labels, and never logged.

Request path: ``admit`` before flow control (a request over its budget is answered 429 with
``Retry-After`` and never queues); when the response ends, ``charge`` adds its prompt +
completion tokens to every token budget it was admitted under.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from inferlane.errors import RateLimitBackendError, RateLimited, RateLimitUnavailable
from inferlane.metrics.gateway import GatewayMetrics
from inferlane.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from inferlane.routing.objectives import FAIRNESS_HEADER
from inferlane.routing.rate_limits import RateLimitRuntime, RedisBackendSpec

log = logging.getLogger("inferlane.ratelimit")

ANONYMOUS = "anonymous"


def client_key(policy: RateLimitRuntime, headers: Mapping[str, str]) -> str:
    """The raw client key (never log it): the policy's header, else the bearer token, else the
    fairness id, else "anonymous"."""
    if policy.client_key_header is not None:
        value = headers.get(policy.client_key_header)
        if value:
            return value
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get(FAIRNESS_HEADER) or ANONYMOUS


def key_digest(raw: str) -> str:
    """A short stable digest of a client key: counter keys and metric labels use this."""
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Charge:
    """A token budget a request was admitted under: charge it when the response ends."""

    limiter: RateLimiter
    counter_key: str
    policy: str


class RateLimitGuard:
    """Per-policy backends and the admit/charge calls; one per gateway."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics
        self._backends: dict[str, tuple[RedisBackendSpec | None, RateLimiter]] = {}
        self._charging: set[asyncio.Task[None]] = set()

    def charge_soon(self, charges: Sequence[Charge], tokens: int) -> None:
        """``charge`` in the background: the response is already answered."""
        if tokens <= 0 or not charges:
            return
        task = asyncio.get_running_loop().create_task(self.charge(charges, tokens))
        self._charging.add(task)
        task.add_done_callback(self._charging.discard)

    def sync(self, policies: Sequence[RateLimitRuntime]) -> list[RateLimiter]:
        """Backends for the policies of a new snapshot; returns the ones no longer needed (the
        caller closes them once in-flight requests are done)."""
        retired: list[RateLimiter] = []
        wanted = {p.key: p.redis for p in policies}
        for name, (spec, limiter) in list(self._backends.items()):
            if name not in wanted or wanted[name] != spec:
                retired.append(limiter)
                del self._backends[name]
        for name, spec in wanted.items():
            if name not in self._backends:
                self._backends[name] = (spec, _backend(spec))
        return retired

    async def admit(self, policies: Sequence[RateLimitRuntime], headers: Mapping[str, str],
                    model: str, gateway: str, route: str) -> list[Charge]:
        charges: list[Charge] = []
        now = time.time()
        for policy in policies:
            if not policy.applies(gateway, route):
                continue
            entry = self._backends.get(policy.key)
            if entry is None:
                continue
            limiter = entry[1]
            digest = key_digest(client_key(policy, headers))
            for rule in policy.rules:
                if not rule.applies_to(model):
                    continue
                counter_key = f"{policy.key}|{rule.name}|{digest}"
                if rule.model is not None:
                    counter_key += f"|{rule.model}"
                try:
                    decision = await limiter.acquire(counter_key, rule.limit, now)
                except RateLimitBackendError as exc:
                    self._metrics.child(self._metrics.rate_limit_errors, policy.key).inc()
                    log.warning("rate limit policy %s: %s (%s)", policy.key, exc,
                                "admitting" if policy.fail_open else "refusing")
                    if policy.fail_open:
                        continue
                    raise RateLimitUnavailable(
                        f"RateLimitPolicy {policy.key} cannot reach its counters "
                        "(failureMode FailClose); retry later.",
                        headers={"retry-after": "1"}) from None
                if not decision.allowed:
                    limit = decision.limited_by or "requests"
                    self._metrics.child(self._metrics.rate_limited, policy.key, rule.name,
                                        limit, self._metrics.key_label(digest)).inc()
                    retry = max(1, int(decision.retry_after + 0.999))
                    budget = _describe(limit, rule.limit.requests_per_minute,
                                       rule.limit.tokens_per_minute)
                    raise RateLimited(
                        f"Rate limit of RateLimitPolicy {policy.key} rule {rule.name} reached "
                        f"({budget}); retry after {retry} s.",
                        headers={"retry-after": str(retry)})
                if rule.limit.tokens_per_minute is not None:
                    charges.append(Charge(limiter, counter_key, policy.key))
        return charges

    async def charge(self, charges: Sequence[Charge], tokens: int) -> None:
        if tokens <= 0:
            return
        now = time.time()
        for charge in charges:
            try:
                await charge.limiter.charge(charge.counter_key, tokens, now)
            except RateLimitBackendError as exc:
                self._metrics.child(self._metrics.rate_limit_errors, charge.policy).inc()
                log.warning("rate limit policy %s: could not charge tokens: %s", charge.policy,
                            exc)

    async def close(self) -> None:
        if self._charging:
            await asyncio.wait(list(self._charging), timeout=1.0)
        for _, limiter in self._backends.values():
            await limiter.close()
        self._backends.clear()


def _describe(limit: str, rpm: int | None, tpm: int | None) -> str:
    if limit == "tokens":
        return f"{tpm} tokens per minute"
    return f"{rpm} requests per minute"


def _backend(spec: RedisBackendSpec | None) -> RateLimiter:
    if spec is None:
        return MemoryRateLimiter()
    password = os.environ.get(spec.password_env) if spec.password_env else None
    return RedisRateLimiter(spec.url, key_prefix=spec.key_prefix, timeout=spec.timeout,
                            password=password or None)
