"""The ``TCPRoute`` and ``UDPRoute`` kinds (gateway.networking.k8s.io): L4 load balancing.

A route attaches to TCP (or UDP) Gateway listeners with ``parentRefs`` and forwards every
connection (or UDP flow) arriving there to the endpoints of the BackendSets its
``backendRefs`` name, split by weight. TCP and UDP carry nothing to match on, so a route has
one rule (upstream TCPRoute v1 allows exactly one; v1alpha2 allowed up to 16 with no way to
choose between them) and a listener forwards to one route (checked across resources in
``config.l4_checks``). How new flows are placed, and what the backends see, are our extensions,
as ``inferlane.dev/`` annotations on the route (see ``L4_ANNOTATIONS``); values are checked
here, so phase two (``config.l4_build``) reads them through the properties without checking.
"""

from __future__ import annotations

from typing import ClassVar, Final, Literal, cast, get_args

from pydantic import Field, model_validator

from inferlane.config.resources.filters import BackendObjectReference
from inferlane.config.resources.httproute import ParentReference
from inferlane.config.resources.meta import (
    ANNOTATION_PREFIX,
    IGNORED,
    Group,
    Kind,
    PortNumber,
    Problems,
    Resource,
    SectionName,
    StrictModel,
    parse_duration,
)
from inferlane.l4.config import (
    DEFAULT_ALGORITHM,
    DEFAULT_DATAPLANE,
    DEFAULT_UDP_IDLE_TIMEOUT,
    MAX_MAGLEV_TABLE_SIZE,
    Dataplane,
    L4Algorithm,
    ProxyProtocolVersion,
)
from inferlane.l4.flows import Protocol
from inferlane.l4.maglev import DEFAULT_TABLE_SIZE

ALGORITHM_ANNOTATION: Final = ANNOTATION_PREFIX + "l4-algorithm"
TABLE_SIZE_ANNOTATION: Final = ANNOTATION_PREFIX + "maglev-table-size"
PROXY_PROTOCOL_ANNOTATION: Final = ANNOTATION_PREFIX + "proxy-protocol"
UDP_IDLE_TIMEOUT_ANNOTATION: Final = ANNOTATION_PREFIX + "udp-idle-timeout"
DATAPLANE_ANNOTATION: Final = ANNOTATION_PREFIX + "dataplane"
L4_ANNOTATIONS: Final = frozenset({ALGORITHM_ANNOTATION, TABLE_SIZE_ANNOTATION,
                                   PROXY_PROTOCOL_ANNOTATION, UDP_IDLE_TIMEOUT_ANNOTATION,
                                   DATAPLANE_ANNOTATION})


def is_prime(number: int) -> bool:
    if number < 2:
        return False
    divisor = 2
    while divisor * divisor <= number:
        if number % divisor == 0:
            return False
        divisor += 1
    return True


def next_prime(number: int) -> int:
    """The smallest prime >= ``number``."""
    while not is_prime(number):
        number += 1
    return number


class L4BackendRef(BackendObjectReference):
    """A weighted BackendSet (or a Service, which resolves to the BackendSet of its name)."""

    group: Group = Field("", description='API group: inferlane.dev for a BackendSet, "" for a '
                                         "Service.")
    kind: Kind = Field("Service", description="BackendSet, or Service: resolves to the "
                                              "BackendSet of the same name and namespace.")
    port: PortNumber | None = Field(
        None, description="Not used: a BackendSet's endpoints carry their ports (a warning when it "
                    "matches none of them).", json_schema_extra=IGNORED)
    weight: int = Field(1, ge=0, le=1_000_000,
                        description="Share of new flows relative to the rule's other "
                                    "backendRefs; 0 sends none (drains the set).")


class L4RouteRule(StrictModel):
    """Where the route's flows go."""

    name: SectionName | None = Field(None, description="Optional name of the rule.")
    backend_refs: list[L4BackendRef] = Field(
        alias="backendRefs", min_length=1, max_length=16,
        description="BackendSets to spread new flows over, by weight.")


