"""Phase two of config: resolve a validated ConfigBundle into an immutable GatewaySnapshot.

Phase one (``config.loader``) has already rejected every invalid or dangling reference, so this
step only resolves, in dependency order: ModelServers → pool endpoints → pickers and model
rewrites → compiled route rules → per-listener route tables → the list of served models.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import replace

from inferlane.config.attachment import attached_listeners
from inferlane.config.health_build import build_backend_set_health, build_pool_health
from inferlane.config.l4_build import build_l4, set_backends
from inferlane.config.loader import ConfigBundle
from inferlane.config.resources import (
    EndpointPickerConfig,
    Gateway,
    HTTPRoute,
    InferenceModel,
    InferenceObjective,
    InferencePool,
    RateLimitPolicy,
    SessionPersistence,
    TrafficPolicy,
    parse_duration,
)
from inferlane.config.resources.picker_config import (
    DefaultBand,
    PriorityBand,
    parse_byte_quantity,
)
from inferlane.errors import ConfigError, ConfigIssue
from inferlane.flowcontrol import BandConfig, FlowControlConfig, SaturationConfig
from inferlane.health.settings import PoolHealthSettings
from inferlane.health.tracker import WatchedEndpoint, WatchedPool
from inferlane.l4.config import BACKEND_SET_PREFIX
from inferlane.providers.runtime import ProviderConfigError, ProviderRuntime, build_provider
from inferlane.ratelimit import Limit
from inferlane.routing.affinity import SessionAffinity
from inferlane.routing.backends import BackendKind, BackendRef
from inferlane.routing.cooldown import CooldownConfig
from inferlane.routing.failures import FailureClass
from inferlane.routing.match import PathType, RouteTable, RuleMatch, ValueMatcher
from inferlane.routing.objectives import STANDARD, Objective, ObjectiveTable
from inferlane.routing.rate_limits import RateLimitRuleRuntime, RateLimitRuntime, RedisBackendSpec
from inferlane.routing.resilience import FailurePolicy, MirrorTarget, RetryRules
from inferlane.routing.rewrite import ModelRewriteTable, RewriteRule
from inferlane.routing.router import MODEL_HEADER, GatewaySnapshot, Listener
from inferlane.routing.rules import CompiledRule, HeaderModifier, PathRewrite
from inferlane.routing.split import WeightedChoice
from inferlane.routing.steering import GeoSteering, Steering, SteeringPolicy
from inferlane.scheduling.framework import StatesFn, bare_states
from inferlane.scheduling.interfaces import Endpoint
from inferlane.scheduling.pool import (
    DEFAULT_RELEASE_QUEUE_DEPTH,
    METRIC_FREE_MODES,
    FlowSettings,
    PoolRuntime,
)
from inferlane.scheduling.registry import build_scheduler

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_SESSION_COOKIE = "inferlane-session"


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
    resolve_secrets: bool = True,
) -> GatewaySnapshot:
    """Resolve ``bundle``; ``states`` feeds the schedulers (the data layer's store).

    With ``previous``, a pool whose scheduler spec is unchanged keeps its scheduler, so a reload
    does not forget the prefix index or session bindings. Provider credentials are read here
    (ConfigError naming the variable or file when missing) unless ``resolve_secrets`` is off
    (``inferlane validate`` on a machine without the keys).
    """
    providers = _build_providers(bundle, resolve_secrets)
    old_pools = previous.pools if previous is not None else {}
    health = build_pool_health(bundle)
    pools = {}
    for pool in bundle.inference_pools:
        pool_key = key(pool.namespace, pool.name)
        pools[pool_key] = _build_pool(pool, bundle, states, old_pools.get(pool_key), stale_after,
                                      health[pool_key])
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
                    compiled = _compile_rule(route, rule_index, bundle)
                    rule_pools = {b.key for b in compiled.backends.items if b.is_pool}
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
                gateway=key(gateway.namespace, gateway.name),
            ))
    for pool_key in routed_pools:
        models.update(pools[pool_key].rewrites.source_models())
    for pool in bundle.inference_pools:
        if key(pool.namespace, pool.name) in catch_all_pools:
            for server in bundle.servers_for(pool):
                models.update(server.spec.models)
    return GatewaySnapshot(
        generation=generation,
        l4=build_l4(bundle),
        backend_sets=_backend_set_health(bundle),
        source=bundle.source,
        listeners=tuple(listeners),
        pools=pools,
        models=tuple(sorted(models)),
        max_body_bytes=max_body_bytes,
        rate_limits=tuple(_rate_limit(policy) for policy in bundle.rate_limit_policies),
        providers=providers,
    )


def _build_providers(bundle: ConfigBundle, resolve_secrets: bool) -> dict[str, ProviderRuntime]:
    providers: dict[str, ProviderRuntime] = {}
    issues: list[ConfigIssue] = []
    for provider in bundle.providers:
        resource = provider
        if not resolve_secrets:  # nor the CA file: validation runs where neither may exist
            resource = provider.model_copy(update={"spec": provider.spec.model_copy(update={
                "credentials": None,
                "tls": provider.spec.tls.model_copy(update={"ca_file": None})})})
        try:
            runtime = build_provider(resource)
        except ProviderConfigError as error:
            issues.append(ConfigIssue("Provider", provider.name, error.field_path, str(error),
                                      file=bundle.source))
            continue
        providers[runtime.key] = runtime
    if issues:
        raise ConfigError(issues)
    return providers


def _backend_set_health(bundle: ConfigBundle) -> dict[str, WatchedPool]:
    """Each BackendSet as health watches it, keyed ``BACKEND_SET_PREFIX + "ns/name"`` (apart from
    InferencePools of the same name)."""
    settings = build_backend_set_health(bundle)
    watched: dict[str, WatchedPool] = {}
    for backend_set in bundle.backend_sets:
        set_key = key(backend_set.namespace, backend_set.name)
        health_key = BACKEND_SET_PREFIX + set_key
        watched[health_key] = WatchedPool(
            replace(settings[set_key], pool=health_key),
            tuple(WatchedEndpoint(b.key, b.host, b.port, weight=b.weight)
                  for b in set_backends(backend_set)))
    return watched


def _rate_limit(policy: RateLimitPolicy) -> RateLimitRuntime:
    spec = policy.spec.rate_limit
    targets = [(ref.kind, key(policy.namespace, ref.name)) for ref in policy.spec.target_refs]
    redis = None
    if spec.backend == "redis" and spec.redis is not None:
        redis = RedisBackendSpec(url=spec.redis.url, password_env=spec.redis.password_from_env,
                                 key_prefix=spec.redis.key_prefix,
                                 timeout=spec.redis.timeout_ms / 1000.0)
    return RateLimitRuntime(
        key=key(policy.namespace, policy.name),
        gateways=frozenset(name for kind, name in targets if kind == "Gateway"),
        routes=frozenset(name for kind, name in targets if kind == "HTTPRoute"),
        client_key_header=(spec.client_key.header.lower() if spec.client_key.header
                           else None),
        rules=tuple(RateLimitRuleRuntime(rule.name, rule.model, Limit(
            requests_per_minute=rule.requests_per_minute,
            tokens_per_minute=rule.tokens_per_minute)) for rule in spec.rules),
        redis=redis,
        fail_open=spec.failure_mode == "FailOpen",
    )


def _build_pool(
    pool: InferencePool, bundle: ConfigBundle, states: StatesFn, old: PoolRuntime | None,
    stale_after: float | None, health: PoolHealthSettings,
) -> PoolRuntime:
    endpoints: list[Endpoint] = []
    watched: list[WatchedEndpoint] = []
    for server in bundle.servers_for(pool):
        ports: Iterable[int] = (
            [server.spec.port] if server.spec.port is not None
            else [p.number for p in pool.spec.target_ports]
        )
        for port in ports:
            endpoint = Endpoint(name=key(server.namespace, server.name), host=server.spec.host,
                                port=port, engine=server.spec.engine,
                                metrics_path=server.spec.metrics_path)
            endpoints.append(endpoint)
            watched.append(WatchedEndpoint(
                endpoint.address, endpoint.host, endpoint.port,
                model=server.spec.models[0] if server.spec.models else "",
                weight=server.spec.weight))
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
    rules += [
        RewriteRule(models=(model.spec.model_name,),
                    targets=WeightedChoice.of([(t.name, 1 if t.weight is None else t.weight)
                                               for t in model.spec.target_models]))
        for model in bundle.inference_models_for(pool) if model.spec.target_models
    ]
    needs_metrics = config is not None or pool.load_balancing not in METRIC_FREE_MODES
    return PoolRuntime(
        key=key(pool.namespace, pool.name),
        name=pool.name,
        endpoints=tuple(endpoints),
        scheduler=scheduler,
        rewrites=ModelRewriteTable.build(rules),
        load_balancing=pool.load_balancing if config is None else f"config:{config.name}",
        scheduler_spec=spec,
        needs_metrics=needs_metrics,
        objectives=_objectives(pool, bundle),
        flow=_flow_settings(pool, config, needs_metrics, stale_after),
        context_window=pool.context_window,
        health=WatchedPool(health, tuple(watched)),
    )


def _objectives(pool: InferencePool, bundle: ConfigBundle) -> ObjectiveTable:
    def of(resource: InferenceObjective | InferenceModel) -> Objective:
        return Objective(resource.name, resource.priority, resource.ttft_target,
                         resource.deadline)

    by_name = {o.name: of(o) for o in bundle.objectives_for(pool)}
    by_model: dict[str, Objective] = {}
    for model in bundle.inference_models_for(pool):
        by_model.setdefault(model.spec.model_name, of(model))
    default = by_name.get(pool.default_objective or "", STANDARD)
    return ObjectiveTable(by_name=by_name, by_model=by_model, default=default)


def _flow_settings(pool: InferencePool, config: EndpointPickerConfig | None,
                   needs_metrics: bool, stale_after: float | None) -> FlowSettings | None:
    """Queues for pools whose picker reads server metrics (saturation needs them), unless the
    pool's annotation or its picker config's ``flowControl.enabled`` turns them off."""
    flow = config.flow_control if config is not None else None
    if not needs_metrics or pool.flow_control_disabled or (flow is not None
                                                           and not flow.enabled):
        return None
    detector = config.saturation_detector if config is not None else None
    saturation = SaturationConfig()
    if stale_after is not None:
        saturation = replace(saturation, staleness_seconds=stale_after)
    if detector is not None:
        if detector.queue_depth_threshold is not None:
            saturation = replace(saturation,
                                 queue_threshold=float(max(detector.queue_depth_threshold, 1)))
        if detector.kv_cache_util_threshold is not None:
            saturation = replace(saturation,
                                 kv_threshold=max(detector.kv_cache_util_threshold, 0.01))
        if detector.metrics_staleness_threshold is not None:
            saturation = replace(saturation, staleness_seconds=parse_duration(
                detector.metrics_staleness_threshold))
    queue = FlowControlConfig()
    release = replace(saturation, queue_threshold=float(
        flow.release_queue_depth_threshold if flow is not None
        and flow.release_queue_depth_threshold is not None else DEFAULT_RELEASE_QUEUE_DEPTH))
    if flow is not None:
        default_band = _band(queue.default_band, flow.default_band)
        queue = FlowControlConfig(
            bands=tuple(_band(replace(default_band, priority=band.priority), band)
                        for band in flow.priority_bands),
            default_band=default_band,
            max_requests=flow.max_requests or queue.max_requests,
            max_bytes=(parse_byte_quantity(flow.max_bytes) if flow.max_bytes is not None
                       else queue.max_bytes),
            queue_ttl=(parse_duration(flow.default_request_ttl)
                       if flow.default_request_ttl is not None else queue.queue_ttl),
        )
    return FlowSettings(queue=queue, saturation=saturation, release=release)


def _band(base: BandConfig, spec: PriorityBand | DefaultBand | None) -> BandConfig:
    if spec is None:
        return base
    return replace(
        base,
        max_requests=spec.max_requests or base.max_requests,
        max_bytes=(parse_byte_quantity(spec.max_bytes) if spec.max_bytes is not None
                   else base.max_bytes),
        fairness=spec.fairness_policy or base.fairness,
        ordering=spec.ordering_policy or base.ordering,
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


def _backend(kind: str, namespace: str, name: str) -> BackendRef:
    return BackendRef(BackendKind(kind), key(namespace, name))


def _compile_rule(route: HTTPRoute, rule_index: int, bundle: ConfigBundle) -> CompiledRule:
    rule = route.spec.rules[rule_index]
    namespace = route.metadata.namespace
    backends = WeightedChoice.of([
        (_backend(ref.kind, ref.namespace or namespace, ref.name), ref.weight)
        for ref in (rule.backend_refs or ())
    ])
    mirrors: list[MirrorTarget] = []
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
        elif flt.type == "RequestMirror" and flt.request_mirror is not None:
            mirror = flt.request_mirror
            fraction = 1.0
            if mirror.percent is not None:
                fraction = mirror.percent / 100.0
            elif mirror.fraction is not None:
                fraction = mirror.fraction.numerator / mirror.fraction.denominator
            ref = mirror.backend_ref
            mirrors.append(MirrorTarget(
                _backend(ref.kind, ref.namespace or namespace, ref.name), fraction))
    persistence = rule.session_persistence
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
        mirrors=tuple(mirrors),
        affinity=_affinity(persistence),
        steering=_steering(route, rule_index, bundle),
        failure=_failure_policy(route, rule_index, bundle),
    )


def _steering(route: HTTPRoute, rule_index: int, bundle: ConfigBundle) -> Steering | None:
    policy = _policy_for(route, route.spec.rules[rule_index].name, bundle)
    if policy is None or policy.spec.steering is None:
        return None
    spec = policy.spec.steering
    geo = None
    if spec.geo is not None:
        geo = GeoSteering(
            header=spec.geo.header.lower() if spec.geo.header else None,
            source_cidrs=tuple((ipaddress.ip_network(c.cidr, strict=False), c.region)
                               for c in spec.geo.source_cidrs),
            regions={r.region: tuple(_backend(ref.kind, ref.namespace or policy.namespace,
                                              ref.name) for ref in r.backend_refs)
                     for r in spec.geo.regions})
    return Steering(SteeringPolicy(spec.policy), geo)


def _affinity(persistence: SessionPersistence | None) -> SessionAffinity | None:
    if persistence is None:
        return None
    idle = parse_duration(persistence.idle_timeout) if persistence.idle_timeout else None
    absolute = (parse_duration(persistence.absolute_timeout) if persistence.absolute_timeout
                else None)
    if persistence.type == "Header":
        assert persistence.session_name is not None  # checked in phase one
        return SessionAffinity("Header", persistence.session_name.lower(), idle, absolute)
    config = persistence.cookie_config
    return SessionAffinity("Cookie", persistence.session_name or DEFAULT_SESSION_COOKIE, idle,
                           absolute, permanent=config is not None
                           and config.lifetime_type == "Permanent")


_TRIGGERS = {
    "connect-failure": FailureClass.CONNECT, "timeout": FailureClass.TIMEOUT,
    "5xx": FailureClass.SERVER_ERROR, "429": FailureClass.RATE_LIMITED,
    "context-window-exceeded": FailureClass.CONTEXT_WINDOW,
}


def _policy_for(route: HTTPRoute, rule_name: str | None,
                bundle: ConfigBundle) -> TrafficPolicy | None:
    """The TrafficPolicy naming this rule, else the one naming the whole route."""
    whole = None
    for policy in bundle.traffic_policies:
        if policy.namespace != route.namespace:
            continue
        for ref in policy.spec.target_refs:
            if ref.name != route.name:
                continue
            if ref.section_name is not None and ref.section_name == rule_name:
                return policy
            if ref.section_name is None and whole is None:
                whole = policy
    return whole


def _failure_policy(route: HTTPRoute, rule_index: int, bundle: ConfigBundle) -> FailurePolicy:
    rule = route.spec.rules[rule_index]
    policy = _policy_for(route, rule.name, bundle)
    retry = rule.retry
    attempts = 0
    codes: frozenset[int] = frozenset()
    base = 0.1
    if retry is not None:
        attempts = 1 if retry.attempts is None else retry.attempts
        codes = frozenset(retry.codes)
        if retry.backoff_seconds is not None:
            base = retry.backoff_seconds
    if policy is None:
        return FailurePolicy(retry=RetryRules(attempts=attempts, codes=codes, backoff_base=base))
    spec = policy.spec
    fallbacks: tuple[BackendRef, ...] = ()
    triggers = frozenset(_TRIGGERS.values())
    if spec.fallback is not None:
        fallbacks = tuple(_backend(ref.kind, ref.namespace or policy.namespace, ref.name)
                          for ref in spec.fallback.backend_refs)
        triggers = frozenset(_TRIGGERS[name] for name in spec.fallback.on)
    cool = spec.cooldown
    cooldown = None
    if cool.enabled:
        cooldown = CooldownConfig(
            window=parse_duration(cool.window), min_requests=cool.min_requests,
            failure_ratio=cool.failure_ratio, consecutive_failures=cool.consecutive_failures,
            duration=parse_duration(cool.duration), max_duration=parse_duration(cool.max_duration))
    return FailurePolicy(
        fallbacks=fallbacks,
        fallback_on=triggers,
        retry=RetryRules(
            attempts=attempts, codes=codes, backoff_base=base,
            backoff_max=parse_duration(spec.retry.backoff.max),
            retry_after_max=parse_duration(spec.retry.retry_after_max),
            budget_percent=spec.retry.budget.percent, budget_min=spec.retry.budget.min_retries),
        cooldown=cooldown,
        mirror_max_concurrent=spec.mirror.max_concurrent,
        mirror_timeout=parse_duration(spec.mirror.timeout),
        policy=key(policy.namespace, policy.name),
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
