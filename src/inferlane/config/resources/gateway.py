"""The ``Gateway`` kind (gateway.networking.k8s.io): where inferlane listens.

Every upstream field is accepted so existing manifests load unchanged. Outside Kubernetes
only ``listeners`` matter: each HTTP listener is one bound port serving HTTPRoutes, each TCP or
UDP listener one bound port forwarding to a TCPRoute or UDPRoute (L4 load balancing). HTTPS and
TLS listeners load with a warning (not served yet); ``infrastructure``, ``allowedListeners``,
``tls`` and ``defaultScope`` are accepted and ignored. ``addresses``: the first IPv4
``IPAddress`` is the virtual IP of the eBPF fast path of TCP/UDP listeners, which also needs the
annotation ``inferlane.dev/ebpf-interface`` (the interface clients' packets arrive on).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, ClassVar, Final, Literal, get_args

from pydantic import BeforeValidator, Field, model_validator

from inferlane.config.resources.meta import (
    ANNOTATION_PREFIX,
    IGNORED,
    Group,
    Hostname,
    Kind,
    Namespace,
    ObjectName,
    PortNumber,
    Problems,
    Resource,
    SectionName,
    StrictModel,
    check_labels,
)

GATEWAY_GROUP = "gateway.networking.k8s.io"

ProtocolType = Literal["HTTP", "HTTPS", "TLS", "TCP", "UDP"]

EBPF_INTERFACE_ANNOTATION: Final = ANNOTATION_PREFIX + "ebpf-interface"
_IFACE_RE = re.compile(r"[^\s/]{1,15}")


def _upper(value: object) -> object:
    # Upstream: core protocol names are case-insensitive ("http" == "HTTP").
    if isinstance(value, str) and value.upper() in get_args(ProtocolType):
        return value.upper()
    return value


class LabelSelectorRequirement(StrictModel):
    """One set-based requirement of a label selector."""

    key: str = Field(description="Label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="How ``values`` relate to the label.")
    values: list[str] = Field(default_factory=list,
                              description="Values for In/NotIn; empty for Exists/DoesNotExist.")

    @model_validator(mode="after")
    def _check(self) -> LabelSelectorRequirement:
        problems = Problems()
        if self.operator in ("In", "NotIn") and not self.values:
            problems.add(("values",), f"must not be empty for operator {self.operator}")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            problems.add(("values",), f"must be empty for operator {self.operator}")
        problems.raise_if_any()
        return self


class LabelSelector(StrictModel):
    """A Kubernetes label selector (all requirements must hold)."""

    match_labels: dict[str, str] = Field(default_factory=dict, alias="matchLabels",
                                         description="Labels that must all be equal.")
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, alias="matchExpressions", description="Set-based requirements.")

    @model_validator(mode="after")
    def _check(self) -> LabelSelector:
        problems = Problems()
        check_labels(problems, ("matchLabels",), self.match_labels)
        problems.raise_if_any()
        return self

    def matches(self, labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for req in self.match_expressions:
            present = req.key in labels
            if req.operator == "Exists" and not present:
                return False
            if req.operator == "DoesNotExist" and present:
                return False
            if req.operator == "In" and labels.get(req.key) not in req.values:
                return False
            if req.operator == "NotIn" and present and labels[req.key] in req.values:
                return False
        return True


class RouteNamespaces(StrictModel):
    """Which namespaces may attach routes to a listener."""

    from_: Literal["All", "Selector", "Same"] = Field(
        "Same", alias="from",
        description="Same: the Gateway's namespace; All: any; Selector: namespaces matching "
                    "``selector`` (namespaces have no labels outside Kubernetes, so inferlane "
                    "treats Selector like All and warns).")
    selector: LabelSelector | None = Field(None, description="Used when ``from`` is Selector.")

    @model_validator(mode="after")
    def _check(self) -> RouteNamespaces:
        problems = Problems()
        if self.from_ == "Selector" and self.selector is None:
            problems.add(("selector",), "required when from is Selector")
        problems.raise_if_any()
        return self


class RouteGroupKind(StrictModel):
    """A route kind a listener accepts."""

    group: Group = Field(GATEWAY_GROUP, description="API group of the route kind.")
    kind: Kind = Field(description="Route kind, e.g. HTTPRoute.")


class AllowedRoutes(StrictModel):
    """Which routes may attach to a listener."""

    namespaces: RouteNamespaces = Field(default_factory=RouteNamespaces,
                                        description="Namespaces routes may come from.")
    kinds: list[RouteGroupKind] = Field(
        default_factory=list, max_length=8,
        description="Route kinds allowed; empty means the kinds matching the protocol "
                    "(HTTPRoute for HTTP and HTTPS, TCPRoute for TCP, UDPRoute for UDP).")


class SecretObjectReference(StrictModel):
    """A reference to a Secret holding a certificate and key."""

    group: Group = Field("", description="API group of the referent.")
    kind: Kind = Field("Secret", description="Kind of the referent.")
    name: ObjectName = Field(description="Name of the referent.")
    namespace: Namespace | None = Field(None, description="Namespace; defaults to the Gateway's.")


class ListenerTLSConfig(StrictModel):
    """TLS settings of an HTTPS or TLS listener."""

    mode: Literal["Terminate", "Passthrough"] = Field("Terminate", description="TLS mode.")
    certificate_refs: list[SecretObjectReference] = Field(
        default_factory=list, alias="certificateRefs", max_length=64,
        description="Certificates to serve.")
    options: dict[str, str] = Field(default_factory=dict, max_length=16,
                                    description="Implementation-specific TLS options.")
    frontend_validation: dict[str, Any] | None = Field(
        None, alias="frontendValidation",
        description="Client certificate validation (older experimental field).",
        json_schema_extra=IGNORED)

    @model_validator(mode="after")
    def _check(self) -> ListenerTLSConfig:
        problems = Problems()
        if self.mode == "Terminate" and not self.certificate_refs and not self.options:
            problems.add(("certificateRefs",),
                         "certificateRefs or options must be specified when mode is Terminate")
        problems.raise_if_any()
        return self


class Listener(StrictModel):
    """A logical endpoint where the Gateway accepts connections."""

    name: SectionName = Field(description="Unique within the Gateway; routes may pick it with "
                                          "``parentRefs[].sectionName``.")
    hostname: Hostname | None = Field(
        None, description="Only requests for this host (exact or ``*.`` suffix) are accepted; "
                          "unset means any host.")
    port: PortNumber = Field(description="Port to listen on; unique among the listeners "
                                         "of one transport (a UDP listener may share a TCP, "
                                         "HTTP, HTTPS or TLS listener's port).")
    protocol: Annotated[ProtocolType, BeforeValidator(_upper)] = Field(
        description="HTTP serves HTTPRoutes, TCP and UDP forward to a TCPRoute or UDPRoute; "
                    "HTTPS and TLS are not served yet (they load with a warning).")
    tls: ListenerTLSConfig | None = Field(
        None, description="Required for HTTPS and TLS, forbidden for HTTP, TCP and UDP.")
    allowed_routes: AllowedRoutes = Field(default_factory=AllowedRoutes, alias="allowedRoutes",
                                          description="Which routes may attach.")

    @model_validator(mode="after")
    def _check(self) -> Listener:
        problems = Problems()
        if self.protocol in ("HTTP", "TCP", "UDP") and self.tls is not None:
            problems.add(("tls",), f"must not be set for protocol {self.protocol}")
        if self.protocol in ("HTTPS", "TLS") and self.tls is None:
            problems.add(("tls",), f"is required for protocol {self.protocol}")
        if self.protocol == "HTTPS" and self.tls is not None and self.tls.mode != "Terminate":
            problems.add(("tls", "mode"), "must be Terminate for protocol HTTPS")
        if self.protocol in ("TCP", "UDP") and self.hostname is not None:
            problems.add(("hostname",), f"must not be set for protocol {self.protocol}")
        problems.raise_if_any()
        return self

    @property
    def transport(self) -> Literal["tcp", "udp"]:
        """The socket type the listener binds: ``udp`` for UDP, ``tcp`` for every other."""
        return "udp" if self.protocol == "UDP" else "tcp"


class GatewaySpecAddress(StrictModel):
    """An address requested for the Gateway."""

    type: str = Field("IPAddress", description="IPAddress, Hostname or NamedAddress.")
    value: str | None = Field(None, min_length=1, max_length=253, description="The address.")


class LocalParametersReference(StrictModel):
    """A reference to implementation-specific parameters."""

    group: Group = Field(description="API group of the referent.")
    kind: Kind = Field(description="Kind of the referent.")
    name: str = Field(min_length=1, max_length=253, description="Name of the referent.")


class GatewayInfrastructure(StrictModel):
    """Labels, annotations and parameters for the resources a controller would create."""

    labels: dict[str, str] = Field(default_factory=dict, max_length=8, description="Labels.")
    annotations: dict[str, str] = Field(default_factory=dict, max_length=8,
                                        description="Annotations.")
    parameters_ref: LocalParametersReference | None = Field(None, alias="parametersRef",
                                                            description="Parameters.")


class GatewaySpec(StrictModel):
    """What the Gateway listens on."""

    gateway_class_name: ObjectName = Field(
        alias="gatewayClassName",
        description="Required upstream; any name is accepted (inferlane is the only class).")
    listeners: list[Listener] = Field(min_length=1, max_length=64,
                                      description="Listeners; names and ports must be unique.")
    addresses: list[GatewaySpecAddress] = Field(
        default_factory=list, max_length=16,
        description="Requested addresses; the first IPv4 IPAddress is the virtual IP of the "
                    "eBPF fast path of TCP/UDP listeners (with the annotation "
                    "inferlane.dev/ebpf-interface).")
    infrastructure: GatewayInfrastructure | None = Field(
        None, description="Infrastructure attributes.", json_schema_extra=IGNORED)
    allowed_listeners: dict[str, Any] | None = Field(
        None, alias="allowedListeners", description="Which ListenerSets may attach.",
        json_schema_extra=IGNORED)
    tls: dict[str, Any] | None = Field(None, description="Gateway-wide frontend/backend TLS.",
                                       json_schema_extra=IGNORED)
    default_scope: str | None = Field(None, alias="defaultScope",
                                      description="Default-gateway scope (experimental).",
                                      json_schema_extra=IGNORED)

    @model_validator(mode="after")
    def _check(self) -> GatewaySpec:
        problems = Problems()
        names: dict[str, int] = {}
        ports: dict[tuple[str, int], str] = {}
        for i, listener in enumerate(self.listeners):
            if listener.name in names:
                problems.add(("listeners", i, "name"), f'duplicate listener name "{listener.name}"'
                                                       f" (also listeners[{names[listener.name]}])")
            names.setdefault(listener.name, i)
            # One socket per transport and port: hostname-based sharing is not supported.
            socket = (listener.transport, listener.port)
            if socket in ports:
                problems.add(("listeners", i, "port"), f"port {listener.port} is already used "
                                                       f'by listener "{ports[socket]}"')
            ports.setdefault(socket, listener.name)
        problems.raise_if_any()
        return self


class Gateway(Resource):
    """A set of listeners (ports) that routes attach to."""

    api_version: Literal["gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1"] = (
        Field(alias="apiVersion", description="API group and version."))
    kind: Literal["Gateway"] = Field(description="Resource kind.")
    spec: GatewaySpec = Field(description="Listeners and addresses.")

    known_annotations: ClassVar[frozenset[str]] = frozenset({EBPF_INTERFACE_ANNOTATION})

    @model_validator(mode="after")
    def _check_ebpf(self) -> Gateway:
        problems = Problems()
        iface = self.metadata.annotations.get(EBPF_INTERFACE_ANNOTATION)
        if iface is not None and not _IFACE_RE.fullmatch(iface):
            problems.add(("metadata", "annotations", EBPF_INTERFACE_ANNOTATION),
                         f'"{iface}" is not a network interface name (1-15 characters, no '
                         "spaces or slashes)")
        problems.raise_if_any()
        return self

    def listener(self, name: str) -> Listener | None:
        return next((item for item in self.spec.listeners if item.name == name), None)

    @property
    def vip(self) -> str | None:
        """The first IPv4 IPAddress of ``spec.addresses``: the eBPF fast path's virtual IP."""
        for address in self.spec.addresses:
            if address.type == "IPAddress" and address.value is not None:
                try:
                    return str(ipaddress.IPv4Address(address.value))
                except ValueError:
                    continue
        return None

    @property
    def ebpf_interface(self) -> str | None:
        return self.metadata.annotations.get(EBPF_INTERFACE_ANNOTATION)