class L4RouteSpec(StrictModel):
    """Where the route attaches and what it forwards to."""

    parent_refs: list[ParentReference] = Field(
        default_factory=list, alias="parentRefs", max_length=32,
        description="Gateways (and listeners) to attach to; at least one is needed.")
    rules: list[L4RouteRule] = Field(
        min_length=1, max_length=16,
        description="Exactly one rule (v1alpha2 allows 16, but TCP and UDP carry nothing to "
                    "choose a rule by; v1 allows one).")
    use_default_gateways: Literal["All", "None"] | None = Field(
        None, alias="useDefaultGateways", description="Attach to default Gateways.",
        json_schema_extra=IGNORED)

    @model_validator(mode="after")
    def _check(self) -> L4RouteSpec:
        problems = Problems()
        seen: dict[tuple[object, ...], int] = {}
        for i, ref in enumerate(self.parent_refs):
            key = (ref.group, ref.kind, ref.namespace, ref.name, ref.section_name, ref.port)
            first = seen.setdefault(key, i)
            if first != i:
                problems.add(("parentRefs", i), f"duplicate of parentRefs[{first}]")
        for i in range(1, len(self.rules)):
            problems.add(("rules", i), "only one rule is allowed: a TCP or UDP flow carries "
                                       "nothing to choose between rules by; put every "
                                       "backendRef in rules[0]")
        problems.raise_if_any()
        return self


class _L4Route(Resource):
    """What TCPRoute and UDPRoute share: the spec, the annotations and their values."""

    spec: L4RouteSpec = Field(description="Parents and the rule.")

    protocol: ClassVar[Protocol]
    listener_protocol: ClassVar[str]  # the Gateway listener protocol that carries this kind
    known_annotations: ClassVar[frozenset[str]] = L4_ANNOTATIONS

    @model_validator(mode="after")
    def _check_annotations(self) -> _L4Route:
        problems = Problems()
        annotations = self.metadata.annotations

        def bad(key: str, message: str) -> None:
            problems.add(("metadata", "annotations", key), message)

        algorithm = annotations.get(ALGORITHM_ANNOTATION)
        names = get_args(L4Algorithm)
        if algorithm is not None and algorithm not in names:
            bad(ALGORITHM_ANNOTATION, f'"{algorithm}" is not an L4 algorithm: use one of '
                + ", ".join(f'"{name}"' for name in names))
        size = annotations.get(TABLE_SIZE_ANNOTATION)
        if size is not None:
            why = _table_size_problem(size)
            if why:
                bad(TABLE_SIZE_ANNOTATION, why)
        proxy = annotations.get(PROXY_PROTOCOL_ANNOTATION)
        if proxy is not None and self.protocol == "udp":
            bad(PROXY_PROTOCOL_ANNOTATION, "only TCPRoutes send a PROXY protocol header: "
                                           "remove it from this UDPRoute")
        elif proxy is not None and proxy not in get_args(ProxyProtocolVersion):
            bad(PROXY_PROTOCOL_ANNOTATION, f'"{proxy}" is not a PROXY protocol version: use '
                                           '"v1" (text) or "v2" (binary)')
        idle = annotations.get(UDP_IDLE_TIMEOUT_ANNOTATION)
        if idle is not None and self.protocol == "tcp":
            bad(UDP_IDLE_TIMEOUT_ANNOTATION, "only UDPRoutes have an idle timeout: a TCP flow "
                                             "ends with its connection; remove it")
        elif idle is not None:
            try:
                if parse_duration(idle) <= 0:
                    bad(UDP_IDLE_TIMEOUT_ANNOTATION, "must be longer than 0s")
            except ValueError as exc:
                bad(UDP_IDLE_TIMEOUT_ANNOTATION, str(exc))
        dataplane = annotations.get(DATAPLANE_ANNOTATION)
        if dataplane is not None and dataplane not in get_args(Dataplane):
            bad(DATAPLANE_ANNOTATION, f'"{dataplane}" is not a data plane: use "auto", '
                                      '"userspace" or "ebpf"')
        problems.raise_if_any()
        return self

    @property
    def algorithm(self) -> L4Algorithm:
        value = self.metadata.annotations.get(ALGORITHM_ANNOTATION, DEFAULT_ALGORITHM)
        return cast(L4Algorithm, value)

    @property
    def table_size(self) -> int:
        return int(self.metadata.annotations.get(TABLE_SIZE_ANNOTATION, DEFAULT_TABLE_SIZE))

    @property
    def proxy_protocol(self) -> ProxyProtocolVersion | None:
        return cast(ProxyProtocolVersion | None,
                    self.metadata.annotations.get(PROXY_PROTOCOL_ANNOTATION))

    @property
    def udp_idle_timeout(self) -> float | None:
        """Seconds a UDP flow may stay silent before it is forgotten; None for TCP."""
        if self.protocol == "tcp":
            return None
        value = self.metadata.annotations.get(UDP_IDLE_TIMEOUT_ANNOTATION)
        return DEFAULT_UDP_IDLE_TIMEOUT if value is None else parse_duration(value)

    @property
    def dataplane(self) -> Dataplane:
        value = self.metadata.annotations.get(DATAPLANE_ANNOTATION, DEFAULT_DATAPLANE)
        return cast(Dataplane, value)

    @property
    def backend_refs(self) -> list[L4BackendRef]:
        """The backendRefs of the (one) rule."""
        return self.spec.rules[0].backend_refs


