"""Gateway API Inference Extension kinds: ``InferencePool`` and ``InferenceModelRewrite``.

An InferencePool is a set of model servers (selected by labels) that inferlane balances
requests over; HTTPRoutes send traffic to pools. Upstream a pool names an external Endpoint
Picker (``endpointPickerRef``); inferlane *is* the picker, so the field is optional and
ignored. Our extensions: annotations ``inferlane.dev/load-balancing`` (a built-in scheduling
profile) and ``inferlane.dev/endpoint-picker-config`` (an EndpointPickerConfig by name).

An InferenceModelRewrite renames the requested model inside one pool, with weighted targets
(e.g. a 90/10 canary of a LoRA adapter).
"""

from __future__ import annotations

from typing import ClassVar, Final, Literal, cast, get_args

from pydantic import Field, model_validator

from inferlane.config.resources.meta import (
    ANNOTATION_PREFIX,
    IGNORED,
    Group,
    Kind,
    ObjectName,
    PortNumber,
    Problems,
    Resource,
    StrictModel,
    check_labels,
)

INFERENCE_GROUP = "inference.networking.k8s.io"

LOAD_BALANCING_ANNOTATION: Final = ANNOTATION_PREFIX + "load-balancing"
PICKER_CONFIG_ANNOTATION: Final = ANNOTATION_PREFIX + "endpoint-picker-config"
DEFAULT_OBJECTIVE_ANNOTATION: Final = ANNOTATION_PREFIX + "default-objective"
FLOW_CONTROL_ANNOTATION: Final = ANNOTATION_PREFIX + "flow-control"
CONTEXT_WINDOW_ANNOTATION: Final = ANNOTATION_PREFIX + "context-window"
FlowControlMode = Literal["enabled", "disabled"]
# Keep in step with scheduling.registry.BUILTIN_PROFILES (a unit test checks).
LoadBalancing = Literal["round-robin", "random", "least-request", "default", "predicted-latency"]
DEFAULT_LOAD_BALANCING: Final[LoadBalancing] = "default"


class InferencePoolSelector(StrictModel):
    """Labels a ModelServer must all have to belong to the pool."""

    match_labels: dict[str, str] = Field(
        alias="matchLabels", min_length=1, max_length=64,
        description="Label key/values; only ModelServers in the pool's namespace are matched.")

    @model_validator(mode="after")
    def _check(self) -> InferencePoolSelector:
        problems = Problems()
        check_labels(problems, ("matchLabels",), self.match_labels)
        problems.raise_if_any()
        return self

    def matches(self, labels: dict[str, str]) -> bool:
        return all(labels.get(key) == value for key, value in self.match_labels.items())


class Port(StrictModel):
    """A port number."""

    number: PortNumber = Field(description="Port number.")


class EndpointPickerRef(StrictModel):
    """Upstream: the external Endpoint Picker service of the pool."""

    group: Group = Field("", description="API group of the picker.")
    kind: Kind = Field("Service", description="Kind of the picker.")
    name: ObjectName = Field(description="Name of the picker.")
    port: Port | None = Field(None, description="Port of the picker.")
    failure_mode: Literal["FailOpen", "FailClose"] = Field(
        "FailClose", alias="failureMode", description="What to do when the picker fails.")


class InferencePoolSpec(StrictModel):
    """Which model servers form the pool and how to reach them."""

    selector: InferencePoolSelector = Field(description="Selects ModelServers by label.")
    target_ports: list[Port] = Field(
        alias="targetPorts", min_length=1, max_length=8,
        description="Ports of the selected servers; used for servers whose address has no "
                    "port (a server whose address has a port is reached on that port only).")
    app_protocol: Literal["http", "kubernetes.io/h2c"] = Field(
        "http", alias="appProtocol",
        description="Protocol to the servers; only http (HTTP/1.1) is served in this version.")
    endpoint_picker_ref: EndpointPickerRef | None = Field(
        None, alias="endpointPickerRef",
        description="Required upstream; optional here because inferlane picks endpoints "
                    "itself outside Kubernetes.", json_schema_extra=IGNORED)

    @model_validator(mode="after")
    def _check(self) -> InferencePoolSpec:
        problems = Problems()
        numbers = [port.number for port in self.target_ports]
        for i, number in enumerate(numbers):
            if number in numbers[:i]:
                problems.add(("targetPorts", i, "number"), f"duplicate port {number}")
        problems.raise_if_any()
        return self


