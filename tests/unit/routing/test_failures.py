import json
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from inferlane.routing.failures import (
    BODY_SCAN_LIMIT,
    RETRIABLE,
    FailureClass,
    classify_status,
    is_context_window_error,
    parse_retry_after,
    retry_after_from_headers,
)

NOW = 1_700_000_000.0  # a fixed epoch for the fake clock


def _openai(message: str, code: str | None = "context_length_exceeded") -> bytes:
    return json.dumps({"error": {"message": message, "type": "invalid_request_error",
                                 "param": "messages", "code": code}}).encode()


OPENAI_CONTEXT = _openai(
    "This model's maximum context length is 8192 tokens. However, your messages resulted in "
    "9000 tokens. Please reduce the length of the messages.")
AZURE_CONTEXT = _openai("This model's maximum context length is 128000 tokens. However, you "
                        "requested 130000 tokens (129000 in the messages, 1000 in the completion).")
ANTHROPIC_CONTEXT = json.dumps({"type": "error", "error": {
    "type": "invalid_request_error",
    "message": "prompt is too long: 208312 tokens > 200000 maximum"}}).encode()
ANTHROPIC_MAX_TOKENS = json.dumps({"type": "error", "error": {
    "type": "invalid_request_error",
    "message": "input length and `max_tokens` exceed context limit: 197000 + 8192 > 200000, "
               "decrease input length or `max_tokens` and try again"}}).encode()
VLLM_CONTEXT = json.dumps({
    "object": "error", "type": "BadRequestError", "param": None, "code": 400,
    "message": "This model's maximum context length is 4096 tokens. However, you requested 5000 "
               "tokens (4000 in the messages, 1000 in the completion). Please reduce the length "
               "of the messages or completion."}).encode()
VLLM_DECODER_PROMPT = json.dumps({"error": {
    "message": "The decoder prompt (length 5000) is longer than the maximum model length of 4096.",
    "type": "BadRequestError", "param": None, "code": 400}}).encode()
SGLANG_CONTEXT = json.dumps({
    "object": "error", "type": "BadRequestError", "code": 400,
    "message": "The input (5000 tokens) is longer than the model's context length (4096 tokens)."
}).encode()
TGI_CONTEXT = json.dumps({
    "error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. "
             "Given: 4000 `inputs` tokens and 200 `max_new_tokens`",
    "error_type": "validation"}).encode()
OLLAMA_CONTEXT = b'{"error":"context length exceeded"}'
LLAMA_CPP_CONTEXT = json.dumps({"error": {
    "code": 400, "type": "exceed_context_size_error",
    "message": "the request exceeds the available context size, try increasing it"}}).encode()
