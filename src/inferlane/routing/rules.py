"""Compiled HTTPRoute rules: what a matched rule tells the data plane to do.

Built from validated config by ``config.build``; immutable; carries no I/O. Header and path
changes are returned as data (``HeaderModifier``, ``PathRewrite``) and applied by the adapter
that owns the bytes (our data plane today, an ext_proc response tomorrow).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from inferlane.routing.affinity import SessionAffinity
from inferlane.routing.backends import BackendRef
from inferlane.routing.resilience import DEFAULT_POLICY, FailurePolicy, MirrorTarget
from inferlane.routing.split import WeightedChoice
from inferlane.routing.steering import Steering


@dataclass(frozen=True, slots=True)
class HeaderModifier:
    """Gateway API RequestHeaderModifier / ResponseHeaderModifier (names lower-cased)."""

    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PathRewrite:
    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    value: str

    def apply(self, path: str, matched_prefix: str) -> str:
        if self.type == "ReplaceFullPath":
            return self.value
        rest = path[len(matched_prefix.rstrip("/")) :]
        base = self.value.rstrip("/")
        if not rest:
            return self.value
        return f"{base}{rest}" if rest.startswith("/") else f"{base}/{rest}"


@dataclass(frozen=True, slots=True)
class CompiledRule:
    route: str  # "namespace/name" of the HTTPRoute
    rule_index: int
    rule_name: str | None
    backends: WeightedChoice[BackendRef]
    request_headers: HeaderModifier | None = None
    response_headers: HeaderModifier | None = None
    path_rewrite: PathRewrite | None = None
    host_rewrite: str | None = None  # URLRewrite.hostname: the Host header sent upstream
    request_timeout: float | None = None  # seconds, whole request incl. retries (Gateway API)
    backend_timeout: float | None = None  # seconds, one upstream attempt
    mirrors: tuple[MirrorTarget, ...] = ()
    affinity: SessionAffinity | None = None  # sessionPersistence
    failure: FailurePolicy = DEFAULT_POLICY
    steering: Steering | None = None  # TrafficPolicy steering: the backends are a steered set

    @property
    def sticky_header(self) -> str | None:
        """sessionPersistence type Header: the header whose value keeps a session's arm."""
        affinity = self.affinity
        return affinity.name if affinity is not None and affinity.type == "Header" else None

    @property
    def label(self) -> str:
        """How metrics and logs name this rule."""
        return self.route if self.rule_name is None else f"{self.route}/{self.rule_name}"

    @property
    def upstream_timeout(self) -> float | None:
        timeouts = [t for t in (self.request_timeout, self.backend_timeout) if t is not None]
        return min(timeouts) if timeouts else None
