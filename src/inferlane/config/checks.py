"""Checks across resources, and warnings for settings that load but are not served yet.

Runs after every document validated on its own (phase one still: nothing is built here).
Errors: duplicate resources, no Gateway, references to missing or unsupported objects,
routes that attach to no listener, rules with nowhere to send traffic, two ModelServers on one
address, EndpointPickerConfigs naming unknown plugin types or bad parameters (checked against
``scheduling.registry``) and pools naming a missing EndpointPickerConfig. Warnings:
accepted-but-not-implemented features, pools with no servers, servers, pools and picker configs
nobody uses, shadowed model rewrites, unknown ``inferlane.dev/`` annotations. The policy,
provider and health kinds have their own modules (``policy_checks``, ``backend_checks``,
``health_checks``).

All problems are collected, not just the first. A resource that failed its own validation is
remembered as "broken" so references to it do not produce a second, misleading error.
"""

from __future__ import annotations

from collections.abc import Sequence

from inferlane.config.attachment import attached_listeners
from inferlane.config.backend_checks import (
    backend_referenced,
    check_backend_ref,
    check_providers_and_policies,
)
from inferlane.config.checks_index import (
    Findings,
    Index,
    Loaded,
    ResourceKey,
    check_pool_ref,
    not_found,
    parent_gateway,
)
from inferlane.config.health_checks import check_health
from inferlane.config.issues import suggest
from inferlane.config.l4_checks import check_l4
from inferlane.config.paths import Path
from inferlane.config.policy_checks import check_policies
from inferlane.config.resources import (
    ANNOTATION_PREFIX,
    LOAD_BALANCING_ANNOTATION,
    NOT_IMPLEMENTED_FILTERS,
    PICKER_CONFIG_ANNOTATION,
    EndpointPickerConfig,
    Gateway,
    HTTPRoute,
    HTTPRouteFilter,
    InferenceModelRewrite,
    InferencePool,
    ModelServer,
    SessionPersistence,
)
from inferlane.errors import ConfigIssue
from inferlane.scheduling.registry import (
    assemble_profile,
    build_plugin,
    plugin_roles,
    plugin_types,
    profile_from_config,
)


def check_resources(items: Sequence[Loaded], findings: Findings) -> None:
    """Append every cross-resource error and warning about ``items`` to ``findings``."""
    index = Index(items)
    first_line: dict[ResourceKey, int] = {}
    for item in items:
        key = item.resource.key
        if key in first_line:
            findings.error(item, ("metadata", "name"), f'duplicate {key[0]} "{key[1]}/{key[2]}" '
                                                       f"(first defined on line {first_line[key]})")
        first_line.setdefault(key, item.lines.line_for(()))
    if not any(isinstance(i.resource, Gateway) for i in items) and not any(
            key[0] == "Gateway" for key in findings.broken):
        findings.errors.append(ConfigIssue(
            "Gateway", "?", "", "no Gateway defined: add a Gateway with an HTTP listener "
                                "(gateway.networking.k8s.io/v1)", file=findings.source))
    for item in items:
        _check_annotations(item, findings)
        res = item.resource
        if isinstance(res, Gateway):
            _check_gateway(item, res, findings)
        elif isinstance(res, HTTPRoute):
            _check_route(item, res, index, findings)
        elif isinstance(res, InferencePool):
            _check_pool(item, res, index, findings)
        elif isinstance(res, ModelServer):
            _check_server(item, res, index, findings)
        elif isinstance(res, EndpointPickerConfig):
            _check_picker_config(item, res, index, findings)
    _check_rewrites([i for i in items if isinstance(i.resource, InferenceModelRewrite)], index,
                    findings)
    check_policies(items, index, findings)
    check_providers_and_policies(items, index, findings)
    check_health(items, index, findings)
    check_l4(items, index, findings)


def _check_annotations(item: Loaded, findings: Findings) -> None:
    res = item.resource
    known = sorted(type(res).known_annotations)
    for key in res.metadata.annotations:
        if key.startswith(ANNOTATION_PREFIX) and key not in known:
            hint = suggest(key, known)
            why = (f'did you mean "{hint}"?' if hint else
                   f"{res.kind} understands: {', '.join(known)}" if known else
                   f"{res.kind} has no inferlane annotations")
            findings.warn(item, ("metadata", "annotations", key),
                          f"unknown inferlane annotation, ignored ({why})")