OPENAI_CODE_ONLY = _openai("Please shorten your request.")
TYPE_CONTAINS_CODE = json.dumps({"error": {"type": "openai.context_length_exceeded"}}).encode()
UNRELATED_400 = _openai("Invalid value for 'temperature': must be <= 2.", code="invalid_value")
FASTAPI_422_ECHO = json.dumps({"detail": [{
    "type": "missing", "loc": ["body", "model"], "msg": "Field required",
    "input": {"messages": [{"role": "user", "content": "why is the context length exceeded?"}]},
}]}).encode()


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (100, b"", FailureClass.OK),
        (200, b"", FailureClass.OK),
        (204, b"", FailureClass.OK),
        (304, b"", FailureClass.OK),
        (399, b"", FailureClass.OK),
        (408, b"", FailureClass.TIMEOUT),
        (504, b"", FailureClass.TIMEOUT),
        (504, OPENAI_CONTEXT, FailureClass.TIMEOUT),
        (429, b"", FailureClass.RATE_LIMITED),
        (429, OPENAI_CONTEXT, FailureClass.RATE_LIMITED),  # regardless of body
        (500, b"", FailureClass.SERVER_ERROR),
        (502, b"bad gateway", FailureClass.SERVER_ERROR),
        (503, b"", FailureClass.SERVER_ERROR),
        (529, b'{"type":"error","error":{"type":"overloaded_error"}}', FailureClass.SERVER_ERROR),
        (599, b"", FailureClass.SERVER_ERROR),
        (500, OPENAI_CONTEXT, FailureClass.SERVER_ERROR),  # only 400/413/422 are looked into
        (600, b"", FailureClass.SERVER_ERROR),  # malformed statuses blame the upstream
        (99, b"", FailureClass.SERVER_ERROR),
        (400, b"", FailureClass.CLIENT_ERROR),
        (400, UNRELATED_400, FailureClass.CLIENT_ERROR),
        (401, b"", FailureClass.CLIENT_ERROR),
        (404, b'{"error":"model not found"}', FailureClass.CLIENT_ERROR),
        (413, b"request entity too large", FailureClass.CLIENT_ERROR),
        (422, FASTAPI_422_ECHO, FailureClass.CLIENT_ERROR),
        (403, OPENAI_CONTEXT, FailureClass.CLIENT_ERROR),  # not a context-window status
        (499, b"", FailureClass.CLIENT_ERROR),
        (400, OPENAI_CONTEXT, FailureClass.CONTEXT_WINDOW),
        (400, AZURE_CONTEXT, FailureClass.CONTEXT_WINDOW),
        (400, ANTHROPIC_CONTEXT, FailureClass.CONTEXT_WINDOW),
        (400, ANTHROPIC_MAX_TOKENS, FailureClass.CONTEXT_WINDOW),
        (400, VLLM_CONTEXT, FailureClass.CONTEXT_WINDOW),
        (400, VLLM_DECODER_PROMPT, FailureClass.CONTEXT_WINDOW),
        (400, SGLANG_CONTEXT, FailureClass.CONTEXT_WINDOW),
        (422, TGI_CONTEXT, FailureClass.CONTEXT_WINDOW),
        (413, OLLAMA_CONTEXT, FailureClass.CONTEXT_WINDOW),
        (400, LLAMA_CPP_CONTEXT, FailureClass.CONTEXT_WINDOW),
    ],
)
def test_classify_status(status: int, body: bytes, expected: FailureClass) -> None:
    assert classify_status(status, body) is expected


def _nested(message: str, depth: int) -> bytes:
    document: object = message
    for _ in range(depth):
        document = {"error": document}
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (OPENAI_CONTEXT, True),
        (OPENAI_CODE_ONLY, True),  # error.code alone
        (TYPE_CONTAINS_CODE, True),  # error.type containing the code
        (ANTHROPIC_CONTEXT, True),
        (ANTHROPIC_MAX_TOKENS, True),
        (VLLM_CONTEXT, True),
        (SGLANG_CONTEXT, True),
        (TGI_CONTEXT, True),
        (OLLAMA_CONTEXT, True),
        (b"Context Length Exceeded", True),  # plain text, any case
        (b"error: PROMPT IS TOO LONG", True),
        (b'{"error": {"message": "prompt is too long', True),  # truncated JSON: phrases
        (b"\xff\xfe maximum context length \x00\x80", True),  # invalid UTF-8 around a phrase
        (b"", False),
        (b"\xff\xfe\x00garbage\x80", False),
        (b"null", False),
        (b"42", False),
        (b'"prompt is too long"', True),  # a bare JSON string is a message
        (b'["prompt is too long"]', True),
        (UNRELATED_400, False),
        (FASTAPI_422_ECHO, False),  # the echoed prompt is not the error
        (json.dumps({"error": {"param": "context_length_exceeded"}}).encode(), False),
        pytest.param(_nested("prompt is too long", 4), True, id="nested-4"),
        # deeper than any provider nests its message; and no recursion to Python's limit
        pytest.param(_nested("prompt is too long", 5), False, id="nested-5"),
        pytest.param(_nested("prompt is too long", 900), False, id="nested-900"),
        (json.dumps({"detail": [{"msg": "prompt is too long"}]}).encode(), True),
    ],
)
def test_is_context_window_error(body: bytes, expected: bool) -> None:
    assert is_context_window_error(body) is expected


