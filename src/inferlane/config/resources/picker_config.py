"""The ``EndpointPickerConfig`` kind (inference.networking.x-k8s.io/v1alpha1): how a pool picks.

Upstream this is the endpoint picker's own configuration file; here it is one more document of
the config. Plugins are declared once (``plugins``: a type, an optional name, parameters) and
scheduling profiles reference them by name with a weight for scorers. An InferencePool uses a
config through the annotation ``inferlane.dev/endpoint-picker-config: <name>`` (same namespace;
it takes precedence over ``inferlane.dev/load-balancing``).

The model checks shapes only; names (unique, references defined), plugin types and their
parameters are checked in ``config.checks`` against the scheduling registry, all in one pass
so a misspelled type and the references it breaks are reported together.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from inferlane.config.resources.meta import (
    IGNORED,
    Duration,
    ObjectMeta,
    Problems,
    Resource,
    StrictModel,
    TypeDoc,
)

PICKER_CONFIG_GROUP = "inference.networking.x-k8s.io"
PluginName = Annotated[str, Field(min_length=1, max_length=253), TypeDoc("plugin name")]
ProfileName = Annotated[str, Field(min_length=1, max_length=253), TypeDoc("profile name")]
Fraction01 = Annotated[float, Field(ge=0, le=1), TypeDoc("number (0-1)")]


class PluginSpec(StrictModel):
    """One plugin instance: a filter, scorer or picker.

    Types: filters `saturation-filter`, `stale-filter`; scorers `queue-scorer`,
    `running-requests-size-scorer`, `kv-cache-utilization-scorer` (also `kv-cache-scorer`),
    `prefix-cache-scorer`, `lora-affinity-scorer`, `token-load-scorer`,
    `session-affinity-scorer`, `predicted-latency-scorer`, `prefill-load-scorer`;
    pickers `max-score-picker`, `random-picker`, `weighted-random-picker`,
    `least-request-picker`, `round-robin-picker`;
    `single-profile-handler` (accepted, no effect). Each type's parameters and formula are in
    its module docstring under `inferlane/scheduling/plugins/`.
    """

    type: PluginName = Field(description='Plugin type, e.g. "queue-scorer", '
                                         '"prefix-cache-scorer", "max-score-picker".')
    name: PluginName | None = Field(
        None, description="Name profiles refer to; defaults to the type (so a type used twice "
                          "needs distinct names).")
    parameters: dict[str, Any] | None = Field(
        None, description="Parameters of the plugin type; unknown ones are errors.")

    @property
    def ref(self) -> str:
        return self.name or self.type


class SchedulingPlugin(StrictModel):
    """A plugin as a profile uses it."""

    plugin_ref: PluginName = Field(alias="pluginRef",
                                   description="Name of an entry of `plugins`.")
    weight: int | None = Field(None, ge=0, description="Weight of a scorer's score in the "
                                                       "total (default 1); ignored otherwise.")


class SchedulingProfile(StrictModel):
    """Filters → weighted scorers → one picker, taken in the order listed."""

    name: ProfileName = Field(description="Profile name.")
    plugins: list[SchedulingPlugin] = Field(
        min_length=1, description="Plugins of the profile; without a picker, max-score-picker "
                                  "is used.")


class SaturationDetector(StrictModel):
    """Thresholds above which an endpoint counts as saturated.

    Used by flow control (a pool is saturated when no endpoint is below both thresholds) and
    as the defaults of every `saturation-filter` of the config.
    """

    queue_depth_threshold: int | None = Field(
        None, alias="queueDepthThreshold", ge=0,
        description="Waiting requests above which an endpoint is saturated (default 5).")
    kv_cache_util_threshold: Fraction01 | None = Field(
        None, alias="kvCacheUtilThreshold",
        description="KV-cache utilisation above which an endpoint is saturated (default 0.8).")
    metrics_staleness_threshold: Duration | None = Field(
        None, alias="metricsStalenessThreshold",
        description="Metrics older than this count as stale (default 2s).")


_QUANTITY_UNITS: dict[str, int] = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "Ki": 2**10,
                                   "Mi": 2**20, "Gi": 2**30}


def parse_byte_quantity(value: int | str) -> int:
    """A Kubernetes-style byte quantity (``1048576``, ``"64Mi"``, ``"1G"``) in bytes."""
    if isinstance(value, int):
        return value
    text = value.strip()
    number = text.rstrip("kMGi")
    unit = text[len(number):]
    if not number.isdigit() or unit not in _QUANTITY_UNITS:
        raise ValueError(f'"{value}" is not a byte quantity: use a whole number with an '
                         'optional unit k, M, G, Ki, Mi or Gi, e.g. "64Mi"')
    return int(number) * _QUANTITY_UNITS[unit]


def _quantity(value: int | str) -> int | str:
    if parse_byte_quantity(value) < 1:
        raise ValueError("must be at least 1 byte")
    return value


ByteQuantity = Annotated[int | str, AfterValidator(_quantity),
                         TypeDoc('bytes (integer or quantity such as "64Mi")')]
FairnessPolicy = Literal["round-robin", "fcfs"]
OrderingPolicy = Literal["fcfs", "edf"]


class DefaultBand(StrictModel):
    """Limits and policies for priorities without their own band."""

    max_requests: int | None = Field(None, alias="maxRequests", ge=1,
                                     description="Queued requests at most (default 1000).")
    max_bytes: ByteQuantity | None = Field(None, alias="maxBytes",
                                           description="Queued request bytes at most "
                                                       "(default 64Mi).")
    fairness_policy: FairnessPolicy | None = Field(
        None, alias="fairnessPolicy",
        description="`round-robin` between flows (fairness ids; default) or `fcfs` (one "
                    "queue, oldest first).")
    ordering_policy: OrderingPolicy | None = Field(
        None, alias="orderingPolicy",
        description="Inside a flow: `fcfs` (default) or `edf` (earliest deadline first).")


class PriorityBand(DefaultBand):
    """Queue limits and policies of one priority; unset fields take the `defaultBand` values."""

    priority: int = Field(ge=-1000, le=1000, description="The objective priority it holds.")


class FlowControl(StrictModel):
    """Gateway queues for the pools that use this config (inferlane's shape).

    When the pool is saturated (see `saturationDetector`), requests wait here instead of
    piling onto model servers: strict priority bands, fairness between flows
    (`x-gateway-inference-fairness-id`) inside a band, then FCFS or EDF inside a flow.
    """

    enabled: bool = Field(True, description="false: pass requests straight to the picker.")
    max_requests: int | None = Field(None, alias="maxRequests", ge=1,
                                     description="Queued requests in all bands (default 5000).")
    max_bytes: ByteQuantity | None = Field(None, alias="maxBytes",
                                           description="Queued bytes in all bands "
                                                       "(default 256Mi).")
    default_request_ttl: Duration | None = Field(
        None, alias="defaultRequestTTL",
        description="Longest wait in the queue before a 503 (default 30s).")
    release_queue_depth_threshold: int | None = Field(
        None, alias="releaseQueueDepthThreshold", ge=1, le=1000,
        description="inferlane: while requests wait in the gateway, one is released only to an "
                    "endpoint with a free batch slot (its batch limit learned from scrapes that "
                    "showed requests waiting) or, before that limit is known, with fewer "
                    "requests waiting than this (default 1). Overload then waits in the "
                    "gateway's queue (by priority, fair) instead of the servers' (first come, "
                    "first served). `saturationDetector.queueDepthThreshold` still decides "
                    "when requests start to queue.")
    default_band: DefaultBand | None = Field(None, alias="defaultBand",
                                             description="Band settings for other priorities.")
    priority_bands: list[PriorityBand] = Field(
        default_factory=list, alias="priorityBands", max_length=64,
        description="Bands with their own settings; priorities must be unique.")

    @model_validator(mode="after")
    def _check(self) -> FlowControl:
        problems = Problems()
        seen: set[int] = set()
        for index, band in enumerate(self.priority_bands):
            if band.priority in seen:
                problems.add(("priorityBands", index, "priority"),
                             f"priority {band.priority} has two bands: keep one")
            seen.add(band.priority)
        problems.raise_if_any()
        return self


class EndpointPickerConfig(Resource):
    """Plugins and scheduling profiles of the endpoint picker, for the pools that name it.

    Without `metadata` the config is named `default` (namespace `default`), so upstream
    files load unchanged. Only the first scheduling profile is run (profile handlers are not
    implemented; `single-profile-handler` is accepted and does nothing).
    """

    api_version: Literal["inference.networking.x-k8s.io/v1alpha1"] = Field(
        alias="apiVersion", description="API group and version.")
    kind: Literal["EndpointPickerConfig"] = Field(description="Resource kind.")
    metadata: ObjectMeta = Field(
        default_factory=lambda: ObjectMeta(name="default"),
        description="Name (pools refer to it) and namespace; optional.")
    feature_gates: list[str] | None = Field(
        None, alias="featureGates", description="Upstream experimental switches.",
        json_schema_extra=IGNORED)
    plugins: list[PluginSpec] = Field(min_length=1, description="Plugin instances.")
    scheduling_profiles: list[SchedulingProfile] = Field(
        alias="schedulingProfiles", min_length=1, description="Scheduling profiles.")
    saturation_detector: SaturationDetector | None = Field(
        None, alias="saturationDetector", description="Saturation thresholds.")
    flow_control: FlowControl | None = Field(
        None, alias="flowControl", description="Gateway queues when the pool is saturated "
                                               "(priority bands, fairness, limits).")
    data: dict[str, Any] | None = Field(None, description="Upstream data-layer sources.",
                                        json_schema_extra=IGNORED)
