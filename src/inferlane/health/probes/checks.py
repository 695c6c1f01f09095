"""The probes' decisions, without I/O: does this answer pass, and what to say when it does not.

The adapters next to this module (``http``, ``tcp``, ``grpc``, ``inference``) do the sockets and
hand what they saw to these functions; each returns an ``Outcome`` whose ``reason`` ends up in
``ProbeResult.reason``, so an operator reads it in the health report and the logs. Reasons say
what failed in a few words ("HTTP 503, expected 2xx", "connection refused"); they never quote
request header values (monitors may carry credentials there).
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from inferlane.health.monitors import HttpCheck, InferenceCheck, TcpCheck

BODY_LIMIT = 64 * 1024  # bytes of an answer a probe reads, at most
_QUOTE_LIMIT = 60  # characters of an answer quoted in a reason
_MESSAGE_LIMIT = 160  # characters of a server's error message quoted in a reason


@dataclass(frozen=True, slots=True)
class Outcome:
    """One try's verdict on what it received."""

    ok: bool
    reason: str


# -- formatting ------------------------------------------------------------------------------


def format_seconds(seconds: float) -> str:
    """Seconds for a reason: ``3.2``, ``0.31``, ``0.041`` (never ``0.0``)."""
    return f"{seconds:.1f}" if seconds >= 1 else f"{seconds:.2g}"


def quote(text: str, limit: int = _QUOTE_LIMIT) -> str:
    """``text`` quoted for a reason, cut at ``limit`` characters."""
    if len(text) > limit:
        return repr(text[:limit]) + "..."
    return repr(text)


def quote_bytes(data: bytes, limit: int = _QUOTE_LIMIT) -> str:
    if len(data) > limit:
        return repr(data[:limit]) + "..."
    return repr(data)


def one_line(text: str, limit: int = _MESSAGE_LIMIT) -> str:
    """``text`` with its whitespace runs (newlines too) made single spaces, cut at ``limit``."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


# -- addresses -------------------------------------------------------------------------------


def host_port(host: str, port: int) -> str:
    """``host:port``, an IPv6 address in brackets."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def probe_url(scheme: str, host: str, port: int, path: str) -> str:
    """The URL of a probe request; ``path`` may carry a query string."""
    if not path.startswith("/"):
        path = "/" + path
    return f"{scheme}://{host_port(host, port)}{path}"


def tls_server_name(headers: Sequence[tuple[str, str]]) -> str | None:
    """The TLS server name (SNI, and the name the certificate must match) for a probe whose
    headers set ``Host``: the endpoint is addressed by IP, its certificate names the host the
    monitor says it serves. None: use the URL's host."""
    for name, value in headers:
        if name.lower() == "host":
            host = value.strip()
            if host.startswith("["):  # [v6] or [v6]:port
                host = host[1:].partition("]")[0]
            elif host.count(":") == 1:  # name:port (a bare v6 address has more colons)
                host = host.partition(":")[0]
            return host or None
    return None


# -- errors ----------------------------------------------------------------------------------


_ERRNO_REASONS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset by the peer",
    errno.ECONNABORTED: "connection aborted",
    errno.EPIPE: "connection closed by the peer while sending",
    errno.ETIMEDOUT: "the network timed out",
    errno.EHOSTUNREACH: "no route to the host",
    errno.ENETUNREACH: "the network is unreachable",
}


def describe_os_error(error: OSError) -> str:
    """What a socket-level failure means, in a few words (no addresses: the caller knows).
    By errno, not only by class: aiohttp re-raises socket errors as its own OSError kinds.
    TLS errors first: their errnos are SSL codes, not OS ones; their ``reason`` and
    ``verify_message`` exist only when the ssl module raised them."""
    if isinstance(error, ssl.SSLCertVerificationError):
        detail = (getattr(error, "verify_message", None) or getattr(error, "reason", None)
                  or error.strerror or str(error))
        return f"TLS certificate rejected ({one_line(detail)})"
    if isinstance(error, ssl.SSLError):
        detail = getattr(error, "reason", None) or error.strerror or str(error)
        return f"TLS failed ({one_line(detail)})"
    if isinstance(error, socket.gaierror):
        return f"cannot resolve the host ({error.strerror or error})"
    if error.errno in _ERRNO_REASONS:
        return _ERRNO_REASONS[error.errno]
    if isinstance(error, TimeoutError):
        return "the network timed out"
    return f"network error: {one_line(error.strerror or str(error) or type(error).__name__)}"


# -- http / https ----------------------------------------------------------------------------


def decode_body(data: bytes, charset: str | None) -> str:
    """A body as text: its declared charset, else UTF-8; undecodable bytes replaced."""
    encoding = "utf-8"
    if charset:
        with contextlib.suppress(LookupError):  # an unknown charset: read it as UTF-8
            encoding = codecs.lookup(charset).name
    return data.decode(encoding, errors="replace")


