"""Classify one upstream attempt's outcome, for the fallback/retry path.

After each attempt the proxy asks what kind of failure it was: that decides whether to retry
(same backend or the next fallback), whether the backend's cooldown counts a failure, and whether
a longer-context model is worth trying. ``CONNECT`` and ``TIMEOUT`` without a status come from the
adapter's mapped exceptions; everything with an HTTP status goes through ``classify_status``.

Design notes:

- Context-window errors arrive as 400 (OpenAI, Azure, Anthropic, vLLM, SGLang), 413 or 422 (TGI)
  with provider-specific wording, so they are recognised by body, never by status alone.
- Only the first ``BODY_SCAN_LIMIT`` bytes are read: error bodies are small, and a huge one must
  not cost a full parse. Garbage (invalid UTF-8, truncated JSON) falls back to phrase matching.
- In JSON only message-like fields are searched, not e.g. a 422's echoed ``input``, so a prompt
  that merely mentions "context length" does not turn a validation error into a fallback.
"""

from __future__ import annotations

import email.utils
import enum
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC

import orjson

BODY_SCAN_LIMIT = 64 * 1024


class FailureClass(enum.StrEnum):
    CONNECT = "connect-failure"  # no connection, or closed before any response byte
    TIMEOUT = "timeout"  # no answer in time; also HTTP 408 and 504
    SERVER_ERROR = "5xx"  # 500-599 but 504, incl. Anthropic's 529 overloaded
    RATE_LIMITED = "429"
    CONTEXT_WINDOW = "context-window-exceeded"  # prompt (+ max tokens) too long for the model
    CLIENT_ERROR = "4xx"  # the request itself is wrong: never retried
    OK = "ok"  # 1xx-3xx


RETRIABLE: frozenset[FailureClass] = frozenset(FailureClass) - {
    FailureClass.CLIENT_ERROR, FailureClass.OK}
# What says "this backend is broken" (breakers, outlier detection); a 429 is back-pressure.
PASSIVE_FAILURES: frozenset[FailureClass] = frozenset({
    FailureClass.CONNECT, FailureClass.TIMEOUT, FailureClass.SERVER_ERROR})

_CONTEXT_WINDOW_STATUSES = frozenset({400, 413, 422})

_CONTEXT_WINDOW_PHRASES = re.compile(
    "|".join((
        r"context[ _]length[ _]exceeded",  # OpenAI/Azure/Groq error.code; Ollama-style text
        r"maximum context length",  # OpenAI, vLLM, DeepSeek, Mistral
        r"prompt is too long",  # Anthropic
        r"exceeds? (?:the )?context (?:limit|length|window)",  # Anthropic input + max_tokens
        r"longer than the (?:model.s |maximum )?(?:context|model) length",  # SGLang, vLLM
        r"inputs`? tokens \+ `?max_new_tokens`? must be <=",  # TGI
        r"exceeds? the available context size",  # llama.cpp server
        r"exceed_context_size",  # llama.cpp error.type
        r"input is too long",  # Bedrock
    )),
    re.IGNORECASE,
)

# JSON fields that carry an error's code or wording, across providers; others (e.g. "input",
# which FastAPI's 422 uses to echo the request) are not searched.
_MESSAGE_KEYS = ("error", "message", "msg", "detail", "code", "type", "error_type")
_MAX_JSON_DEPTH = 4

_DELAY_SECONDS = re.compile(r"\d+(?:\.\d+)?")


def classify_status(status: int, body: bytes = b"") -> FailureClass:
    if 100 <= status < 400:
        return FailureClass.OK
    if status in (408, 504):
        return FailureClass.TIMEOUT
    if status == 429:
        return FailureClass.RATE_LIMITED
    if status in _CONTEXT_WINDOW_STATUSES and is_context_window_error(body):
        return FailureClass.CONTEXT_WINDOW
    if 400 <= status < 500:
        return FailureClass.CLIENT_ERROR
    # 5xx, and a status outside 100-599: a malformed answer is the upstream's fault.
    return FailureClass.SERVER_ERROR


def is_context_window_error(body: bytes) -> bool:
    """Whether an error body says the prompt (+ max tokens) does not fit the model's context."""
    head = body[:BODY_SCAN_LIMIT]
    try:
        document = orjson.loads(head)
    except orjson.JSONDecodeError:
        return _CONTEXT_WINDOW_PHRASES.search(head.decode("utf-8", "replace")) is not None
    return any(_CONTEXT_WINDOW_PHRASES.search(text) for text in _message_strings(document, 0))


def _message_strings(value: object, depth: int) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif depth >= _MAX_JSON_DEPTH:
        return
    elif isinstance(value, dict):
        for key in _MESSAGE_KEYS:
            yield from _message_strings(value.get(key), depth + 1)
    elif isinstance(value, list):
        for item in value:
            yield from _message_strings(item, depth + 1)


def parse_retry_after(value: str | None, *, now_epoch: float,
                      cap: float = 3600.0) -> float | None:
    """Seconds to wait per a ``Retry-After`` value (RFC 9110 §10.2.3), at most ``cap``.

    Accepts delay-seconds (also decimal, which some providers send) or an HTTP-date measured
    from ``now_epoch``; a date in the past means 0.0. None when absent or unparseable.
    """
    if value is None:
        return None
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        return min(float(value), cap)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (ValueError, TypeError, OverflowError, IndexError):
        return None
    if when.tzinfo is None:  # asctime and "-0000" dates: HTTP dates are always GMT
        when = when.replace(tzinfo=UTC)
    return min(max(when.timestamp() - now_epoch, 0.0), cap)


def retry_after_from_headers(headers: Mapping[str, str] | Sequence[tuple[str, str]], *,
                             now_epoch: float, cap: float = 3600.0) -> float | None:
    """Seconds to wait per a response's headers: ``retry-after-ms`` (OpenAI's, milliseconds,
    more precise) when valid, else ``retry-after``; None when neither says."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    milliseconds: str | None = None
    retry_after: str | None = None
    for name, value in pairs:
        lowered = name.lower()
        if lowered == "retry-after-ms" and milliseconds is None:
            milliseconds = value
        elif lowered == "retry-after" and retry_after is None:
            retry_after = value
    if milliseconds is not None and _DELAY_SECONDS.fullmatch(milliseconds.strip()):
        return min(float(milliseconds) / 1000.0, cap)
    return parse_retry_after(retry_after, now_epoch=now_epoch, cap=cap)