def test_context_window_phrase_past_scan_limit_is_not_read() -> None:
    padding = b" " * BODY_SCAN_LIMIT
    assert not is_context_window_error(padding + b"prompt is too long")
    assert is_context_window_error(b"prompt is too long" + padding)


def test_retriable_is_everything_but_client_errors_and_ok() -> None:
    assert set(RETRIABLE) == {FailureClass.CONNECT, FailureClass.TIMEOUT,
                              FailureClass.SERVER_ERROR, FailureClass.RATE_LIMITED,
                              FailureClass.CONTEXT_WINDOW}
    assert [str(c) for c in FailureClass] == [  # the values metrics and logs carry
        "connect-failure", "timeout", "5xx", "429", "context-window-exceeded", "4xx", "ok"]


def _http_date(epoch: float) -> str:
    return format_datetime(datetime.fromtimestamp(epoch, UTC), usegmt=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("0", 0.0),
        ("120", 120.0),
        (" 5 ", 5.0),
        ("1.5", 1.5),
        ("3600", 3600.0),
        ("3601", 3600.0),  # clamped to the cap
        ("9" * 400, 3600.0),  # absurdly long: still the cap
        ("-1", None),
        ("+1", None),
        ("1e3", None),
        (".5", None),
        ("1.", None),
        ("abc", None),
        ("5 apples", None),
        ("nan", None),
        ("inf", None),
        (_http_date(NOW + 30), 30.0),
        (_http_date(NOW - 30), 0.0),  # a date in the past: now
        (_http_date(NOW + 7200), 3600.0),
        ("Sunday, 06-Nov-94 08:49:37 GMT", 0.0),  # RFC 850 form, long past
        ("Tue Nov 14 22:13:50 2023", 30.0),  # asctime form, GMT without saying so
        ("Tue, 14 Nov 2023 22:13:50 -0000", 30.0),
        ("Tue, 14 Nov 2023 23:13:50 +0100", 30.0),
        ("Mon, 32 Feb 2024 00:00:00 GMT", None),
        ("Mon, 01 Jan 99999999999 00:00:00 GMT", None),
        ("\x00\xff", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now_epoch=NOW) == expected


def test_parse_retry_after_custom_cap() -> None:
    assert parse_retry_after("90", now_epoch=NOW, cap=60.0) == 60.0
    assert parse_retry_after(_http_date(NOW + 90), now_epoch=NOW, cap=60.0) == 60.0


def test_fake_clock_epoch_matches_dates_used() -> None:
    assert _http_date(NOW + 30) == "Tue, 14 Nov 2023 22:13:50 GMT"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ([], None),
        ({"content-type": "application/json"}, None),
        ({"retry-after": "7"}, 7.0),
        ({"Retry-After": "7"}, 7.0),
        ([("RETRY-AFTER", "7")], 7.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"Retry-After-Ms": "250.5", "Retry-After": "1"}, 0.2505),  # milliseconds win
        ([("retry-after", "9"), ("retry-after-ms", "20")], 0.02),  # whatever the order
        ({"retry-after-ms": "bogus", "retry-after": "3"}, 3.0),  # invalid ms: fall back
        ({"retry-after-ms": "-5"}, None),
        ({"retry-after-ms": "99999999999"}, 3600.0),
        ([("retry-after", "4"), ("retry-after", "8")], 4.0),  # the first of repeats
        ([("retry-after-ms", "100"), ("retry-after-ms", "900")], 0.1),
        ({"retry-after": _http_date(NOW + 12)}, 12.0),
        ({"retry-after": "soon"}, None),
    ],
)
def test_retry_after_from_headers(headers: dict[str, str] | list[tuple[str, str]],
                                  expected: float | None) -> None:
    assert retry_after_from_headers(headers, now_epoch=NOW) == expected


def test_retry_after_from_headers_custom_cap() -> None:
    assert retry_after_from_headers({"retry-after-ms": "90000"}, now_epoch=NOW, cap=60.0) == 60.0