def _table_size_problem(text: str) -> str | None:
    if not text.isdigit():
        return f'"{text}" is not a table size: use a prime number such as "{DEFAULT_TABLE_SIZE}"'
    size = int(text)
    if not 2 <= size <= MAX_MAGLEV_TABLE_SIZE:
        return f"{size} is out of range: use a prime between 2 and {MAX_MAGLEV_TABLE_SIZE}"
    if not is_prime(size):
        return (f"{size} is not prime (Maglev needs a prime table size): use "
                f"{next_prime(size)}, the next prime")
    return None


class TCPRoute(_L4Route):
    """Forwards TCP connections from TCP listeners to BackendSets, split by weight.

    Annotations (inferlane extensions): ``inferlane.dev/l4-algorithm`` places new flows:
    ``maglev`` (the default: consistent hashing of the 5-tuple, weights honoured, so every
    gateway instance and the eBPF fast path pick the same backend, and a backend change moves
    few flows), ``round-robin`` (smooth weighted), ``least-connections`` (fewest active flows
    per unit of weight), ``power-of-two`` (two weighted random picks, the less loaded wins) or
    ``source-hash`` (by client IP alone: a client stays on one backend).
    ``inferlane.dev/maglev-table-size`` is the Maglev table size: a prime, at least the number
    of backends, at most 1000003 (default 65537; a bigger table moves fewer flows when backends
    change). ``inferlane.dev/dataplane``: ``auto`` (the default: the eBPF fast path where it
    can run, for IPv4 listeners, else the user-space proxy), ``userspace`` or ``ebpf``.
    ``inferlane.dev/proxy-protocol``: ``v1`` (text) or ``v2`` (binary) sends a PROXY protocol
    header with the client's address to the backend first; unset sends none. Existing flows
    stay on their backend; a backend with weight 0, or found unhealthy by its BackendSet's
    HealthCheckPolicy, gets no new ones.
    """

    api_version: Literal["gateway.networking.k8s.io/v1alpha2", "gateway.networking.k8s.io/v1"] = (
        Field(alias="apiVersion", description="API group and version."))
    kind: Literal["TCPRoute"] = Field(description="Resource kind.")

    protocol: ClassVar[Protocol] = "tcp"
    listener_protocol: ClassVar[str] = "TCP"


class UDPRoute(_L4Route):
    """Forwards UDP flows from UDP listeners to BackendSets, split by weight.

    A flow is a client address and port. Annotations: ``inferlane.dev/l4-algorithm``,
    ``inferlane.dev/maglev-table-size`` and ``inferlane.dev/dataplane`` as for TCPRoute;
    ``inferlane.dev/udp-idle-timeout`` (a duration, default 30s): a flow silent this long is
    forgotten, and its next datagram is placed afresh. PROXY protocol is not sent over UDP.
    """

    api_version: Literal["gateway.networking.k8s.io/v1alpha2"] = Field(
        alias="apiVersion", description="API group and version.")
    kind: Literal["UDPRoute"] = Field(description="Resource kind.")

    protocol: ClassVar[Protocol] = "udp"
    listener_protocol: ClassVar[str] = "UDP"
