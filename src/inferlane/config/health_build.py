"""Phase two for health: Monitors, MonitorGroups and HealthCheckPolicies become frozen
``health`` values — one ``PoolHealthSettings`` per InferencePool, and one per BackendSet (the
targets of L4 routes, watched like pools).

Phase one (``config.loader`` with ``config.health_checks``) has already rejected dangling
references, a pool targeted twice and every out-of-range value, so this step only resolves:
a policy's ``monitorRef`` becomes its members (a lone Monitor is a group of one voting member),
durations become seconds and percents become fractions where the runtime wants them. A pool
or set without a policy gets ``default_settings`` (no monitors, Envoy-default outlier
detection).
"""

from __future__ import annotations

from collections.abc import Mapping

from inferlane.config.loader import ConfigBundle
from inferlane.config.resources import (
    GrpcMonitorSettings,
    HealthCheckPolicy,
    HttpMonitorSettings,
    InferenceMonitorSettings,
    Monitor,
    MonitorGroup,
    TcpMonitorSettings,
    parse_duration,
    parse_status_codes,
)
from inferlane.health.monitors import (
    CodeRange,
    GrpcCheck,
    HttpCheck,
    InferenceCheck,
    MonitorSpec,
    MonitorType,
    TcpCheck,
)
from inferlane.health.outlier import OutlierConfig
from inferlane.health.settings import GroupMember, PoolHealthSettings, default_settings
from inferlane.health.verdicts import Member, Thresholds

# Region votes stay fresh for this many of the slowest member's intervals (when not set).
REGION_TIMEOUT_INTERVALS = 3
DEFAULT_REGION_TIMEOUT = 30.0  # seconds, a policy without enabled monitors
_MAJORITY = 0.5  # quorum without a group (one member: its verdict is the endpoint's)

_Key = tuple[str, str]  # (namespace, name)


def _key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"  # as config.build.key (which imports this module)


def monitor_spec(monitor: Monitor) -> MonitorSpec:
    """The runtime form of one Monitor; its key is ``"namespace/name"``."""
    spec = monitor.spec
    kind = MonitorType(spec.type)
    http = tcp = grpc = inference = None
    if kind in (MonitorType.HTTP, MonitorType.HTTPS):
        http = _http_check(spec.http or HttpMonitorSettings())
    elif kind is MonitorType.TCP:
        settings = spec.tcp or TcpMonitorSettings()
        tcp = TcpCheck(send=settings.send.encode(), expect=settings.expect.encode())
    elif kind is MonitorType.GRPC:
        grpc = GrpcCheck(service=(spec.grpc or GrpcMonitorSettings()).service)
    else:
        inference = _inference_check(spec.inference or InferenceMonitorSettings())
    return MonitorSpec(
        key=_key(monitor.namespace, monitor.name), type=kind,
        interval=parse_duration(spec.interval), timeout=parse_duration(spec.timeout),
        retries=spec.retries,
        thresholds=Thresholds(spec.consecutive_up, spec.consecutive_down),
        jitter=spec.jitter / 100, port=spec.port,
        http=http, tcp=tcp, grpc=grpc, inference=inference)


def _http_check(settings: HttpMonitorSettings) -> HttpCheck:
    return HttpCheck(
        method=settings.method, path=settings.path,
        headers=tuple((h.name, h.value) for h in settings.headers),
        expected_codes=tuple(CodeRange(*parse_status_codes(c)) for c in settings.expected_codes),
        expected_body=settings.expected_body, follow_redirects=settings.follow_redirects,
        insecure_skip_verify=settings.insecure_skip_verify)


def _inference_check(settings: InferenceMonitorSettings) -> InferenceCheck:
    threshold = settings.latency_threshold
    return InferenceCheck(
        model=settings.model, prompt=settings.prompt, max_tokens=settings.max_tokens,
        expected_text=settings.expected_text,
        latency_threshold=None if threshold is None else parse_duration(threshold),
        path=settings.path)


