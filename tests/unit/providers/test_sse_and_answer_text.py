"""The incremental SSE parser (cut anywhere, every line end, bounded) and AnswerText, the text of
an answer for comparing a primary with its shadow."""

from __future__ import annotations

import json
from typing import Any

import pytest

from inferlane.errors import UpstreamProtocolError
from inferlane.providers.answer_text import MAX_TEXT, AnswerText
from inferlane.providers.sse import SseEventParser

# -- SseEventParser ----------------------------------------------------------------------------

STREAMS = [
    # (id, stream with LF line ends, events)
    ("one-event", b"data: hello\n\n", [("message", "hello")]),
    ("named", b"event: message_start\ndata: {\"a\": 1}\n\n", [("message_start", "{\"a\": 1}")]),
    ("event-after-data", b"data: x\nevent: late\n\n", [("late", "x")]),
    ("name-resets", b"event: a\ndata: 1\n\ndata: 2\n\n", [("a", "1"), ("message", "2")]),
    ("last-name-wins", b"event: a\nevent: b\ndata: 1\n\n", [("b", "1")]),
    ("empty-event-name", b"event:\ndata: 1\n\n", [("message", "1")]),
    ("multi-line-data", b"data: line one\ndata: line two\ndata:\ndata: four\n\n",
     [("message", "line one\nline two\n\nfour")]),
    ("no-space", b"data:tight\n\n", [("message", "tight")]),
    ("one-space-stripped", b"data:  two spaces\n\n", [("message", " two spaces")]),
    ("colon-in-value", b"data: a: b: c\n\n", [("message", "a: b: c")]),
    ("field-without-colon", b"data\n\n", [("message", "")]),
    ("empty-data", b"data:\n\n", [("message", "")]),
    ("comments", b": ping\n:\ndata: x\n: between\n\n: trailing\n\n", [("message", "x")]),
    ("id-and-retry", b"id: 7\nretry: 1000\ndata: x\nid\n\n", [("message", "x")]),
    ("unknown-fields", b"foo: bar\nDATA: shout\nEvent: nope\ndata: x\n\n", [("message", "x")]),
    ("no-data-no-event", b"event: lonely\n\nid: 1\n\n: c\n\ndata: x\n\n", [("message", "x")]),
    ("blank-lines", b"\n\n\ndata: a\n\n\n\ndata: b\n\n", [("message", "a"), ("message", "b")]),
    ("unfinished-event-held", b"data: a\n\ndata: b\n", [("message", "a")]),
    ("utf8", "data: météo ☀ 🌧\n\n".encode(), [("message", "météo ☀ 🌧")]),
    ("bad-utf8-replaced", b"data: \xff\xfeok\n\n", [("message", "\ufffd\ufffdok")]),
    ("openai-done", b"data: {\"x\":1}\n\ndata: [DONE]\n\n",
     [("message", "{\"x\":1}"), ("message", "[DONE]")]),
]


def feed_all(chunks: list[bytes], parser: SseEventParser | None = None) -> list[tuple[str, str]]:
    parser = parser or SseEventParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


def with_line_ends(stream: bytes, end: bytes) -> bytes:
    return stream.replace(b"\n", end)


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
@pytest.mark.parametrize(("stream", "events"), [pytest.param(*c[1:], id=c[0]) for c in STREAMS])
def test_events(stream: bytes, events: list[tuple[str, str]], end: bytes) -> None:
    assert feed_all([with_line_ends(stream, end)]) == events


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
@pytest.mark.parametrize(("stream", "events"), [pytest.param(*c[1:], id=c[0]) for c in STREAMS])
def test_events_cut_at_every_byte_boundary(stream: bytes, events: list[tuple[str, str]],
                                           end: bytes) -> None:
    stream = with_line_ends(stream, end)
    assert feed_all([stream[i:i + 1] for i in range(len(stream))]) == events
    for cut in range(len(stream) + 1):
        assert feed_all([stream[:cut], stream[cut:]]) == events, cut
    for first in range(1, len(stream)):
        for second in range(first, len(stream), 3):
            pieces = [stream[:first], stream[first:second], stream[second:]]
            assert feed_all(pieces) == events, (first, second)


