"""The ``HTTPRoute`` kind (gateway.networking.k8s.io): which requests go to which pool.

A route attaches to Gateway listeners (``parentRefs``) and holds rules: matches (path,
headers, query params, method; any one match selects the rule), filters, and weighted
``backendRefs``. In this version every backendRef must be an ``InferencePool`` (checked across
resources in ``config.checks``). Upstream defaults are applied here, so phase two never
special-cases absent values: a rule without matches gets the catch-all ``PathPrefix /`` match,
and a route without rules gets one such rule.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from inferlane.config.paths import Path
from inferlane.config.resources.filters import (
    BackendObjectReference,
    HTTPMethod,
    HTTPRouteFilter,
    check_filter_list,
)
from inferlane.config.resources.gateway import GATEWAY_GROUP
from inferlane.config.resources.meta import (
    IGNORED,
    NOT_IMPLEMENTED,
    Duration,
    Group,
    HeaderName,
    Hostname,
    Kind,
    Namespace,
    ObjectName,
    PortNumber,
    Problems,
    Resource,
    SectionName,
    StrictModel,
    parse_duration,
)

_PATH_CHARS_RE = re.compile(r"(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})+")
_PATH_FORBIDDEN = ("//", "/./", "/../", "%2f", "%2F", "#")


def regex_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a valid Python regular expression, or None."""
    try:
        re.compile(pattern)
    except re.error as exc:
        return f'"{pattern}" is not a valid regular expression: {exc.msg} at position {exc.pos}'
    return None


class ParentReference(StrictModel):
    """The Gateway (and optionally the listener) a route attaches to."""

    group: Group = Field(GATEWAY_GROUP, description="API group of the parent.")
    kind: Kind = Field("Gateway", description="Kind of the parent; only Gateway is supported.")
    namespace: Namespace | None = Field(None, description="Namespace; defaults to the route's.")
    name: ObjectName = Field(description="Name of the Gateway.")
    section_name: SectionName | None = Field(None, alias="sectionName",
                                             description="Listener name to attach to.")
    port: PortNumber | None = Field(None, description="Listener port to attach to.")


class HTTPPathMatch(StrictModel):
    """How the request path is matched."""

    type: Literal["PathPrefix", "Exact", "RegularExpression"] = Field(
        "PathPrefix", description="PathPrefix matches whole path segments; RegularExpression "
                                  "uses Python ``re`` syntax.")
    value: str = Field("/", max_length=1024, description="Path, prefix or pattern.")

    @model_validator(mode="after")
    def _check(self) -> HTTPPathMatch:
        problems = Problems()
        value = self.value
        if self.type == "RegularExpression":
            why = regex_problem(value)
            if why:
                problems.add(("value",), why)
        elif not value.startswith("/"):
            problems.add(("value",), f'"{value}" must start with "/"')
        elif bad := next((s for s in _PATH_FORBIDDEN if s in value), None):
            problems.add(("value",), f'"{value}" must not contain "{bad}"')
        elif value.endswith(("/..", "/.")):
            problems.add(("value",), f'"{value}" must not end with "/." or "/.."')
        elif not _PATH_CHARS_RE.fullmatch(value):
            problems.add(("value",), f'"{value}" contains characters not allowed in a path '
                                     "(percent-encode them)")
        problems.raise_if_any()
        return self


class _ValueMatch(StrictModel):
    """Shared shape of header and query-param conditions: a name and an Exact or regex value."""

    type: Literal["Exact", "RegularExpression"] = Field(
        "Exact", description="Exact compares the value; RegularExpression uses Python ``re``.")

    @model_validator(mode="after")
    def _check(self) -> _ValueMatch:
        problems = Problems()
        value: str = getattr(self, "value")  # noqa: B009 - declared by each subclass
        why = regex_problem(value) if self.type == "RegularExpression" else None
        if why:
            problems.add(("value",), why)
        problems.raise_if_any()
        return self


class HTTPHeaderMatch(_ValueMatch):
    """A request header condition."""

    name: HeaderName = Field(description="Header name (case-insensitive).")
    value: str = Field(min_length=1, max_length=4096, description="Value or pattern.")


class HTTPQueryParamMatch(_ValueMatch):
    """A query parameter condition."""

    name: HeaderName = Field(description="Parameter name (case-sensitive).")
    value: str = Field(min_length=1, max_length=1024, description="Value or pattern.")


