"""What a monitor checks, as built from a ``Monitor`` resource: frozen values, no I/O.

A ``MonitorSpec`` says how to probe one endpoint (type, timing, what counts as healthy); the
probe adapters in ``health/probes/`` run it against a ``ProbeTarget`` and return a
``ProbeResult``. Specs travel to probe agents as JSON (``to_wire``/``from_wire``), so an agent
in another region runs exactly the monitor the gateway was configured with.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from inferlane.health.verdicts import ProbeResult, Thresholds


class MonitorType(enum.StrEnum):
    HTTP = "http"
    HTTPS = "https"
    TCP = "tcp"
    GRPC = "grpc"
    INFERENCE = "inference"


@dataclass(frozen=True, slots=True)
class CodeRange:
    """Expected status codes ``low..high`` inclusive (``"2xx"`` is 200..299)."""

    low: int
    high: int

    def __contains__(self, status: object) -> bool:
        return isinstance(status, int) and self.low <= status <= self.high

    def __str__(self) -> str:
        if self.low == self.high:
            return str(self.low)
        if self.low % 100 == 0 and self.high == self.low + 99:
            return f"{self.low // 100}xx"
        return f"{self.low}-{self.high}"


@dataclass(frozen=True, slots=True)
class HttpCheck:
    """``http``/``https`` monitors: one request; healthy when the status is expected and the
    body contains ``expected_body`` (when set)."""

    method: str = "GET"
    path: str = "/health"
    headers: tuple[tuple[str, str], ...] = ()
    expected_codes: tuple[CodeRange, ...] = (CodeRange(200, 299),)
    expected_body: str = ""
    follow_redirects: bool = False
    insecure_skip_verify: bool = False  # https: do not verify the endpoint's certificate


@dataclass(frozen=True, slots=True)
class TcpCheck:
    """``tcp`` monitors: connect; then send ``send`` and read until ``expect`` arrives."""

    send: bytes = b""
    expect: bytes = b""


@dataclass(frozen=True, slots=True)
class GrpcCheck:
    """``grpc`` monitors: grpc.health.v1 ``Health/Check`` for ``service`` ("" = the server)."""

    service: str = ""


@dataclass(frozen=True, slots=True)
class InferenceCheck:
    """``inference`` monitors: a tiny real chat completion. Healthy when it answers 200 within
    ``latency_threshold`` (when set) with text containing ``expected_text`` (when set,
    case-insensitive). ``model`` empty: the first model the endpoint's ModelServer lists."""

    model: str = ""
    prompt: str = "Reply with the word OK."
    max_tokens: int = 4
    expected_text: str = ""
    latency_threshold: float | None = None  # seconds
    path: str = "/v1/chat/completions"


