"""Every error inferlane raises on purpose, and how each one looks on the wire.

The tree::

    InferlaneError                      base; never raised itself
    ├── ConfigError                     a config file is invalid (carries every ConfigIssue)
    ├── MetricsParseError               a model server's /metrics page is unreadable (→ stale)
    ├── RateLimitBackendError           the shared rate-limit store (Redis) failed or timed out
    └── RequestError                    answered to an API client as OpenAI error JSON
        ├── BadRequest                  400 invalid_request_error  (bad JSON, bad/missing model)
        │   └── ContextWindowExceeded       context_length_exceeded (no backend's window fits)
        ├── Unauthorized                401 authentication_error   (admin call without the token)
        ├── Forbidden                   403 permission_error       (admin calls not enabled)
        ├── NotFound                    404 invalid_request_error  (unknown path)
        ├── ModelNotFound               404 invalid_request_error  (no route serves the model)
        ├── MethodNotAllowed            405 invalid_request_error
        ├── PayloadTooLarge             413 invalid_request_error
        ├── RateLimited                 429 rate_limit_error       (client key over its RPM/TPM)
        ├── RequestShed                 429 server_overloaded      (sheddable, pool saturated)
        ├── QueueFull                   503 service_unavailable    (gateway queue at its limit)
        ├── QueueTimeout                503 service_unavailable    (waited the queue TTL)
        ├── DeadlineExceeded            503 service_unavailable    (time budget ran out queued)
        ├── RateLimitUnavailable        503 service_unavailable    (Redis down, FailClose)
        ├── NoEndpointAvailable         503 service_unavailable    (pool has no usable endpoint)
        ├── UpstreamConnectError        502 upstream_error         (connect/reset before a response)
        ├── UpstreamProtocolError       502 upstream_error         (upstream broke mid-response)
        └── UpstreamTimeout             504 upstream_timeout

Each RequestError knows its HTTP status and the OpenAI error ``type``/``code`` so the data plane
can answer without a lookup table. Messages name what failed (pool, endpoint, route, field) and
never include stack traces or credentials: third-party exceptions are mapped at the boundary
where they occur (see ``dataplane.upstream``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import orjson


class InferlaneError(Exception):
    """Base of all deliberate inferlane errors."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a config: ``file:line: kind/name: field.path: message``."""

    kind: str
    name: str
    path: str
    message: str
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = f"{self.file}:{self.line}: " if self.line is not None else f"{self.file}: "
        field = f" {self.path}:" if self.path else ""
        return f"{where}{self.kind}/{self.name}:{field} {self.message}"


class ConfigError(InferlaneError):
    """A config was rejected; ``issues`` lists every problem found, not just the first."""

    def __init__(self, issues: list[ConfigIssue] | tuple[ConfigIssue, ...]) -> None:
        self.issues = tuple(issues)
        super().__init__("\n".join(str(i) for i in self.issues) or "invalid config")


class MetricsParseError(InferlaneError, ValueError):
    """A metrics page could not be read: malformed, or missing a required metric.

    Never reaches a client: the scraper records it and the endpoint goes stale.
    """


class RateLimitBackendError(InferlaneError):
    """The rate-limit backend (Redis) could not be reached or answered with an error.

    Raised by ``ratelimit.redis_backend`` with the Redis address (never its credentials); the
    data plane decides whether to admit anyway (fail open) or refuse (fail closed).
    """


class RequestError(InferlaneError):
    """An error answered to the API client in OpenAI's error shape."""

    status: ClassVar[int] = 500
    error_type: ClassVar[str] = "server_error"
    code: ClassVar[str | None] = None

    def __init__(self, message: str, *, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = headers or {}

    def to_body(self) -> bytes:
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.error_type,
            "param": self.param,
            "code": self.code,
        }
        return orjson.dumps({"error": error})

    def to_anthropic_body(self) -> bytes:
        """The same error in Anthropic's shape, for clients of ``/v1/messages``."""
        kind = ANTHROPIC_ERROR_TYPES.get(self.status, "api_error")
        return orjson.dumps({"type": "error", "error": {"type": kind, "message": self.message}})


# Anthropic's error ``type`` by HTTP status (anything else is ``api_error``).
ANTHROPIC_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
    503: "overloaded_error", 529: "overloaded_error",
}


class BadRequest(RequestError):
    status = 400
    error_type = "invalid_request_error"
    code = "invalid_request"


class ContextWindowExceeded(BadRequest):
    code = "context_length_exceeded"


class Unauthorized(RequestError):
    status = 401
    error_type = "authentication_error"
    code = "invalid_admin_token"


class Forbidden(RequestError):
    status = 403
    error_type = "permission_error"
    code = "admin_disabled"


class NotFound(RequestError):
    status = 404
    error_type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(RequestError):
    status = 404
    error_type = "invalid_request_error"
    code = "model_not_found"


class MethodNotAllowed(RequestError):
    status = 405
    error_type = "invalid_request_error"
    code = "method_not_allowed"


class PayloadTooLarge(RequestError):
    status = 413
    error_type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(RequestError):
    """The client key used up a requests- or tokens-per-minute budget (``Retry-After`` set)."""

    status = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"


class RequestShed(RequestError):
    """A sheddable (negative-priority) request met a saturated pool, or was displaced from
    the queue by higher-priority work; retry later (``Retry-After`` set)."""

    status = 429
    error_type = "server_overloaded"
    code = "request_shed"


class QueueFull(RequestError):
    """The gateway's queue for the request's priority band is at its limit."""

    status = 503
    error_type = "service_unavailable"
    code = "queue_full"


class QueueTimeout(RequestError):
    """The request waited the queue TTL without the pool finding capacity."""

    status = 503
    error_type = "service_unavailable"
    code = "queue_timeout"


class DeadlineExceeded(RequestError):
    """The request's time budget ran out before it could be dispatched."""

    status = 503
    error_type = "service_unavailable"
    code = "deadline_exceeded"


class RateLimitUnavailable(RequestError):
    """Rate-limit state could not be read and the policy says FailClose."""

    status = 503
    error_type = "service_unavailable"
    code = "rate_limit_unavailable"


class NoEndpointAvailable(RequestError):
    status = 503
    error_type = "service_unavailable"
    code = "no_endpoint_available"


class UpstreamConnectError(RequestError):
    status = 502
    error_type = "upstream_error"
    code = "upstream_connect_error"


class UpstreamProtocolError(RequestError):
    status = 502
    error_type = "upstream_error"
    code = "upstream_protocol_error"


class UpstreamTimeout(RequestError):
    status = 504
    error_type = "upstream_timeout"
    code = "upstream_timeout"
