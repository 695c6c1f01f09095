"""Phase two of config: resolve a validated ConfigBundle into an immutable GatewaySnapshot.

Phase one (``config.loader``) has already rejected every invalid or dangling reference, so this
step only resolves, in dependency order: ModelServers → pool endpoints → pickers and model
rewrites → compiled route rules → per-listener route tables → the list of served models.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from inferlane.config.attachment import attached_listeners
from inferlane.config.loader import ConfigBundle
from inferlane.config.resources import Gateway, HTTPRoute, InferencePool
from inferlane.routing.match import PathType, RouteTable, RuleMatch, ValueMatcher
from inferlane.routing.rewrite import ModelRewriteTable, RewriteRule
from inferlane.routing.router import MODEL_HEADER, GatewaySnapshot, Listener
from inferlane.routing.rules import CompiledRule, HeaderModifier, PathRewrite
from inferlane.routing.split import WeightedChoice
from inferlane.scheduling.framework import StatesFn, bare_states
from inferlane.scheduling.interfaces import Endpoint
from inferlane.scheduling.pool import METRIC_FREE_MODES, PoolRuntime
from inferlane.scheduling.registry import build_scheduler

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024


def key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def build_snapshot(
    bundle: ConfigBundle,
    *,
    generation: int = 1,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    states: StatesFn = bare_states,
    previous: GatewaySnapshot | None = None,
    stale_after: float | None = None,
) -> GatewaySnapshot:
    """Resolve ``bundle``; ``states`` feeds the schedulers (the data layer's store).

    With ``previous``, a pool whose scheduler spec is unchanged keeps its scheduler, so a reload
    does not forget the prefix index or session bindings.
    """
    old_pools = previous.pools if previous is not None else {}
    pools = {}
    for pool in bundle.inference_pools:
        pool_key = key(pool.namespace, pool.name)
        pools[pool_key] = _build_pool(pool, bundle, states, old_pools.get(pool_key), stale_after)
    listeners: list[Listener] = []
    catch_all_pools: set[str] = set()
    routed_pools: set[str] = set()
    models: set[str] = set()
    for gateway in bundle.gateways:
        for spec_listener in gateway.spec.listeners:
            if spec_listener.protocol != "HTTP":
                continue
            table: RouteTable[CompiledRule] = RouteTable()
            for order, route in enumerate(bundle.http_routes):
                if not _attaches(route, gateway, spec_listener.name):
                    continue
                hostnames = list(route.spec.hostnames or ())
                if not hostnames and spec_listener.hostname:
                    hostnames = [spec_listener.hostname]
                for rule_index, rule in enumerate(route.spec.rules):
                    compiled = _compile_rule(route, rule_index)
                    rule_pools = set(compiled.backends.items)
                    routed_pools |= rule_pools
                    for match_index, match in enumerate(_compile_matches(rule)):
                        table.add(match, compiled, hostnames=hostnames, route_order=order,
                                  rule_index=rule_index, match_index=match_index)
                        model_values = [h.value for h in match.headers
                                        if h.name == MODEL_HEADER and h.regex is None]
                        models.update(model_values)
                        if not any(h.name == MODEL_HEADER for h in match.headers):
                            catch_all_pools |= rule_pools
            listeners.append(Listener(
                name=f"{gateway.metadata.name}/{spec_listener.name}",
                port=spec_listener.port,
                routes=table,
            ))
    for pool_key in routed_pools:
        models.update(pools[pool_key].rewrites.source_models())
    for pool in bundle.inference_pools:
        if key(pool.namespace, pool.name) in catch_all_pools:
            for server in bundle.servers_for(pool):
                models.update(server.spec.models)
    return GatewaySnapshot(
        generation=generation,
        source=bundle.source,
        listeners=tuple(listeners),
        pools=pools,
        models=tuple(sorted(models)),
        max_body_bytes=max_body_bytes,
    )


def _build_pool(
    pool: InferencePool, bundle: ConfigBundle, states: StatesFn, old: PoolRuntime | None,
    stale_after: float | None,
) -> PoolRuntime:
    endpoints: list[Endpoint] = []
    for server in bundle.servers_for(pool):
        ports: Iterable[int] = (
            [server.spec.port] if server.spec.port is not None
            else [p.number for p in pool.spec.target_ports]
        )
        endpoints.extend(
            Endpoint(name=key(server.namespace, server.name), host=server.spec.host, port=port,
                     engine=server.spec.engine, metrics_path=server.spec.metrics_path)
            for port in ports
        )
    rules = [
        RewriteRule(
            models=tuple(m.model.value for m in (rule.matches or ())),
            targets=WeightedChoice.of([(t.model_rewrite, t.weight) for t in rule.targets]),
        )
        for rewrite in bundle.rewrites_for(pool)
        for rule in rewrite.spec.rules
    ]
    config = bundle.picker_config_for(pool)
    spec = pool.load_balancing if config is None else config.model_dump_json()
    if old is not None and old.scheduler_spec == spec:
        scheduler = old.scheduler
    else:
        scheduler = build_scheduler(pool.load_balancing, config=config, states=states,
                                    stale_after=stale_after)
    return PoolRuntime(
        key=key(pool.namespace, pool.name),
        name=pool.name,
        endpoints=tuple(endpoints),
        scheduler=scheduler,
        rewrites=ModelRewriteTable.build(rules),
        load_balancing=pool.load_balancing if config is None else f"config:{config.name}",
        scheduler_spec=spec,
        needs_metrics=config is not None or pool.load_balancing not in METRIC_FREE_MODES,
    )


def _attaches(route: HTTPRoute, gateway: Gateway, listener_name: str) -> bool:
    """Upstream attachment rules (namespaces, kinds, hostnames), shared with validation."""
    for ref in route.spec.parent_refs:
        if (ref.namespace or route.namespace) != gateway.namespace or ref.name != gateway.name:
            continue
        accepted, _ = attached_listeners(gateway, ref, route.namespace, route.spec.hostnames)
        if any(listener.name == listener_name for listener in accepted):
            return True
    return False


def _compile_rule(route: HTTPRoute, rule_index: int) -> CompiledRule:
    rule = route.spec.rules[rule_index]
    namespace = route.metadata.namespace
    backends = WeightedChoice.of([
        (key(ref.namespace or namespace, ref.name), ref.weight)
        for ref in (rule.backend_refs or ())
    ])
    request_headers = response_headers = None
    path_rewrite = None
    host_rewrite = None
    for flt in rule.filters or ():
        if flt.type == "RequestHeaderModifier" and flt.request_header_modifier is not None:
            request_headers = _modifier(flt.request_header_modifier)
        elif flt.type == "ResponseHeaderModifier" and flt.response_header_modifier is not None:
            response_headers = _modifier(flt.response_header_modifier)
        elif flt.type == "URLRewrite" and flt.url_rewrite is not None:
            host_rewrite = flt.url_rewrite.hostname
            path = flt.url_rewrite.path
            if path is not None and path.type == "ReplaceFullPath":
                path_rewrite = PathRewrite("ReplaceFullPath", path.replace_full_path or "/")
            elif path is not None:
                path_rewrite = PathRewrite("ReplacePrefixMatch", path.replace_prefix_match or "/")
    timeouts = rule.timeouts
    return CompiledRule(
        route=key(namespace, route.metadata.name),
        rule_index=rule_index,
        rule_name=rule.name,
        backends=backends,
        request_headers=request_headers,
        response_headers=response_headers,
        path_rewrite=path_rewrite,
        host_rewrite=host_rewrite,
        # Gateway API: a zero duration means "no timeout".
        request_timeout=(timeouts.request_seconds or None) if timeouts is not None else None,
        backend_timeout=(
            (timeouts.backend_request_seconds or None) if timeouts is not None else None
        ),
    )


def _modifier(spec: object) -> HeaderModifier:
    set_ = getattr(spec, "set", None) or ()
    add = getattr(spec, "add", None) or ()
    remove = getattr(spec, "remove", None) or ()
    return HeaderModifier(
        set=tuple((h.name.lower(), h.value) for h in set_),
        add=tuple((h.name.lower(), h.value) for h in add),
        remove=tuple(name.lower() for name in remove),
    )


def _compile_matches(rule: object) -> list[RuleMatch]:
    matches = getattr(rule, "matches", None) or ()
    if not matches:
        return [RuleMatch()]
    compiled: list[RuleMatch] = []
    for match in matches:
        path_type: PathType = "PathPrefix"
        path_value = "/"
        if match.path is not None:
            path_type, path_value = match.path.type, match.path.value
        compiled.append(RuleMatch(
            path_type=path_type,
            path_value=path_value,
            path_regex=re.compile(path_value) if path_type == "RegularExpression" else None,
            method=match.method,
            headers=tuple(_value_matcher(h.type, h.name.lower(), h.value)
                          for h in (match.headers or ())),
            query=tuple(_value_matcher(q.type, q.name, q.value)
                        for q in (match.query_params or ())),
        ))
    return compiled


def _value_matcher(kind: str | None, name: str, value: str) -> ValueMatcher:
    regex = re.compile(value) if kind == "RegularExpression" else None
    return ValueMatcher(name=name, value=value, regex=regex)