@pytest.mark.parametrize(
    ("stream", "events"),
    [
        (b"data: a\r\n\r\ndata: b\n\ndata: c\r\rdata: d\r\n\n",
         [("message", "a"), ("message", "b"), ("message", "c"), ("message", "d")]),
        (b"data: a\r\ndata: b\rdata: c\n\r\n", [("message", "a\nb\nc")]),
        # CR then LF is one line end; LF then CR is two
        (b"data: a\n\rdata: b\n\n", [("message", "a"), ("message", "b")]),
        (b"data: a\r\n\r\n\r\n", [("message", "a")]),
    ],
)
def test_mixed_line_ends(stream: bytes, events: list[tuple[str, str]]) -> None:
    assert feed_all([stream]) == events
    assert feed_all([stream[i:i + 1] for i in range(len(stream))]) == events


def test_a_cr_at_a_chunk_end_ends_the_line_at_once() -> None:
    # Fixed: the CR was held until the next chunk, so with CR line ends every event waited
    # for the next one, and the last was never delivered.
    parser = SseEventParser()
    assert parser.feed(b"data: a\r\n\r") == [("message", "a")]
    assert parser.feed(b"\n") == []  # the LF of that CRLF
    assert parser.feed(b"data: b\r\r") == [("message", "b")]
    assert parser.feed(b"") == []
    assert parser.feed(b"\ndata: c\r") == []  # a LF after CR, after an empty chunk
    assert parser.feed(b"\n\n") == [("message", "c")]


def test_empty_chunks_change_nothing() -> None:
    parser = SseEventParser()
    assert parser.feed(b"") == []
    assert parser.feed(b"data: a") == []
    assert parser.feed(b"") == []
    assert parser.feed(b"\n\n") == [("message", "a")]


@pytest.mark.parametrize("pieces", [[b"x" * 11], [b"data: ", b"12345"], [b"x" * 5] * 3,
                                    [b"data: 1\n\n", b"data: " + b"y" * 20]])
def test_a_partial_line_longer_than_max_line_is_an_error(pieces: list[bytes]) -> None:
    parser = SseEventParser(max_line=10)
    for piece in pieces[:-1]:
        parser.feed(piece)
    with pytest.raises(UpstreamProtocolError, match="longer than 10 bytes"):
        parser.feed(pieces[-1])


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"])
def test_a_complete_line_longer_than_max_line_is_an_error_too(end: bytes) -> None:
    # Fixed: only the unfinished tail was checked, so whether a long line was refused depended
    # on where the chunks were cut.
    with pytest.raises(UpstreamProtocolError, match="longer than 10 bytes"):
        SseEventParser(max_line=10).feed(b"data: " + b"y" * 20 + end + end)


def test_lines_up_to_max_line_pass() -> None:
    parser = SseEventParser(max_line=10)
    line = b"data: 1234"  # exactly 10 bytes
    assert parser.feed(line) == []
    assert parser.feed(b"\r") == []
    assert parser.feed(b"\n\r\n") == [("message", "1234")]
    assert parser.feed(line + b"\n\n") == [("message", "1234")]


def test_an_event_of_many_data_lines_is_bounded() -> None:
    # Fixed: data lines without a blank line accumulated without bound.
    parser = SseEventParser(max_line=100, max_event=50)
    assert parser.feed(b"data: 0123456789\n" * 3) == []
    with pytest.raises(UpstreamProtocolError, match="more than 50 bytes of data"):
        parser.feed(b"data: 0123456789\n" * 2)


def test_the_event_bound_restarts_with_each_event() -> None:
    parser = SseEventParser(max_line=100, max_event=40)
    event = b"data: 0123456789\n" * 2 + b"\n"  # 32 bytes of data lines
    assert feed_all([event * 50], parser) == [("message", "0123456789\n0123456789")] * 50


def test_the_default_limits_allow_large_events() -> None:
    data = "x" * (1024 * 1024)
    stream = f"data: {data}\n\n".encode()
    assert feed_all([stream[i:i + 65536] for i in range(0, len(stream), 65536)]) \
        == [("message", data)]


