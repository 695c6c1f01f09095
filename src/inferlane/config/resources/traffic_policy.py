"""The ``TrafficPolicy`` kind (inferlane.dev/v1alpha1, our extension): what happens when a
backend fails, for the HTTPRoute rules it targets.

The Gateway API covers part of this on the route itself — ``rules[].retry`` (attempts, codes,
backoff on the same backend) and ``timeouts`` — and inferlane honours those. What it has no
field for lives here, attached by ``targetRefs`` (a whole HTTPRoute, or one rule by
``sectionName`` = the rule's name):

- ``fallback``: backends tried in order after the one the rule's split chose, on the listed
  failure classes, only before the first response byte reached the client;
- ``retry``: the retry budget (extra attempts per route rule, as a share of requests), the
  backoff cap and how long a 429's ``Retry-After`` may be waited out on the same backend;
- ``cooldown``: the circuit breaker that skips a backend (a provider, or one pool endpoint)
  failing most of its recent requests until a probe request succeeds;
- ``mirror``: limits of the RequestMirror copies (concurrency, timeout).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from inferlane.config.resources.filters import BackendObjectReference
from inferlane.config.resources.meta import (
    Duration,
    Problems,
    Resource,
    SectionName,
    StrictModel,
    parse_duration,
)

FailureTrigger = Literal["connect-failure", "timeout", "5xx", "429", "context-window-exceeded"]
ALL_TRIGGERS: tuple[FailureTrigger, ...] = (
    "connect-failure", "timeout", "5xx", "429", "context-window-exceeded")


class PolicyTargetReference(StrictModel):
    """An HTTPRoute in the policy's namespace, optionally one rule of it."""

    group: str = Field("gateway.networking.k8s.io", description="API group of the target.")
    kind: Literal["HTTPRoute"] = Field(description="HTTPRoute.")
    name: str = Field(min_length=1, max_length=253, description="Route name.")
    section_name: SectionName | None = Field(
        None, alias="sectionName", description="Name of one rule; unset: every rule.")


class Fallback(StrictModel):
    """Ordered backends to try after the chosen one fails."""

    backend_refs: list[BackendObjectReference] = Field(
        alias="backendRefs", min_length=1, max_length=8,
        description="InferencePools or Providers, in order.")
    on: list[FailureTrigger] = Field(
        default_factory=lambda: list(ALL_TRIGGERS),
        description="Failure classes that move to the next backend (default: all of "
                    "connect-failure, timeout, 5xx, 429, context-window-exceeded).")


class RetryBackoff(StrictModel):
    """Exponential backoff with full jitter between attempts on the same backend."""

    max: Duration = Field("2s", description="Longest wait (the base is the route's "
                                            "retry.backoff, default 100ms).")


class RetryBudget(StrictModel):
    """Caps extra attempts (retries and fallbacks) so failures never multiply the load."""

    percent: float = Field(20.0, ge=0, le=100,
                           description="Extra attempts allowed as a share of requests over the "
                                       "last 10 s.")
    min_retries: int = Field(3, alias="minRetries", ge=0,
                             description="Extra attempts always allowed per 10 s.")


class RetrySettings(StrictModel):
    """Budget and waits of retries (attempts and codes are the route's ``retry``)."""

    budget: RetryBudget = Field(default_factory=RetryBudget, description="Retry budget.")
    backoff: RetryBackoff = Field(default_factory=RetryBackoff, description="Backoff cap.")
    retry_after_max: Duration = Field(
        "1s", alias="retryAfterMax",
        description="A 429 asking to wait longer than this goes to the next backend at once "
                    "(the throttled one is skipped until its Retry-After passes).")


class Cooldown(StrictModel):
    """Circuit breaker per provider and per pool endpoint."""

    enabled: bool = Field(True, description="Turn the breaker off.")
    window: Duration = Field("60s", description="Recent outcomes considered.")
    min_requests: int = Field(5, alias="minRequests", ge=1,
                              description="No verdict on fewer outcomes.")
    failure_ratio: float = Field(0.5, alias="failureRatio", gt=0, lt=1,
                                 description="Opens when more than this share failed.")
    consecutive_failures: int = Field(5, alias="consecutiveFailures", ge=1,
                                      description="...or after this many failures in a row.")
    duration: Duration = Field("30s", description="First cooldown; doubles after a failed "
                                                  "probe.")
    max_duration: Duration = Field("300s", alias="maxDuration", description="Longest cooldown.")

    @model_validator(mode="after")
    def _check(self) -> Cooldown:
        problems = Problems()
        if parse_duration(self.max_duration) < parse_duration(self.duration):
            problems.add(("maxDuration",), "must not be shorter than duration")
        problems.raise_if_any()
        return self


class MirrorLimits(StrictModel):
    """Bounds of RequestMirror copies: a slow or overloaded shadow is dropped, never waited on."""

    max_concurrent: int = Field(16, alias="maxConcurrent", ge=1, le=10_000,
                                description="Mirror copies in flight per rule; more are "
                                            "dropped (counted).")
    timeout: Duration = Field("60s", description="A mirror copy slower than this is dropped.")


class TrafficPolicySpec(StrictModel):
    """Targets and failure handling."""

    target_refs: list[PolicyTargetReference] = Field(
        alias="targetRefs", min_length=1, max_length=16, description="HTTPRoutes (or rules).")
    fallback: Fallback | None = Field(None, description="Fallback chain.")
    retry: RetrySettings = Field(default_factory=RetrySettings, description="Retry limits.")
    cooldown: Cooldown = Field(default_factory=Cooldown, description="Circuit breaker.")
    mirror: MirrorLimits = Field(default_factory=MirrorLimits, description="Mirror limits.")


class TrafficPolicy(Resource):
    """Fallback chains, retry budget, cooldown and mirror limits for HTTPRoute rules."""

    api_version: Literal["inferlane.dev/v1alpha1"] = Field(
        alias="apiVersion", description="API group and version.")
    kind: Literal["TrafficPolicy"] = Field(description="Resource kind.")
    spec: TrafficPolicySpec = Field(description="Targets and behaviour.")
