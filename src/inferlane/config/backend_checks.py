"""Cross-resource checks of backend references, Providers and TrafficPolicies.

A backend is an ``InferencePool`` (group inference.networking.k8s.io) or a ``Provider`` (group
inferlane.dev). The same rules hold wherever one is named: an HTTPRoute's ``backendRefs``, a
``RequestMirror`` filter's ``backendRef`` and a TrafficPolicy's ``fallback.backendRefs``.
Called from ``checks.check_resources``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from inferlane.config.checks_index import Findings, Index, Loaded, not_found
from inferlane.config.paths import Path
from inferlane.config.resources import (
    GATEWAY_GROUP,
    INFERENCE_GROUP,
    INFERLANE_GROUP,
    BackendObjectReference,
    HTTPRoute,
    Provider,
    TrafficPolicy,
)

BACKEND_KINDS = {"InferencePool": INFERENCE_GROUP, "Provider": INFERLANE_GROUP}


def check_backend_ref(item: Loaded, path: Path, ref: BackendObjectReference, namespace: str,
                      index: Index, findings: Findings) -> bool:
    """Report a reference that is not a pool or provider, or names a missing one; True when it
    resolves."""
    group = BACKEND_KINDS.get(ref.kind)
    if group is None:
        shown = f" (group {ref.group})" if ref.group else ""
        findings.error(item, (*path, "kind"),
                       f'backendRef to {ref.kind} "{ref.name}"{shown} is not supported: name an '
                       f"InferencePool (group {INFERENCE_GROUP}) or a Provider (group "
                       f"{INFERLANE_GROUP})")
        return False
    if ref.group != group:
        findings.error(item, (*path, "group"),
                       f'must be "{group}" for a {ref.kind} backendRef (got "{ref.group}")')
        return False
    target_namespace = ref.namespace or namespace
    missing = not_found(index, findings, ref.kind, target_namespace, ref.name)
    if missing:
        findings.error(item, (*path, "name"), missing)
        return False
    if target_namespace != namespace:
        findings.warn(item, (*path, "namespace"),
                      "cross-namespace backendRef: ReferenceGrants are not checked outside "
                      "Kubernetes, the reference is allowed")
    return True


def route_backend_refs(route: HTTPRoute) -> Iterator[BackendObjectReference]:
    """Every backend a route names: split targets and mirror targets."""
    for rule in route.spec.rules:
        yield from rule.backend_refs
        for flt in rule.filters:
            if flt.request_mirror is not None:
                yield flt.request_mirror.backend_ref


def backend_referenced(index: Index, kind: str, namespace: str, name: str) -> bool:
    """Whether any route (split or mirror) or TrafficPolicy fallback names the backend."""
    def names(ref: BackendObjectReference, referrer_namespace: str) -> bool:
        return (ref.kind == kind and ref.name == name
                and (ref.namespace or referrer_namespace) == namespace)

    return any(names(ref, route.namespace)
               for route in index.routes for ref in route_backend_refs(route)) or any(
        names(ref, policy.namespace)
        for policy in index.traffic_policies if policy.spec.fallback is not None
        for ref in policy.spec.fallback.backend_refs)


def check_providers_and_policies(items: Sequence[Loaded], index: Index, findings: Findings) -> None:
    targeted: dict[tuple[str, str, str | None], str] = {}
    for item in items:
        policy = item.resource
        if isinstance(policy, Provider):
            _check_provider(item, policy, index, findings)
        if not isinstance(policy, TrafficPolicy):
            continue
        for i, ref in enumerate(policy.spec.target_refs):
            path: Path = ("spec", "targetRefs", i)
            if ref.group != GATEWAY_GROUP:
                findings.error(item, (*path, "group"), f'targets are HTTPRoutes of group '
                                                       f'{GATEWAY_GROUP}; got "{ref.group}"')
                continue
            route = index.get("HTTPRoute", policy.namespace, ref.name)
            if not isinstance(route, HTTPRoute):
                missing = not_found(index, findings, "HTTPRoute", policy.namespace, ref.name)
                if missing:
                    findings.error(item, (*path, "name"), missing)
                continue
            names = [rule.name for rule in route.spec.rules if rule.name]
            if ref.section_name is not None and ref.section_name not in names:
                shown = ", ".join(names) if names else "none of its rules has a name"
                findings.error(item, (*path, "sectionName"),
                               f'HTTPRoute {ref.name} has no rule named "{ref.section_name}" '
                               f"(rule names: {shown})")
                continue
            key = (policy.namespace, ref.name, ref.section_name)
            if key in targeted:
                findings.error(item, path, f"already targeted by TrafficPolicy {targeted[key]}: "
                                           "one policy per route or rule")
            targeted.setdefault(key, policy.name)
        fallback = policy.spec.fallback
        if fallback is not None:
            for i, backend in enumerate(fallback.backend_refs):
                check_backend_ref(item, ("spec", "fallback", "backendRefs", i), backend,
                                  policy.namespace, index, findings)
        steering = policy.spec.steering
        if steering is not None and steering.geo is not None:
            for i, region in enumerate(steering.geo.regions):
                for j, backend in enumerate(region.backend_refs):
                    check_backend_ref(item, ("spec", "steering", "geo", "regions", i,
                                             "backendRefs", j), backend, policy.namespace,
                                      index, findings)


def _check_provider(item: Loaded, provider: Provider, index: Index, findings: Findings) -> None:
    spec = provider.spec
    if spec.tls.insecure_skip_verify:
        findings.warn(item, ("spec", "tls", "insecureSkipVerify"),
                      "the provider's TLS certificate is not verified: anyone on the path can "
                      "read the API key; use only for tests")
    if spec.url.lower().startswith("http://") and spec.credentials is not None:
        findings.warn(item, ("spec", "baseURL"), "the API key is sent over plain http")
    if not backend_referenced(index, "Provider", provider.namespace, provider.name):
        findings.warn(item, ("metadata", "name"), "no HTTPRoute or TrafficPolicy names this "
                                                  "provider: it receives no traffic")
