"""L4 load balancing config: TCP/UDP listeners, TCPRoute, UDPRoute, BackendSet and health
policies on sets — field errors, cross-resource findings, and what ``build_l4`` makes of them."""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Any, get_args

import pytest

from inferlane.config.build import build_snapshot
from inferlane.config.health_build import build_backend_set_health
from inferlane.config.l4_build import MAX_COMBINED_WEIGHT, build_l4, combine_weights
from inferlane.config.loader import load_config_text
from inferlane.health.monitors import MonitorType
from inferlane.health.settings import default_settings
from inferlane.l4.algorithms import ALGORITHM_NAMES
from inferlane.l4.config import L4Algorithm, L4Listener, L4RouteRuntime
from inferlane.l4.flows import L4Backend

if TYPE_CHECKING:
    from conftest import Patch, World

GATEWAY_V1 = "gateway.networking.k8s.io/v1"
ROUTE_VERSION = "gateway.networking.k8s.io/v1alpha2"
VERSION = "inferlane.dev/v1alpha1"
TCP = {"name": "tcp", "port": 9000, "protocol": "TCP"}
UDP = {"name": "udp", "port": 9053, "protocol": "UDP"}
LISTENERS: list[Patch] = [("gateway", ("spec", "listeners", 1), TCP),
                          ("gateway", ("spec", "listeners", 2), UDP)]


def at(key: str) -> str:
    """The issue path of an annotation."""
    return f'metadata.annotations["inferlane.dev/{key}"]'


def ref(name: str = "db", **fields: Any) -> dict[str, Any]:
    return {"group": "inferlane.dev", "kind": "BackendSet", "name": name, **fields}


