"""RateLimitPolicies at run time: which apply to a request, and the budgets they set.

Pure data built from the config (``config.build``); the data plane
(``dataplane.rate_limiting``) holds the counters' backends and does the I/O. A policy applies
when it targets the Gateway of the listener the request came in on or the HTTPRoute whose rule
matched it.
"""

from __future__ import annotations

from dataclasses import dataclass

from inferlane.ratelimit import Limit


@dataclass(frozen=True, slots=True)
class RateLimitRuleRuntime:
    name: str
    model: str | None  # only requests for this model (as the client sent it)
    limit: Limit

    def applies_to(self, model: str) -> bool:
        return self.model is None or self.model == model


@dataclass(frozen=True, slots=True)
class RedisBackendSpec:
    url: str  # no password; see password_env
    password_env: str | None
    key_prefix: str
    timeout: float


@dataclass(frozen=True, slots=True)
class RateLimitRuntime:
    key: str  # "namespace/name" of the RateLimitPolicy
    gateways: frozenset[str]  # "namespace/name"
    routes: frozenset[str]  # "namespace/name"
    client_key_header: str | None  # lower-case; None: Authorization bearer, then fairness id
    rules: tuple[RateLimitRuleRuntime, ...]
    redis: RedisBackendSpec | None  # None: in-process counters
    fail_open: bool = True

    def applies(self, gateway: str, route: str) -> bool:
        return gateway in self.gateways or route in self.routes
