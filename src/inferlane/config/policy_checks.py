"""Cross-resource checks of the traffic-policy kinds: objectives, InferenceModels, pools' default
objectives and RateLimitPolicies. Called from ``checks.check_resources`` (same findings, same
"did you mean" hints), kept apart so that module stays about routes, pools and pickers.
"""

from __future__ import annotations

from collections.abc import Sequence

from inferlane.config.checks_index import Findings, Index, Loaded, check_pool_ref, not_found
from inferlane.config.resources import (
    GATEWAY_GROUP,
    InferenceModel,
    InferenceObjective,
    InferencePool,
    RateLimitPolicy,
)
from inferlane.config.resources.inference import DEFAULT_OBJECTIVE_ANNOTATION


def check_policies(items: Sequence[Loaded], index: Index, findings: Findings) -> None:
    models_seen: dict[tuple[str, str, str], str] = {}
    for item in items:
        res = item.resource
        if isinstance(res, (InferenceObjective, InferenceModel)):
            _check_pool_ref(item, res, index, findings)
        if isinstance(res, InferenceModel):
            key = (res.namespace, res.spec.pool_ref.name, res.spec.model_name)
            if key in models_seen:
                findings.error(item, ("spec", "modelName"),
                               f'model "{res.spec.model_name}" of pool {key[1]} already has '
                               f"InferenceModel {models_seen[key]}: keep one")
            models_seen.setdefault(key, res.name)
        elif isinstance(res, InferencePool):
            _check_default_objective(item, res, index, findings)
        elif isinstance(res, RateLimitPolicy):
            _check_rate_limit(item, res, index, findings)


def _check_pool_ref(item: Loaded, res: InferenceObjective | InferenceModel, index: Index,
                    findings: Findings) -> None:
    ref = res.spec.pool_ref
    check_pool_ref(item, res.namespace, ref.group, ref.kind, ref.name, index, findings)


def _check_default_objective(item: Loaded, pool: InferencePool, index: Index,
                             findings: Findings) -> None:
    name = pool.default_objective
    if name is None:
        return
    path = ("metadata", "annotations", DEFAULT_OBJECTIVE_ANNOTATION)
    missing = not_found(index, findings, "InferenceObjective", pool.namespace, name)
    if missing:
        findings.error(item, path, missing)
        return
    objective = index.get("InferenceObjective", pool.namespace, name)
    if isinstance(objective, InferenceObjective) and objective.spec.pool_ref.name != pool.name:
        findings.error(item, path, f'InferenceObjective "{name}" belongs to pool '
                                   f"{objective.spec.pool_ref.name}, not to this pool")


def _check_rate_limit(item: Loaded, policy: RateLimitPolicy, index: Index,
                      findings: Findings) -> None:
    for i, ref in enumerate(policy.spec.target_refs):
        if ref.group != GATEWAY_GROUP:
            findings.error(item, ("spec", "targetRefs", i, "group"),
                           f'targets are Gateways or HTTPRoutes of group {GATEWAY_GROUP}; got '
                           f'"{ref.group}"')
            continue
        missing = not_found(index, findings, ref.kind, policy.namespace, ref.name)
        if missing:
            findings.error(item, ("spec", "targetRefs", i, "name"), missing)
