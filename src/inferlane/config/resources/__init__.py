"""Typed models of every config kind, and the registry that maps ``(apiVersion, kind)`` to them.

Upstream kinds (Gateway API and its Inference Extension) keep their upstream field names as
aliases; ``ModelServer`` is our ``inferlane.dev/v1alpha1`` extension. Adding a kind is one
model module plus one line in ``RESOURCE_KINDS``. ``EndpointPickerConfig`` (upstream's endpoint
picker configuration) configures the scheduling plugins of the pools that name it.
"""

from __future__ import annotations

from typing import Final

from inferlane.config.resources.filters import (
    FILTER_FIELDS,
    NOT_IMPLEMENTED_FILTERS,
    BackendObjectReference,
    Fraction,
    HTTPCORSFilter,
    HTTPExternalAuthFilter,
    HTTPHeader,
    HTTPHeaderFilter,
    HTTPPathModifier,
    HTTPRequestMirrorFilter,
    HTTPRequestRedirectFilter,
    HTTPRouteFilter,
    HTTPURLRewriteFilter,
)
from inferlane.config.resources.gateway import (
    GATEWAY_GROUP,
    AllowedRoutes,
    Gateway,
    GatewaySpec,
    LabelSelector,
    Listener,
    ListenerTLSConfig,
    RouteGroupKind,
    RouteNamespaces,
)
from inferlane.config.resources.httproute import (
    HTTPBackendRef,
    HTTPHeaderMatch,
    HTTPPathMatch,
    HTTPQueryParamMatch,
    HTTPRoute,
    HTTPRouteMatch,
    HTTPRouteRetry,
    HTTPRouteRule,
    HTTPRouteSpec,
    HTTPRouteTimeouts,
    ParentReference,
    SessionPersistence,
)
from inferlane.config.resources.inference import (
    DEFAULT_LOAD_BALANCING,
    INFERENCE_GROUP,
    LOAD_BALANCING_ANNOTATION,
    PICKER_CONFIG_ANNOTATION,
    EndpointPickerRef,
    InferenceModelRewrite,
    InferenceModelRewriteSpec,
    InferencePool,
    InferencePoolSelector,
    InferencePoolSpec,
    LoadBalancing,
    ModelMatch,
    ModelRewriteMatch,
    ModelRewriteRule,
    PoolObjectReference,
    Port,
    TargetModel,
)
from inferlane.config.resources.meta import (
    ANNOTATION_PREFIX,
    FieldProblems,
    LocalObjectReference,
    ObjectMeta,
    Resource,
    StrictModel,
    parse_duration,
)
from inferlane.config.resources.model_server import ModelServer, ModelServerSpec, parse_address
from inferlane.config.resources.objective import (
    CRITICALITY_PRIORITY,
    InferenceModel,
    InferenceObjective,
)
from inferlane.config.resources.picker_config import (
    EndpointPickerConfig,
    PluginSpec,
    SaturationDetector,
    SchedulingPlugin,
    SchedulingProfile,
)
from inferlane.config.resources.provider import Provider, ProviderSpec
from inferlane.config.resources.rate_limit import RateLimitPolicy, RateLimitRule
from inferlane.config.resources.traffic_policy import TrafficPolicy, TrafficPolicySpec

INFERENCE_X_GROUP: Final = "inference.networking.x-k8s.io"
INFERLANE_GROUP: Final = "inferlane.dev"

# The one place that says which kinds a config may contain.
RESOURCE_KINDS: Final[dict[tuple[str, str], type[Resource]]] = {
    (f"{GATEWAY_GROUP}/v1", "Gateway"): Gateway,
    (f"{GATEWAY_GROUP}/v1beta1", "Gateway"): Gateway,
    (f"{GATEWAY_GROUP}/v1", "HTTPRoute"): HTTPRoute,
    (f"{GATEWAY_GROUP}/v1beta1", "HTTPRoute"): HTTPRoute,
    (f"{INFERENCE_GROUP}/v1", "InferencePool"): InferencePool,
    (f"{INFERENCE_X_GROUP}/v1alpha2", "InferenceModelRewrite"): InferenceModelRewrite,
    (f"{INFERENCE_X_GROUP}/v1alpha1", "EndpointPickerConfig"): EndpointPickerConfig,
    (f"{INFERLANE_GROUP}/v1alpha1", "ModelServer"): ModelServer,
    (f"{INFERENCE_X_GROUP}/v1alpha2", "InferenceObjective"): InferenceObjective,
    (f"{INFERENCE_X_GROUP}/v1alpha2", "InferenceModel"): InferenceModel,
    (f"{INFERLANE_GROUP}/v1alpha1", "RateLimitPolicy"): RateLimitPolicy,
    (f"{INFERLANE_GROUP}/v1alpha1", "Provider"): Provider,
    (f"{INFERLANE_GROUP}/v1alpha1", "TrafficPolicy"): TrafficPolicy,
}

__all__ = [
    "ANNOTATION_PREFIX",
    "CRITICALITY_PRIORITY",
    "DEFAULT_LOAD_BALANCING",
    "FILTER_FIELDS",
    "GATEWAY_GROUP",
    "INFERENCE_GROUP",
    "INFERENCE_X_GROUP",
    "INFERLANE_GROUP",
    "LOAD_BALANCING_ANNOTATION",
    "NOT_IMPLEMENTED_FILTERS",
    "PICKER_CONFIG_ANNOTATION",
    "RESOURCE_KINDS",
    "AllowedRoutes",
    "BackendObjectReference",
    "EndpointPickerConfig",
    "EndpointPickerRef",
    "FieldProblems",
    "Fraction",
    "Gateway",
    "GatewaySpec",
    "HTTPBackendRef",
    "HTTPCORSFilter",
    "HTTPExternalAuthFilter",
    "HTTPHeader",
    "HTTPHeaderFilter",
    "HTTPHeaderMatch",
    "HTTPPathMatch",
    "HTTPPathModifier",
    "HTTPQueryParamMatch",
    "HTTPRequestMirrorFilter",
    "HTTPRequestRedirectFilter",
    "HTTPRoute",
    "HTTPRouteFilter",
    "HTTPRouteMatch",
    "HTTPRouteRetry",
    "HTTPRouteRule",
    "HTTPRouteSpec",
    "HTTPRouteTimeouts",
    "HTTPURLRewriteFilter",
    "InferenceModel",
    "InferenceModelRewrite",
    "InferenceModelRewriteSpec",
    "InferenceObjective",
    "InferencePool",
    "InferencePoolSelector",
    "InferencePoolSpec",
    "LabelSelector",
    "Listener",
    "ListenerTLSConfig",
    "LoadBalancing",
    "LocalObjectReference",
    "ModelMatch",
    "ModelRewriteMatch",
    "ModelRewriteRule",
    "ModelServer",
    "ModelServerSpec",
    "ObjectMeta",
    "ParentReference",
    "PluginSpec",
    "PoolObjectReference",
    "Port",
    "Provider",
    "ProviderSpec",
    "RateLimitPolicy",
    "RateLimitRule",
    "Resource",
    "RouteGroupKind",
    "RouteNamespaces",
    "SaturationDetector",
    "SchedulingPlugin",
    "SchedulingProfile",
    "SessionPersistence",
    "StrictModel",
    "TargetModel",
    "TrafficPolicy",
    "TrafficPolicySpec",
    "parse_address",
    "parse_duration",
]