# -- AnswerText --------------------------------------------------------------------------------

def sse(data: dict[str, Any], event: str | None = None) -> bytes:
    head = b"" if event is None else b"event: " + event.encode() + b"\n"
    return head + b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n"


def chat_chunk(delta: dict[str, Any]) -> bytes:
    return sse({"object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})


def tool_call_delta(index: int, *, name: str | None = None, arguments: str = "") -> dict[str, Any]:
    function: dict[str, Any] = {"arguments": arguments}
    if name is not None:
        function["name"] = name
    return {"tool_calls": [{"index": index, "function": function}]}


BODIES = [
    ("openai-chat", {"object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hello there."}}]},
     "Hello there."),
    ("openai-chat-tool-calls", {"choices": [{"message": {
        "role": "assistant", "content": None, "tool_calls": [
            {"id": "1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "2", "type": "function",
             "function": {"name": "get_time", "arguments": "{}"}}]}}]},
     "get_weather{\"city\":\"Paris\"}get_time{}"),
    ("openai-chat-text-and-tool", {"choices": [{"message": {
        "content": "Checking. ", "tool_calls": [
            {"function": {"name": "f", "arguments": "{\"a\":1}"}}]}}]},
     "Checking. f{\"a\":1}"),
    ("openai-completions", {"object": "text_completion",
                            "choices": [{"index": 0, "text": "Once upon a time"}]},
     "Once upon a time"),
    ("only-the-first-choice", {"choices": [{"text": "first"}, {"text": "second"}]}, "first"),
    ("anthropic-message", {"type": "message", "content": [
        {"type": "thinking", "thinking": "secret"},
        {"type": "text", "text": "Checking. "},
        {"type": "tool_use", "id": "t", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "text", "text": " Done."}]},
     "Checking. get_weather{\"city\":\"Paris\"} Done."),
    ("anthropic-tool-without-input", {"content": [{"type": "tool_use", "name": "ping"}]},
     "ping{}"),
    ("error-body", {"error": {"message": "boom"}}, ""),
    ("odd-shapes", {"content": 5, "choices": [{"message": {"content": ["x"],
                                                           "tool_calls": 3}}]}, ""),
    ("odd-items", {"content": ["text", None], "choices": ["x"]}, ""),
    ("odd-calls", {"choices": [{"message": {"tool_calls": ["x", {"function": "f"}]}}]}, ""),
    ("empty-choices", {"choices": []}, ""),
]


@pytest.mark.parametrize(("document", "text"), [pytest.param(*c[1:], id=c[0]) for c in BODIES])
def test_body_text(document: Any, text: str) -> None:
    answer = AnswerText()
    answer.body(json.dumps(document).encode())
    assert answer.text == text


@pytest.mark.parametrize("payload", [b"", b"not json", b"[1, 2]", b"\"text\"", b"{\"a\": "])
def test_body_that_is_not_an_object_has_no_text(payload: bytes) -> None:
    answer = AnswerText()
    answer.body(payload)
    assert answer.text == ""


OPENAI_STREAM = b"".join([
    chat_chunk({"role": "assistant", "content": ""}),
    chat_chunk({"content": "Let me "}),
    chat_chunk({"content": "check."}),
    chat_chunk(tool_call_delta(0, name="get_weather")),
    chat_chunk(tool_call_delta(0, arguments="{\"city\":")),
    chat_chunk(tool_call_delta(0, arguments="\"Paris\"}")),
    sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
    sse({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}),
    b"data: [DONE]\n\n",
])

COMPLETIONS_STREAM = b"".join([
    sse({"object": "text_completion", "choices": [{"index": 0, "text": "Once "}]}),
    sse({"object": "text_completion", "choices": [{"index": 0, "text": "upon"}]}),
    b"data: [DONE]\n\n",
])