def _check_gateway(item: Loaded, gateway: Gateway, findings: Findings) -> None:
    for i, listener in enumerate(gateway.spec.listeners):
        path: Path = ("spec", "listeners", i)
        if listener.protocol in ("HTTPS", "TLS"):
            findings.warn(item, (*path, "protocol"), f"{listener.protocol} listeners are not "
                                                     "served yet (only HTTP): this listener is "
                                                     "ignored")
        if listener.allowed_routes.namespaces.from_ == "Selector":
            findings.warn(item, (*path, "allowedRoutes", "namespaces", "from"),
                          "Selector cannot be evaluated outside Kubernetes (namespaces have no "
                          "labels): routes from every namespace are accepted")


def _check_route(item: Loaded, route: HTTPRoute, index: Index, findings: Findings) -> None:
    spec = route.spec
    if not spec.parent_refs:
        findings.error(item, ("spec", "parentRefs"), "the route is attached to no Gateway: add "
                                                     "parentRefs: [{name: <gateway name>}]")
    for k, parent in enumerate(spec.parent_refs):
        path: Path = ("spec", "parentRefs", k)
        gateway = parent_gateway(item, path, parent, route.namespace, index, findings)
        if gateway is None:
            continue
        listeners, why = attached_listeners(gateway, parent, route.namespace, spec.hostnames)
        if not listeners:
            findings.error(item, path, f"attaches to no listener: {why}")
    for i, rule in enumerate(spec.rules):
        path = ("spec", "rules", i)
        _warn_filters(item, (*path, "filters"), rule.filters, findings)
        if not rule.backend_refs and not any(f.type == "RequestRedirect" for f in rule.filters):
            findings.error(item, path, "the rule has no backendRefs: add one naming an "
                                       "InferencePool or a Provider (only a RequestRedirect rule "
                                       "may have none)")
        elif rule.backend_refs and all(ref.weight == 0 for ref in rule.backend_refs):
            findings.warn(item, (*path, "backendRefs"), "every backendRef has weight 0: requests "
                                                        "matching this rule cannot be served")
        for j, ref in enumerate(rule.backend_refs):
            ref_path: Path = (*path, "backendRefs", j)
            if ref.filters:
                findings.warn(item, (*ref_path, "filters"), "filters on a backendRef are not "
                                                            "implemented yet: they have no effect")
            check_backend_ref(item, ref_path, ref, route.namespace, index, findings)
        for k, flt in enumerate(rule.filters):
            if flt.request_mirror is not None:
                check_backend_ref(item, (*path, "filters", k, "requestMirror", "backendRef"),
                                  flt.request_mirror.backend_ref, route.namespace, index,
                                  findings)
        persistence = rule.session_persistence
        if persistence is not None:
            _check_persistence(item, (*path, "sessionPersistence"), persistence, findings)


def _check_persistence(item: Loaded, path: Path, persistence: SessionPersistence,
                       findings: Findings) -> None:
    if persistence.type == "Header" and persistence.session_name is None:
        findings.error(item, (*path, "sessionName"),
                       "name the header whose value keeps a client on one backendRef")
    lifetime = persistence.cookie_config.lifetime_type if persistence.cookie_config else None
    if persistence.type == "Cookie" and lifetime == "Permanent" \
            and persistence.absolute_timeout is None and persistence.idle_timeout is None:
        findings.error(item, (*path, "absoluteTimeout"),
                       "a Permanent cookie needs absoluteTimeout (or idleTimeout) for its Max-Age")
    if persistence.type == "Header" and persistence.cookie_config is not None:
        findings.warn(item, (*path, "cookieConfig"), "has no effect on type Header")


def _warn_filters(item: Loaded, path: Path, filters: Sequence[HTTPRouteFilter],
                  findings: Findings) -> None:
    for k, flt in enumerate(filters):
        if flt.type in NOT_IMPLEMENTED_FILTERS:
            findings.warn(item, (*path, k, "type"), f"{flt.type} filters are not implemented "
                                                    "yet: this filter has no effect")


