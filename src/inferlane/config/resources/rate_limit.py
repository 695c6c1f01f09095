"""The ``RateLimitPolicy`` kind (inferlane.dev/v1alpha1, our extension): per-key request and
token budgets.

Policy attachment as in the Gateway API: ``spec.targetRefs`` names the Gateways (all their
traffic) or HTTPRoutes (traffic those routes match) it governs. ``spec.rateLimit`` says where the
counters live (``backend: memory`` in this process, or ``redis`` shared by every gateway
replica), how a client is identified (``clientKey``) and the ``rules``: requests per minute and
tokens per minute per client key, optionally for one model only. Tokens are charged from each
response's ``usage`` when it ends, so a long stream can overshoot a token budget once; the next
request then waits until the window slides.

The Redis URL names a server, never a secret: a password comes from the environment variable
named by ``passwordFromEnv``. Client keys (API keys) are never logged or exported; metrics
label them with a short hash.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from inferlane.config.resources.meta import (
    HeaderName,
    LocalObjectReference,
    Problems,
    Resource,
    StrictModel,
)

RateLimitBackend = Literal["memory", "redis"]
FailureMode = Literal["FailOpen", "FailClose"]


class RedisSettings(StrictModel):
    """Where the shared counters live."""

    url: str = Field(description='Server URL, e.g. "redis://127.0.0.1:6379/0" (no password).')
    password_from_env: str | None = Field(
        None, alias="passwordFromEnv", min_length=1,
        description="Environment variable holding the Redis password, if any.")
    key_prefix: str = Field("inferlane:rl:", alias="keyPrefix", min_length=1, max_length=64,
                            description="Prefix of every counter key.")
    timeout_ms: int = Field(250, alias="timeoutMs", ge=1, le=10_000,
                            description="Longest wait for Redis per request.")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError('use a redis://, rediss:// or unix:// URL, e.g. '
                             '"redis://127.0.0.1:6379/0"')
        if parts.password:
            raise ValueError("the URL carries a password: remove it and name an environment "
                             "variable in passwordFromEnv instead")
        return value


class ClientKey(StrictModel):
    """How a request's client key is found, first match wins: the `header` if set, then the
    `Authorization: Bearer` token, then `x-gateway-inference-fairness-id`; otherwise the
    request counts against the key "anonymous"."""

    header: HeaderName | None = Field(None, description='Header holding the key, e.g. '
                                                        '"x-api-key".')


class RateLimitRule(StrictModel):
    """One budget per client key (and per model when `model` is set)."""

    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                      description="Rule name (lowercase, digits, '-'), shown in metrics.")
    model: str | None = Field(None, min_length=1,
                              description="Only requests for this model (as sent by the "
                                          "client); unset: every request.")
    requests_per_minute: int | None = Field(None, alias="requestsPerMinute", ge=1,
                                            description="Requests per client key per minute.")
    tokens_per_minute: int | None = Field(None, alias="tokensPerMinute", ge=1,
                                          description="Prompt + completion tokens per client "
                                                      "key per minute.")

    @model_validator(mode="after")
    def _check(self) -> RateLimitRule:
        problems = Problems()
        if self.requests_per_minute is None and self.tokens_per_minute is None:
            problems.add((), "set requestsPerMinute, tokensPerMinute or both")
        problems.raise_if_any()
        return self


class RateLimit(StrictModel):
    """Counters backend, client identification and rules."""

    backend: RateLimitBackend = Field("memory", description="`memory` (this process) or "
                                                            "`redis` (shared by replicas).")
    redis: RedisSettings | None = Field(None, description="Required with `backend: redis`.")
    failure_mode: FailureMode = Field(
        "FailOpen", alias="failureMode",
        description="When Redis cannot answer: `FailOpen` admits the request, `FailClose` "
                    "answers 503.")
    client_key: ClientKey = Field(default_factory=ClientKey, alias="clientKey",
                                  description="Where the client key comes from.")
    rules: list[RateLimitRule] = Field(min_length=1, max_length=64,
                                       description="Budgets; every matching rule applies.")

    @model_validator(mode="after")
    def _check(self) -> RateLimit:
        problems = Problems()
        if self.backend == "redis" and self.redis is None:
            problems.add(("redis",), "backend redis needs redis.url")
        if self.backend == "memory" and self.redis is not None:
            problems.add(("redis",), "only used with backend: redis")
        names = [rule.name for rule in self.rules]
        for index, name in enumerate(names):
            if name in names[:index]:
                problems.add(("rules", index, "name"), f'rule name "{name}" is used twice')
        problems.raise_if_any()
        return self


class RateLimitTargetReference(LocalObjectReference):
    """A Gateway or HTTPRoute in the policy's namespace."""

    group: str = Field("gateway.networking.k8s.io", description="API group of the target.")
    kind: Literal["Gateway", "HTTPRoute"] = Field(description="Gateway or HTTPRoute.")


class RateLimitPolicySpec(StrictModel):
    """What the policy governs and its limits."""

    target_refs: list[RateLimitTargetReference] = Field(
        alias="targetRefs", min_length=1, max_length=16,
        description="Gateways and HTTPRoutes whose traffic is limited.")
    rate_limit: RateLimit = Field(alias="rateLimit", description="Backend, key and rules.")


class RateLimitPolicy(Resource):
    """Per-client request and token budgets for Gateways or HTTPRoutes."""

    api_version: Literal["inferlane.dev/v1alpha1"] = Field(
        alias="apiVersion", description="API group and version.")
    kind: Literal["RateLimitPolicy"] = Field(description="Resource kind.")
    spec: RateLimitPolicySpec = Field(description="Targets and limits.")