@dataclass(frozen=True, slots=True)
class MonitorSpec:
    """One ``Monitor``: how and how often to probe an endpoint.

    ``retries`` are extra tries inside one probe before it counts as failed (each within
    ``timeout``); ``thresholds`` turn the probe series into a verdict (rise/fall); each probe
    starts up to ``jitter`` x ``interval`` later than due, so monitors do not probe in lockstep.
    ``port`` overrides the endpoint's port (e.g. a separate health port).
    """

    key: str  # "namespace/name"
    type: MonitorType
    interval: float = 10.0
    timeout: float = 2.0
    retries: int = 0
    thresholds: Thresholds = field(default_factory=Thresholds)
    jitter: float = 0.1
    port: int | None = None
    http: HttpCheck | None = None
    tcp: TcpCheck | None = None
    grpc: GrpcCheck | None = None
    inference: InferenceCheck | None = None

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.timeout <= self.interval:
            problems.append(f"timeout ({self.timeout} s) must be > 0 and <= interval "
                            f"({self.interval} s)")
        if self.retries < 0:
            problems.append(f"retries must be >= 0, got {self.retries}")
        if not 0 <= self.jitter <= 1:
            problems.append(f"jitter must be within [0, 1], got {self.jitter}")
        needed = {MonitorType.HTTP: self.http, MonitorType.HTTPS: self.http,
                  MonitorType.TCP: self.tcp, MonitorType.GRPC: self.grpc,
                  MonitorType.INFERENCE: self.inference}[self.type]
        if needed is None:
            problems.append(f"a {self.type} monitor needs its {self.type} check settings")
        if problems:
            raise ValueError(f"monitor {self.key}: " + "; ".join(problems))

    def to_wire(self) -> dict[str, Any]:
        """JSON-able form for probe agents (``from_wire`` reads it back)."""
        wire: dict[str, Any] = {
            "key": self.key, "type": str(self.type), "interval": self.interval,
            "timeout": self.timeout, "retries": self.retries, "jitter": self.jitter,
            "consecutiveUp": self.thresholds.consecutive_up,
            "consecutiveDown": self.thresholds.consecutive_down, "port": self.port,
        }
        if self.http is not None:
            http = self.http
            wire["http"] = {
                "method": http.method, "path": http.path,
                "headers": [list(pair) for pair in http.headers],
                "expectedCodes": [[r.low, r.high] for r in http.expected_codes],
                "expectedBody": http.expected_body, "followRedirects": http.follow_redirects,
                "insecureSkipVerify": http.insecure_skip_verify,
            }
        if self.tcp is not None:
            wire["tcp"] = {"send": self.tcp.send.decode("latin-1"),
                           "expect": self.tcp.expect.decode("latin-1")}
        if self.grpc is not None:
            wire["grpc"] = {"service": self.grpc.service}
        if self.inference is not None:
            check = self.inference
            wire["inference"] = {
                "model": check.model, "prompt": check.prompt, "maxTokens": check.max_tokens,
                "expectedText": check.expected_text,
                "latencyThreshold": check.latency_threshold, "path": check.path,
            }
        return wire

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> MonitorSpec:
        """Read ``to_wire``'s form (KeyError/TypeError/ValueError when it is not one)."""
        http = tcp = grpc = inference = None
        if (h := wire.get("http")) is not None:
            http = HttpCheck(
                method=str(h["method"]), path=str(h["path"]),
                headers=tuple((str(n), str(v)) for n, v in h["headers"]),
                expected_codes=tuple(CodeRange(int(lo), int(hi)) for lo, hi in h["expectedCodes"]),
                expected_body=str(h["expectedBody"]), follow_redirects=bool(h["followRedirects"]),
                insecure_skip_verify=bool(h["insecureSkipVerify"]))
        if (t := wire.get("tcp")) is not None:
            tcp = TcpCheck(send=str(t["send"]).encode("latin-1"),
                           expect=str(t["expect"]).encode("latin-1"))
        if (g := wire.get("grpc")) is not None:
            grpc = GrpcCheck(service=str(g["service"]))
        if (i := wire.get("inference")) is not None:
            threshold = i["latencyThreshold"]
            inference = InferenceCheck(
                model=str(i["model"]), prompt=str(i["prompt"]), max_tokens=int(i["maxTokens"]),
                expected_text=str(i["expectedText"]),
                latency_threshold=None if threshold is None else float(threshold),
                path=str(i["path"]))
        port = wire.get("port")
        return cls(key=str(wire["key"]), type=MonitorType(wire["type"]),
                   interval=float(wire["interval"]), timeout=float(wire["timeout"]),
                   retries=int(wire["retries"]), jitter=float(wire["jitter"]),
                   thresholds=Thresholds(int(wire["consecutiveUp"]),
                                         int(wire["consecutiveDown"])),
                   port=None if port is None else int(port),
                   http=http, tcp=tcp, grpc=grpc, inference=inference)


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """Where one probe goes: ``host``/``port`` (the monitor's port override applied) and the
    endpoint it speaks for (``endpoint``, the pool endpoint's ``host:port`` key)."""

    endpoint: str
    host: str
    port: int
    model: str = ""  # the endpoint's first served model (inference monitors without a model)


class Prober(Protocol):
    """Runs one monitor's probe against one target (one extension point per monitor type)."""

    async def probe(self, monitor: MonitorSpec, target: ProbeTarget) -> ProbeResult:
        """Probe once (with the monitor's retries); never raises for an unhealthy target:
        the result says why (``reason``). ``at`` is ``time.monotonic()`` when it finished."""
        ...