def http_outcome(status: int, body: str | None, check: HttpCheck, *,
                 truncated: bool = False) -> Outcome:
    """Pass when ``status`` is expected and, when the check wants a body substring, ``body``
    (the first ``BODY_LIMIT`` bytes, ``truncated`` when there was more) contains it, ignoring
    case as Cloudflare's ``expected_body`` does."""
    if not any(status in codes for codes in check.expected_codes):
        expected = ", ".join(str(codes) for codes in check.expected_codes)
        return Outcome(False, f"HTTP {status}, expected {expected}")
    wanted = check.expected_body
    if wanted and (body is None or wanted.casefold() not in body.casefold()):
        where = f"first {BODY_LIMIT // 1024} KiB of the body" if truncated else "body"
        return Outcome(False, f"HTTP {status} but the {where} lacks {quote(wanted)}")
    return Outcome(True, f"HTTP {status}")


# -- tcp -------------------------------------------------------------------------------------


def tcp_outcome(check: TcpCheck, received: bytes, *, closed: bool) -> Outcome:
    """Pass when the check expects nothing or ``received`` contains ``check.expect``;
    ``closed``: the peer closed before that (else the read stopped at ``BODY_LIMIT``)."""
    if not check.expect:
        return Outcome(True, "connected")
    if check.expect in received:
        return Outcome(True, f"connected and got {quote_bytes(check.expect)}")
    if closed:
        got = f" (got {quote_bytes(received)})" if received else " (got nothing)"
        return Outcome(False, f"connection closed before {quote_bytes(check.expect)} "
                              f"arrived{got}")
    return Outcome(False, f"no {quote_bytes(check.expect)} in the first "
                          f"{BODY_LIMIT // 1024} KiB received")


# -- grpc ------------------------------------------------------------------------------------


def grpc_outcome(status: str, service: str) -> Outcome:
    """A grpc.health.v1 answer (``status`` the ServingStatus name): only SERVING passes."""
    if status == "SERVING":
        return Outcome(True, "SERVING")
    who = f"service {service!r}" if service else "the server"
    return Outcome(False, f"{who} is {status}")


def grpc_error(code: str, details: str, service: str, timeout: float) -> tuple[str, bool]:
    """The reason for a failed Health/Check call (``code`` the gRPC StatusCode name) and
    whether the server answered at all (False: nothing came back, so no round trip)."""
    if code == "DEADLINE_EXCEEDED":
        return f"timed out after {timeout:g} s", False
    if code == "UNAVAILABLE":
        if "connection refused" in details.casefold():
            return "connection refused", False
        return f"gRPC UNAVAILABLE: {one_line(details)}" if details else "gRPC UNAVAILABLE", False
    if code == "NOT_FOUND":
        return f"the server does not know service {service!r} (gRPC NOT_FOUND)", True
    if code == "UNIMPLEMENTED":
        return "the server does not implement grpc.health.v1.Health (gRPC UNIMPLEMENTED)", True
    return (f"gRPC {code}: {one_line(details)}" if details else f"gRPC {code}"), True


# -- inference -------------------------------------------------------------------------------


def _error_message(body: bytes) -> str:
    """The message of an OpenAI-style error body, or ""."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    if isinstance(document, dict):
        error = document.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return one_line(error["message"])
        if isinstance(error, str):
            return one_line(error)
    return ""


def chat_answer_text(document: object) -> str | None:
    """``choices[0].message.content`` of a chat completion, or None when it has none."""
    if not isinstance(document, dict):
        return None
    choices = document.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get("message")
    if not isinstance(message, dict):
        return None
    content = message.get("content")
    return content if isinstance(content, str) else None


def inference_outcome(status: int, body: bytes, elapsed: float, check: InferenceCheck, *,
                      truncated: bool = False) -> Outcome:
    """Pass when a chat completion answered 200 with ``choices[0].message.content`` that
    contains ``expected_text`` (when set, ignoring case) within ``latency_threshold`` seconds
    (when set). ``elapsed``: seconds from sending the request to the end of the answer."""
    if status != 200:
        message = _error_message(body)
        return Outcome(False, f"HTTP {status}: {message}" if message else f"HTTP {status}")
    if truncated:
        return Outcome(False, f"answer longer than {BODY_LIMIT // 1024} KiB")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Outcome(False, f"answer is not JSON: {quote(body.decode('utf-8', 'replace'))}")
    text = chat_answer_text(document)
    if text is None:
        return Outcome(False, "answer has no choices[0].message.content")
    problems = []
    answered = f"answered in {format_seconds(elapsed)} s"
    threshold = check.latency_threshold
    if threshold is not None and elapsed > threshold:
        problems.append(f"{answered}, over the {threshold:g} s threshold")
    if check.expected_text and check.expected_text.casefold() not in text.casefold():
        problems.append(f"answer {quote(text)} lacks {quote(check.expected_text)}")
    if problems:
        return Outcome(False, "; ".join(problems))
    return Outcome(True, answered)
