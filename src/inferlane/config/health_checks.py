"""Cross-resource checks of the health kinds: Monitors, MonitorGroups, HealthCheckPolicies.

Errors: a policy target (InferencePool or BackendSet) or ``monitorRef`` naming nothing, two
policies for one pool or set, a group member naming no Monitor, a ``regionTimeout`` shorter
than a monitor's interval (region votes would go stale between probes). Warnings: monitors
and groups nothing uses, groups in which no member can vote, inference monitors that cannot
tell which model to ask for. Called from ``checks.check_resources`` (same findings, same "did
you mean" hints).
"""

from __future__ import annotations

from collections.abc import Sequence

from inferlane.config.checks_index import Findings, Index, Loaded, not_found
from inferlane.config.paths import Path
from inferlane.config.resources import (
    HealthCheckPolicy,
    InferencePool,
    Monitor,
    MonitorGroup,
    parse_duration,
)


def check_health(items: Sequence[Loaded], index: Index, findings: Findings) -> None:
    """Append the errors and warnings about the health kinds in ``items`` to ``findings``."""
    targeted: dict[tuple[str, str, str], str] = {}
    used: set[tuple[str, str, str]] = set()
    for item in items:
        res = item.resource
        if isinstance(res, MonitorGroup):
            used.update(("Monitor", res.namespace, m.monitor_ref.name) for m in res.spec.members)
            _check_group(item, res, index, findings)
        elif isinstance(res, HealthCheckPolicy):
            ref = res.spec.monitor_ref
            if ref is not None:
                used.add((ref.kind, res.namespace, ref.name))
            _check_policy(item, res, index, targeted, findings)
    for item in items:
        res = item.resource
        if isinstance(res, Monitor | MonitorGroup) and res.key not in used:
            users = "HealthCheckPolicy or MonitorGroup" if isinstance(res, Monitor) else \
                "HealthCheckPolicy"
            findings.warn(item, ("metadata", "name"), f"no {users} uses this {res.kind}: it "
                                                      "probes nothing")


def _check_group(item: Loaded, group: MonitorGroup, index: Index, findings: Findings) -> None:
    for i, member in enumerate(group.spec.members):
        missing = not_found(index, findings, "Monitor", group.namespace, member.monitor_ref.name)
        if missing:
            findings.error(item, ("spec", "members", i, "monitorRef", "name"), missing)
    if not any(m.enabled and not m.monitoring_only for m in group.spec.members):
        findings.warn(item, ("spec", "members"), "no member is enabled and voting: the group "
                                                 "never marks an endpoint unhealthy")


def _check_policy(item: Loaded, policy: HealthCheckPolicy, index: Index,
                  targeted: dict[tuple[str, str, str], str], findings: Findings) -> None:
    pools: list[InferencePool] = []
    for i, target in enumerate(policy.spec.target_refs):
        path: Path = ("spec", "targetRefs", i)
        key = (target.kind, policy.namespace, target.name)
        resource = index.get(*key)
        if resource is None:
            missing = not_found(index, findings, *key)
            if missing:
                findings.error(item, (*path, "name"), missing)
            continue
        if key in targeted:
            noun = "pool" if target.kind == "InferencePool" else target.kind
            findings.error(item, path, f"{target.kind} {target.name} is already targeted by "
                                       f"HealthCheckPolicy {targeted[key]}: one "
                                       f"HealthCheckPolicy per {noun}, merge the two")
        targeted.setdefault(key, policy.name)
        if isinstance(resource, InferencePool):
            pools.append(resource)
    monitors = _monitors(item, policy, index, findings)
    timeout = policy.spec.region_timeout
    enabled = [m for m, on in monitors if on]
    if timeout is not None and enabled:
        slowest = max(enabled, key=lambda m: parse_duration(m.spec.interval))
        if parse_duration(timeout) < parse_duration(slowest.spec.interval):
            findings.error(item, ("spec", "regionTimeout"),
                           f"is shorter than the interval of Monitor {slowest.name} "
                           f"({slowest.spec.interval}): region votes would go stale between "
                           "probes; use at least 3 x the interval (or leave it unset)")
    _check_inference_models(item, enabled, pools, index, findings)


def _monitors(item: Loaded, policy: HealthCheckPolicy, index: Index,
              findings: Findings) -> list[tuple[Monitor, bool]]:
    """The Monitors the policy runs, each with whether it is enabled; reports a missing
    ``monitorRef``."""
    ref = policy.spec.monitor_ref
    if ref is None:
        return []
    target = index.get(ref.kind, policy.namespace, ref.name)
    if target is None:
        missing = not_found(index, findings, ref.kind, policy.namespace, ref.name)
        if missing:
            findings.error(item, ("spec", "monitorRef", "name"), missing)
        return []
    if isinstance(target, Monitor):
        return [(target, True)]
    out = []
    if isinstance(target, MonitorGroup):
        for member in target.spec.members:
            monitor = index.get("Monitor", policy.namespace, member.monitor_ref.name)
            if isinstance(monitor, Monitor):
                out.append((monitor, member.enabled))
    return out


def _check_inference_models(item: Loaded, monitors: Sequence[Monitor],
                            pools: Sequence[InferencePool], index: Index,
                            findings: Findings) -> None:
    guessing = [m for m in monitors if m.spec.type == "inference"
                and (m.spec.inference is None or not m.spec.inference.model)]
    if not guessing:
        return
    for pool in pools:
        for server in index.servers:
            if (server.namespace == pool.namespace and not server.spec.models
                    and pool.spec.selector.matches(server.metadata.labels)):
                findings.warn(item, ("spec", "monitorRef"),
                              f"inference Monitor {guessing[0].name} names no model and "
                              f"ModelServer {server.name} (pool {pool.name}) lists none: its "
                              "probes of that server fail; set inference.model or the "
                              "server's models")
