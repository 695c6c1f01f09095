"""Cross-resource checks of L4 load balancing: TCP/UDP listeners, TCPRoutes, UDPRoutes and
BackendSets; and the attachment rules that phase two (``config.l4_build``) shares.

Errors: a route that attaches to no listener (wrong protocol, ``allowedRoutes``, no such
``sectionName``/``port``), a second route on one listener (nothing to choose between them by),
a backendRef that is not a BackendSet (or a Service, which resolves to the BackendSet of its
name) or names a missing one, a Maglev table smaller than the route's backends, and a port used
by an L4 listener and another listener of the same transport in another Gateway (within one
Gateway the Gateway model already rejects it). Warnings: listeners no route attaches to, sets no
route names, the same endpoint listed twice, routes or sets whose every backend is drained, a
backendRef ``port`` that matches no endpoint, a table size for an algorithm that has no table.
Called from ``checks.check_resources``.
"""

from __future__ import annotations

from collections.abc import Sequence

from inferlane.config.attachment import selected_listeners
from inferlane.config.checks_index import Findings, Index, Loaded, not_found, parent_gateway
from inferlane.config.paths import Path
from inferlane.config.resources import (
    GATEWAY_GROUP,
    INFERLANE_GROUP,
    TABLE_SIZE_ANNOTATION,
    BackendSet,
    Gateway,
    L4BackendRef,
    Listener,
    ParentReference,
    TCPRoute,
    UDPRoute,
)
from inferlane.config.resources.l4route import next_prime

L4Route = TCPRoute | UDPRoute
_ListenerKey = tuple[str, str, str]  # (gateway namespace, gateway name, listener name)
_L4_PROTOCOLS = ("TCP", "UDP")


def backend_set_name(ref: L4BackendRef) -> str | None:
    """The BackendSet a backendRef names: a BackendSet, or a core Service of the same name."""
    if (ref.group, ref.kind) in ((INFERLANE_GROUP, "BackendSet"), ("", "Service")):
        return ref.name
    return None


def l4_listener_rejection(listener: Listener, gateway_namespace: str,
                          route: L4Route) -> str | None:
    """Why ``listener`` does not accept ``route``, or None."""
    if listener.protocol != route.listener_protocol:
        return f"has protocol {listener.protocol}, which does not carry {route.kind}s"
    kinds = listener.allowed_routes.kinds
    if kinds and not any(k.kind == route.kind and k.group == GATEWAY_GROUP for k in kinds):
        return f"does not list {route.kind} in allowedRoutes.kinds"
    if (listener.allowed_routes.namespaces.from_ == "Same"
            and route.namespace != gateway_namespace):
        return (f'only accepts routes from namespace "{gateway_namespace}" (set '
                "allowedRoutes.namespaces.from: All to accept others)")
    return None


def attached_l4_listeners(gateway: Gateway, ref: ParentReference,
                          route: L4Route) -> tuple[tuple[Listener, ...], str]:
    """The listeners ``ref`` attaches ``route`` to and, when there are none, why not."""
    candidates, none_selected = selected_listeners(gateway, ref)
    if not candidates:
        return (), none_selected
    accepted: list[Listener] = []
    reasons: list[str] = []
    for listener in candidates:
        why = l4_listener_rejection(listener, gateway.namespace, route)
        if why is None:
            accepted.append(listener)
        else:
            reasons.append(f'listener "{listener.name}" {why}')
    return tuple(accepted), "; ".join(reasons)


def check_l4(items: Sequence[Loaded], index: Index, findings: Findings) -> None:
    """Append the errors and warnings about the L4 kinds in ``items`` to ``findings``."""
    carried: dict[_ListenerKey, str] = {}
    named_sets: set[tuple[str, str]] = set()
    for item in items:
        route = item.resource
        if isinstance(route, TCPRoute | UDPRoute):
            _check_parents(item, route, index, carried, findings)
            named_sets.update(_check_backends(item, route, index, findings))
    for item in items:
        res = item.resource
        if isinstance(res, Gateway):
            _check_listeners(item, res, carried, findings)
        elif isinstance(res, BackendSet):
            _check_set(item, res, (res.namespace, res.name) in named_sets, findings)
    _check_shared_ports([item for item in items if isinstance(item.resource, Gateway)],
                        findings)