def _check_pool(item: Loaded, pool: InferencePool, index: Index, findings: Findings) -> None:
    selector = pool.spec.selector
    matching = [s for s in index.servers if selector.matches(s.metadata.labels)]
    if not any(s.namespace == pool.namespace for s in matching):
        message = (f'the selector matches no ModelServer in namespace "{pool.namespace}": '
                   "the pool has no endpoints")
        elsewhere = [f"{s.namespace}/{s.name}" for s in matching]
        if elsewhere:
            message += (f" (matching labels on {', '.join(elsewhere)}, but pools only select "
                        "servers in their own namespace)")
        findings.warn(item, ("spec", "selector", "matchLabels"), message)
    if pool.spec.endpoint_picker_ref is not None:
        findings.warn(item, ("spec", "endpointPickerRef"), "ignored outside Kubernetes: "
                                                           "inferlane picks endpoints itself")
    if pool.spec.app_protocol != "http":
        findings.warn(item, ("spec", "appProtocol"), f"{pool.spec.app_protocol} is not "
                                                     "implemented yet: inferlane speaks HTTP/1.1 "
                                                     "to model servers")
    _check_pool_picker(item, pool, index, findings)
    if not backend_referenced(index, "InferencePool", pool.namespace, pool.name):
        findings.warn(item, ("metadata", "name"), "no HTTPRoute backendRef names this pool: it "
                                                  "receives no traffic")


def _check_server(item: Loaded, server: ModelServer, index: Index, findings: Findings) -> None:
    for other in index.servers:
        if other is server:
            break
        if (other.host, other.port) == (server.host, server.port):
            findings.error(item, ("spec", "address"), f'address "{server.spec.address}" is '
                                                      "already used by ModelServer "
                                                      f"{other.namespace}/{other.name}")
            break
    if not any(pool.namespace == server.namespace
               and pool.spec.selector.matches(server.metadata.labels) for pool in index.pools):
        findings.warn(item, ("metadata", "labels"), "no InferencePool selects this server: it "
                                                    "receives no traffic")


def _check_rewrites(items: Sequence[Loaded], index: Index, findings: Findings) -> None:
    # Upstream precedence: exact match beats a rule without matches, then the oldest (here:
    # the first in the file). Later rules that can never apply get a warning.
    exact: dict[tuple[str, str, str], str] = {}
    generic: dict[tuple[str, str], str] = {}
    for item in items:
        rewrite = item.resource
        assert isinstance(rewrite, InferenceModelRewrite)
        ref = rewrite.spec.pool_ref
        if not check_pool_ref(item, rewrite.namespace, ref.group, ref.kind, ref.name, index,
                              findings):
            continue
        pool = (rewrite.namespace, ref.name)
        for i, rule in enumerate(rewrite.spec.rules):
            where = f"InferenceModelRewrite {rewrite.name} rules[{i}]"
            if not rule.matches:
                if pool in generic:
                    findings.warn(item, ("spec", "rules", i),
                                  f"never applies: {generic[pool]} already rewrites every "
                                  "model of this pool")
                generic.setdefault(pool, where)
            for m, match in enumerate(rule.matches):
                key = (*pool, match.model.value)
                if key in exact:
                    findings.warn(item, ("spec", "rules", i, "matches", m, "model", "value"),
                                  f'never applies: model "{match.model.value}" is already '
                                  f"rewritten by {exact[key]}")
                exact.setdefault(key, where)


def _check_pool_picker(item: Loaded, pool: InferencePool, index: Index,
                       findings: Findings) -> None:
    annotations = pool.metadata.annotations
    path: Path = ("metadata", "annotations", PICKER_CONFIG_ANNOTATION)
    name = annotations.get(PICKER_CONFIG_ANNOTATION)
    if name is None:
        return
    if not name:
        findings.error(item, path, "must name an EndpointPickerConfig in the pool's namespace")
        return
    missing = not_found(index, findings, "EndpointPickerConfig", pool.namespace, name)
    if missing:
        findings.error(item, path, missing)
    if LOAD_BALANCING_ANNOTATION in annotations:
        findings.warn(item, ("metadata", "annotations", LOAD_BALANCING_ANNOTATION),
                      f"ignored: {PICKER_CONFIG_ANNOTATION} takes precedence")


