"""OpenAI Chat Completions → Anthropic Messages: requests, field rejections, responses, stream."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from inferlane.errors import BadRequest, InferlaneError, UpstreamProtocolError
from inferlane.providers.translate import (
    CHAT_FIELDS,
    DONE,
    Handling,
    MessagesStreamToChatChunks,
    UpstreamStreamError,
    chat_request_to_messages,
    encode_chunk,
    messages_response_to_chat,
)

PNG = "iVBORw0KGgo="  # valid base64 (the PNG signature)
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
WEATHER_TOOL_ANTHROPIC = {
    "name": "get_weather", "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                     "required": ["city"]}}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


REQUESTS = [
    pytest.param(
        {"model": "gpt-4o", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [text("Answer in French.")]},
            user("Hi"), {"role": "user", "content": [text("there")]},
            {"role": "assistant", "content": "Bonjour"},
            {"role": "assistant", "content": [text("!")]},
            user("Why?")]},
        {"model": "claude-x", "max_tokens": 4096,
         "system": [text("Be brief."), text("Answer in French.")],
         "messages": [{"role": "user", "content": [text("Hi"), text("there")]},
                      {"role": "assistant", "content": [text("Bonjour"), text("!")]},
                      {"role": "user", "content": [text("Why?")]}]},
        id="system-developer-multiturn-merged"),
    pytest.param(
        {"model": "m", "messages": [{"role": "system", "content": "Be brief."}, user("Hi")],
         "max_completion_tokens": 100, "stop": "END", "temperature": 0.7, "top_p": 0.9,
         "stream": True, "stream_options": {"include_usage": True}, "seed": 7, "n": 1,
         "logprobs": False, "response_format": {"type": "text"}, "user": "u-1",
         "frequency_penalty": 0, "presence_penalty": 0.0, "metadata": {"k": "v"}},
        {"model": "claude-x", "max_tokens": 100, "system": "Be brief.",
         "messages": [{"role": "user", "content": [text("Hi")]}],
         "stop_sequences": ["END"], "temperature": 0.7, "top_p": 0.9,
         "metadata": {"user_id": "u-1"}, "stream": True},
        id="scalars-and-ignored-fields"),
    pytest.param(
        {"model": "m", "messages": [user("Hi")], "max_tokens": 50, "stop": ["a", "b"],
         "user": "u-1", "safety_identifier": "s-1"},
        {"model": "claude-x", "max_tokens": 50, "messages": [
            {"role": "user", "content": [text("Hi")]}],
         "stop_sequences": ["a", "b"], "metadata": {"user_id": "s-1"}},
        id="legacy-max-tokens-stop-list-safety-identifier"),
    pytest.param(
        {"model": "m", "messages": [user("Hi")], "stop": []},
        {"model": "claude-x", "max_tokens": 4096,
         "messages": [{"role": "user", "content": [text("Hi")]}]},
        id="default-max-tokens-empty-stop"),
    pytest.param(
        {"model": "m", "messages": [{"role": "user", "content": [
            text("What is in these?"),
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}",
                                                "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}]},
        {"model": "claude-x", "max_tokens": 4096, "messages": [{"role": "user", "content": [
            text("What is in these?"),
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PNG}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        ]}]},
        id="images"),
    pytest.param(
        {"model": "m", "tools": [WEATHER_TOOL], "tool_choice": "auto", "messages": [
            user("Weather in Paris and Rome?"),
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "toolu_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
                {"id": "toolu_2", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": [text("21"), text("C")]},
            user("Thanks, and tomorrow?")]},
        {"model": "claude-x", "max_tokens": 4096, "messages": [
            {"role": "user", "content": [text("Weather in Paris and Rome?")]},
            {"role": "assistant", "content": [
                text("Checking."),
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                 "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather",
                 "input": {"city": "Rome"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "21C"},
                text("Thanks, and tomorrow?")]}],
         "tools": [WEATHER_TOOL_ANTHROPIC], "tool_choice": {"type": "auto"}},
        id="tool-call-round"),
    pytest.param(
        {"model": "m", "messages": [
            user("Go"),
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "ping", "arguments": ""}}]},
            {"role": "tool", "tool_call_id": "t1", "content": ""}],
         "tools": [{"type": "function", "function": {"name": "ping", "strict": True}}],
         "parallel_tool_calls": False},
        {"model": "claude-x", "max_tokens": 4096, "messages": [
            {"role": "user", "content": [text("Go")]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "t1", "name": "ping", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]}],
         "tools": [{"name": "ping", "input_schema": {"type": "object", "properties": {}},
                    "strict": True}],
         "tool_choice": {"type": "auto", "disable_parallel_tool_use": True}},
        id="no-arguments-empty-result-no-parallel"),
]


@pytest.mark.parametrize(("body", "expected"), REQUESTS)
def test_request_translation(body: dict[str, Any], expected: dict[str, Any]) -> None:
    assert chat_request_to_messages(body, model="claude-x") == expected


@pytest.mark.parametrize(("tool_choice", "parallel", "expected"), [
    ("auto", None, {"type": "auto"}),
    ("none", None, {"type": "none"}),
    ("required", None, {"type": "any"}),
    ({"type": "function", "function": {"name": "get_weather"}}, None,
     {"type": "tool", "name": "get_weather"}),
    ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
    ("none", False, {"type": "none"}),
    (None, True, None),
])
def test_tool_choice(tool_choice: Any, parallel: Any, expected: Any) -> None:
    body: dict[str, Any] = {"model": "m", "messages": [user("Hi")], "tools": [WEATHER_TOOL]}
    if tool_choice is not None:
        body["tool_choice"] = tool_choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    assert chat_request_to_messages(body, model="c").get("tool_choice") == expected


def test_default_max_tokens_is_configurable() -> None:
    body = {"model": "m", "messages": [user("Hi")]}
    assert chat_request_to_messages(body, model="c", default_max_tokens=1000)["max_tokens"] == 1000


REJECTED = {
    "n": 2, "logprobs": True, "top_logprobs": 3, "logit_bias": {"50256": -100},
    "response_format": {"type": "json_object"}, "frequency_penalty": 0.5,
    "presence_penalty": -1, "audio": {"voice": "alloy", "format": "mp3"},
    "modalities": ["text", "audio"], "reasoning_effort": "high", "verbosity": "low",
    "service_tier": "flex", "store": True, "web_search_options": {},
    "moderation": {"model": "omni"}, "functions": [{"name": "f"}], "function_call": "auto",
}


@pytest.mark.parametrize(("name", "value"), [*REJECTED.items(), ("best_of", 2), ("foo", 1)])
def test_rejected_and_unknown_fields_are_400_naming_them(name: str, value: Any) -> None:
    with pytest.raises(BadRequest) as caught:
        chat_request_to_messages({"model": "m", "messages": [user("Hi")], name: value},
                                 model="c")
    assert caught.value.status == 400
    assert caught.value.param == name
    assert f"'{name}'" in caught.value.message
    assert caught.value.message.endswith(".")


def test_every_rejected_rule_is_exercised() -> None:
    rejected = {n for n, rule in CHAT_FIELDS.items() if rule.handling is Handling.REJECTED}
    assert rejected == set(REJECTED)


def hi(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [user("Hi")], **extra}


def image(url: str) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": url}}]}]}


def calling(arguments: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [user("Go"), {"role": "assistant", "tool_calls": [
        {"id": "t", "type": "function", "function": {"name": "f", "arguments": arguments}}]}]}


@pytest.mark.parametrize(("body", "param", "words"), [
    (hi(temperature=1.5), "temperature", "between 0 and 1"),
    (hi(temperature=-0.1), "temperature", "between 0 and 1"),
    (hi(top_p=2), "top_p", "between 0 and 1"),
    (hi(temperature="hot"), "temperature", "number"),
    (hi(max_tokens=0), "max_tokens", "at least 1"),
    (hi(max_tokens=10, max_completion_tokens=20), "max_tokens", "differ"),
    (hi(stop=[1]), "stop[0]", "string"),
    (image("data:image/png;base64,@@@"), "messages[0].content[0].image_url.url", "base64"),
    (image("data:image/bmp;base64," + PNG), "messages[0].content[0].image_url.url", "PNG"),
    (image("data:image/png," + PNG), "messages[0].content[0].image_url.url", "data URL"),
    (image("ftp://example.com/x.png"), "messages[0].content[0].image_url.url", "http(s)"),
    (calling("{not json"), "messages[1].tool_calls[0].function.arguments", "valid JSON"),
    (calling("[1, 2]"), "messages[1].tool_calls[0].function.arguments", "JSON object"),
    (calling({"a": 1}), "messages[1].tool_calls[0].function.arguments", "string"),
    ({"model": "m", "messages": [{"role": "user", "content": "Hi", "name": "bob"}]},
     "messages[0].name", "remove it"),
    ({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}]},
     "messages[0].content[0].type", "input_audio"),
    ({"model": "m", "messages": [{"role": "function", "content": "x"}]}, "messages[0].role",
     "got 'function'"),
    ({"model": "m", "messages": [user("")]}, "messages[0].content", "no content"),
    ({"model": "m", "messages": []}, "messages", "at least one"),
    ({"model": "m", "messages": [{"role": "system", "content": "x"}]}, "messages",
     "user message"),
    ({"model": "m"}, "messages", "array"),
    (hi(tools=[{"type": "custom", "custom": {"name": "c"}}]), "tools[0].type", "function"),
    (hi(tool_choice={"type": "allowed_tools", "allowed_tools": {}}), "tool_choice",
     "allowed_tools"),
    (hi(parallel_tool_calls="no"), "parallel_tool_calls", "true or false"),
])
def test_invalid_requests_are_400(body: dict[str, Any], param: str, words: str) -> None:
    with pytest.raises(BadRequest) as caught:
        chat_request_to_messages(body, model="c")
    assert caught.value.param == param
    assert words in caught.value.message


def test_temperature_above_one_says_why() -> None:
    with pytest.raises(BadRequest) as caught:
        chat_request_to_messages(hi(temperature=1.2), model="c")
    assert caught.value.message == (
        "Parameter 'temperature' is 1.2, outside 0 to 1 (Anthropic's temperature range; "
        "OpenAI's is 0 to 2); send a value between 0 and 1.")


def test_rejected_field_message_names_provider_and_action() -> None:
    with pytest.raises(BadRequest) as caught:
        chat_request_to_messages(hi(logprobs=True), model="c")
    assert caught.value.message == (
        "Parameter 'logprobs' is not supported when the model is served by an Anthropic "
        "provider: Anthropic returns no token log probabilities; remove it.")


def test_provider_without_sampling_parameters_rejects_them() -> None:
    assert "temperature" not in chat_request_to_messages(hi(), model="c",
                                                         sampling_parameters=False)
    with pytest.raises(BadRequest) as caught:
        chat_request_to_messages(hi(top_p=0.5), model="c", sampling_parameters=False)
    assert caught.value.param == "top_p"


# -- responses --------------------------------------------------------------------------------

def anthropic_message(content: list[dict[str, Any]], stop_reason: str | None,
                      **usage: int) -> dict[str, Any]:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": content, "stop_reason": stop_reason, "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 5, **usage}}


def completion(message: dict[str, Any], finish: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000,
            "model": "gpt-4o", "choices": [{"index": 0, "message": message, "logprobs": None,
                                            "finish_reason": finish}], "usage": usage}


USAGE_10_5 = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
              "prompt_tokens_details": {"cached_tokens": 0}}


@pytest.mark.parametrize(("message", "expected"), [
    pytest.param(
        anthropic_message([text("Hello"), text(" world")], "end_turn"),
        completion({"role": "assistant", "content": "Hello world", "refusal": None}, "stop",
                   USAGE_10_5), id="text"),
    pytest.param(
        anthropic_message([
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            text("Let me check."),
            {"type": "tool_use", "id": "toolu_9", "name": "get_weather",
             "input": {"city": "Paris"}}], "tool_use",
            cache_read_input_tokens=100, cache_creation_input_tokens=20),
        completion({"role": "assistant", "content": "Let me check.", "refusal": None,
                    "tool_calls": [{"id": "toolu_9", "type": "function", "function": {
                        "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                   "tool_calls",
                   {"prompt_tokens": 130, "completion_tokens": 5, "total_tokens": 135,
                    "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 20}}),
        id="thinking-dropped-tool-use-and-cache-usage"),
    pytest.param(
        anthropic_message([{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
                          "tool_use"),
        completion({"role": "assistant", "content": None, "refusal": None, "tool_calls": [
            {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            "tool_calls", USAGE_10_5), id="tool-only-content-null"),
])
def test_response_translation(message: dict[str, Any], expected: dict[str, Any]) -> None:
    assert messages_response_to_chat(message, model="gpt-4o", created=1700000000,
                                     request_id="chatcmpl-1") == expected


@pytest.mark.parametrize(("stop_reason", "finish"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("pause_turn", "stop"),
    ("max_tokens", "length"), ("model_context_window_exceeded", "length"),
    ("tool_use", "tool_calls"), ("refusal", "content_filter"), (None, "stop"),
    ("something_new", "stop"),
])
def test_stop_reason_mapping(stop_reason: str | None, finish: str) -> None:
    chat = messages_response_to_chat(anthropic_message([text("x")], stop_reason), model="m",
                                     created=0, request_id="r")
    assert chat["choices"][0]["finish_reason"] == finish


def test_malformed_response_is_upstream_error() -> None:
    with pytest.raises(UpstreamProtocolError):
        messages_response_to_chat({"type": "message"}, model="m", created=0, request_id="r")


# -- stream -----------------------------------------------------------------------------------

EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "content": [],
        "model": "claude-x", "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 25, "output_tokens": 1, "cache_read_input_tokens": 5}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0,
                             "content_block": {"type": "text", "text": ""}}),
    ("ping", {"type": "ping"}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": "Let me "}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": "check."}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                             "delta": {"type": "input_json_delta", "partial_json": ""}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                             "delta": {"type": "input_json_delta", "partial_json": "{\"city\": "}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                             "delta": {"type": "input_json_delta", "partial_json": "\"Par"}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                             "delta": {"type": "input_json_delta", "partial_json": "is\"}"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    ("message_delta", {"type": "message_delta",
                       "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                       "usage": {"output_tokens": 42}}),
    ("message_stop", {"type": "message_stop"}),
]


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000,
            "model": "gpt-4o", "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                            "finish_reason": finish}], "usage": None}


EXPECTED_CHUNKS = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Let me "}),
    chunk({"content": "check."}),
    chunk({"tool_calls": [{"index": 0, "id": "toolu_01", "type": "function",
                           "function": {"name": "get_weather", "arguments": ""}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\": "}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": "\"Par"}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": "is\"}"}}]}),
    chunk({}, "tool_calls"),
    {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000,
     "model": "gpt-4o", "choices": [],
     "usage": {"prompt_tokens": 30, "completion_tokens": 42, "total_tokens": 72,
               "prompt_tokens_details": {"cached_tokens": 5}}},
]


def translate(events: list[tuple[str, dict[str, Any]]], *,
              include_usage: bool = True) -> tuple[MessagesStreamToChatChunks,
                                                   list[dict[str, Any]]]:
    stream = MessagesStreamToChatChunks(model="gpt-4o", created=1700000000,
                                        request_id="chatcmpl-1", include_usage=include_usage)
    return stream, [c for name, data in events for c in stream.feed(name, data)]


def test_stream_event_sequence_to_chunks() -> None:
    stream, chunks = translate(EVENTS)
    assert chunks == EXPECTED_CHUNKS
    assert stream.done
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    arguments = "".join(d["tool_calls"][0]["function"]["arguments"]
                        for d in deltas if "tool_calls" in d)
    assert orjson.loads(arguments) == {"city": "Paris"}
    assert chunks[-1]["usage"]["completion_tokens"] == 42
    assert stream.feed("message_stop", {"type": "message_stop"}) == []


def test_stream_without_include_usage_has_no_usage() -> None:
    _, chunks = translate(EVENTS, include_usage=False)
    assert len(chunks) == len(EXPECTED_CHUNKS) - 1
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_stream_skips_thinking_and_unknown_events() -> None:
    _, chunks = translate([
        EVENTS[0],
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "thinking", "thinking": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "thinking_delta", "thinking": "hmm"}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "signature_delta", "signature": "x"}}),
        ("brand_new_event", {"type": "brand_new_event"}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "max_tokens"},
                           "usage": {"output_tokens": 3}}),
        ("message_stop", {"type": "message_stop"})], include_usage=False)
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""}, {}]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_stream_error_event_raises_with_provider_error() -> None:
    stream = MessagesStreamToChatChunks(model="m", created=0, request_id="r",
                                        include_usage=False)
    stream.feed(*EVENTS[0])
    with pytest.raises(UpstreamStreamError) as caught:
        stream.feed("error", {"type": "error", "error": {"type": "overloaded_error",
                                                         "message": "Overloaded"}})
    assert isinstance(caught.value, InferlaneError)
    assert (caught.value.error_type, caught.value.message) == ("overloaded_error", "Overloaded")
    assert caught.value.to_sse() == (b'data: {"error":{"message":"Overloaded",'
                                     b'"type":"overloaded_error","param":null,"code":null}}\n\n')


def test_stream_delta_for_unknown_tool_block_is_protocol_error() -> None:
    stream = MessagesStreamToChatChunks(model="m", created=0, request_id="r",
                                        include_usage=False)
    with pytest.raises(UpstreamProtocolError):
        stream.feed("content_block_delta", {"index": 4, "delta": {
            "type": "input_json_delta", "partial_json": "{}"}})


def test_sse_encoding() -> None:
    assert encode_chunk({"a": 1}) == b'data: {"a":1}\n\n'
    assert DONE == b"data: [DONE]\n\n"