class HTTPRouteMatch(StrictModel):
    """Conditions that must all hold for a request to select the rule."""

    path: HTTPPathMatch = Field(default_factory=HTTPPathMatch, description="Path condition.")
    headers: list[HTTPHeaderMatch] = Field(default_factory=list, max_length=16,
                                           description="Header conditions (all must hold).")
    query_params: list[HTTPQueryParamMatch] = Field(
        default_factory=list, alias="queryParams", max_length=16,
        description="Query parameter conditions (all must hold).")
    method: HTTPMethod | None = Field(None, description="Request method.")

    @model_validator(mode="after")
    def _check(self) -> HTTPRouteMatch:
        problems = Problems()
        for field, names in (("headers", [h.name.lower() for h in self.headers]),
                             ("queryParams", [q.name for q in self.query_params])):
            for i, name in enumerate(names):
                if name in names[:i]:
                    problems.add((field, i, "name"), f'duplicate name "{name}" (first at '
                                                     f"{field}[{names.index(name)}])")
        problems.raise_if_any()
        return self


class HTTPBackendRef(BackendObjectReference):
    """A weighted backend: an InferencePool or a Provider."""

    group: Group = Field("", description="API group: inference.networking.k8s.io for an "
                                         "InferencePool, inferlane.dev for a Provider.")
    kind: Kind = Field("Service", description="InferencePool or Provider (upstream default "
                                              "Service is not supported).")
    weight: int = Field(1, ge=0, le=1_000_000,
                        description="Share of traffic relative to the rule's other backendRefs; "
                                    "0 sends none.")
    filters: list[HTTPRouteFilter] = Field(
        default_factory=list, max_length=16,
        description="Filters applied only when this backend is chosen.",
        json_schema_extra=NOT_IMPLEMENTED)

    @model_validator(mode="after")
    def _check_filters(self) -> HTTPBackendRef:
        problems = Problems()
        check_filter_list(problems, ("filters",), self.filters)
        problems.raise_if_any()
        return self


class HTTPRouteTimeouts(StrictModel):
    """Time limits; "0s" disables a timeout."""

    request: Duration | None = Field(None, description="Whole request, including retries.")
    backend_request: Duration | None = Field(
        None, alias="backendRequest", description="One attempt to a backend; at most request.")

    @property
    def request_seconds(self) -> float | None:
        """``request`` in seconds; 0.0 means no timeout."""
        return None if self.request is None else parse_duration(self.request)

    @property
    def backend_request_seconds(self) -> float | None:
        """``backendRequest`` in seconds; 0.0 means no timeout."""
        return None if self.backend_request is None else parse_duration(self.backend_request)

    @model_validator(mode="after")
    def _check(self) -> HTTPRouteTimeouts:
        problems = Problems()
        request, backend = self.request_seconds, self.backend_request_seconds
        if request and backend is not None and backend > request:
            problems.add(("backendRequest",), f"backendRequest timeout ({self.backend_request}) "
                                              f"cannot be longer than request ({self.request})")
        problems.raise_if_any()
        return self


class HTTPRouteRetry(StrictModel):
    """When to retry a backend request."""

    codes: list[int] = Field(default_factory=list,
                             description="Status codes (400-599) retried; empty: 429 and 5xx.")
    attempts: int | None = Field(None, ge=0, le=10,
                                 description="Retries on the same backend after the first "
                                             "attempt (default 1 when retry is set).")
    backoff: Duration | None = Field(None, description="Base of the jittered exponential "
                                                       "backoff (default 100ms).")

    @property
    def backoff_seconds(self) -> float | None:
        return None if self.backoff is None else parse_duration(self.backoff)

    @model_validator(mode="after")
    def _check(self) -> HTTPRouteRetry:
        problems = Problems()
        for i, code in enumerate(self.codes):
            if not 400 <= code <= 599:
                problems.add(("codes", i), f"{code} is not between 400 and 599")
        problems.raise_if_any()
        return self


class CookieConfig(StrictModel):
    """Cookie settings of session persistence."""

    lifetime_type: Literal["Permanent", "Session"] = Field(
        "Session", alias="lifetimeType", description="Cookie lifetime.")


class SessionPersistence(StrictModel):
    """Session affinity between a rule's backends (upstream: deprecated in favour of the
    Backend resource)."""

    session_name: str | None = Field(None, alias="sessionName", max_length=128,
                                     description="Cookie or header name.")
    absolute_timeout: Duration | None = Field(None, alias="absoluteTimeout",
                                              description="Session lifetime.")
    idle_timeout: Duration | None = Field(None, alias="idleTimeout", description="Idle limit.")
    type: Literal["Cookie", "Header"] = Field("Cookie", description="How the session is kept.")
    cookie_config: CookieConfig | None = Field(None, alias="cookieConfig",
                                               description="Cookie settings.")


def _default_matches() -> list[HTTPRouteMatch]:
    return [HTTPRouteMatch()]