def _check_parents(item: Loaded, route: L4Route, index: Index,
                   carried: dict[_ListenerKey, str], findings: Findings) -> None:
    if not route.spec.parent_refs:
        findings.error(item, ("spec", "parentRefs"),
                       "the route is attached to no Gateway: add parentRefs: [{name: <gateway "
                       f"name>, sectionName: <{route.listener_protocol} listener name>}}]")
    this = f"{route.kind} {route.namespace}/{route.name}"
    for k, parent in enumerate(route.spec.parent_refs):
        path: Path = ("spec", "parentRefs", k)
        gateway = parent_gateway(item, path, parent, route.namespace, index, findings)
        if gateway is None:
            continue
        listeners, why = attached_l4_listeners(gateway, parent, route)
        if not listeners:
            findings.error(item, path, f"attaches to no listener: {why}")
        for listener in listeners:
            first = carried.setdefault((gateway.namespace, gateway.name, listener.name), this)
            if first != this:
                findings.error(item, path,
                               f'listener "{listener.name}" of Gateway {gateway.namespace}/'
                               f"{gateway.name} already forwards to {first}: a "
                               f"{listener.protocol} listener carries one route (there is "
                               "nothing to choose between routes by); merge the backendRefs "
                               "into one route or attach to another listener")


def _check_backends(item: Loaded, route: L4Route, index: Index,
                    findings: Findings) -> set[tuple[str, str]]:
    """Check the rule's backendRefs; the ``(namespace, name)`` of the BackendSets they name."""
    named: set[tuple[str, str]] = set()
    resolved: list[tuple[L4BackendRef, BackendSet]] = []
    for j, ref in enumerate(route.backend_refs):
        path: Path = ("spec", "rules", 0, "backendRefs", j)
        name = backend_set_name(ref)
        if name is None:
            _report_kind(item, path, ref, findings)
            continue
        namespace = ref.namespace or route.namespace
        named.add((namespace, name))
        backend_set = index.get("BackendSet", namespace, name)
        if not isinstance(backend_set, BackendSet):
            missing = not_found(index, findings, "BackendSet", namespace, name)
            if missing and ref.kind == "Service":
                missing += (" (a Service backendRef resolves to the BackendSet of that name: "
                            "declare one)")
            if missing:
                findings.error(item, (*path, "name"), missing)
            continue
        resolved.append((ref, backend_set))
        if namespace != route.namespace:
            findings.warn(item, (*path, "namespace"),
                          "cross-namespace backendRef: ReferenceGrants are not checked outside "
                          "Kubernetes, the reference is allowed")
        ports = sorted({port for _, port in backend_set.addresses()})
        if ref.port is not None and ref.port not in ports:
            findings.warn(item, (*path, "port"),
                          f"not used: the endpoints of BackendSet {name} carry their own ports "
                          f"({', '.join(map(str, ports))}), and none is {ref.port}")
    if len(resolved) == len(route.backend_refs):
        _check_resolved(item, route, resolved, findings)
    return named


def _report_kind(item: Loaded, path: Path, ref: L4BackendRef, findings: Findings) -> None:
    if ref.kind == "BackendSet":
        findings.error(item, (*path, "group"), f'must be "{INFERLANE_GROUP}" for a BackendSet '
                                               f'backendRef (got "{ref.group}")')
    elif ref.kind == "Service":
        findings.error(item, (*path, "group"), f'must be "" (core) for a Service backendRef '
                                               f'(got "{ref.group}")')
    else:
        shown = f" (group {ref.group})" if ref.group else ""
        findings.error(item, (*path, "kind"),
                       f'backendRef to {ref.kind} "{ref.name}"{shown} is not supported: name a '
                       f'BackendSet (group {INFERLANE_GROUP}), or a Service (group ""), which '
                       "resolves to the BackendSet of that name")


