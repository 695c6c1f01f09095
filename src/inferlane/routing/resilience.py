"""A route rule's failure handling, compiled from its HTTPRoute ``retry`` and the TrafficPolicy
that targets it (see ``config/resources/traffic_policy.py`` for the user-facing semantics).
Values only; ``routing.attempts`` makes the decisions."""

from __future__ import annotations

from dataclasses import dataclass, field

from inferlane.routing.backends import BackendRef
from inferlane.routing.cooldown import CooldownConfig
from inferlane.routing.failures import FailureClass

ALL_FALLBACK_TRIGGERS = frozenset({
    FailureClass.CONNECT, FailureClass.TIMEOUT, FailureClass.SERVER_ERROR,
    FailureClass.RATE_LIMITED, FailureClass.CONTEXT_WINDOW,
})


@dataclass(frozen=True, slots=True)
class RetryRules:
    # Same-backend retries for timeouts, 5xx and 429 (the route's retry.attempts; 0 = none).
    attempts: int = 0
    codes: frozenset[int] = frozenset()  # statuses retried; empty: every 429 and 5xx
    backoff_base: float = 0.1
    backoff_max: float = 2.0
    retry_after_max: float = 1.0  # a longer 429 Retry-After moves on to the next backend
    budget_percent: float = 20.0
    budget_min: int = 3
    # A connect failure never reached a model server, so retrying it elsewhere in the pool is
    # always safe: this many times even without a retry policy (another endpoint each time).
    connect_retries: int = 1


@dataclass(frozen=True, slots=True)
class MirrorTarget:
    backend: BackendRef
    fraction: float  # share of requests copied, 0..1


@dataclass(frozen=True, slots=True)
class FailurePolicy:
    fallbacks: tuple[BackendRef, ...] = ()
    fallback_on: frozenset[FailureClass] = ALL_FALLBACK_TRIGGERS
    retry: RetryRules = field(default_factory=RetryRules)
    cooldown: CooldownConfig | None = field(default_factory=CooldownConfig)  # None: off
    mirror_max_concurrent: int = 16
    mirror_timeout: float = 60.0
    policy: str | None = None  # "namespace/name" of the TrafficPolicy, if any


DEFAULT_POLICY = FailurePolicy()
