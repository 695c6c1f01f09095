"""What the cross-resource checks share: the loaded resources, an index of them by key, and
the collected findings (``checks`` and ``policy_checks`` both append to one ``Findings``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from inferlane.config.issues import suggest
from inferlane.config.paths import Path, format_path
from inferlane.config.resources import (
    GATEWAY_GROUP,
    INFERENCE_GROUP,
    Gateway,
    HTTPRoute,
    InferencePool,
    ModelServer,
    ParentReference,
    Resource,
    TrafficPolicy,
)
from inferlane.config.yaml_source import LineMap
from inferlane.errors import ConfigIssue

ResourceKey = tuple[str, str, str]  # (kind, namespace, name)


@dataclass(frozen=True, slots=True)
class Loaded:
    """A validated resource and the line map of the document it came from."""

    resource: Resource
    lines: LineMap


@dataclass(slots=True)
class Findings:
    """Errors and warnings collected while checking one config."""

    source: str
    errors: list[ConfigIssue] = field(default_factory=list)
    warnings: list[ConfigIssue] = field(default_factory=list)
    broken: set[ResourceKey] = field(default_factory=set)  # failed their own validation

    def error(self, item: Loaded, path: Path, message: str) -> None:
        self.errors.append(self._issue(item, path, message))

    def warn(self, item: Loaded, path: Path, message: str) -> None:
        self.warnings.append(self._issue(item, path, message))

    def _issue(self, item: Loaded, path: Path, message: str) -> ConfigIssue:
        res = item.resource
        return ConfigIssue(res.kind, res.name, format_path(path), message, file=self.source,
                           line=item.lines.line_for(path))


class Index:
    def __init__(self, items: Sequence[Loaded]) -> None:
        self.by_key: dict[ResourceKey, Loaded] = {}
        for item in items:
            self.by_key.setdefault(item.resource.key, item)
        self.pools = [i.resource for i in items if isinstance(i.resource, InferencePool)]
        self.servers = [i.resource for i in items if isinstance(i.resource, ModelServer)]
        self.routes = [i.resource for i in items if isinstance(i.resource, HTTPRoute)]
        self.traffic_policies = [i.resource for i in items
                                 if isinstance(i.resource, TrafficPolicy)]

    def get(self, kind: str, namespace: str, name: str) -> Resource | None:
        item = self.by_key.get((kind, namespace, name))
        return item.resource if item else None

    def names(self, kind: str, namespace: str) -> list[str]:
        return [key[2] for key in self.by_key if key[0] == kind and key[1] == namespace]


def not_found(index: Index, findings: Findings, kind: str, namespace: str,
               name: str) -> str | None:
    """The "not found" message for a reference, or None when it resolves (or is broken)."""
    if index.get(kind, namespace, name) is not None or (kind, namespace, name) in findings.broken:
        return None
    message = f'{kind} "{namespace}/{name}" not found'
    elsewhere = sorted(key[1] for key in index.by_key if key[0] == kind and key[2] == name)
    if elsewhere:
        return message + (f" (there is one in namespace {', '.join(elsewhere)}: set the "
                          "reference's namespace)")
    hint = suggest(name, index.names(kind, namespace))
    return message + (f' (did you mean "{hint}"?)' if hint else "")




def parent_gateway(item: Loaded, path: Path, parent: ParentReference, route_namespace: str,
                   index: Index, findings: Findings) -> Gateway | None:
    """The Gateway a route's ``parentRefs`` entry names; None after reporting a parent that is
    not a Gateway or a Gateway that does not exist."""
    if (parent.group, parent.kind) != (GATEWAY_GROUP, "Gateway"):
        findings.error(item, (*path, "kind"), f'parent {parent.kind} in group '
                                              f'"{parent.group}" is not supported: only '
                                              "Gateway parents are")
        return None
    namespace = parent.namespace or route_namespace
    gateway = index.get("Gateway", namespace, parent.name)
    if not isinstance(gateway, Gateway):
        missing = not_found(index, findings, "Gateway", namespace, parent.name)
        if missing:
            findings.error(item, (*path, "name"), missing)
        return None
    return gateway


def check_pool_ref(item: Loaded, namespace: str, group: str, kind: str, name: str,
                   index: Index, findings: Findings) -> bool:
    """Report a ``spec.poolRef`` that is not an InferencePool or names a missing one; True when
    it is well-formed (the pool may still be missing)."""
    if (group, kind) != (INFERENCE_GROUP, "InferencePool"):
        wrong = "kind" if kind != "InferencePool" else "group"
        findings.error(item, ("spec", "poolRef", wrong),
                       f"poolRef must name an InferencePool (group {INFERENCE_GROUP}, kind "
                       f'InferencePool); got {kind} in group "{group}"')
        return False
    missing = not_found(index, findings, "InferencePool", namespace, name)
    if missing:
        findings.error(item, ("spec", "poolRef", "name"), missing)
    return True
