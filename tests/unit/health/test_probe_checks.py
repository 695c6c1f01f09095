"""The probes' pure decisions (``inferlane.health.probes.checks``) and the try loop, as tables.

No sockets: outcomes are computed from statuses, bodies and elapsed times passed in; the try
loop runs fake attempts (the one timeout case waits 10 ms of real time).
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from collections.abc import Awaitable, Callable

import orjson
import pytest

from inferlane.health.monitors import (
    CodeRange,
    GrpcCheck,
    HttpCheck,
    InferenceCheck,
    MonitorSpec,
    MonitorType,
    ProbeTarget,
    TcpCheck,
)
from inferlane.health.probes import Probers
from inferlane.health.probes.checks import (
    BODY_LIMIT,
    Outcome,
    chat_answer_text,
    decode_body,
    describe_os_error,
    format_seconds,
    grpc_error,
    grpc_outcome,
    host_port,
    http_outcome,
    inference_outcome,
    probe_url,
    quote,
    tcp_outcome,
    tls_server_name,
)
from inferlane.health.probes.inference import chat_request
from inferlane.health.probes.tries import Attempt, run_tries
from inferlane.health.verdicts import ProbeResult

TWO_XX = (CodeRange(200, 299),)
TARGET = ProbeTarget(endpoint="127.0.0.1:1", host="127.0.0.1", port=1)  # never dialled

# --- http ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "codes", "ok", "reason"),
    [
        pytest.param(200, TWO_XX, True, "HTTP 200", id="200-in-2xx"),
        pytest.param(299, TWO_XX, True, "HTTP 299", id="299-upper-edge"),
        pytest.param(300, TWO_XX, False, "HTTP 300, expected 2xx", id="300-just-above"),
        pytest.param(199, TWO_XX, False, "HTTP 199, expected 2xx", id="199-just-below"),
        pytest.param(503, TWO_XX, False, "HTTP 503, expected 2xx", id="503"),
        pytest.param(301, (CodeRange(301, 301),), True, "HTTP 301", id="single-code"),
        pytest.param(302, (CodeRange(301, 301),), False, "HTTP 302, expected 301",
                     id="single-code-other"),
        pytest.param(404, (CodeRange(200, 299), CodeRange(404, 404)), True, "HTTP 404",
                     id="second-range"),
        pytest.param(500, (CodeRange(200, 299), CodeRange(404, 404)), False,
                     "HTTP 500, expected 2xx, 404", id="two-ranges-listed"),
        pytest.param(204, (CodeRange(200, 204),), True, "HTTP 204", id="range-not-a-century"),
        pytest.param(205, (CodeRange(200, 204),), False, "HTTP 205, expected 200-204",
                     id="range-shown-low-high"),
    ],
)
def test_http_status(status: int, codes: tuple[CodeRange, ...], ok: bool, reason: str) -> None:
    assert http_outcome(status, None, HttpCheck(expected_codes=codes)) == Outcome(ok, reason)


@pytest.mark.parametrize(
    ("status", "body", "expected", "truncated", "ok", "reason"),
    [
        pytest.param(200, "status: ready", "ready", False, True, "HTTP 200", id="contains"),
        pytest.param(200, "status: READY", "ready", False, True, "HTTP 200",
                     id="ignores-case"),
        pytest.param(200, "status: starting", "ready", False, False,
                     "HTTP 200 but the body lacks 'ready'", id="lacks"),
        pytest.param(200, "", "ready", False, False, "HTTP 200 but the body lacks 'ready'",
                     id="empty-body"),
        pytest.param(200, None, "ready", False, False, "HTTP 200 but the body lacks 'ready'",
                     id="body-not-read"),
        pytest.param(200, "x" * 10, "ready", True, False,
                     "HTTP 200 but the first 64 KiB of the body lacks 'ready'",
                     id="truncated-says-so"),
        pytest.param(200, "anything", "", False, True, "HTTP 200", id="no-expectation"),
        pytest.param(500, "ready", "ready", False, False, "HTTP 500, expected 2xx",
                     id="status-checked-first"),
    ],
)
def test_http_body(status: int, body: str | None, expected: str, truncated: bool, ok: bool,
                   reason: str) -> None:
    check = HttpCheck(expected_body=expected)
    assert http_outcome(status, body, check, truncated=truncated) == Outcome(ok, reason)


@pytest.mark.parametrize(
    ("data", "charset", "text"),
    [
        pytest.param("héllo".encode(), None, "héllo", id="default-utf8"),
        pytest.param("héllo".encode("latin-1"), "ISO-8859-1", "héllo", id="declared-charset"),
        pytest.param(b"ok\xff", "utf-8", "ok\ufffd", id="bad-bytes-replaced"),
        pytest.param(b"ok", "no-such-charset", "ok", id="unknown-charset-utf8"),
    ],
)
def test_decode_body(data: bytes, charset: str | None, text: str) -> None:
    assert decode_body(data, charset) == text


@pytest.mark.parametrize(
    ("headers", "name"),
    [
        pytest.param((), None, id="no-headers"),
        pytest.param((("Accept", "*/*"),), None, id="no-host"),
        pytest.param((("Host", "api.example.com"),), "api.example.com", id="host"),
        pytest.param((("host", "api.example.com:8443"),), "api.example.com", id="port-cut"),
        pytest.param((("HOST", "[::1]:8443"),), "::1", id="bracketed-v6-port"),
        pytest.param((("Host", "[::1]"),), "::1", id="bracketed-v6"),
        pytest.param((("Host", "  "),), None, id="blank"),
    ],
)
def test_tls_server_name(headers: tuple[tuple[str, str], ...], name: str | None) -> None:
    assert tls_server_name(headers) == name


@pytest.mark.parametrize(
    ("scheme", "host", "port", "path", "url"),
    [
        pytest.param("http", "10.0.0.1", 8000, "/health", "http://10.0.0.1:8000/health",
                     id="v4"),
        pytest.param("https", "::1", 443, "/h?x=1", "https://[::1]:443/h?x=1", id="v6-query"),
        pytest.param("http", "host", 80, "health", "http://host:80/health", id="slash-added"),
    ],
)
def test_probe_url(scheme: str, host: str, port: int, path: str, url: str) -> None:
    assert probe_url(scheme, host, port, path) == url


def test_host_port_keeps_brackets() -> None:
    assert host_port("[::1]", 50051) == "[::1]:50051"


# --- errors --------------------------------------------------------------------------------


def _verify_error() -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_message = "self-signed certificate"
    return error


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        pytest.param(ConnectionRefusedError(111, "Connection refused"), "connection refused",
                     id="refused"),
        pytest.param(ConnectionResetError(104, "reset"), "connection reset by the peer",
                     id="reset"),
        pytest.param(BrokenPipeError(32, "pipe"), "connection closed by the peer while sending",
                     id="broken-pipe"),
        pytest.param(socket.gaierror(-2, "Name or service not known"),
                     "cannot resolve the host (Name or service not known)", id="dns"),
        pytest.param(_verify_error(), "TLS certificate rejected (self-signed certificate)",
                     id="certificate"),
        pytest.param(TimeoutError(110, "Connection timed out"), "the network timed out",
                     id="os-timeout"),
        pytest.param(OSError(errno.ECONNRESET, "Connection reset by peer"),
                     "connection reset by the peer", id="reset-by-errno-only"),
        pytest.param(OSError(errno.EHOSTUNREACH, "No route to host"), "no route to the host",
                     id="unreachable"),
        pytest.param(OSError(errno.EACCES, "Permission denied"),
                     "network error: Permission denied", id="other-errno"),
        pytest.param(ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"),
                     "TLS failed ([SSL: WRONG_VERSION_NUMBER] wrong version number)",
                     id="ssl-errno-not-an-os-errno"),
        pytest.param(OSError("Multiple exceptions: a, b"),
                     "network error: Multiple exceptions: a, b", id="no-errno"),
    ],
)
def test_describe_os_error(error: OSError, reason: str) -> None:
    assert describe_os_error(error) == reason


# --- tcp -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("check", "received", "closed", "ok", "reason"),
    [
        pytest.param(TcpCheck(), b"", False, True, "connected", id="connect-only"),
        pytest.param(TcpCheck(send=b"PING\r\n"), b"", False, True, "connected",
                     id="send-only"),
        pytest.param(TcpCheck(expect=b"+PONG"), b"+PONG\r\n", False, True,
                     "connected and got b'+PONG'", id="expect-found"),
        pytest.param(TcpCheck(expect=b"+PONG"), b"-ERR\r\n", True, False,
                     "connection closed before b'+PONG' arrived (got b'-ERR\\r\\n')",
                     id="closed-with-other"),
        pytest.param(TcpCheck(expect=b"+PONG"), b"", True, False,
                     "connection closed before b'+PONG' arrived (got nothing)",
                     id="closed-empty"),
        pytest.param(TcpCheck(expect=b"+PONG"), b"x" * BODY_LIMIT, False, False,
                     "no b'+PONG' in the first 64 KiB received", id="limit-reached"),
    ],
)
def test_tcp_outcome(check: TcpCheck, received: bytes, closed: bool, ok: bool,
                     reason: str) -> None:
    assert tcp_outcome(check, received, closed=closed) == Outcome(ok, reason)


# --- grpc ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "service", "ok", "reason"),
    [
        pytest.param("SERVING", "", True, "SERVING", id="serving"),
        pytest.param("NOT_SERVING", "", False, "the server is NOT_SERVING", id="not-serving"),
        pytest.param("NOT_SERVING", "llm", False, "service 'llm' is NOT_SERVING",
                     id="service-not-serving"),
        pytest.param("UNKNOWN", "", False, "the server is UNKNOWN", id="unknown"),
        pytest.param("SERVICE_UNKNOWN", "x", False, "service 'x' is SERVICE_UNKNOWN",
                     id="service-unknown"),
    ],
)
def test_grpc_outcome(status: str, service: str, ok: bool, reason: str) -> None:
    assert grpc_outcome(status, service) == Outcome(ok, reason)


@pytest.mark.parametrize(
    ("code", "details", "reason", "answered"),
    [
        pytest.param("DEADLINE_EXCEEDED", "Deadline Exceeded", "timed out after 0.5 s", False,
                     id="deadline"),
        pytest.param("UNAVAILABLE", "failed to connect to all addresses; last error: UNKNOWN: "
                     "ipv4:127.0.0.1:1: Failed to connect to remote host: Connection refused",
                     "connection refused", False, id="refused"),
        pytest.param("UNAVAILABLE", "Socket closed", "gRPC UNAVAILABLE: Socket closed", False,
                     id="unavailable-other"),
        pytest.param("UNAVAILABLE", "", "gRPC UNAVAILABLE", False, id="unavailable-bare"),
        pytest.param("NOT_FOUND", "", "the server does not know service 'llm' (gRPC NOT_FOUND)",
                     True, id="unknown-service"),
        pytest.param("UNIMPLEMENTED", "", "the server does not implement "
                     "grpc.health.v1.Health (gRPC UNIMPLEMENTED)", True, id="no-health-service"),
        pytest.param("INTERNAL", "boom", "gRPC INTERNAL: boom", True, id="other-code"),
    ],
)
def test_grpc_error(code: str, details: str, reason: str, answered: bool) -> None:
    assert grpc_error(code, details, "llm", 0.5) == (reason, answered)


# --- inference -----------------------------------------------------------------------------


def chat(content: object) -> bytes:
    return orjson.dumps({"choices": [{"index": 0, "message": {"role": "assistant",
                                                               "content": content}}]})


OPENAI_500 = orjson.dumps({"error": {"message": "Simulated internal server error.",
                                     "type": "InternalServerError", "code": 500}})


@pytest.mark.parametrize(
    ("status", "body", "elapsed", "check", "ok", "reason"),
    [
        pytest.param(200, chat("OK"), 0.31, InferenceCheck(), True, "answered in 0.31 s",
                     id="plain-pass"),
        pytest.param(200, chat("OK."), 0.2, InferenceCheck(expected_text="ok"), True,
                     "answered in 0.2 s", id="expected-text-ignores-case"),
        pytest.param(200, chat("xyz"), 0.2, InferenceCheck(expected_text="ok"), False,
                     "answer 'xyz' lacks 'ok'", id="expected-text-missing"),
        pytest.param(200, chat("y" * 100), 0.2, InferenceCheck(expected_text="ok"), False,
                     f"answer {'y' * 60!r}... lacks 'ok'", id="long-answer-cut"),
        pytest.param(200, chat("OK"), 3.2, InferenceCheck(latency_threshold=2.0), False,
                     "answered in 3.2 s, over the 2 s threshold", id="too-slow"),
        pytest.param(200, chat("OK"), 2.0, InferenceCheck(latency_threshold=2.0), True,
                     "answered in 2.0 s", id="at-threshold-passes"),
        pytest.param(200, chat("no"), 3.2,
                     InferenceCheck(latency_threshold=2.0, expected_text="ok"), False,
                     "answered in 3.2 s, over the 2 s threshold; answer 'no' lacks 'ok'",
                     id="slow-and-wrong"),
        pytest.param(500, OPENAI_500, 0.1, InferenceCheck(), False,
                     "HTTP 500: Simulated internal server error.", id="http-500-message"),
        pytest.param(502, b"<html>bad gateway</html>", 0.1, InferenceCheck(), False,
                     "HTTP 502", id="http-502-no-json"),
        pytest.param(404, orjson.dumps({"error": "no such model"}), 0.1, InferenceCheck(),
                     False, "HTTP 404: no such model", id="error-as-string"),
        pytest.param(200, b"not json", 0.1, InferenceCheck(), False,
                     "answer is not JSON: 'not json'", id="not-json"),
        pytest.param(200, orjson.dumps({"choices": []}), 0.1, InferenceCheck(), False,
                     "answer has no choices[0].message.content", id="no-choices"),
        pytest.param(200, chat(None), 0.1, InferenceCheck(), False,
                     "answer has no choices[0].message.content", id="null-content"),
        pytest.param(200, chat(""), 0.1, InferenceCheck(), True, "answered in 0.1 s",
                     id="empty-content-without-expectation"),
    ],
)
def test_inference_outcome(status: int, body: bytes, elapsed: float, check: InferenceCheck,
                           ok: bool, reason: str) -> None:
    assert inference_outcome(status, body, elapsed, check) == Outcome(ok, reason)


def test_inference_truncated_answer_fails() -> None:
    outcome = inference_outcome(200, chat("OK")[:10], 0.1, InferenceCheck(), truncated=True)
    assert outcome == Outcome(False, "answer longer than 64 KiB")


@pytest.mark.parametrize(
    "document",
    [None, [], {"choices": "x"}, {"choices": [1]}, {"choices": [{"message": "hi"}]},
     {"choices": [{"message": {"content": 3}}]}],
)
def test_chat_answer_text_rejects_shapes(document: object) -> None:
    assert chat_answer_text(document) is None


def test_chat_request_body() -> None:
    check = InferenceCheck(prompt="Say OK.", max_tokens=3)
    assert orjson.loads(chat_request(check, "m")) == {
        "model": "m", "messages": [{"role": "user", "content": "Say OK."}],
        "max_tokens": 3, "stream": False}


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(3.21, "3.2"), (12.0, "12.0"), (0.314, "0.31"), (0.0412, "0.041"), (0.0, "0")],
)
def test_format_seconds(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


def test_quote_cuts_long_text() -> None:
    assert quote("abc", limit=2) == "'ab'..."


# --- the try loop ----------------------------------------------------------------------------


def monitor(retries: int = 0, timeout: float = 1.0) -> MonitorSpec:
    return MonitorSpec(key="ns/m", type=MonitorType.TCP, timeout=timeout, retries=retries,
                       tcp=TcpCheck())


def scripted(attempts: list[Attempt]) -> tuple[Callable[[], Awaitable[Attempt]], list[int]]:
    calls: list[int] = []

    async def attempt() -> Attempt:
        calls.append(1)
        return attempts[len(calls) - 1]

    return attempt, calls


PASS = Attempt(True, "connected", 0.01)
FAIL = Attempt(False, "connection refused", None)
FAIL_ANSWERED = Attempt(False, "HTTP 500, expected 2xx", 0.02)


@pytest.mark.parametrize(
    ("retries", "attempts", "calls", "result"),
    [
        pytest.param(0, [PASS], 1, ProbeResult(True, 7.0, 0.01, "connected"), id="pass"),
        pytest.param(0, [FAIL], 1, ProbeResult(False, 7.0, None, "connection refused"),
                     id="fail-no-retries"),
        pytest.param(2, [PASS], 1, ProbeResult(True, 7.0, 0.01, "connected"),
                     id="first-pass-wins"),
        pytest.param(2, [FAIL, PASS], 2,
                     ProbeResult(True, 7.0, 0.01, "connected (on try 2 of 3)"),
                     id="retry-passes"),
        pytest.param(2, [FAIL, FAIL, FAIL_ANSWERED], 3,
                     ProbeResult(False, 7.0, 0.02, "HTTP 500, expected 2xx (failed 3 tries)"),
                     id="last-try-counts"),
        pytest.param(1, [FAIL_ANSWERED, FAIL], 2,
                     ProbeResult(False, 7.0, None, "connection refused (failed 2 tries)"),
                     id="last-try-without-answer-no-rtt"),
    ],
)
async def test_run_tries(retries: int, attempts: list[Attempt], calls: int,
                         result: ProbeResult) -> None:
    attempt, made = scripted(attempts)
    assert await run_tries(monitor(retries), attempt, clock=lambda: 7.0) == result
    assert len(made) == calls


async def test_run_tries_times_out_each_try() -> None:
    started: list[int] = []

    async def hang() -> Attempt:
        started.append(1)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    result = await run_tries(monitor(retries=1, timeout=0.01), hang, clock=lambda: 7.0)
    assert result == ProbeResult(False, 7.0, None, "timed out after 0.01 s (failed 2 tries)")
    assert len(started) == 2


# --- the registry ----------------------------------------------------------------------------


async def test_every_monitor_type_has_a_prober() -> None:
    async with Probers() as probers:
        for monitor_type in MonitorType:
            assert probers.prober(monitor_type) is not None
        assert probers.prober(MonitorType.HTTP) is probers.prober(MonitorType.HTTPS)


@pytest.mark.parametrize("monitor_type", list(MonitorType))
async def test_probers_refuse_a_foreign_monitor(monitor_type: MonitorType) -> None:
    if monitor_type is MonitorType.GRPC:
        wrong = monitor()
    else:
        wrong = MonitorSpec(key="ns/g", type=MonitorType.GRPC, grpc=GrpcCheck())
    async with Probers() as probers:
        with pytest.raises(ValueError, match="not"):
            await probers.prober(monitor_type).probe(wrong, TARGET)


@pytest.mark.parametrize(
    "spec",
    [MonitorSpec(key="ns/h", type=MonitorType.HTTP, http=HttpCheck()),
     MonitorSpec(key="ns/g", type=MonitorType.GRPC, grpc=GrpcCheck()),
     MonitorSpec(key="ns/i", type=MonitorType.INFERENCE, inference=InferenceCheck(model="m"))],
    ids=["http", "grpc", "inference"],
)
async def test_a_closed_prober_refuses_to_probe(spec: MonitorSpec) -> None:
    probers = Probers()
    await probers.close()
    with pytest.raises(RuntimeError, match="closed"):
        await probers.probe(spec, TARGET)