def route(kind: str, name: str, refs: list[dict[str, Any]] | None = None,
          annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    spec.setdefault("parentRefs", [{"name": "gw", "sectionName": kind[:3].lower()}])
    spec.setdefault("rules", [{"backendRefs": refs or [ref()]}])
    return {"apiVersion": ROUTE_VERSION, "kind": kind,
            "metadata": {"name": name, "annotations": annotations or {}}, "spec": spec}


def tcp_route(name: str = "db", refs: list[dict[str, Any]] | None = None,
              annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return route("TCPRoute", name, refs, annotations, **spec)


def udp_route(name: str = "dns", refs: list[dict[str, Any]] | None = None,
              annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return route("UDPRoute", name, refs or [ref("dns")], annotations, **spec)


def backend_set(name: str = "db", *addresses: str | dict[str, Any],
                **spec: Any) -> dict[str, Any]:
    endpoints = [a if isinstance(a, dict) else {"address": a}
                 for a in addresses or ("10.0.0.1:5432", "10.0.0.2:5432")]
    return {"apiVersion": VERSION, "kind": "BackendSet", "metadata": {"name": name},
            "spec": {"endpoints": endpoints, **spec}}


def dns_set() -> dict[str, Any]:
    return backend_set("dns", "10.0.1.1:53")


def l4(*docs: dict[str, Any]) -> list[dict[str, Any]]:
    """A TCPRoute on set db, a UDPRoute on set dns and the two sets; a doc of the same kind and
    name replaces one in place, others are added at the end."""
    out = {("TCPRoute", "db"): tcp_route(), ("UDPRoute", "dns"): udp_route(),
           ("BackendSet", "db"): backend_set(), ("BackendSet", "dns"): dns_set()}
    for doc in docs:
        out[(doc["kind"], doc["metadata"]["name"])] = doc
    return list(out.values())


def issues_of(world: World, extra: list[dict[str, Any]],
              patches: list[Patch] | None = None) -> list[tuple[str, str, str]]:
    return [(f"{i.kind}/{i.name}", i.path, i.message)
            for i in world.issues([*LISTENERS, *(patches or [])], extra)]


def warnings_of(world: World, extra: list[dict[str, Any]],
                patches: list[Patch] | None = None) -> list[tuple[str, str, str]]:
    bundle = world.load([*LISTENERS, *(patches or [])], extra)
    return [(f"{w.kind}/{w.name}", w.path, w.message) for w in bundle.warnings]


def listeners_of(world: World, extra: list[dict[str, Any]],
                 patches: list[Patch] | None = None) -> tuple[L4Listener, ...]:
    return build_l4(world.load([*LISTENERS, *(patches or [])], extra))


def only_route(world: World, extra: list[dict[str, Any]], listener: str = "tcp",
               patches: list[Patch] | None = None) -> L4RouteRuntime:
    (found,) = [item for item in listeners_of(world, extra, patches) if item.name == listener]
    (runtime,) = found.routes
    return runtime


# -- valid documents ---------------------------------------------------------------------------

def test_the_l4_world_loads_without_warnings(world: World) -> None:
    bundle = world.load(LISTENERS, l4())
    assert bundle.warnings == ()
    assert [r.name for r in bundle.tcp_routes] == ["db"]
    assert [r.name for r in bundle.udp_routes] == ["dns"]
    assert [s.name for s in bundle.backend_sets] == ["db", "dns"]
    assert bundle.backend_set("default", "dns") is bundle.backend_sets[1]
    assert bundle.backend_set("default", "nope") is None


@pytest.mark.parametrize("protocol", ["TCP", "UDP", "tcp", "Udp"])
def test_tcp_and_udp_listeners_are_served_without_warnings(world: World, protocol: str) -> None:
    listener = {"name": "l4", "port": 7000, "protocol": protocol}
    extra = [*l4(), route(f"{protocol.upper()}Route", "x",
                          parentRefs=[{"name": "gw", "sectionName": "l4"}])]
    bundle = world.load([*LISTENERS, ("gateway", ("spec", "listeners", 3), listener)], extra)
    assert bundle.warnings == ()
    assert bundle.gateways[0].spec.listeners[3].protocol == protocol.upper()


def test_tcp_route_v1_is_accepted(world: World) -> None:
    bundle = world.load(LISTENERS, l4({**tcp_route(), "apiVersion": GATEWAY_V1}))
    assert bundle.tcp_routes[0].api_version == GATEWAY_V1


def test_tcp_and_udp_listeners_may_share_a_port(world: World) -> None:
    patches: list[Patch] = [("gateway", ("spec", "listeners", 2, "port"), 9000)]
    assert warnings_of(world, l4(), patches) == []


def test_a_route_accepts_every_upstream_field(world: World) -> None:
    doc = tcp_route(
        parentRefs=[{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw",
                     "namespace": "default", "sectionName": "tcp", "port": 9000}],
        rules=[{"name": "all", "backendRefs": [ref(namespace="default", port=5432,
                                                   weight=5)]}],
        useDefaultGateways="None")
    doc["status"] = {"parents": []}
    assert world.load(LISTENERS, l4(doc)).warnings == ()


def test_a_service_reference_resolves_to_the_backend_set_of_its_name(world: World) -> None:
    doc = tcp_route(refs=[{"name": "db", "port": 5432}])
    runtime = only_route(world, l4(doc))
    assert runtime.backend_sets == ("default/db",)
    assert [b.key for b in runtime.backends] == ["10.0.0.1:5432", "10.0.0.2:5432"]


def test_the_algorithm_names_are_those_of_the_l4_registry() -> None:
    assert set(get_args(L4Algorithm)) == set(ALGORITHM_NAMES)


# -- field errors ------------------------------------------------------------------------------

NOT_PRIME = "is not prime (Maglev needs a prime table size): use"
DURATION_RULE = ('is not a Gateway API duration: use one to four <number><unit> parts with '
                 'units h, m, s, ms, e.g. "10s", "500ms", "1h30m"')


@pytest.mark.parametrize(
    ("doc", "owner", "where", "message"),
    [
        # BackendSet
        (backend_set("db", endpoints=[]), "BackendSet/db", "spec.endpoints",
         "must not be empty"),
        (backend_set("db", *[f"10.0.{i // 256}.{i % 256}:1" for i in range(1025)]),
         "BackendSet/db", "spec.endpoints", "must have at most 1024 entries (has 1025)"),
        (backend_set("db", {"address": "10.0.0.1:1", "weight": 1001}), "BackendSet/db",
         "spec.endpoints[0].weight", "must be between 0 and 1000 (got 1001)"),
        (backend_set("db", {"address": "10.0.0.1:1", "weight": -1}), "BackendSet/db",
         "spec.endpoints[0].weight", "must be between 0 and 1000 (got -1)"),
        (backend_set("db", "tcp://10.0.0.1:1"), "BackendSet/db", "spec.endpoints[0].address",
         '"tcp://10.0.0.1:1": give host:port without a scheme, e.g. "10.0.0.5:8000"'),
        (backend_set("db", "::1"), "BackendSet/db", "spec.endpoints[0].address",
         '"::1": put IPv6 addresses in brackets, e.g. "[::1]:8000"'),
        (backend_set("db", "10.0.0.1:0"), "BackendSet/db", "spec.endpoints[0].address",
         '"10.0.0.1:0": the port must be a number between 1 and 65535'),
        (backend_set("db", "10.0.0.1:1", "10.0.0.2"), "BackendSet/db",
         "spec.endpoints[1].address",
         '"10.0.0.2" has no port: write "host:port" or set spec.port for the endpoints '
         "without one"),
        (backend_set("db", port=0), "BackendSet/db", "spec.port",
         "must be between 1 and 65535 (got 0)"),
        (backend_set("db", {"address": "10.0.0.1:1", "wieght": 1}), "BackendSet/db",
         "spec.endpoints[0].wieght", 'unknown field (did you mean "weight"?)'),
        # TCPRoute / UDPRoute shape
        (tcp_route(rules=[]), "TCPRoute/db", "spec.rules", "must not be empty"),
        (tcp_route(rules=[{"backendRefs": [ref()]}, {"backendRefs": [ref()]}]), "TCPRoute/db",
         "spec.rules[1]", "only one rule is allowed: a TCP or UDP flow carries nothing to "
                          "choose between rules by; put every backendRef in rules[0]"),
        (tcp_route(rules=[{"backendRefs": []}]), "TCPRoute/db", "spec.rules[0].backendRefs",
         "must not be empty"),
        (tcp_route(rules=[{}]), "TCPRoute/db", "spec.rules[0].backendRefs",
         "required field is missing"),
        (tcp_route(refs=[ref(weight=-1)]), "TCPRoute/db", "spec.rules[0].backendRefs[0].weight",
         "must be between 0 and 1000000 (got -1)"),
        (tcp_route(refs=[ref(port=70000)]), "TCPRoute/db", "spec.rules[0].backendRefs[0].port",
         "must be between 1 and 65535 (got 70000)"),
        (tcp_route(parentRefs=[{"name": "gw"}, {"name": "gw"}]), "TCPRoute/db",
         "spec.parentRefs[1]", "duplicate of parentRefs[0]"),
        (tcp_route(rules=[{"backendRefs": [ref()], "matches": []}]), "TCPRoute/db",
         "spec.rules[0].matches", "unknown field; expected one of: name, backendRefs"),
        ({**udp_route(), "apiVersion": GATEWAY_V1}, "UDPRoute/dns", "apiVersion",
         'apiVersion "gateway.networking.k8s.io/v1" is not supported for kind UDPRoute; use '
         "gateway.networking.k8s.io/v1alpha2"),
        # annotations
        (tcp_route(annotations={"inferlane.dev/l4-algorithm": "random"}), "TCPRoute/db",
         at("l4-algorithm"),
         '"random" is not an L4 algorithm: use one of "round-robin", "least-connections", '
         '"power-of-two", "maglev", "source-hash"'),
        (tcp_route(annotations={"inferlane.dev/maglev-table-size": "big"}), "TCPRoute/db",
         at("maglev-table-size"),
         '"big" is not a table size: use a prime number such as "65537"'),
        (tcp_route(annotations={"inferlane.dev/maglev-table-size": "65536"}), "TCPRoute/db",
         at("maglev-table-size"), f"65536 {NOT_PRIME} 65537, the next prime"),
        (tcp_route(annotations={"inferlane.dev/maglev-table-size": "1000"}), "TCPRoute/db",
         at("maglev-table-size"), f"1000 {NOT_PRIME} 1009, the next prime"),
        (tcp_route(annotations={"inferlane.dev/maglev-table-size": "1000033"}), "TCPRoute/db",
         at("maglev-table-size"),
         "1000033 is out of range: use a prime between 2 and 1000003"),
        (tcp_route(annotations={"inferlane.dev/maglev-table-size": "1"}), "TCPRoute/db",
         at("maglev-table-size"),
         "1 is out of range: use a prime between 2 and 1000003"),
        (tcp_route(annotations={"inferlane.dev/proxy-protocol": "v3"}), "TCPRoute/db",
         at("proxy-protocol"),
         '"v3" is not a PROXY protocol version: use "v1" (text) or "v2" (binary)'),
        (udp_route(annotations={"inferlane.dev/proxy-protocol": "v2"}), "UDPRoute/dns",
         at("proxy-protocol"),
         "only TCPRoutes send a PROXY protocol header: remove it from this UDPRoute"),
        (tcp_route(annotations={"inferlane.dev/udp-idle-timeout": "30s"}), "TCPRoute/db",
         at("udp-idle-timeout"),
         "only UDPRoutes have an idle timeout: a TCP flow ends with its connection; remove it"),
        (udp_route(annotations={"inferlane.dev/udp-idle-timeout": "0s"}), "UDPRoute/dns",
         at("udp-idle-timeout"), "must be longer than 0s"),
        (udp_route(annotations={"inferlane.dev/udp-idle-timeout": "soon"}), "UDPRoute/dns",
         at("udp-idle-timeout"), f'"soon" {DURATION_RULE}'),
        (udp_route(annotations={"inferlane.dev/dataplane": "xdp"}), "UDPRoute/dns",
         at("dataplane"),
         '"xdp" is not a data plane: use "auto", "userspace" or "ebpf"'),
    ],
)
def test_field_errors(world: World, doc: dict[str, Any], owner: str, where: str,
                      message: str) -> None:
    assert issues_of(world, l4(doc)) == [(owner, where, message)]


def test_health_policy_target_groups(world: World) -> None:
    policy = {"apiVersion": VERSION, "kind": "HealthCheckPolicy", "metadata": {"name": "hp"},
              "spec": {"targetRefs": [{"group": "inference.networking.k8s.io",
                                       "kind": "BackendSet", "name": "db"}]}}
    assert issues_of(world, [*l4(), policy]) == [
        ("HealthCheckPolicy/hp", "spec.targetRefs[0].group",
         'must be "inferlane.dev" for kind BackendSet (got "inference.networking.k8s.io")')]


# -- cross-resource errors ---------------------------------------------------------------------

NO_L4 = 'attaches to no listener: listener "{name}" has protocol {protocol}, which does not ' \
        "carry {kind}s"


@pytest.mark.parametrize(
    ("extra", "patches", "owner", "where", "message"),
    [
        (l4(tcp_route(parentRefs=[{"name": "gw", "sectionName": "udp"}])), [], "TCPRoute/db",
         "spec.parentRefs[0]", NO_L4.format(name="udp", protocol="UDP", kind="TCPRoute")),
        (l4(udp_route(parentRefs=[{"name": "gw", "sectionName": "tcp"}])), [], "UDPRoute/dns",
         "spec.parentRefs[0]", NO_L4.format(name="tcp", protocol="TCP", kind="UDPRoute")),
        (l4(tcp_route(parentRefs=[{"name": "gw", "port": 8080}])), [], "TCPRoute/db",
         "spec.parentRefs[0]", NO_L4.format(name="http", protocol="HTTP", kind="TCPRoute")),
        (l4(tcp_route(parentRefs=[{"name": "gw", "sectionName": "postgres"}])), [],
         "TCPRoute/db", "spec.parentRefs[0]",
         'attaches to no listener: Gateway default/gw has no listener named "postgres"; its '
         "listeners: http (HTTP 8080), tcp (TCP 9000), udp (UDP 9053)"),
        (l4(tcp_route(parentRefs=[])), [], "TCPRoute/db", "spec.parentRefs",
         "the route is attached to no Gateway: add parentRefs: [{name: <gateway name>, "
         "sectionName: <TCP listener name>}]"),
        (l4(tcp_route(parentRefs=[{"name": "gateway"}])), [], "TCPRoute/db",
         "spec.parentRefs[0].name", 'Gateway "default/gateway" not found'),
        (l4(tcp_route(parentRefs=[{"name": "gw", "kind": "Service", "group": ""}])), [],
         "TCPRoute/db", "spec.parentRefs[0].kind",
         'parent Service in group "" is not supported: only Gateway parents are'),
        ([*l4(), tcp_route("db-2")], [], "TCPRoute/db-2", "spec.parentRefs[0]",
         'listener "tcp" of Gateway default/gw already forwards to TCPRoute default/db: a TCP '
         "listener carries one route (there is nothing to choose between routes by); merge the "
         "backendRefs into one route or attach to another listener"),
        (l4(), [("gateway", ("spec", "listeners", 1, "allowedRoutes"),
                 {"kinds": [{"kind": "HTTPRoute"}]})], "TCPRoute/db", "spec.parentRefs[0]",
         'attaches to no listener: listener "tcp" does not list TCPRoute in '
         "allowedRoutes.kinds"),
        ([*l4(), {**tcp_route("team-db", [ref(namespace="default")],
                              parentRefs=[{"name": "gw", "namespace": "default",
                                           "sectionName": "tcp"}]),
                  "metadata": {"name": "team-db", "namespace": "team"}}], [],
         "TCPRoute/team-db", "spec.parentRefs[0]",
         'attaches to no listener: listener "tcp" only accepts routes from namespace '
         '"default" (set allowedRoutes.namespaces.from: All to accept others)'),
        (l4(tcp_route(refs=[ref("dbb")])), [], "TCPRoute/db",
         "spec.rules[0].backendRefs[0].name", 'BackendSet "default/dbb" not found (did you '
                                              'mean "db"?)'),
        (l4(tcp_route(refs=[{"name": "postgres", "port": 5432}])), [], "TCPRoute/db",
         "spec.rules[0].backendRefs[0].name",
         'BackendSet "default/postgres" not found (a Service backendRef resolves to the '
         "BackendSet of that name: declare one)"),
        (l4(tcp_route(refs=[ref(group="")])), [], "TCPRoute/db",
         "spec.rules[0].backendRefs[0].group",
         'must be "inferlane.dev" for a BackendSet backendRef (got "")'),
        (l4(tcp_route(refs=[{"group": "example.com", "kind": "Service", "name": "db"}])), [],
         "TCPRoute/db", "spec.rules[0].backendRefs[0].group",
         'must be "" (core) for a Service backendRef (got "example.com")'),
        (l4(tcp_route(refs=[{"group": "inference.networking.k8s.io", "kind": "InferencePool",
                             "name": "pool"}])), [], "TCPRoute/db",
         "spec.rules[0].backendRefs[0].kind",
         'backendRef to InferencePool "pool" (group inference.networking.k8s.io) is not '
         'supported: name a BackendSet (group inferlane.dev), or a Service (group ""), which '
         "resolves to the BackendSet of that name"),
        (l4(tcp_route(annotations={"inferlane.dev/maglev-table-size": "2"}),
            backend_set("db", "10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1")), [], "TCPRoute/db",
         at("maglev-table-size"),
         "2 is smaller than the number of backends (3): every backend needs a slot; use a "
         "prime of at least 3"),
        (l4(tcp_route(annotations={"inferlane.dev/maglev-table-size": "3"},
                      refs=[ref(), ref("dns")]),
            backend_set("db", "10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1")), [], "TCPRoute/db",
         at("maglev-table-size"),
         "3 is smaller than the number of backends (4): every backend needs a slot; use a "
         "prime of at least 5"),
        (l4(), [("gateway", ("spec", "listeners", 1, "port"), 8080)], "Gateway/gw",
         "spec.listeners[1].port", 'port 8080 is already used by listener "http"'),
        ([*l4(), {"apiVersion": GATEWAY_V1, "kind": "Gateway", "metadata": {"name": "gw-2"},
                  "spec": {"gatewayClassName": "inferlane",
                           "listeners": [{"name": "tcp", "port": 8080, "protocol": "TCP"}]}}],
         [], "Gateway/gw-2", "spec.listeners[0].port",
         'port 8080 (TCP) is already used by listener "http" (HTTP) of Gateway default/gw: '
         "give one of them another port"),
        ([*l4(), {"apiVersion": GATEWAY_V1, "kind": "Gateway", "metadata": {"name": "gw-2"},
                  "spec": {"gatewayClassName": "inferlane",
                           "listeners": [{"name": "dns", "port": 9053, "protocol": "UDP"}]}}],
         [], "Gateway/gw-2", "spec.listeners[0].port",
         'port 9053 (UDP) is already used by listener "udp" (UDP) of Gateway default/gw: '
         "give one of them another port"),
        (l4(), [("route", ("spec", "parentRefs", 0, "sectionName"), "tcp")], "HTTPRoute/route",
         "spec.parentRefs[0]", 'attaches to no listener: listener "tcp" has protocol TCP, '
                               "which does not carry HTTPRoutes"),
    ],
)
def test_cross_resource_errors(world: World, extra: list[dict[str, Any]], patches: list[Patch],
                               owner: str, where: str, message: str) -> None:
    assert issues_of(world, extra, patches) == [(owner, where, message)]


def policy(name: str = "hp", *targets: str, **spec: Any) -> dict[str, Any]:
    spec["targetRefs"] = [{"kind": "BackendSet", "name": t} for t in targets or ("db",)]
    return {"apiVersion": VERSION, "kind": "HealthCheckPolicy", "metadata": {"name": name},
            "spec": spec}


@pytest.mark.parametrize(
    ("extra", "owner", "where", "message"),
    [
        ([policy("hp", "dbb")], "HealthCheckPolicy/hp", "spec.targetRefs[0].name",
         'BackendSet "default/dbb" not found (did you mean "db"?)'),
        ([policy("hp"), policy("hp-2")], "HealthCheckPolicy/hp-2", "spec.targetRefs[0]",
         "BackendSet db is already targeted by HealthCheckPolicy hp: one HealthCheckPolicy "
         "per BackendSet, merge the two"),
    ],
)
def test_health_policy_errors(world: World, extra: list[dict[str, Any]], owner: str,
                              where: str, message: str) -> None:
    assert issues_of(world, [*l4(), *extra]) == [(owner, where, message)]


def test_a_route_with_a_broken_set_is_reported_once(world: World) -> None:
    assert issues_of(world, l4(backend_set("db", "10.0.0.1:x"))) == [
        ("BackendSet/db", "spec.endpoints[0].address",
         '"10.0.0.1:x": the port must be a number between 1 and 65535')]


# -- warnings ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("extra", "patches", "expected"),
    [
        (l4(backend_set("db", "10.0.0.1:5432", "10.0.0.2:5432", "10.0.0.1:5432")), [],
         [("BackendSet/db", "spec.endpoints[2].address",
           '"10.0.0.1:5432" is the same backend as endpoints[0]: it counts once, with the '
           "weights added")]),
        (l4(backend_set("db", "DB.internal:5432", "db.internal", port=5432)), [],
         [("BackendSet/db", "spec.endpoints[1].address",
           '"db.internal" is the same backend as endpoints[0]: it counts once, with the '
           "weights added")]),
        (l4(backend_set("db", "[fe80:0:0::1]:5432", "[FE80::1]:5432")), [],
         [("BackendSet/db", "spec.endpoints[1].address",
           '"[FE80::1]:5432" is the same backend as endpoints[0]: it counts once, with the '
           "weights added")]),
        (l4(backend_set("db", {"address": "10.0.0.1:1", "weight": 0})), [],
         [("TCPRoute/db", "spec.rules[0].backendRefs",
           "every backend has weight 0 (a backendRef's or its endpoints'): new flows cannot be "
           "placed and are refused"),
          ("BackendSet/db", "spec.endpoints",
           "every endpoint has weight 0 (drained): the set takes no new flows")]),
        (l4(tcp_route(refs=[ref(weight=0)])), [],
         [("TCPRoute/db", "spec.rules[0].backendRefs",
           "every backend has weight 0 (a backendRef's or its endpoints'): new flows cannot be "
           "placed and are refused")]),
        ([*l4(), backend_set("spare")], [],
         [("BackendSet/spare", "metadata.name",
           "no TCPRoute or UDPRoute backendRef names this BackendSet: it receives no traffic")]),
        (l4(tcp_route(refs=[ref(port=6432)])), [],
         [("TCPRoute/db", "spec.rules[0].backendRefs[0].port",
           "not used: the endpoints of BackendSet db carry their own ports (5432), and none is "
           "6432")]),
        (l4(tcp_route(annotations={"inferlane.dev/l4-algorithm": "round-robin",
                                   "inferlane.dev/maglev-table-size": "251"})), [],
         [("TCPRoute/db", at("maglev-table-size"),
           "ignored: only the maglev algorithm uses a table (this route uses round-robin)")]),
        ([*l4(tcp_route(refs=[ref(namespace="team")])),
          {**backend_set(), "metadata": {"name": "db", "namespace": "team"}}], [],
         [("TCPRoute/db", "spec.rules[0].backendRefs[0].namespace",
           "cross-namespace backendRef: ReferenceGrants are not checked outside Kubernetes, "
           "the reference is allowed"),
          ("BackendSet/db", "metadata.name",
           "no TCPRoute or UDPRoute backendRef names this BackendSet: it receives no traffic")]),
        (l4(tcp_route(annotations={"inferlane.dev/l4-algoritm": "maglev"})), [],
         [("TCPRoute/db", at("l4-algoritm"),
           'unknown inferlane annotation, ignored (did you mean "inferlane.dev/l4-algorithm"?)')]),
        ([udp_route(), dns_set()], [],
         [("Gateway/gw", "spec.listeners[1]",
           "no TCPRoute attaches to this listener: it has nowhere to forward to (add a TCPRoute "
           "with parentRefs naming it)")]),
        ([*l4(), policy("hp")], [], []),
    ],
)
def test_warnings(world: World, extra: list[dict[str, Any]], patches: list[Patch],
                  expected: list[tuple[str, str, str]]) -> None:
    assert warnings_of(world, extra, patches) == expected


# -- build -------------------------------------------------------------------------------------

def test_defaults(world: World) -> None:
    listeners = listeners_of(world, l4())
    assert [(item.gateway, item.name, item.protocol, item.port) for item in listeners] == [
        ("default/gw", "tcp", "tcp", 9000), ("default/gw", "udp", "udp", 9053)]
    (tcp,), (udp,) = (item.routes for item in listeners)
    assert tcp == L4RouteRuntime(
        key="default/db", protocol="tcp", algorithm="maglev", table_size=65537,
        proxy_protocol=None, udp_idle_timeout=None, dataplane="auto",
        backend_sets=("default/db",),
        backends=(L4Backend("10.0.0.1", 5432), L4Backend("10.0.0.2", 5432)))
    assert (udp.key, udp.protocol, udp.udp_idle_timeout, udp.backends) == (
        "default/dns", "udp", 30.0, (L4Backend("10.0.1.1", 53),))


def test_every_annotation_reaches_the_runtime(world: World) -> None:
    tcp = tcp_route(annotations={"inferlane.dev/l4-algorithm": "maglev",
                                 "inferlane.dev/maglev-table-size": "251",
                                 "inferlane.dev/proxy-protocol": "v1",
                                 "inferlane.dev/dataplane": "ebpf"})
    udp = udp_route(annotations={"inferlane.dev/l4-algorithm": "source-hash",
                                 "inferlane.dev/udp-idle-timeout": "1m30s",
                                 "inferlane.dev/dataplane": "userspace"})
    runtime = only_route(world, l4(tcp, udp))
    assert (runtime.algorithm, runtime.table_size, runtime.proxy_protocol,
            runtime.dataplane) == ("maglev", 251, "v1", "ebpf")
    runtime = only_route(world, l4(tcp, udp), "udp")
    assert (runtime.algorithm, runtime.udp_idle_timeout, runtime.dataplane,
            runtime.proxy_protocol) == ("source-hash", 90.0, "userspace", None)


@pytest.mark.parametrize("algorithm", ["round-robin", "least-connections", "power-of-two",
                                       "maglev", "source-hash"])
def test_each_algorithm(world: World, algorithm: str) -> None:
    doc = tcp_route(annotations={"inferlane.dev/l4-algorithm": algorithm})
    assert only_route(world, l4(doc)).algorithm == algorithm


def test_endpoint_addresses_and_ports(world: World) -> None:
    doc = backend_set("db", "10.0.0.1", {"address": "[FE80::1]:6000", "weight": 3},
                      "Db.Internal", port=5432)
    backends = only_route(world, l4(doc)).backends
    assert backends == (L4Backend("10.0.0.1", 5432), L4Backend("fe80::1", 6000, 3),
                        L4Backend("db.internal", 5432))
    assert [b.key for b in backends] == ["10.0.0.1:5432", "[fe80::1]:6000", "db.internal:5432"]


def test_one_backend_ref_keeps_the_endpoint_weights(world: World) -> None:
    doc = backend_set("db", {"address": "10.0.0.1:1", "weight": 2},
                      {"address": "10.0.0.2:1", "weight": 4},
                      {"address": "10.0.0.3:1", "weight": 0},
                      {"address": "10.0.0.1:1", "weight": 1})
    backends = only_route(world, l4(tcp_route(refs=[ref(weight=7)]), doc)).backends
    assert [(b.key, b.weight) for b in backends] == [
        ("10.0.0.1:1", 3), ("10.0.0.2:1", 4), ("10.0.0.3:1", 0)]


def test_several_backend_refs_split_by_ref_weight_then_endpoint_weight(world: World) -> None:
    # db: two endpoints 1:1 with 3/4 of the flows; dns: one endpoint with 1/4.
    doc = tcp_route(refs=[ref(weight=3), ref("dns", weight=1)])
    backends = only_route(world, l4(doc)).backends
    assert [(b.key, b.weight) for b in backends] == [
        ("10.0.0.1:5432", 3), ("10.0.0.2:5432", 3), ("10.0.1.1:53", 2)]
    assert only_route(world, l4(doc)).backend_sets == ("default/db", "default/dns")


def test_a_weight_zero_ref_drains_its_set(world: World) -> None:
    doc = tcp_route(refs=[ref(weight=0), ref("dns")])
    backends = only_route(world, l4(doc)).backends
    assert [(b.key, b.weight) for b in backends] == [
        ("10.0.0.1:5432", 0), ("10.0.0.2:5432", 0), ("10.0.1.1:53", 1)]


def test_an_endpoint_in_two_sets_adds_its_shares(world: World) -> None:
    extra = l4(tcp_route(refs=[ref(), ref("dns")]),
               backend_set("dns", "10.0.0.2:5432", "10.0.0.3:5432"))
    backends = only_route(world, extra).backends
    # 1/2 x 1/2 each from db; 1/2 x 1/2 each from dns: 10.0.0.2 gets both.
    assert [(b.key, b.weight) for b in backends] == [
        ("10.0.0.1:5432", 1), ("10.0.0.2:5432", 2), ("10.0.0.3:5432", 1)]


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ([], []),
        ([(0, (L4Backend("a", 1),))], [0]),
        ([(5, (L4Backend("a", 1, 0),)), (1, (L4Backend("b", 1, 7),))], [0, 7]),
        ([(1, (L4Backend("a", 1, 1), L4Backend("b", 1, 2))),
          (1, (L4Backend("c", 1, 1),))], [1, 2, 3]),
        ([(2, (L4Backend("a", 1, 500), L4Backend("b", 1, 500))),
          (2, (L4Backend("c", 1, 10),))], [1, 1, 2]),
    ],
)
def test_combine_weights(parts: list[tuple[int, tuple[L4Backend, ...]]],
                         expected: list[int]) -> None:
    assert [b.weight for b in combine_weights(parts)] == expected