def build_pool_health(bundle: ConfigBundle) -> dict[str, PoolHealthSettings]:
    """Health settings of every InferencePool in ``bundle``, keyed ``"namespace/name"``."""
    return _build_health(bundle, "InferencePool",
                         [(pool.namespace, pool.name) for pool in bundle.inference_pools])


def build_backend_set_health(bundle: ConfigBundle) -> dict[str, PoolHealthSettings]:
    """Health settings of every BackendSet in ``bundle``, keyed ``"namespace/name"`` (the health
    tracker watches a set like a pool: its endpoints are the set's distinct addresses)."""
    return _build_health(bundle, "BackendSet",
                         [(item.namespace, item.name) for item in bundle.backend_sets])


def _build_health(bundle: ConfigBundle, kind: str,
                  targets: list[_Key]) -> dict[str, PoolHealthSettings]:
    specs = {(m.namespace, m.name): monitor_spec(m) for m in bundle.monitors}
    groups = {(g.namespace, g.name): g for g in bundle.monitor_groups}
    policies: dict[_Key, HealthCheckPolicy] = {}
    for policy in bundle.health_policies:
        for ref in policy.spec.target_refs:
            if ref.kind == kind:
                policies.setdefault((policy.namespace, ref.name), policy)
    out: dict[str, PoolHealthSettings] = {}
    for namespace, name in targets:
        target_key = _key(namespace, name)
        chosen = policies.get((namespace, name))
        out[target_key] = (default_settings(target_key) if chosen is None
                           else _pool_settings(target_key, chosen, specs, groups))
    return out


def _pool_settings(pool: str, policy: HealthCheckPolicy, specs: Mapping[_Key, MonitorSpec],
                   groups: Mapping[_Key, MonitorGroup]) -> PoolHealthSettings:
    spec = policy.spec
    source, members, quorum = _members(policy, specs, groups)
    if spec.region_timeout is not None:
        region_timeout = parse_duration(spec.region_timeout)
    else:
        intervals = [m.monitor.interval for m in members if m.member.enabled]
        region_timeout = (REGION_TIMEOUT_INTERVALS * max(intervals) if intervals
                          else DEFAULT_REGION_TIMEOUT)
    slow_start = parse_duration(spec.slow_start)
    passive = None
    if spec.passive.enabled:
        passive = OutlierConfig(
            consecutive_errors=spec.passive.consecutive_errors,
            base_ejection=parse_duration(spec.passive.base_ejection_time),
            max_ejection=parse_duration(spec.passive.max_ejection_time),
            max_ejection_percent=float(spec.passive.max_ejection_percent),
            panic_threshold_percent=float(spec.panic_threshold_percent),
            slow_start=slow_start)
    return PoolHealthSettings(
        pool=pool, source=source, members=members, quorum=quorum, regions=tuple(spec.regions),
        region_timeout=region_timeout, min_healthy=spec.min_healthy, passive=passive,
        slow_start=slow_start, panic_threshold_percent=float(spec.panic_threshold_percent))


def _members(policy: HealthCheckPolicy, specs: Mapping[_Key, MonitorSpec],
             groups: Mapping[_Key, MonitorGroup]
             ) -> tuple[str, tuple[GroupMember, ...], float]:
    """``(source, members, quorum)`` of the policy's ``monitorRef``."""
    ref = policy.spec.monitor_ref
    if ref is None:
        return "", (), _MAJORITY
    target = (policy.namespace, ref.name)
    if ref.kind == "Monitor":
        monitor = specs[target]
        return f"Monitor {monitor.key}", (GroupMember(Member(monitor.key), monitor),), _MAJORITY
    group = groups[target]
    members = []
    for entry in group.spec.members:
        monitor = specs[(group.namespace, entry.monitor_ref.name)]
        member = Member(monitor.key, enabled=entry.enabled,
                        monitoring_only=entry.monitoring_only,
                        must_be_healthy=entry.must_be_healthy)
        members.append(GroupMember(member, monitor))
    return (f"MonitorGroup {_key(*target)}", tuple(members),
            group.spec.quorum_percent / 100)
