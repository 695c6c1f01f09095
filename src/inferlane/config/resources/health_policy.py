"""The ``HealthCheckPolicy`` kind (inferlane.dev/v1alpha1, our extension): how a pool's
endpoints are judged healthy.

Attached to InferencePools, and to the BackendSets of L4 routes, by ``targetRefs`` (Gateway API
policy attachment, shaped like Envoy Gateway's BackendTrafficPolicy ``healthCheck``):

- *active* health: ``monitorRef`` names a Monitor or a MonitorGroup that probes every endpoint
  from each of ``regions`` (``gateway``: the gateway process itself; other names are probe
  agents started with ``--region``); a region silent for ``regionTimeout`` drops out of the
  vote;
- *passive* health: Envoy outlier detection on real requests (``passive``);
- pool thresholds: ``minHealthy`` (below it the pool is critical), ``panicThresholdPercent``
  (below it every endpoint is used again) and ``slowStart`` (a recovered endpoint's share ramps
  up over this time).

A pool without a policy gets passive health with Envoy's defaults and no monitors. Phase two
(``config.health_build``) turns a policy into one ``health.PoolHealthSettings`` per pool (and
one per BackendSet: the health tracker treats a set like a pool).
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, Field, model_validator

from inferlane.config.resources.inference import INFERENCE_GROUP
from inferlane.config.resources.meta import (
    Duration,
    Group,
    ObjectName,
    Problems,
    Resource,
    StrictModel,
    TypeDoc,
    parse_duration,
)
from inferlane.config.resources.monitor import positive_seconds
from inferlane.health.settings import GATEWAY_REGION

# Kinds a HealthCheckPolicy may target, with their API group. Adding one is a line here, one
# in ``HealthTargetKind`` and its lookup in ``config.health_checks``.
HealthTargetKind = Literal["InferencePool", "BackendSet"]
HEALTH_TARGET_GROUPS: Final[dict[str, str]] = {"InferencePool": INFERENCE_GROUP,
                                               "BackendSet": "inferlane.dev"}

_REGION_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _region(value: str) -> str:
    if len(value) > 63 or not _REGION_RE.fullmatch(value):
        raise ValueError(f'"{value}" is not a valid region name: use lowercase letters, digits '
                         'and "-"; start and end with a letter or digit (at most 63 '
                         "characters)")
    return value


RegionName = Annotated[str, AfterValidator(_region), TypeDoc("region name (RFC 1123 label)")]


class HealthPolicyTargetReference(StrictModel):
    """A pool or BackendSet in the policy's namespace."""

    group: Group = Field(INFERENCE_GROUP, description="API group of the target; defaults to "
                                                      "the kind's (inferlane.dev for a "
                                                      "BackendSet).")
    kind: HealthTargetKind = Field(description="InferencePool, or BackendSet (L4).")
    name: ObjectName = Field(description="Name of the target.")

    @model_validator(mode="before")
    @classmethod
    def _default_group(cls, data: object) -> object:
        # The default group depends on the kind, which a field default cannot express.
        if isinstance(data, dict) and "group" not in data:
            kind = data.get("kind")
            if isinstance(kind, str) and kind in HEALTH_TARGET_GROUPS:
                return {**data, "group": HEALTH_TARGET_GROUPS[kind]}
        return data

    @model_validator(mode="after")
    def _check(self) -> HealthPolicyTargetReference:
        problems = Problems()
        group = HEALTH_TARGET_GROUPS[self.kind]
        if self.group != group:
            problems.add(("group",), f'must be "{group}" for kind {self.kind} (got '
                                     f'"{self.group}")')
        problems.raise_if_any()
        return self


class HealthMonitorReference(StrictModel):
    """A Monitor or MonitorGroup in the policy's namespace."""

    group: Literal["inferlane.dev"] = Field("inferlane.dev", description="API group.")
    kind: Literal["Monitor", "MonitorGroup"] = Field("Monitor", description="Kind of the "
                                                                            "referent.")
    name: ObjectName = Field(description="Name of the referent.")