def test_combined_weights_are_capped_and_never_rounded_to_zero() -> None:
    primes = (997, 991, 983, 977)
    parts = [(1_000_000 if i == 0 else 1, [L4Backend(f"h{i}", 1, 1), L4Backend(f"g{i}", 1, p - 1)])
             for i, p in enumerate(primes)]
    weights = [b.weight for b in combine_weights(parts)]
    assert max(weights) == MAX_COMBINED_WEIGHT
    assert min(weights) >= 1
    # h0 (1/997 of the first ref's 1e6/(1e6+3)) vs g0 (996/997 of it): ~1:996, as configured.
    assert round(weights[1] / weights[0]) == 996


def test_a_route_on_two_listeners_is_built_once(world: World) -> None:
    second = {"name": "tcp-2", "port": 9001, "protocol": "TCP"}
    extra = l4(tcp_route(parentRefs=[{"name": "gw"}]))
    listeners = listeners_of(world, extra, [("gateway", ("spec", "listeners", 3), second)])
    tcp = [item for item in listeners if item.protocol == "tcp"]
    assert [(item.name, item.port) for item in tcp] == [("tcp", 9000), ("tcp-2", 9001)]
    assert tcp[0].routes[0] is tcp[1].routes[0]


def test_a_listener_without_a_route_has_none(world: World) -> None:
    listeners = listeners_of(world, [udp_route(), dns_set()])
    assert [(item.name, len(item.routes)) for item in listeners] == [("tcp", 0), ("udp", 1)]


