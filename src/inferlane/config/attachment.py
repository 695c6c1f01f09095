"""Which Gateway listeners an HTTPRoute's parentRef attaches it to (upstream attachment rules).

Pure functions over validated models, shared by config validation (a parentRef that attaches
to no listener is an error) and by whoever builds the runtime route tables. Rules: the
listener must match ``sectionName``/``port`` when given, speak HTTP or HTTPS, allow the
HTTPRoute kind and the route's namespace (``allowedRoutes``), and share a hostname with the
route when both set hostnames.
"""

from __future__ import annotations

from collections.abc import Sequence

from inferlane.config.resources import GATEWAY_GROUP, Gateway, Listener, ParentReference
from inferlane.routing.match import wildcard_matches

_HTTP_ROUTE_PROTOCOLS = ("HTTP", "HTTPS")


# ``hostname`` may itself be a wildcard; it matches when ``pattern`` covers it.
hostname_matches = wildcard_matches


def hostnames_intersect(listener_hostname: str | None, route_hostnames: Sequence[str]) -> bool:
    if listener_hostname is None or not route_hostnames:
        return True
    return any(hostname_matches(listener_hostname, h) or hostname_matches(h, listener_hostname)
               for h in route_hostnames)


def listener_rejection(listener: Listener, gateway_namespace: str, route_namespace: str,
                       route_hostnames: Sequence[str]) -> str | None:
    """Why ``listener`` does not accept an HTTPRoute from ``route_namespace``, or None."""
    if listener.protocol not in _HTTP_ROUTE_PROTOCOLS:
        return f"has protocol {listener.protocol}, which does not carry HTTPRoutes"
    kinds = listener.allowed_routes.kinds
    if kinds and not any(k.kind == "HTTPRoute" and k.group == GATEWAY_GROUP for k in kinds):
        return "does not list HTTPRoute in allowedRoutes.kinds"
    if (listener.allowed_routes.namespaces.from_ == "Same"
            and route_namespace != gateway_namespace):
        return (f'only accepts routes from namespace "{gateway_namespace}" (set '
                "allowedRoutes.namespaces.from: All to accept others)")
    if not hostnames_intersect(listener.hostname, route_hostnames):
        return f'has hostname "{listener.hostname}", which matches none of the route hostnames'
    return None


def selected_listeners(gateway: Gateway, ref: ParentReference) -> tuple[list[Listener], str]:
    """The listeners a parentRef's ``sectionName``/``port`` select (any route kind) and, when
    there are none, why not."""
    candidates = [listener for listener in gateway.spec.listeners
                  if (ref.section_name is None or listener.name == ref.section_name)
                  and (ref.port is None or listener.port == ref.port)]
    if candidates:
        return candidates, ""
    wanted = []
    if ref.section_name is not None:
        wanted.append(f'named "{ref.section_name}"')
    if ref.port is not None:
        wanted.append(f"on port {ref.port}")
    known = ", ".join(f"{item.name} ({item.protocol} {item.port})"
                      for item in gateway.spec.listeners)
    return [], (f"Gateway {gateway.namespace}/{gateway.name} has no listener "
                f"{' and '.join(wanted)}; its listeners: {known}")


def attached_listeners(gateway: Gateway, ref: ParentReference, route_namespace: str,
                       route_hostnames: Sequence[str]) -> tuple[tuple[Listener, ...], str]:
    """The listeners ``ref`` attaches the route to and, when there are none, why not."""
    candidates, none_selected = selected_listeners(gateway, ref)
    if not candidates:
        return (), none_selected
    accepted: list[Listener] = []
    reasons: list[str] = []
    for listener in candidates:
        why = listener_rejection(listener, gateway.namespace, route_namespace, route_hostnames)
        if why is None:
            accepted.append(listener)
        else:
            reasons.append(f'listener "{listener.name}" {why}')
    return tuple(accepted), "; ".join(reasons)