def _check_picker_config(item: Loaded, config: EndpointPickerConfig, index: Index,
                         findings: Findings) -> None:
    known = plugin_types()
    defined: dict[str, int] = {}
    instances: dict[str, object] = {}
    failed = False
    for i, spec in enumerate(config.plugins):
        if spec.ref in defined:
            findings.error(item, ("plugins", i, "name" if spec.name else "type"),
                           f'duplicate plugin name "{spec.ref}" (also plugins[{defined[spec.ref]}])'
                           ": give each instance of a type its own name")
            failed = True
            continue
        defined[spec.ref] = i
        if spec.type not in known:
            hint = suggest(spec.type, list(known))
            did_you_mean = f' (did you mean "{hint}"?)' if hint else ""
            findings.error(item, ("plugins", i, "type"),
                           f'unknown plugin type "{spec.type}"{did_you_mean}; known types: '
                           + ", ".join(known))
            failed = True
            continue
        try:
            instances[spec.ref] = build_plugin(spec.type, spec.ref, spec.parameters or {})
        except ValueError as exc:
            findings.error(item, ("plugins", i, "parameters"), str(exc))
            failed = True
    profiles: dict[str, int] = {}
    for i, profile in enumerate(config.scheduling_profiles):
        if profile.name in profiles:
            findings.error(item, ("schedulingProfiles", i, "name"),
                           f'duplicate profile name "{profile.name}"')
        profiles.setdefault(profile.name, i)
        failed |= _check_profile(item, config, i, defined, instances, findings)
    if len(config.scheduling_profiles) > 1:
        findings.warn(item, ("schedulingProfiles", 1),
                      f'only the first profile ("{config.scheduling_profiles[0].name}") is run: '
                      "profile handlers are not implemented yet")
    if not failed:
        try:
            profile_from_config(config)
        except ValueError as exc:  # e.g. saturationDetector values a filter rejects
            findings.error(item, ("schedulingProfiles", 0), str(exc))
    used = any(pool.namespace == config.namespace
               and pool.endpoint_picker_config == config.name for pool in index.pools)
    if not used:
        findings.warn(item, ("metadata", "name"),
                      f"no InferencePool names this config (annotation "
                      f"{PICKER_CONFIG_ANNOTATION}: {config.name}): it has no effect")


def _check_profile(item: Loaded, config: EndpointPickerConfig, i: int, defined: dict[str, int],
                   instances: dict[str, object], findings: Findings) -> bool:
    """Check one scheduling profile; True when it has errors."""
    profile = config.scheduling_profiles[i]
    failed = False
    seen: set[str] = set()
    entries: list[tuple[str, object, float | None]] = []
    for j, ref in enumerate(profile.plugins):
        path: Path = ("schedulingProfiles", i, "plugins", j)
        if ref.plugin_ref not in defined:
            hint = suggest(ref.plugin_ref, list(defined))
            known = ", ".join(f'"{name}"' for name in defined)
            findings.error(item, (*path, "pluginRef"),
                           f'plugin "{ref.plugin_ref}" is not defined in plugins'
                           + (f' (did you mean "{hint}"?)' if hint else f" (defined: {known})"))
            failed = True
            continue
        if ref.plugin_ref in seen:
            findings.error(item, (*path, "pluginRef"),
                           f'plugin "{ref.plugin_ref}" is listed twice in this profile')
            failed = True
        seen.add(ref.plugin_ref)
        plugin = instances.get(ref.plugin_ref)
        if plugin is None:  # its own definition is broken, already reported
            continue
        entries.append((ref.plugin_ref, plugin, ref.weight))
        if ref.weight is not None and "scorer" not in plugin_roles(plugin):
            findings.warn(item, (*path, "weight"), f'ignored: "{ref.plugin_ref}" is not a scorer')
    try:
        assemble_profile(profile.name, entries)
    except ValueError as exc:
        findings.error(item, ("schedulingProfiles", i, "plugins"), str(exc))
        failed = True
    return failed
