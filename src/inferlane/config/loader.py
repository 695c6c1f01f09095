"""Public entry point of phase one: YAML text or file in, a validated ``ConfigBundle`` out.

Steps: split the stream into documents keeping lines (``yaml_source``), look each document's
``(apiVersion, kind)`` up in ``resources.RESOURCE_KINDS`` and validate it strictly (pydantic,
no coercion of "8080" to 8080, upstream camelCase names only), then check references across
resources (``checks``). Every problem found is collected; if any is an error,
``ConfigError`` is raised with all of them, each as ``file:line: kind/name: path: message``.

The bundle holds the validated models grouped by kind, in file order, plus the warnings.
Building runtime objects from it is phase two and lives outside ``config``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from inferlane.config.checks import check_resources
from inferlane.config.checks_index import Findings, Loaded
from inferlane.config.issues import show, suggest, validation_problems
from inferlane.config.paths import Path, format_path
from inferlane.config.resources import (
    RESOURCE_KINDS,
    BackendSet,
    EndpointPickerConfig,
    Gateway,
    HealthCheckPolicy,
    HTTPRoute,
    InferenceModel,
    InferenceModelRewrite,
    InferenceObjective,
    InferencePool,
    ModelServer,
    Monitor,
    MonitorGroup,
    Provider,
    RateLimitPolicy,
    Resource,
    TCPRoute,
    TrafficPolicy,
    UDPRoute,
)
from inferlane.config.yaml_source import LineMap, parse_documents
from inferlane.errors import ConfigError, ConfigIssue


@dataclass(frozen=True, slots=True)
class ConfigBundle:
    """A validated config: resources by kind, in file order, and the warnings found."""

    gateways: tuple[Gateway, ...]
    http_routes: tuple[HTTPRoute, ...]
    inference_pools: tuple[InferencePool, ...]
    model_servers: tuple[ModelServer, ...]
    model_rewrites: tuple[InferenceModelRewrite, ...]
    warnings: tuple[ConfigIssue, ...]
    source: str
    picker_configs: tuple[EndpointPickerConfig, ...] = ()
    objectives: tuple[InferenceObjective, ...] = ()
    inference_models: tuple[InferenceModel, ...] = ()
    rate_limit_policies: tuple[RateLimitPolicy, ...] = ()
    providers: tuple[Provider, ...] = ()
    traffic_policies: tuple[TrafficPolicy, ...] = ()
    monitors: tuple[Monitor, ...] = ()
    monitor_groups: tuple[MonitorGroup, ...] = ()
    health_policies: tuple[HealthCheckPolicy, ...] = ()
    tcp_routes: tuple[TCPRoute, ...] = ()
    udp_routes: tuple[UDPRoute, ...] = ()
    backend_sets: tuple[BackendSet, ...] = ()

    def gateway(self, namespace: str, name: str) -> Gateway | None:
        return next((g for g in self.gateways if (g.namespace, g.name) == (namespace, name)), None)

    def pool(self, namespace: str, name: str) -> InferencePool | None:
        return next((p for p in self.inference_pools
                     if (p.namespace, p.name) == (namespace, name)), None)

    def provider(self, namespace: str, name: str) -> Provider | None:
        return next((p for p in self.providers
                     if (p.namespace, p.name) == (namespace, name)), None)

    def backend_set(self, namespace: str, name: str) -> BackendSet | None:
        return next((s for s in self.backend_sets
                     if (s.namespace, s.name) == (namespace, name)), None)

    def model_server(self, namespace: str, name: str) -> ModelServer | None:
        return next((s for s in self.model_servers
                     if (s.namespace, s.name) == (namespace, name)), None)

    def picker_config(self, namespace: str, name: str) -> EndpointPickerConfig | None:
        return next((c for c in self.picker_configs
                     if (c.namespace, c.name) == (namespace, name)), None)

    def picker_config_for(self, pool: InferencePool) -> EndpointPickerConfig | None:
        """The EndpointPickerConfig the pool's annotation names (same namespace), if any."""
        name = pool.endpoint_picker_config
        return self.picker_config(pool.namespace, name) if name else None

    def objectives_for(self, pool: InferencePool) -> tuple[InferenceObjective, ...]:
        """InferenceObjectives whose poolRef names the pool (same namespace)."""
        return tuple(o for o in self.objectives if o.namespace == pool.namespace
                     and o.spec.pool_ref.name == pool.name)

    def inference_models_for(self, pool: InferencePool) -> tuple[InferenceModel, ...]:
        """The older InferenceModels of the pool, first in the file first."""
        return tuple(m for m in self.inference_models if m.namespace == pool.namespace
                     and m.spec.pool_ref.name == pool.name)

    def servers_for(self, pool: InferencePool) -> tuple[ModelServer, ...]:
        """ModelServers the pool's selector matches (same namespace only, like Pods)."""
        return tuple(s for s in self.model_servers if s.namespace == pool.namespace
                     and pool.spec.selector.matches(s.metadata.labels))

    def rewrites_for(self, pool: InferencePool) -> tuple[InferenceModelRewrite, ...]:
        """InferenceModelRewrites of the pool, oldest (first in the file) first."""
        return tuple(r for r in self.model_rewrites if r.namespace == pool.namespace
                     and r.spec.pool_ref.name == pool.name)

    def routes_for(self, gateway: Gateway) -> tuple[HTTPRoute, ...]:
        """HTTPRoutes with a parentRef naming the gateway (attachment rules already hold)."""
        return tuple(
            route for route in self.http_routes
            if any(ref.name == gateway.name
                   and (ref.namespace or route.namespace) == gateway.namespace
                   for ref in route.spec.parent_refs))