ANTHROPIC_STREAM = b"".join([
    sse({"type": "message_start", "message": {"content": [], "usage": {"input_tokens": 3}}},
        "message_start"),
    sse({"type": "content_block_start", "index": 0,
         "content_block": {"type": "text", "text": ""}}, "content_block_start"),
    sse({"type": "ping"}, "ping"),
    sse({"type": "content_block_delta", "index": 0,
         "delta": {"type": "text_delta", "text": "Let me "}}, "content_block_delta"),
    sse({"type": "content_block_delta", "index": 0,
         "delta": {"type": "text_delta", "text": "check."}}, "content_block_delta"),
    sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
    sse({"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "t", "name": "get_weather", "input": {}}},
        "content_block_start"),
    sse({"type": "content_block_delta", "index": 1,
         "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}},
        "content_block_delta"),
    sse({"type": "content_block_delta", "index": 1,
         "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}},
        "content_block_delta"),
    sse({"type": "content_block_stop", "index": 1}, "content_block_stop"),
    sse({"type": "message_delta", "delta": {"stop_reason": "tool_use"},
         "usage": {"output_tokens": 9}}, "message_delta"),
    sse({"type": "message_stop"}, "message_stop"),
])


@pytest.mark.parametrize(
    ("stream", "text"),
    [(OPENAI_STREAM, "Let me check.get_weather{\"city\":\"Paris\"}"),
     (COMPLETIONS_STREAM, "Once upon"),
     (ANTHROPIC_STREAM, "Let me check.get_weather{\"city\":\"Paris\"}"),
     (sse({"type": "content_block_start", "index": 0,
           "content_block": {"type": "text", "text": "Started "}})
      + sse({"type": "content_block_delta", "index": 0,
             "delta": {"type": "text_delta", "text": "early."}}), "Started early."),
     (sse({"error": {"message": "overloaded"}}) + b"data: not json\n\n", "")],
    ids=["openai-chat", "openai-completions", "anthropic", "anthropic-block-with-text",
         "error-and-garbage"],
)
def test_stream_text(stream: bytes, text: str) -> None:
    whole = AnswerText()
    whole.stream(stream)
    assert whole.text == text
    bytewise = AnswerText()
    for i in range(len(stream)):
        bytewise.stream(stream[i:i + 1])
    assert bytewise.text == text


@pytest.mark.parametrize("limit", [1, 5, 13, 14, 100])
def test_text_is_truncated_at_the_limit(limit: int) -> None:
    full = "Let me check.get_weather{\"city\":\"Paris\"}"
    for stream in (OPENAI_STREAM, ANTHROPIC_STREAM):
        answer = AnswerText(limit=limit)
        answer.stream(stream)
        assert answer.text == full[:limit]
    answer = AnswerText(limit=limit)
    answer.body(json.dumps({"choices": [{"message": {"content": full}}]}).encode())
    assert answer.text == full[:limit]


def test_a_full_answer_stops_reading() -> None:
    answer = AnswerText(limit=4)
    answer.stream(chat_chunk({"content": "abcdef"}))
    answer.stream(b"data: this would be a parse error if it were read" + b"x" * 10)
    answer.stream(chat_chunk({"content": "more"}))
    assert answer.text == "abcd"


def test_default_limit() -> None:
    answer = AnswerText()
    answer.stream(chat_chunk({"content": "x" * (MAX_TEXT + 10)}))
    answer.stream(chat_chunk({"content": "y"}))
    assert answer.text == "x" * MAX_TEXT


def test_a_malformed_stream_ends_the_text_instead_of_raising() -> None:
    # Fixed: the primary's recorder runs this on the client's stream; a parse error must not
    # fail the client's request.
    answer = AnswerText()
    answer.stream(chat_chunk({"content": "kept"}))
    answer.stream(b"data: " + b"x" * (4 * 1024 * 1024 + 1))
    answer.stream(chat_chunk({"content": " ignored"}))
    assert answer.text == "kept"


def test_stream_of_odd_shapes_has_no_text() -> None:
    answer = AnswerText()
    answer.stream(sse({"choices": [{"delta": {"tool_calls": 7, "content": 3}}]})
                  + sse({"delta": "text", "content_block": "x"})
                  + sse({"choices": ["x"]}) + b"data: [1]\n\n")
    assert answer.text == ""