def _check_resolved(item: Loaded, route: L4Route,
                    resolved: list[tuple[L4BackendRef, BackendSet]], findings: Findings) -> None:
    """Checks that need every backendRef resolved: drained routes and the table size."""
    refs_path: Path = ("spec", "rules", 0, "backendRefs")
    live = any(ref.weight > 0 and any(e.weight > 0 for e in backend_set.spec.endpoints)
               for ref, backend_set in resolved)
    if not live:
        findings.warn(item, refs_path, "every backend has weight 0 (a backendRef's or its "
                                       "endpoints'): new flows cannot be placed and are refused")
    annotation: Path = ("metadata", "annotations", TABLE_SIZE_ANNOTATION)
    if route.algorithm != "maglev":
        if TABLE_SIZE_ANNOTATION in route.metadata.annotations:
            findings.warn(item, annotation, f"ignored: only the maglev algorithm uses a table "
                                            f"(this route uses {route.algorithm})")
        return
    backends = {address for _, backend_set in resolved for address in backend_set.addresses()}
    if route.table_size < len(backends):
        findings.error(item, annotation,
                       f"{route.table_size} is smaller than the number of backends "
                       f"({len(backends)}): every backend needs a slot; use a prime of at "
                       f"least {next_prime(len(backends))}")


def _check_listeners(item: Loaded, gateway: Gateway, carried: dict[_ListenerKey, str],
                     findings: Findings) -> None:
    for i, listener in enumerate(gateway.spec.listeners):
        if listener.protocol not in _L4_PROTOCOLS:
            continue
        if (gateway.namespace, gateway.name, listener.name) not in carried:
            kind = f"{listener.protocol}Route"
            findings.warn(item, ("spec", "listeners", i),
                          f"no {kind} attaches to this listener: it has nowhere to forward "
                          f"to (add a {kind} with parentRefs naming it)")


def _check_set(item: Loaded, backend_set: BackendSet, named: bool, findings: Findings) -> None:
    first: dict[tuple[str, int], int] = {}
    for i, address in enumerate(backend_set.addresses()):
        seen = first.setdefault(address, i)
        if seen != i:
            findings.warn(item, ("spec", "endpoints", i, "address"),
                          f'"{backend_set.spec.endpoints[i].address}" is the same backend as '
                          f"endpoints[{seen}]: it counts once, with the weights added")
    if all(endpoint.weight == 0 for endpoint in backend_set.spec.endpoints):
        findings.warn(item, ("spec", "endpoints"), "every endpoint has weight 0 (drained): the "
                                                   "set takes no new flows")
    if not named:
        findings.warn(item, ("metadata", "name"), "no TCPRoute or UDPRoute backendRef names "
                                                  "this BackendSet: it receives no traffic")


def _check_shared_ports(gateways: Sequence[Loaded], findings: Findings) -> None:
    """An L4 listener needs its port (per transport) to itself across Gateways too."""
    owners: dict[tuple[str, int], tuple[Gateway, Listener]] = {}
    for item in gateways:
        gateway = item.resource
        assert isinstance(gateway, Gateway)
        for i, listener in enumerate(gateway.spec.listeners):
            socket = (listener.transport, listener.port)
            owner = owners.setdefault(socket, (gateway, listener))
            other_gateway, other = owner
            if other_gateway is gateway:
                continue  # the Gateway model reports ports shared inside one Gateway
            if listener.protocol in _L4_PROTOCOLS or other.protocol in _L4_PROTOCOLS:
                findings.error(item, ("spec", "listeners", i, "port"),
                               f"port {listener.port} ({listener.transport.upper()}) is already "
                               f'used by listener "{other.name}" ({other.protocol}) of Gateway '
                               f"{other_gateway.namespace}/{other_gateway.name}: give one of "
                               "them another port")
