"""HTTPRoute filters (gateway.networking.k8s.io): the per-rule and per-backend processing steps.

``HTTPRouteFilter`` is a tagged union in upstream style: ``type`` names the filter and exactly
the matching field carries its settings. This version implements RequestHeaderModifier,
ResponseHeaderModifier and URLRewrite; the other types are validated, then loaded with a
warning (see ``NOT_IMPLEMENTED_FILTERS``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal

from pydantic import BaseModel, Field, model_validator

from inferlane.config.paths import Path
from inferlane.config.resources.meta import (
    NOT_IMPLEMENTED,
    Group,
    HeaderName,
    Kind,
    LocalObjectReference,
    Namespace,
    ObjectName,
    PortNumber,
    PreciseHostname,
    Problems,
    StrictModel,
)

FilterType = Literal["RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror",
                     "RequestRedirect", "URLRewrite", "ExtensionRef", "CORS", "ExternalAuth"]

# Filter type -> the field (upstream camelCase) that must carry its settings.
FILTER_FIELDS: Final[dict[str, str]] = {
    "RequestHeaderModifier": "requestHeaderModifier",
    "ResponseHeaderModifier": "responseHeaderModifier",
    "RequestMirror": "requestMirror",
    "RequestRedirect": "requestRedirect",
    "URLRewrite": "urlRewrite",
    "ExtensionRef": "extensionRef",
    "CORS": "cors",
    "ExternalAuth": "externalAuth",
}
NOT_IMPLEMENTED_FILTERS: Final = frozenset(
    {"RequestRedirect", "ExtensionRef", "CORS", "ExternalAuth"})
# Upstream allows these at most once per filter list.
_UNREPEATABLE: Final = ("RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect",
                        "URLRewrite", "CORS")

HTTPMethod = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE",
                     "PATCH"]
HTTPMethodWithWildcard = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS",
                                 "TRACE", "PATCH", "*"]


class HTTPHeader(StrictModel):
    """A header name and value."""

    name: HeaderName = Field(description="Header name (case-insensitive).")
    value: str = Field(min_length=1, max_length=4096, description="Header value.")


class HTTPHeaderFilter(StrictModel):
    """Header changes; each header name may appear in only one action."""

    set: list[HTTPHeader] = Field(default_factory=list, max_length=16,
                                  description="Headers to overwrite.")
    add: list[HTTPHeader] = Field(default_factory=list, max_length=16,
                                  description="Headers to append to.")
    remove: list[HeaderName] = Field(default_factory=list, max_length=16,
                                     description="Headers to remove.")

    @model_validator(mode="after")
    def _check(self) -> HTTPHeaderFilter:
        problems = Problems()
        seen: dict[str, str] = {}
        named: list[tuple[Path, str]] = [(("set", i, "name"), h.name) for i, h in
                                         enumerate(self.set)]
        named += [(("add", i, "name"), h.name) for i, h in enumerate(self.add)]
        named += [(("remove", i), name) for i, name in enumerate(self.remove)]
        for path, name in named:
            where = f"{path[0]}[{path[1]}]"
            if name.lower() in seen:
                problems.add(path, f'header "{name}" already appears in {seen[name.lower()]}: '
                                   "only one action per header name")
            seen.setdefault(name.lower(), where)
        problems.raise_if_any()
        return self


class HTTPPathModifier(StrictModel):
    """A path replacement for URLRewrite and RequestRedirect."""

    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"] = Field(
        description="Replace the whole path, or only the part the PathPrefix match matched.")
    replace_full_path: str | None = Field(None, alias="replaceFullPath", max_length=1024,
                                          description="New path, for ReplaceFullPath.")
    replace_prefix_match: str | None = Field(
        None, alias="replacePrefixMatch", max_length=1024,
        description="Replacement for the matched prefix, for ReplacePrefixMatch.")

    @model_validator(mode="after")
    def _check(self) -> HTTPPathModifier:
        problems = Problems()
        for type_, field, value in (("ReplaceFullPath", "replaceFullPath", self.replace_full_path),
                                    ("ReplacePrefixMatch", "replacePrefixMatch",
                                     self.replace_prefix_match)):
            if self.type == type_ and value is None:
                problems.add((field,), f"is required when type is {type_}")
            if self.type != type_ and value is not None:
                problems.add((field,), f"must not be set when type is {self.type}")
            if value and not value.startswith("/"):
                problems.add((field,), f'"{value}" must start with "/"')
        problems.raise_if_any()
        return self


class HTTPRequestRedirectFilter(StrictModel):
    """Answer with a redirect instead of forwarding."""

    scheme: Literal["http", "https"] | None = Field(None, description="Scheme of Location.")
    hostname: PreciseHostname | None = Field(None, description="Host of Location.")
    path: HTTPPathModifier | None = Field(None, description="Path of Location.")
    port: PortNumber | None = Field(None, description="Port of Location.")
    status_code: Literal[301, 302, 303, 307, 308] = Field(302, alias="statusCode",
                                                          description="Redirect status.")


class HTTPURLRewriteFilter(StrictModel):
    """Rewrite the Host header and/or path before forwarding."""

    hostname: PreciseHostname | None = Field(None, description="New Host header.")
    path: HTTPPathModifier | None = Field(None, description="New path.")


class BackendObjectReference(StrictModel):
    """A reference to a backend object."""

    group: Group = Field("", description="API group of the referent.")
    kind: Kind = Field("Service", description="Kind of the referent.")
    name: ObjectName = Field(description="Name of the referent.")
    namespace: Namespace | None = Field(None, description="Namespace; defaults to the route's.")
    port: PortNumber | None = Field(None, description="Port of the referent.")


class Fraction(StrictModel):
    """``numerator / denominator`` of requests."""

    numerator: int = Field(ge=0, description="Numerator.")
    denominator: int = Field(100, ge=1, description="Denominator.")

    @model_validator(mode="after")
    def _check(self) -> Fraction:
        problems = Problems()
        if self.numerator > self.denominator:
            problems.add(("numerator",), "must not be greater than denominator")
        problems.raise_if_any()
        return self


class HTTPRequestMirrorFilter(StrictModel):
    """Send a copy of requests to another backend and ignore its answers."""

    backend_ref: BackendObjectReference = Field(alias="backendRef", description="Mirror target.")
    percent: int | None = Field(None, ge=0, le=100, description="Share of requests mirrored.")
    fraction: Fraction | None = Field(None, description="Share of requests mirrored.")

    @model_validator(mode="after")
    def _check(self) -> HTTPRequestMirrorFilter:
        problems = Problems()
        if self.percent is not None and self.fraction is not None:
            problems.add(("fraction",), "only one of percent or fraction may be specified")
        problems.raise_if_any()
        return self


class HTTPCORSFilter(StrictModel):
    """Answer CORS preflights and add CORS headers."""

    allow_origins: list[str] = Field(default_factory=list, alias="allowOrigins", max_length=64,
                                     description='Allowed origins, or "*".')
    allow_credentials: bool | None = Field(None, alias="allowCredentials",
                                           description="Allow credentials.")
    allow_methods: list[HTTPMethodWithWildcard] = Field(
        default_factory=list, alias="allowMethods", max_length=9,
        description='Allowed methods, or "*".')
    allow_headers: list[HeaderName] = Field(default_factory=list, alias="allowHeaders",
                                            max_length=64, description="Allowed headers.")
    expose_headers: list[HeaderName] = Field(default_factory=list, alias="exposeHeaders",
                                             max_length=64, description="Exposed headers.")
    max_age: int = Field(5, alias="maxAge", ge=1, description="Preflight cache time (seconds).")

    @model_validator(mode="after")
    def _check(self) -> HTTPCORSFilter:
        problems = Problems()
        for field, values in (("allowOrigins", self.allow_origins),
                              ("allowMethods", self.allow_methods),
                              ("allowHeaders", self.allow_headers)):
            if "*" in values and len(values) > 1:
                problems.add((field,), '"*" cannot be combined with other values')
        problems.raise_if_any()
        return self


class GRPCAuthConfig(StrictModel):
    """Settings for an ext_authz gRPC auth server."""

    allowed_headers: list[str] = Field(default_factory=list, alias="allowedHeaders",
                                       max_length=64, description="Request headers sent.")


class HTTPAuthConfig(StrictModel):
    """Settings for an HTTP auth server."""

    path: str | None = Field(None, max_length=1024, description="Path prefix added.")
    allowed_headers: list[str] = Field(default_factory=list, alias="allowedHeaders",
                                       max_length=64, description="Request headers sent.")
    allowed_response_headers: list[str] = Field(
        default_factory=list, alias="allowedResponseHeaders", max_length=64,
        description="Auth response headers copied to the request.")


class ForwardBodyConfig(StrictModel):
    """Whether the request body goes to the auth server."""

    max_size: int = Field(0, alias="maxSize", ge=0, description="Bytes of body forwarded.")


class HTTPExternalAuthFilter(StrictModel):
    """Ask an external service to authenticate each request (experimental upstream)."""

    protocol: Literal["HTTP", "GRPC"] = Field(description="Protocol of the auth server.")
    backend_ref: BackendObjectReference = Field(alias="backendRef", description="Auth server.")
    grpc: GRPCAuthConfig | None = Field(None, description="For protocol GRPC.")
    http: HTTPAuthConfig | None = Field(None, description="For protocol HTTP.")
    forward_body: ForwardBodyConfig | None = Field(None, alias="forwardBody",
                                                   description="Body forwarding.")

    @model_validator(mode="after")
    def _check(self) -> HTTPExternalAuthFilter:
        problems = Problems()
        if self.grpc is not None and self.protocol != "GRPC":
            problems.add(("grpc",), "must not be set unless protocol is GRPC")
        if self.http is not None and self.protocol != "HTTP":
            problems.add(("http",), "must not be set unless protocol is HTTP")
        problems.raise_if_any()
        return self


class HTTPRouteFilter(StrictModel):
    """One processing step; ``type`` selects which of the other fields must be set."""

    type: FilterType = Field(
        description="Filter type; the matching field must be set (and no other). "
                    "RequestRedirect, ExtensionRef, CORS and ExternalAuth load with a warning: "
                    "not implemented yet.")
    request_header_modifier: HTTPHeaderFilter | None = Field(
        None, alias="requestHeaderModifier", description="Change request headers.")
    response_header_modifier: HTTPHeaderFilter | None = Field(
        None, alias="responseHeaderModifier", description="Change response headers.")
    request_mirror: HTTPRequestMirrorFilter | None = Field(
        None, alias="requestMirror",
        description="Send a copy to another pool or provider and compare the answers.")
    request_redirect: HTTPRequestRedirectFilter | None = Field(
        None, alias="requestRedirect", description="Redirect requests.",
        json_schema_extra=NOT_IMPLEMENTED)
    url_rewrite: HTTPURLRewriteFilter | None = Field(None, alias="urlRewrite",
                                                     description="Rewrite host and path.")
    cors: HTTPCORSFilter | None = Field(None, description="CORS.",
                                        json_schema_extra=NOT_IMPLEMENTED)
    external_auth: HTTPExternalAuthFilter | None = Field(
        None, alias="externalAuth", description="External auth.",
        json_schema_extra=NOT_IMPLEMENTED)
    extension_ref: LocalObjectReference | None = Field(
        None, alias="extensionRef", description="Implementation-specific filter.",
        json_schema_extra=NOT_IMPLEMENTED)

    @model_validator(mode="after")
    def _check(self) -> HTTPRouteFilter:
        problems = Problems()
        wanted = FILTER_FIELDS[self.type]
        if self._settings(wanted) is None:
            problems.add((wanted,), f"is required when type is {self.type}")
        for field in FILTER_FIELDS.values():
            if field != wanted and self._settings(field) is not None:
                problems.add((field,), f"must not be set when type is {self.type}")
        problems.raise_if_any()
        return self

    def _settings(self, alias: str) -> BaseModel | None:
        for name, info in type(self).model_fields.items():
            if info.alias == alias or name == alias:
                value: BaseModel | None = getattr(self, name)
                return value
        raise KeyError(alias)

    @property
    def settings(self) -> BaseModel:
        """The settings object of this filter's ``type`` (validation guarantees it is set)."""
        value = self._settings(FILTER_FIELDS[self.type])
        assert value is not None
        return value


def check_filter_list(problems: Problems, path: Path, filters: Sequence[HTTPRouteFilter]) -> None:
    """Upstream rules for one list of filters (a rule's or a backendRef's)."""
    first: dict[str, int] = {}
    for i, item in enumerate(filters):
        if item.type in _UNREPEATABLE and item.type in first:
            problems.add((*path, i, "type"), f"{item.type} filter cannot be repeated (first at "
                                             f"filters[{first[item.type]}])")
        first.setdefault(item.type, i)
    if "RequestRedirect" in first and "URLRewrite" in first:
        problems.add((*path, first["URLRewrite"], "type"),
                     "RequestRedirect and URLRewrite filters cannot be combined")