def test_http_listeners_are_not_l4_and_l4_listeners_are_not_http(world: World) -> None:
    bundle = world.load(LISTENERS, l4())
    assert [item.name for item in build_l4(bundle)] == ["tcp", "udp"]
    assert [item.name for item in build_snapshot(bundle).listeners] == ["gw/http"]


def test_backend_set_health(world: World) -> None:
    extra = [*l4(), {"apiVersion": VERSION, "kind": "Monitor", "metadata": {"name": "connect"},
                     "spec": {"type": "tcp", "interval": "5s"}},
             policy("hp", monitorRef={"name": "connect"}, minHealthy=2)]
    health = build_backend_set_health(world.load(LISTENERS, extra))
    assert set(health) == {"default/db", "default/dns"}
    assert health["default/dns"] == default_settings("default/dns")
    settings = health["default/db"]
    assert (settings.pool, settings.source, settings.min_healthy) == (
        "default/db", "Monitor default/connect", 2)
    assert [m.monitor.type for m in settings.members] == [MonitorType.TCP]


# -- the bundled example -----------------------------------------------------------------------

def test_the_bundled_l4_example_loads_and_builds() -> None:
    text = resources.files("inferlane").joinpath("examples/l4.yaml").read_text()
    bundle = load_config_text(text, "l4.yaml")
    assert bundle.warnings == ()
    build_snapshot(bundle)
    tcp, udp = build_l4(bundle)
    assert (tcp.protocol, tcp.port, udp.protocol, udp.port) == ("tcp", 9000, "udp", 9053)
    (echo_tcp,), (echo_udp,) = tcp.routes, udp.routes
    assert (echo_tcp.algorithm, echo_tcp.table_size, echo_tcp.proxy_protocol) == (
        "maglev", 65537, "v2")
    assert [(b.key, b.weight) for b in echo_tcp.backends] == [
        ("127.0.0.1:19000", 2), ("127.0.0.1:19001", 1), ("127.0.0.1:19002", 0)]
    assert (echo_udp.algorithm, echo_udp.udp_idle_timeout) == ("round-robin", 60.0)
    assert [b.key for b in echo_udp.backends] == ["127.0.0.1:19053", "127.0.0.2:19053"]
    health = build_backend_set_health(bundle)
    assert health["default/tcp-echo"].source == "Monitor default/tcp-connect"
    assert health["default/udp-echo"] == default_settings("default/udp-echo")
