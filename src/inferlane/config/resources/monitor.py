"""The ``Monitor`` kind (inferlane.dev/v1alpha1, our extension): how to probe an endpoint.

A Monitor says how and how often to check one endpoint of a pool (Cloudflare's monitor):
``type`` picks the probe — an HTTP(S) request, a TCP connect with an optional send/expect
exchange, a gRPC health check, or a tiny real chat completion (``inference``) — and
``consecutiveUp``/``consecutiveDown`` turn the probe series into a verdict. A Monitor probes
nothing on its own: a ``HealthCheckPolicy`` names it (or a ``MonitorGroup`` holding it) for the
pools it targets. Phase two (``config.health_build``) turns it into a ``health.MonitorSpec``.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from inferlane.config.paths import Path
from inferlane.config.resources.filters import HTTPHeader
from inferlane.config.resources.meta import (
    Duration,
    PortNumber,
    Problems,
    Resource,
    StrictModel,
    TypeDoc,
    parse_duration,
)

MonitorTypeName = Literal["http", "https", "tcp", "grpc", "inference"]
HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "OPTIONS"]

_CLASS_RE = re.compile(r"([1-5])xx")
_CODE_RE = re.compile(r"([0-9]{3})(?:-([0-9]{3}))?")
_PATH_RE = re.compile(r"/[^\s]*")


def parse_status_codes(value: str) -> tuple[int, int]:
    """``"2xx"``, ``"200"`` or ``"200-299"`` -> the inclusive range ``(low, high)``."""
    if match := _CLASS_RE.fullmatch(value):
        low = int(match.group(1)) * 100
        return low, low + 99
    match = _CODE_RE.fullmatch(value)
    if match is None:
        raise ValueError(f'"{value}" is not a status code: use a class such as "2xx", a code '
                         'such as "200" or a range such as "200-299"')
    low = int(match.group(1))
    high = int(match.group(2) or low)
    if not (100 <= low <= 599 and 100 <= high <= 599):
        raise ValueError(f'"{value}": status codes are 100-599')
    if low > high:
        raise ValueError(f'"{value}": the range is reversed, write "{high}-{low}"')
    return low, high


def _status_codes(value: str) -> str:
    parse_status_codes(value)
    return value


def _path(value: str) -> str:
    if not _PATH_RE.fullmatch(value):
        raise ValueError(f'"{value}" must start with "/" and contain no spaces')
    return value


StatusCodes = Annotated[str, AfterValidator(_status_codes),
                        TypeDoc('status codes ("2xx", "200" or "200-299")')]
RequestPath = Annotated[str, AfterValidator(_path), TypeDoc('path (starts with "/")')]


def positive_seconds(problems: Problems, path: Path, value: str | None) -> float | None:
    """A duration field in seconds; a problem at ``path`` when it is 0 (None stays None)."""
    if value is None:
        return None
    seconds = parse_duration(value)
    if seconds <= 0:
        problems.add(path, "must be longer than 0s")
    return seconds


class HttpMonitorSettings(StrictModel):
    """What an ``http``/``https`` probe sends and what counts as healthy."""

    method: HttpMethod = Field("GET", description="Request method.")
    path: RequestPath = Field("/health", description="Request path (with an optional query).")
    headers: list[HTTPHeader] = Field(default_factory=list, max_length=16,
                                      description="Extra request headers (e.g. Host).")
    expected_codes: list[StatusCodes] = Field(
        default_factory=lambda: ["2xx"], alias="expectedCodes", min_length=1, max_length=16,
        description="Healthy status codes: a class (2xx), a code (200) or a range (200-299).")
    expected_body: str = Field("", alias="expectedBody", max_length=1024,
                               description="A substring the body must contain, "
                                           "case-insensitive (empty: any).")
    follow_redirects: bool = Field(False, alias="followRedirects",
                                   description="Follow 3xx answers instead of judging them.")
    insecure_skip_verify: bool = Field(
        False, alias="insecureSkipVerify",
        description="https: do not verify the endpoint's certificate.")

    @model_validator(mode="after")
    def _check(self) -> HttpMonitorSettings:
        problems = Problems()
        seen: dict[str, int] = {}
        for i, header in enumerate(self.headers):
            first = seen.setdefault(header.name.lower(), i)
            if first != i:
                problems.add(("headers", i, "name"),
                             f'header "{header.name}" is already set by headers[{first}]')
        problems.raise_if_any()
        return self


class TcpMonitorSettings(StrictModel):
    """A ``tcp`` probe: connect, then optionally send ``send`` and wait for ``expect``."""

    send: str = Field("", max_length=1024,
                      description='Bytes to send after connecting, as UTF-8 text (YAML escapes '
                                  'such as "\\r\\n" work in double quotes); empty: send nothing.')
    expect: str = Field("", max_length=1024,
                        description="Text the answer must contain (empty: connecting is "
                                    "enough); may be set without send (a server banner).")


class GrpcMonitorSettings(StrictModel):
    """A ``grpc`` probe: the standard grpc.health.v1 ``Health/Check``."""

    service: str = Field("", max_length=253,
                         description='Service name to check; "" asks about the whole server.')


class InferenceMonitorSettings(StrictModel):
    """An ``inference`` probe: a tiny real chat completion, so a server that answers its health
    endpoint but cannot generate is caught."""

    model: str = Field("", max_length=256,
                       description="Model to ask; empty: the endpoint's first served model "
                                   "(its ModelServer's models).")
    prompt: str = Field("Reply with the word OK.", min_length=1, max_length=4096,
                        description="The user message sent.")
    max_tokens: int = Field(4, alias="maxTokens", ge=1, le=64,
                            description="max_tokens of the request.")
    expected_text: str = Field("", alias="expectedText", max_length=1024,
                               description="Text the answer must contain, case-insensitive "
                                           "(empty: any answer).")
    latency_threshold: Duration | None = Field(
        None, alias="latencyThreshold",
        description="A slower answer counts as a failure; at most the monitor's timeout.")
    path: RequestPath = Field("/v1/chat/completions",
                              description="Chat completions path of the endpoint.")


_SUB_BLOCKS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("http", ("http", "https")), ("tcp", ("tcp",)), ("grpc", ("grpc",)),
    ("inference", ("inference",)))


class MonitorSpec(StrictModel):
    """Probe type, timing and verdict thresholds, plus the settings of that type."""

    type: MonitorTypeName = Field(description="http, https, tcp, grpc or inference.")
    interval: Duration = Field("10s", description="Time between probes of one endpoint.")
    timeout: Duration = Field("2s", description="Limit of one try; at most interval.")
    retries: int = Field(0, ge=0, le=5, description="Extra tries inside one probe before it "
                                                    "counts as failed.")
    consecutive_up: int = Field(2, alias="consecutiveUp", ge=1, le=10,
                                description="Successful probes in a row that make an endpoint "
                                            "healthy.")
    consecutive_down: int = Field(2, alias="consecutiveDown", ge=1, le=10,
                                  description="Failed probes in a row that make an endpoint "
                                              "unhealthy.")
    jitter: int = Field(10, ge=0, le=100,
                        description="Each probe starts up to this percent of interval late, so "
                                    "monitors do not probe in lockstep.")
    port: PortNumber | None = Field(None, description="Probe this port instead of the "
                                                      "endpoint's (e.g. a health port).")
    http: HttpMonitorSettings | None = Field(
        None, description="Only for type http or https; absent: all defaults.")
    tcp: TcpMonitorSettings | None = Field(
        None, description="Only for type tcp; absent: connect only.")
    grpc: GrpcMonitorSettings | None = Field(
        None, description="Only for type grpc; absent: the whole server.")
    inference: InferenceMonitorSettings | None = Field(
        None, description="Only for type inference; absent: all defaults.")

    @model_validator(mode="after")
    def _check(self) -> MonitorSpec:
        problems = Problems()
        interval = positive_seconds(problems, ("interval",), self.interval)
        timeout = positive_seconds(problems, ("timeout",), self.timeout)
        if interval and timeout and timeout > interval:
            problems.add(("timeout",), f"must not be longer than interval ({self.interval})")
        for field, types in _SUB_BLOCKS:
            if getattr(self, field) is not None and self.type not in types:
                problems.add((field,), f"only allowed when type is {' or '.join(types)}")
        if self.type == "http" and self.http is not None and self.http.insecure_skip_verify:
            problems.add(("http", "insecureSkipVerify"), "only meaningful for type https")
        check = self.inference
        if self.type == "inference" and check is not None:
            threshold = positive_seconds(problems, ("inference", "latencyThreshold"),
                                         check.latency_threshold)
            if threshold and timeout and threshold > timeout:
                problems.add(("inference", "latencyThreshold"),
                             f"must not be longer than timeout ({self.timeout}): a slower "
                             "answer times out first")
        problems.raise_if_any()
        return self


class Monitor(Resource):
    """How to probe an endpoint (HTTP(S), TCP, gRPC or a tiny inference request).

    Used by HealthCheckPolicies, directly or through a MonitorGroup.
    """

    api_version: Literal["inferlane.dev/v1alpha1"] = Field(
        alias="apiVersion", description="API group and version.")
    kind: Literal["Monitor"] = Field(description="Resource kind.")
    spec: MonitorSpec = Field(description="Probe type, timing and settings.")