class HTTPRouteRule(StrictModel):
    """Matches, filters and the weighted backends for the requests they select."""

    name: SectionName | None = Field(None, description="Optional name, unique in the route.")
    matches: list[HTTPRouteMatch] = Field(
        default_factory=_default_matches, max_length=64,
        description="Any one match selects the rule; none (or []) means PathPrefix /.")
    filters: list[HTTPRouteFilter] = Field(default_factory=list, max_length=16,
                                           description="Processing steps, in order.")
    backend_refs: list[HTTPBackendRef] = Field(
        default_factory=list, alias="backendRefs", max_length=16,
        description="InferencePools and Providers to send to, split by weight. Required "
                    "unless the rule has a RequestRedirect filter.")
    timeouts: HTTPRouteTimeouts | None = Field(None, description="Request time limits.")
    retry: HTTPRouteRetry | None = Field(
        None, description="Retries on the same backend before the first byte (a TrafficPolicy "
                          "adds fallbacks, the retry budget and cooldown).")
    session_persistence: SessionPersistence | None = Field(
        None, alias="sessionPersistence",
        description="Session affinity between the rule's backendRefs (and model rewrite): "
                    "type Header keys sessions by the value of header sessionName (new ones "
                    "placed by weighted rendezvous hashing, remembered for idleTimeout/"
                    "absoluteTimeout); type Cookie sets cookie sessionName (default "
                    "inferlane-session) naming the backend. A session whose backend's pool is "
                    "critical moves to a healthy one.")

    @field_validator("matches")
    @classmethod
    def _catch_all(cls, matches: list[HTTPRouteMatch]) -> list[HTTPRouteMatch]:
        return matches or _default_matches()

    @model_validator(mode="after")
    def _check(self) -> HTTPRouteRule:
        problems = Problems()
        check_filter_list(problems, ("filters",), self.filters)
        types = {f.type for f in self.filters}
        if "RequestRedirect" in types and self.backend_refs:
            problems.add(("backendRefs",), "must be empty when the rule has a RequestRedirect "
                                           "filter")
        self._check_prefix_rewrite(problems, ("filters",), self.filters)
        for i, ref in enumerate(self.backend_refs):
            self._check_prefix_rewrite(problems, ("backendRefs", i, "filters"), ref.filters)
        problems.raise_if_any()
        return self

    def _check_prefix_rewrite(self, problems: Problems, path: Path,
                              filters: list[HTTPRouteFilter]) -> None:
        # ReplacePrefixMatch needs to know which prefix it replaces: one PathPrefix match.
        single_prefix = len(self.matches) == 1 and self.matches[0].path.type == "PathPrefix"
        for i, item in enumerate(filters):
            settings = item.url_rewrite or item.request_redirect
            if (settings is not None and settings.path is not None
                    and settings.path.type == "ReplacePrefixMatch" and not single_prefix):
                problems.add((*path, i), f"{item.type} with path.replacePrefixMatch needs exactly "
                                         "one match, of type PathPrefix, in the rule")


class HTTPRouteSpec(StrictModel):
    """Where the route attaches and how it routes."""

    parent_refs: list[ParentReference] = Field(
        default_factory=list, alias="parentRefs", max_length=32,
        description="Gateways (and listeners) to attach to; at least one is needed.")
    hostnames: list[Hostname] = Field(
        default_factory=list, max_length=16,
        description="Host header values this route serves; empty means any host.")
    rules: list[HTTPRouteRule] = Field(
        default_factory=lambda: [HTTPRouteRule()], min_length=1, max_length=16,
        description="Rules, tried by upstream match precedence.")
    use_default_gateways: Literal["All", "None"] | None = Field(
        None, alias="useDefaultGateways", description="Attach to default Gateways.",
        json_schema_extra=IGNORED)

    @model_validator(mode="after")
    def _check(self) -> HTTPRouteSpec:
        problems = Problems()
        seen_parents: dict[tuple[object, ...], int] = {}
        for i, ref in enumerate(self.parent_refs):
            key = (ref.group, ref.kind, ref.namespace, ref.name, ref.section_name, ref.port)
            if key in seen_parents:
                problems.add(("parentRefs", i), f"duplicate of parentRefs[{seen_parents[key]}]")
            seen_parents.setdefault(key, i)
        names: dict[str, int] = {}
        for i, rule in enumerate(self.rules):
            if rule.name is not None and rule.name in names:
                problems.add(("rules", i, "name"), f'duplicate rule name "{rule.name}" (also '
                                                   f"rules[{names[rule.name]}])")
            if rule.name is not None:
                names.setdefault(rule.name, i)
        if sum(len(rule.matches) for rule in self.rules) > 128:
            problems.add(("rules",), "at most 128 matches in total across all rules")
        problems.raise_if_any()
        return self


class HTTPRoute(Resource):
    """Routes HTTP requests from Gateway listeners to InferencePools."""

    api_version: Literal["gateway.networking.k8s.io/v1",
                         "gateway.networking.k8s.io/v1beta1"] = Field(
        alias="apiVersion", description="API group and version.")
    kind: Literal["HTTPRoute"] = Field(description="Resource kind.")
    spec: HTTPRouteSpec = Field(description="Parents, hostnames and rules.")