def load_config_file(path: str | os.PathLike[str]) -> ConfigBundle:
    """Load and validate a config file; raises ConfigError (also when it cannot be read)."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError([ConfigIssue("?", "?", "", f"cannot read config file: {reason}",
                                       file=source)]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigIssue("?", "?", "", f"config file is not UTF-8 (byte "
                                                     f"{exc.start})", file=source)]) from None
    return load_config_text(text, source)


def load_config_text(text: str, source: str = "<string>") -> ConfigBundle:
    """Parse and validate multi-document YAML; raises ConfigError listing every error."""
    documents, errors = parse_documents(text, source)
    syntax_broken = bool(errors)
    findings = Findings(source)
    loaded: list[Loaded] = []
    for document in documents:
        kind, name = _label(document.data)
        errors.extend(ConfigIssue(kind, name, format_path(path), message, file=source,
                                  line=document.lines.line_for(path))
                      for path, message in document.problems)
        for data, lines in _entries(document.data, document.lines, errors, source):
            resource, issues = _validate(data, lines, source)
            if resource is not None and not issues:
                loaded.append(Loaded(resource, lines))
            else:
                errors.extend(issues)
                findings.broken.add(_raw_key(data))
    if not syntax_broken:  # a cut-off stream would make every reference look missing
        check_resources(loaded, findings)
    errors.extend(findings.errors)
    if errors:
        raise ConfigError(_in_file_order(errors))
    resources = [item.resource for item in loaded]
    return ConfigBundle(
        gateways=tuple(r for r in resources if isinstance(r, Gateway)),
        http_routes=tuple(r for r in resources if isinstance(r, HTTPRoute)),
        inference_pools=tuple(r for r in resources if isinstance(r, InferencePool)),
        model_servers=tuple(r for r in resources if isinstance(r, ModelServer)),
        model_rewrites=tuple(r for r in resources if isinstance(r, InferenceModelRewrite)),
        warnings=tuple(_in_file_order(findings.warnings)),
        source=source,
        picker_configs=tuple(r for r in resources if isinstance(r, EndpointPickerConfig)),
        objectives=tuple(r for r in resources if isinstance(r, InferenceObjective)),
        inference_models=tuple(r for r in resources if isinstance(r, InferenceModel)),
        rate_limit_policies=tuple(r for r in resources if isinstance(r, RateLimitPolicy)),
        providers=tuple(r for r in resources if isinstance(r, Provider)),
        traffic_policies=tuple(r for r in resources if isinstance(r, TrafficPolicy)),
        monitors=tuple(r for r in resources if isinstance(r, Monitor)),
        monitor_groups=tuple(r for r in resources if isinstance(r, MonitorGroup)),
        health_policies=tuple(r for r in resources if isinstance(r, HealthCheckPolicy)),
        tcp_routes=tuple(r for r in resources if isinstance(r, TCPRoute)),
        udp_routes=tuple(r for r in resources if isinstance(r, UDPRoute)),
        backend_sets=tuple(r for r in resources if isinstance(r, BackendSet)),
    )


def _entries(data: Any, lines: LineMap, errors: list[ConfigIssue],
             source: str) -> Iterator[tuple[Any, LineMap]]:
    """The resources of one document: itself, or the items of a ``kind: List``."""
    if not (isinstance(data, dict) and data.get("apiVersion") == "v1"
            and data.get("kind") == "List"):
        yield data, lines
        return
    items = data.get("items")
    if not isinstance(items, list):
        errors.append(ConfigIssue("List", "?", "items", "must be a list of resources",
                                  file=source, line=lines.line_for(("items",))))
        return
    for i, item in enumerate(items):
        yield item, lines.child(("items", i))


def _validate(data: Any, lines: LineMap,
              source: str) -> tuple[Resource | None, list[ConfigIssue]]:
    kind, name = _label(data)

    def issue(path: Path, message: str) -> ConfigIssue:
        return ConfigIssue(kind, name, format_path(path), message, file=source,
                           line=lines.line_for(path))

    if not isinstance(data, dict):
        return None, [issue((), "each document must be a mapping with apiVersion, kind, "
                                f"metadata and spec (got {show(data)})")]
    issues = [issue((field,), "required field is missing" if field not in data else
                    f"must be a string (got {show(data[field])})")
              for field in ("apiVersion", "kind") if not isinstance(data.get(field), str)]
    if issues:
        return None, issues
    model = RESOURCE_KINDS.get((data["apiVersion"], data["kind"]))
    if model is None:
        field, message = _unknown_kind(data["apiVersion"], data["kind"])
        return None, [issue((field,), message)]
    try:
        resource = model.model_validate(data, strict=True, by_alias=True, by_name=False)
    except ValidationError as exc:
        return None, [issue(path, message) for path, message in validation_problems(exc, model)]
    return resource, []


def _unknown_kind(api_version: str, kind: str) -> tuple[str, str]:
    versions = [v for v, k in RESOURCE_KINDS if k == kind]
    if versions:
        return "apiVersion", (f'apiVersion "{api_version}" is not supported for kind {kind}; '
                              f"use {' or '.join(versions)}")
    kinds = sorted({k for _, k in RESOURCE_KINDS})
    hint = suggest(kind, kinds)
    known = "; ".join(f"{k} ({', '.join(v for v, k2 in RESOURCE_KINDS if k2 == k)})"
                      for k in kinds)
    did_you_mean = f' (did you mean "{hint}"?)' if hint else ""
    return "kind", (f'unknown kind "{kind}" with apiVersion "{api_version}"{did_you_mean}; '
                    f"known kinds: {known}")


def _label(data: Any) -> tuple[str, str]:
    """(kind, name) for issues, "?" where the document does not say."""
    if not isinstance(data, dict):
        return "?", "?"
    kind = data.get("kind")
    metadata = data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return (kind if isinstance(kind, str) and kind else "?",
            name if isinstance(name, str) and name else "?")


def _raw_key(data: Any) -> tuple[str, str, str]:
    kind, name = _label(data)
    metadata = data.get("metadata") if isinstance(data, dict) else None
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    return kind, namespace if isinstance(namespace, str) else "default", name


def _in_file_order(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    return sorted(issues, key=lambda i: (i.line is None, i.line or 0))
