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

from pydantic import Field

from inferlane.config.resources.meta import (
    IGNORED,
    NOT_IMPLEMENTED,
    Duration,
    ObjectMeta,
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

    Used as the defaults of every `saturation-filter` of the config (admission control by
    saturation comes with flow control, later).
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
    flow_control: dict[str, Any] | None = Field(
        None, alias="flowControl", description="Upstream flow control (priority bands, "
                                               "fairness, queue limits).",
        json_schema_extra=NOT_IMPLEMENTED)
    data: dict[str, Any] | None = Field(None, description="Upstream data-layer sources.",
                                        json_schema_extra=IGNORED)