class PassiveHealth(StrictModel):
    """Outlier detection on real requests (Envoy's semantics and defaults): an endpoint failing
    ``consecutiveErrors`` requests in a row (5xx, connect failure, timeout) is ejected for
    ``baseEjectionTime`` x times ejected, capped at ``maxEjectionTime``."""

    enabled: bool = Field(True, description="false: requests never eject an endpoint.")
    consecutive_errors: int = Field(5, alias="consecutiveErrors", ge=1,
                                    description="Failed requests in a row that eject.")
    base_ejection_time: Duration = Field("30s", alias="baseEjectionTime",
                                         description="First ejection; grows with each one.")
    max_ejection_time: Duration = Field("300s", alias="maxEjectionTime",
                                        description="Longest ejection; at least "
                                                    "baseEjectionTime.")
    max_ejection_percent: int = Field(
        10, alias="maxEjectionPercent", ge=0, le=100,
        description="Most endpoints ejected at once, in percent (one may always be).")

    @model_validator(mode="after")
    def _check(self) -> PassiveHealth:
        problems = Problems()
        base = positive_seconds(problems, ("baseEjectionTime",), self.base_ejection_time)
        if base and parse_duration(self.max_ejection_time) < base:
            problems.add(("maxEjectionTime",), "must not be shorter than baseEjectionTime "
                                               f"({self.base_ejection_time})")
        problems.raise_if_any()
        return self


class HealthCheckPolicySpec(StrictModel):
    """Targets, monitors, vantage points and pool thresholds."""

    target_refs: list[HealthPolicyTargetReference] = Field(
        alias="targetRefs", min_length=1, max_length=16,
        description="InferencePools and BackendSets this policy applies to (one policy per "
                    "pool or set).")
    monitor_ref: HealthMonitorReference | None = Field(
        None, alias="monitorRef",
        description="The Monitor or MonitorGroup that probes the endpoints; unset: passive "
                    "health only.")
    regions: list[RegionName] = Field(
        default_factory=lambda: [GATEWAY_REGION], min_length=1, max_length=8,
        description=f'Vantage points that probe, each once; "{GATEWAY_REGION}" is the gateway '
                    "process itself, other names are probe agents (`--region`). An endpoint is "
                    "healthy by majority of the regions.")
    region_timeout: Duration | None = Field(
        None, alias="regionTimeout",
        description="A region silent this long drops out of the vote; at least the longest "
                    "monitor interval. Default: 3 x the longest interval of the enabled "
                    "monitors (30s without any).")
    min_healthy: int = Field(1, alias="minHealthy", ge=0,
                             description="Fewer healthy endpoints than this: the pool is "
                                         "critical.")
    panic_threshold_percent: int = Field(
        50, alias="panicThresholdPercent", ge=0, le=100,
        description="Fewer available endpoints than this percent: every endpoint is used "
                    "again, ejected ones too (0: never).")
    slow_start: Duration = Field("30s", alias="slowStart",
                                 description='A recovered endpoint\'s share ramps up over this '
                                             'time; "0s" disables.')
    passive: PassiveHealth = Field(default_factory=PassiveHealth,
                                   description="Outlier detection.")

    @model_validator(mode="after")
    def _check(self) -> HealthCheckPolicySpec:
        problems = Problems()
        targets: dict[tuple[str, str], int] = {}
        for i, ref in enumerate(self.target_refs):
            first = targets.setdefault((ref.kind, ref.name), i)
            if first != i:
                problems.add(("targetRefs", i), f"{ref.kind} {ref.name} is already "
                                                f"targetRefs[{first}]")
        regions: dict[str, int] = {}
        for i, region in enumerate(self.regions):
            first = regions.setdefault(region, i)
            if first != i:
                problems.add(("regions", i), f'region "{region}" is already regions[{first}]')
        positive_seconds(problems, ("regionTimeout",), self.region_timeout)
        problems.raise_if_any()
        return self


class HealthCheckPolicy(Resource):
    """Active (monitors, regions) and passive (outlier detection) health of pools and sets.

    Targets are InferencePools, or BackendSets (the endpoints of TCPRoutes and UDPRoutes: an
    unhealthy endpoint gets no new flows, existing ones stay)."""

    api_version: Literal["inferlane.dev/v1alpha1"] = Field(
        alias="apiVersion", description="API group and version.")
    kind: Literal["HealthCheckPolicy"] = Field(description="Resource kind.")
    spec: HealthCheckPolicySpec = Field(description="Targets, monitors and thresholds.")
