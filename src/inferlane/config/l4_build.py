"""Phase two for L4 load balancing: TCP/UDP listeners, their routes and BackendSets become
frozen ``l4.config`` values.

Phase one (``config.loader`` with ``config.l4_checks``) has already rejected routes that attach
to no listener or share one, backendRefs naming no BackendSet, endpoints without a port and
bad annotations, so this step only resolves. Each TCP or UDP listener of every Gateway becomes
an ``L4Listener`` with the route attached to it (if any); a route's backends are the distinct
endpoints of its BackendSets, in config order.

Weights: a set's endpoint listed twice counts once with the weights added. With one live
backendRef (weight > 0, naming a set with a live endpoint) the endpoint weights are used as
written. With several, backendRef ``r`` of weight ``W_r`` naming a set whose endpoint weights
sum to ``S_r`` gives its endpoint ``e`` the share ``W_r / sum(W) * w_e / S_r`` of new flows;
the shares are turned into the smallest whole numbers in the same proportions (rounded, never
to 0, when that would exceed 1,000,000). An endpoint in several sets adds its shares up.
Endpoints of weight-0 backendRefs stay, with weight 0 (drained: existing flows continue).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

from inferlane.config.l4_checks import L4Route, attached_l4_listeners, backend_set_name
from inferlane.config.loader import ConfigBundle
from inferlane.config.resources import BackendSet
from inferlane.l4.config import L4Listener, L4RouteRuntime
from inferlane.l4.flows import L4Backend

MAX_COMBINED_WEIGHT = 1_000_000


def _key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"  # as config.build.key


def set_backends(backend_set: BackendSet) -> tuple[L4Backend, ...]:
    """The distinct endpoints of a set, in order, each with its weight (duplicates added)."""
    weights: dict[tuple[str, int], int] = {}
    for (host, port), endpoint in zip(backend_set.addresses(), backend_set.spec.endpoints,
                                      strict=True):
        weights[(host, port)] = weights.get((host, port), 0) + endpoint.weight
    return tuple(L4Backend(host, port, weight) for (host, port), weight in weights.items())


def build_l4(bundle: ConfigBundle) -> tuple[L4Listener, ...]:
    """Every TCP and UDP listener of ``bundle``'s Gateways, in order, with its route."""
    carried: dict[tuple[str, str, str], L4RouteRuntime] = {}
    routes: tuple[L4Route, ...] = (*bundle.tcp_routes, *bundle.udp_routes)
    for route in routes:
        runtime = build_l4_route(route, bundle)
        for ref in route.spec.parent_refs:
            gateway = bundle.gateway(ref.namespace or route.namespace, ref.name)
            if gateway is None:
                continue
            for listener in attached_l4_listeners(gateway, ref, route)[0]:
                carried.setdefault((gateway.namespace, gateway.name, listener.name), runtime)
    out: list[L4Listener] = []
    for gateway in bundle.gateways:
        for listener in gateway.spec.listeners:
            if listener.protocol not in ("TCP", "UDP"):
                continue
            attached = carried.get((gateway.namespace, gateway.name, listener.name))
            out.append(L4Listener(
                gateway=_key(gateway.namespace, gateway.name), name=listener.name,
                protocol=listener.transport, port=listener.port,
                routes=() if attached is None else (attached,), vip=gateway.vip,
                ebpf_interface=gateway.ebpf_interface))
    return tuple(out)


def build_l4_route(route: L4Route, bundle: ConfigBundle) -> L4RouteRuntime:
    """The runtime form of one validated TCPRoute or UDPRoute."""
    parts: list[tuple[int, tuple[L4Backend, ...]]] = []
    set_keys: list[str] = []
    for ref in route.backend_refs:
        name = backend_set_name(ref)
        namespace = ref.namespace or route.namespace
        backend_set = bundle.backend_set(namespace, name) if name is not None else None
        if backend_set is None:  # phase one reports it; nothing to forward to
            continue
        set_keys.append(_key(namespace, backend_set.name))
        parts.append((ref.weight, set_backends(backend_set)))
    return L4RouteRuntime(
        key=_key(route.namespace, route.name), protocol=route.protocol,
        algorithm=route.algorithm, table_size=route.table_size,
        proxy_protocol=route.proxy_protocol, udp_idle_timeout=route.udp_idle_timeout,
        dataplane=route.dataplane, backend_sets=tuple(dict.fromkeys(set_keys)),
        backends=combine_weights(parts))


def combine_weights(parts: Sequence[tuple[int, Sequence[L4Backend]]]) -> tuple[L4Backend, ...]:
    """Merge ``(backendRef weight, set backends)`` pairs into one weighted backend list (the
    rules are in the module docstring)."""
    order: dict[tuple[str, int], None] = {}
    for _, backends in parts:
        order.update(((b.host, b.port), None) for b in backends)
    live = [(weight, backends) for weight, backends in parts
            if weight > 0 and sum(b.weight for b in backends) > 0]
    if len(live) == 1:
        weights = {(b.host, b.port): b.weight for b in live[0][1]}
    else:
        shares: dict[tuple[str, int], Fraction] = {}
        for weight, backends in live:
            total = sum(b.weight for b in backends)
            for b in backends:
                address = (b.host, b.port)
                shares[address] = shares.get(address, Fraction(0)) + Fraction(weight * b.weight,
                                                                              total)
        weights = _whole_numbers(shares)
    return tuple(L4Backend(host, port, weights.get((host, port), 0)) for host, port in order)


def _whole_numbers(shares: dict[tuple[str, int], Fraction]) -> dict[tuple[str, int], int]:
    """The smallest integers in the proportions of ``shares`` (capped, never rounding a share
    above 0 down to 0)."""
    if not any(share > 0 for share in shares.values()):
        return {address: 0 for address in shares}
    scale = math.lcm(*(share.denominator for share in shares.values()))
    whole = {address: int(share * scale) for address, share in shares.items()}
    divisor = math.gcd(*whole.values())
    whole = {address: value // divisor for address, value in whole.items()}
    largest = max(whole.values())
    if largest > MAX_COMBINED_WEIGHT:
        whole = {address: 0 if value == 0 else max(1, round(value * MAX_COMBINED_WEIGHT
                                                              / largest))
                 for address, value in whole.items()}
    return whole