class InferencePool(Resource):
    """A pool of model servers that routes send traffic to.

    Annotations (inferlane extensions): ``inferlane.dev/load-balancing`` picks a built-in
    scheduling profile: ``default`` (the default; inference-aware: saturation filter; queue,
    KV-cache, prefix-cache and LoRA-affinity scorers), ``round-robin``, ``random``,
    ``least-request`` (power of two choices) or ``predicted-latency`` (lowest predicted time to
    first token, plus prefix-cache, KV-cache and LoRA-affinity scorers).
    ``inferlane.dev/endpoint-picker-config: <name>`` names an EndpointPickerConfig in the same
    namespace instead, and takes precedence. ``inferlane.dev/default-objective: <name>`` names
    the InferenceObjective of requests that send none. ``inferlane.dev/flow-control:
    disabled`` turns the gateway queues off for the pool (default ``enabled`` for pools whose
    load balancing reads server metrics; a picker config's ``flowControl.enabled`` also does).
    """

    api_version: Literal["inference.networking.k8s.io/v1"] = Field(
        alias="apiVersion", description="API group and version.")
    kind: Literal["InferencePool"] = Field(description="Resource kind.")
    spec: InferencePoolSpec = Field(description="Selector and ports.")

    known_annotations: ClassVar[frozenset[str]] = frozenset({
        LOAD_BALANCING_ANNOTATION, PICKER_CONFIG_ANNOTATION, DEFAULT_OBJECTIVE_ANNOTATION,
        FLOW_CONTROL_ANNOTATION, CONTEXT_WINDOW_ANNOTATION})

    @model_validator(mode="after")
    def _check_annotations(self) -> InferencePool:
        problems = Problems()
        value = self.metadata.annotations.get(LOAD_BALANCING_ANNOTATION)
        allowed = get_args(LoadBalancing)
        if value is not None and value not in allowed:
            problems.add(("metadata", "annotations", LOAD_BALANCING_ANNOTATION),
                         f'"{value}" is not a load-balancing mode: use one of '
                         + ", ".join(f'"{mode}"' for mode in allowed))
        flow = self.metadata.annotations.get(FLOW_CONTROL_ANNOTATION)
        if flow is not None and flow not in get_args(FlowControlMode):
            problems.add(("metadata", "annotations", FLOW_CONTROL_ANNOTATION),
                         f'"{flow}" is not a flow-control mode: use "enabled" or "disabled"')
        window = self.metadata.annotations.get(CONTEXT_WINDOW_ANNOTATION)
        if window is not None and not (window.isdigit() and int(window) > 0):
            problems.add(("metadata", "annotations", CONTEXT_WINDOW_ANNOTATION),
                         f'"{window}" is not a token count: use a positive integer such as '
                         '"32768" (the servers\' max model length)')
        problems.raise_if_any()
        return self

    @property
    def default_objective(self) -> str | None:
        return self.metadata.annotations.get(DEFAULT_OBJECTIVE_ANNOTATION) or None

    @property
    def context_window(self) -> int | None:
        """Tokens the pool's model accepts (prompt + max_tokens), for the fallback pre-check."""
        value = self.metadata.annotations.get(CONTEXT_WINDOW_ANNOTATION)
        return int(value) if value else None

    @property
    def flow_control_disabled(self) -> bool:
        return self.metadata.annotations.get(FLOW_CONTROL_ANNOTATION) == "disabled"

    @property
    def load_balancing(self) -> LoadBalancing:
        value = self.metadata.annotations.get(LOAD_BALANCING_ANNOTATION, DEFAULT_LOAD_BALANCING)
        for mode in get_args(LoadBalancing):
            if value == mode:
                return cast(LoadBalancing, mode)
        return DEFAULT_LOAD_BALANCING

    @property
    def endpoint_picker_config(self) -> str | None:
        """Name of the EndpointPickerConfig (same namespace) the pool uses, if any."""
        return self.metadata.annotations.get(PICKER_CONFIG_ANNOTATION) or None


class PoolObjectReference(StrictModel):
    """A reference to an InferencePool in the same namespace."""

    group: Group = Field(INFERENCE_GROUP, description="API group of the pool.")
    kind: Kind = Field("InferencePool", description="Kind of the pool.")
    name: ObjectName = Field(description="Name of the pool.")


class ModelMatch(StrictModel):
    """How the requested model name is compared."""

    type: Literal["Exact"] = Field("Exact", description="Only Exact is defined upstream.")
    value: str = Field(min_length=1, description="Model name as sent by the client.")


class ModelRewriteMatch(StrictModel):
    """One condition of a rewrite rule."""

    model: ModelMatch = Field(description="Requested model condition.")


class TargetModel(StrictModel):
    """A model name to send instead, with a weight."""

    model_rewrite: str = Field(alias="modelRewrite", min_length=1,
                               description="Model name sent to the server.")
    weight: int = Field(1, ge=0, description="Share relative to the rule's other targets.")


class ModelRewriteRule(StrictModel):
    """Requests matching any of ``matches`` get one of ``targets`` by weight."""

    matches: list[ModelRewriteMatch] = Field(
        default_factory=list, description="Empty means every model not matched exactly by "
                                          "another rule (exact matches take precedence).")
    targets: list[TargetModel] = Field(min_length=1, description="Weighted targets.")

    @model_validator(mode="after")
    def _check(self) -> ModelRewriteRule:
        problems = Problems()
        if not any(target.weight > 0 for target in self.targets):
            problems.add(("targets",), "at least one target needs a weight greater than 0")
        problems.raise_if_any()
        return self


class InferenceModelRewriteSpec(StrictModel):
    """The pool and its rewrite rules."""

    pool_ref: PoolObjectReference = Field(alias="poolRef", description="Pool the rules apply "
                                                                       "to.")
    rules: list[ModelRewriteRule] = Field(min_length=1, description="Rewrite rules.")


class InferenceModelRewrite(Resource):
    """Weighted renaming of the requested model within one pool (canaries, aliases).

    Precedence: an exact match beats a rule without matches; among equals the resource
    defined first in the config wins (upstream: the oldest).
    """

    api_version: Literal["inference.networking.x-k8s.io/v1alpha2"] = Field(
        alias="apiVersion", description="API group and version.")
    kind: Literal["InferenceModelRewrite"] = Field(description="Resource kind.")
    spec: InferenceModelRewriteSpec = Field(description="Pool and rules.")
