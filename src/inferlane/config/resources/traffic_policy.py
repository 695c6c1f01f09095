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
- ``cooldown``: the circuit breaker that skips a provider
  failing most of its recent requests until a probe request succeeds;
- ``mirror``: limits of the RequestMirror copies (concurrency, timeout);
- ``steering``: how requests order the rule's backends by health and policy (failover order,
  weights, least outstanding requests, probe latency, client region).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from inferlane.config.resources.filters import BackendObjectReference
from inferlane.config.resources.meta import (
    Duration,
    HeaderName,
    Problems,
    Resource,
    SectionName,
    StrictModel,
    parse_duration,
)


def _region(value: str) -> str:
    if not _REGION_RE.fullmatch(value):
        raise ValueError(f'"{value}" is not a region name: lower-case letters, digits and "-", '
                         "at most 63")
    return value


_REGION_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
RegionName = Annotated[str, AfterValidator(_region)]

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
    """Circuit breaker per provider (pool endpoints: the pool's outlier detection, see
    HealthCheckPolicy)."""

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


SteeringPolicyName = Literal["failover", "random", "least-outstanding-requests",
                             "dynamic-latency", "geo"]


class SourceCIDR(StrictModel):
    """Clients whose address is in ``cidr`` are in ``region`` (longest prefix wins)."""

    cidr: str = Field(description='An IPv4 or IPv6 network, e.g. "10.1.0.0/16".')
    region: RegionName = Field(description="Region name.")

    @field_validator("cidr")
    @classmethod
    def _check_cidr(cls, value: str) -> str:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f'"{value}" is not an IP network such as 10.1.0.0/16') from None
        return value


class GeoRegion(StrictModel):
    """The backends a region's clients prefer, in order."""

    region: RegionName = Field(description="Region name.")
    backend_refs: list[BackendObjectReference] = Field(
        alias="backendRefs", min_length=1, max_length=16,
        description="Backends of the rule, most preferred first.")


class GeoSteeringSpec(StrictModel):
    """Where a client is: a header it (or an edge proxy) sends, else its source address."""

    header: HeaderName | None = Field(None, description="Header carrying the client's region.")
    source_cidrs: list[SourceCIDR] = Field(default_factory=list, alias="sourceCIDRs",
                                           max_length=1024,
                                           description="Source networks by region.")
    regions: list[GeoRegion] = Field(min_length=1, max_length=64,
                                     description="Preferred backends per region.")


class SteeringSpec(StrictModel):
    """How requests pick among the healthy backends of the rule (Cloudflare steering)."""

    policy: SteeringPolicyName = Field(
        "random", description="failover (listed order), random (weights), "
                              "least-outstanding-requests (fewest in flight per weight), "
                              "dynamic-latency (lowest EWMA probe RTT), geo (the client "
                              "region's preferred backends first).")
    geo: GeoSteeringSpec | None = Field(None, description="Regions; required for policy geo.")

    @model_validator(mode="after")
    def _check(self) -> SteeringSpec:
        problems = Problems()
        if self.policy == "geo" and self.geo is None:
            problems.add(("geo",), "policy geo needs the geo settings")
        if self.policy != "geo" and self.geo is not None:
            problems.add(("geo",), f"only used by policy geo, not {self.policy}")
        problems.raise_if_any()
        return self


class TrafficPolicySpec(StrictModel):
    """Targets and failure handling."""

    target_refs: list[PolicyTargetReference] = Field(
        alias="targetRefs", min_length=1, max_length=16, description="HTTPRoutes (or rules).")
    fallback: Fallback | None = Field(None, description="Fallback chain.")
    retry: RetrySettings = Field(default_factory=RetrySettings, description="Retry limits.")
    cooldown: Cooldown = Field(default_factory=Cooldown, description="Circuit breaker.")
    mirror: MirrorLimits = Field(default_factory=MirrorLimits, description="Mirror limits.")
    steering: SteeringSpec | None = Field(
        None, description="Steering between the rule's backends: with it, every backendRef of "
                          "the rule is in the request's chain (healthy ones first, in the "
                          "policy's order), then the fallbacks; without it, the split picks one "
                          "(a healthy one) and only the fallbacks follow.")


class TrafficPolicy(Resource):
    """Fallback chains, retry budget, cooldown and mirror limits for HTTPRoute rules."""

    api_version: Literal["inferlane.dev/v1alpha1"] = Field(
        alias="apiVersion", description="API group and version.")
    kind: Literal["TrafficPolicy"] = Field(description="Resource kind.")
    spec: TrafficPolicySpec = Field(description="Targets and behaviour.")
