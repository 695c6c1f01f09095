"""Anthropic Messages → OpenAI Chat Completions, and round trips through both directions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

import inferlane.providers.translate as translate_package
from inferlane.errors import BadRequest, UpstreamProtocolError
from inferlane.providers.translate import (
    CHAT_FIELDS,
    MESSAGES_FIELDS,
    ChatChunksToMessagesStream,
    Handling,
    MessagesStreamToChatChunks,
    chat_request_to_messages,
    chat_response_to_messages,
    encode_event,
    messages_request_to_chat,
    messages_response_to_chat,
)

PNG = "iVBORw0KGgo="
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def ask(content: Any = "Hi", **extra: Any) -> dict[str, Any]:
    return {"model": "claude-x", "max_tokens": 256,
            "messages": [{"role": "user", "content": content}], **extra}


REQUESTS = [
    pytest.param(
        {"model": "claude-x", "max_tokens": 256, "system": "Be brief.",
         "messages": [{"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": [text("Hello!")]},
                      {"role": "user", "content": [text("Tell me"), text("more.")]}],
         "stop_sequences": ["END"], "temperature": 0.2, "top_p": 0.9,
         "metadata": {"user_id": "u-1"}, "stream": True, "cache_control": {"type": "ephemeral"},
         "service_tier": "auto", "thinking": {"type": "disabled"}},
        {"model": "llama", "max_tokens": 256, "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": [text("Tell me"), text("more.")]}],
         "stop": ["END"], "temperature": 0.2, "top_p": 0.9, "user": "u-1", "stream": True,
         "stream_options": {"include_usage": True}},
        id="system-multiturn-scalars"),
    pytest.param(
        ask([text("What is this?"),
             {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                          "data": PNG}, "cache_control": {"type": "ephemeral"}},
             {"type": "image", "source": {"type": "url", "url": "https://e.com/a.jpg"}}],
            system=[text("Rule one."), {"type": "text", "text": "Rule two.",
                                        "cache_control": {"type": "ephemeral"}}]),
        {"model": "llama", "max_tokens": 256, "messages": [
            {"role": "system", "content": [text("Rule one."), text("Rule two.")]},
            {"role": "user", "content": [
                text("What is this?"),
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {"type": "image_url", "image_url": {"url": "https://e.com/a.jpg"}}]}]},
        id="system-blocks-and-images"),
    pytest.param(
        {"model": "claude-x", "max_tokens": 256,
         "tools": [{"name": "get_weather", "description": "Weather", "input_schema": SCHEMA},
                   {"type": "custom", "name": "noop", "input_schema": {"type": "object"},
                    "strict": True}],
         "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
         "messages": [
             {"role": "user", "content": "Paris?"},
             {"role": "assistant", "content": [
                 {"type": "thinking", "thinking": "need a tool", "signature": "s"},
                 text("Checking."),
                 {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                  "input": {"city": "Paris"}}]},
             {"role": "user", "content": [
                 {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                 {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True,
                  "content": [text("timeout")]},
                 text("And Rome?")]}]},
        {"model": "llama", "max_tokens": 256, "messages": [
            {"role": "user", "content": "Paris?"},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {
                    "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: timeout"},
            {"role": "user", "content": "And Rome?"}],
         "tools": [{"type": "function", "function": {
             "name": "get_weather", "description": "Weather", "parameters": SCHEMA}},
             {"type": "function", "function": {
                 "name": "noop", "parameters": {"type": "object"}, "strict": True}}],
         "tool_choice": "required", "parallel_tool_calls": False},
        id="tools-tool-use-and-results"),
]


@pytest.mark.parametrize(("body", "expected"), REQUESTS)
def test_request_translation(body: dict[str, Any], expected: dict[str, Any]) -> None:
    assert messages_request_to_chat(body, model="llama") == expected


@pytest.mark.parametrize(("choice", "expected"), [
    ({"type": "auto"}, "auto"), ({"type": "none"}, "none"), ({"type": "any"}, "required"),
    ({"type": "tool", "name": "f"}, {"type": "function", "function": {"name": "f"}}),
])
def test_tool_choice(choice: dict[str, Any], expected: Any) -> None:
    assert messages_request_to_chat(ask(tool_choice=choice), model="m")["tool_choice"] == expected


REJECTED = {"top_k": 40, "thinking": {"type": "enabled", "budget_tokens": 2048},
            "output_config": {"effort": "low"}, "inference_geo": "us",
            "container": "container_1", "mcp_servers": [{"type": "url", "url": "https://x"}],
            "context_management": {"edits": []}}


@pytest.mark.parametrize(("name", "value"), [*REJECTED.items(), ("frequency_penalty", 1)])
def test_rejected_and_unknown_fields_are_400_naming_them(name: str, value: Any) -> None:
    with pytest.raises(BadRequest) as caught:
        messages_request_to_chat(ask(**{name: value}), model="m")
    assert caught.value.param == name
    assert f"'{name}'" in caught.value.message
    assert "OpenAI-compatible backend" in caught.value.message


def test_every_rejected_rule_is_exercised() -> None:
    assert {n for n, r in MESSAGES_FIELDS.items() if r.handling is Handling.REJECTED} \
        == set(REJECTED)


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "c", "messages": [{"role": "user", "content": "Hi"}]}, "max_tokens"),
    (ask(max_tokens=0), "max_tokens"),
    (ask(temperature=1.5), "temperature"),
    (ask([{"type": "document", "source": {"type": "text", "data": "x"}}]),
     "messages[0].content[0].type"),
    (ask([{"type": "text", "text": "x", "citations": [{"type": "char_location"}]}]),
     "messages[0].content[0].citations"),
    (ask([{"type": "image", "source": {"type": "file", "file_id": "f"}}]),
     "messages[0].content[0].source.type"),
    (ask([{"type": "tool_result", "tool_use_id": "t", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://e.com"}}]}]),
     "messages[0].content[0].content[0].type"),
    (ask(tools=[{"type": "web_search_20250305", "name": "web_search"}]), "tools[0].type"),
    (ask(tools=[{"name": "f", "input_schema": {}, "defer_loading": True}],),
     "tools[0].defer_loading"),
    (ask(metadata={"user_id": "u", "team": "x"}), "metadata.team"),
    (ask(tool_choice={"type": "sometimes"}), "tool_choice.type"),
    ({"model": "c", "max_tokens": 9, "messages": [{"role": "system", "content": "x"}]},
     "messages[0].role"),
])
def test_invalid_requests_are_400(body: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as caught:
        messages_request_to_chat(body, model="m")
    assert caught.value.param == param


# -- responses --------------------------------------------------------------------------------

def choice(message: dict[str, Any], finish: str | None, **extra: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "llama",
            "choices": [{"index": 0, "message": message, "finish_reason": finish, **extra}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 7, "total_tokens": 37,
                      "prompt_tokens_details": {"cached_tokens": 10}}}


USAGE = {"input_tokens": 20, "output_tokens": 7, "cache_creation_input_tokens": 0,
         "cache_read_input_tokens": 10}


def message(content: list[dict[str, Any]], stop_reason: str,
            stop_sequence: str | None = None) -> dict[str, Any]:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": content, "stop_reason": stop_reason, "stop_sequence": stop_sequence,
            "usage": USAGE}


@pytest.mark.parametrize(("completion", "expected"), [
    pytest.param(choice({"role": "assistant", "content": "Hello"}, "stop"),
                 message([text("Hello")], "end_turn"), id="text"),
    pytest.param(choice({"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        "tool_calls"),
        message([{"type": "tool_use", "id": "call_1", "name": "get_weather",
                  "input": {"city": "Paris"}}], "tool_use"), id="tool-call"),
    pytest.param(choice({"role": "assistant", "content": "1, 2, "}, "stop", stop_reason="3"),
                 message([text("1, 2, ")], "stop_sequence", "3"), id="vllm-stop-sequence"),
    pytest.param(choice({"role": "assistant", "content": "So"}, "length"),
                 message([text("So")], "max_tokens"), id="length"),
    pytest.param(choice({"role": "assistant", "content": None, "refusal": "No."},
                        "content_filter"),
                 message([text("No.")], "refusal"), id="refusal"),
])
def test_response_translation(completion: dict[str, Any], expected: dict[str, Any]) -> None:
    assert chat_response_to_messages(completion, model="claude-x", message_id="msg_1") == expected


def test_response_with_bad_tool_arguments_is_upstream_error() -> None:
    bad = choice({"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]},
        "tool_calls")
    with pytest.raises(UpstreamProtocolError):
        chat_response_to_messages(bad, model="m", message_id="msg")
    with pytest.raises(UpstreamProtocolError):
        chat_response_to_messages({"choices": []}, model="m", message_id="msg")


# -- stream -----------------------------------------------------------------------------------

def delta(value: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "llama",
            "choices": [{"index": 0, "delta": value, "finish_reason": finish}], "usage": None}


CHUNKS = [
    delta({"role": "assistant", "content": ""}),
    delta({"content": "Checking"}),
    delta({"content": "."}),
    delta({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                           "function": {"name": "get_weather", "arguments": ""}}]}),
    delta({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\""}}]}),
    delta({"tool_calls": [{"index": 0, "function": {"arguments": ": \"Paris\"}"}}]}),
    delta({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                           "function": {"name": "get_time", "arguments": "{}"}}]}),
    delta({}, "tool_calls"),
    {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "llama",
     "choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 7, "total_tokens": 37}},
]


def block_delta(index: int, value: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return ("content_block_delta", {"type": "content_block_delta", "index": index,
                                    "delta": value})


def block_stop(index: int) -> tuple[str, dict[str, Any]]:
    return ("content_block_stop", {"type": "content_block_stop", "index": index})


def block_start(index: int, block: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return ("content_block_start", {"type": "content_block_start", "index": index,
                                    "content_block": block})


MESSAGE_START = ("message_start", {"type": "message_start", "message": {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "content": [],
    "stop_reason": None, "stop_sequence": None,
    "usage": {"input_tokens": 0, "output_tokens": 0}}})
MESSAGE_STOP = ("message_stop", {"type": "message_stop"})

EXPECTED_EVENTS = [
    MESSAGE_START,
    block_start(0, {"type": "text", "text": ""}),
    block_delta(0, {"type": "text_delta", "text": "Checking"}),
    block_delta(0, {"type": "text_delta", "text": "."}),
    block_stop(0),
    block_start(1, {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {}}),
    block_delta(1, {"type": "input_json_delta", "partial_json": "{\"city\""}),
    block_delta(1, {"type": "input_json_delta", "partial_json": ": \"Paris\"}"}),
    block_stop(1),
    block_start(2, {"type": "tool_use", "id": "call_b", "name": "get_time", "input": {}}),
    block_delta(2, {"type": "input_json_delta", "partial_json": "{}"}),
    block_stop(2),
    ("message_delta", {"type": "message_delta",
                       "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                       "usage": {"input_tokens": 30, "output_tokens": 7,
                                 "cache_creation_input_tokens": 0,
                                 "cache_read_input_tokens": 0}}),
    MESSAGE_STOP,
]


def feed_all(chunks: list[dict[str, Any]]) -> tuple[ChatChunksToMessagesStream,
                                                    list[tuple[str, dict[str, Any]]]]:
    stream = ChatChunksToMessagesStream(model="claude-x", message_id="msg_1")
    return stream, [event for c in chunks for event in stream.feed(c)]


def test_stream_chunks_to_events() -> None:
    stream, events = feed_all(CHUNKS)
    assert events == EXPECTED_EVENTS
    assert stream.done
    assert stream.finish() == []


def test_stream_without_usage_chunk_ends_at_finish() -> None:
    stream, events = feed_all([*CHUNKS[:3], delta({}, "length")])
    assert events[-1] == block_stop(0)
    assert not stream.done
    assert stream.finish() == [
        ("message_delta", {"type": "message_delta",
                           "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
                           "usage": {"input_tokens": 0, "output_tokens": 0,
                                     "cache_creation_input_tokens": 0,
                                     "cache_read_input_tokens": 0}}),
        MESSAGE_STOP]


def test_stream_ending_without_finish_reason() -> None:
    stream, _ = feed_all(CHUNKS[:2])
    closing = stream.finish()
    assert closing[0] == block_stop(0)
    assert closing[1][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert closing[2] == MESSAGE_STOP
    empty = ChatChunksToMessagesStream(model="claude-x", message_id="msg_1").finish()
    assert [name for name, _ in empty] == ["message_start", "message_delta", "message_stop"]


def test_stream_error_chunk_becomes_error_event() -> None:
    stream, events = feed_all([CHUNKS[0], {"error": {"message": "boom", "type": "server"}}])
    assert events[-1] == ("error", {"type": "error", "error": {"type": "api_error",
                                                               "message": "boom"}})
    assert stream.done


def test_stream_interleaved_tool_arguments_are_protocol_error() -> None:
    with pytest.raises(UpstreamProtocolError):
        feed_all([CHUNKS[3], CHUNKS[6], CHUNKS[4]])


def test_event_encoding() -> None:
    assert encode_event("message_stop", {"type": "message_stop"}) == (
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n')


# -- round trips: the supported subset keeps its meaning through both directions ---------------

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                            "parameters": SCHEMA}}
OPENAI_REQUESTS = [
    {"model": "m", "max_tokens": 64, "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"}],
     "stop": ["END"], "temperature": 0.5, "top_p": 0.8, "user": "u-1", "stream": True,
     "stream_options": {"include_usage": True}},
    {"model": "m", "max_tokens": 64, "tools": [WEATHER], "tool_choice": "required",
     "parallel_tool_calls": False, "messages": [
         {"role": "user", "content": [
             text("Look"),
             {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
             {"type": "image_url", "image_url": {"url": "https://e.com/a.png"}}]},
         {"role": "assistant", "content": None, "tool_calls": [
             {"id": "t1", "type": "function",
              "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
         {"role": "tool", "tool_call_id": "t1", "content": "-3C"},
         {"role": "user", "content": "Warm enough?"}]},
    {"model": "m", "max_tokens": 64, "tools": [WEATHER],
     "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
     "messages": [{"role": "user", "content": "Oslo"}]},
]


@pytest.mark.parametrize("request_body", OPENAI_REQUESTS)
def test_openai_request_round_trip(request_body: dict[str, Any]) -> None:
    anthropic = chat_request_to_messages(request_body, model="claude-x")
    assert messages_request_to_chat(anthropic, model="m") == request_body
    assert chat_request_to_messages(messages_request_to_chat(anthropic, model="m"),
                                    model="claude-x") == anthropic


def test_response_round_trip() -> None:
    original = message([text("Checking."), {"type": "tool_use", "id": "toolu_1",
                                            "name": "get_weather", "input": {"city": "Oslo"}}],
                       "tool_use")
    chat = messages_response_to_chat(original, model="m", created=0, request_id="chatcmpl-1")
    assert chat_response_to_messages(chat, model="claude-x", message_id="msg_1") == original


def assemble(events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """What an Anthropic client builds from a stream: blocks, stop_reason, final usage."""
    blocks: dict[int, dict[str, Any]] = {}
    result: dict[str, Any] = {}
    for name, data in events:
        if name == "content_block_start":
            blocks[data["index"]] = {**data["content_block"], "json": ""}
        elif name == "content_block_delta":
            block, change = blocks[data["index"]], data["delta"]
            if change["type"] == "text_delta":
                block["text"] += change["text"]
            else:
                block["json"] += change["partial_json"]
        elif name == "message_delta":
            result["stop_reason"] = data["delta"]["stop_reason"]
            result["output_tokens"] = data["usage"]["output_tokens"]
    result["content"] = [
        {"type": "text", "text": b["text"]} if b["type"] == "text" else
        {"type": "tool_use", "id": b["id"], "name": b["name"], "input": orjson.loads(b["json"])}
        for _, b in sorted(blocks.items())]
    return result


def test_stream_round_trip_anthropic_openai_anthropic() -> None:
    events = [
        ("message_start", {"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "c", "content": [],
            "usage": {"input_tokens": 12, "output_tokens": 1}}}),
        block_start(0, {"type": "text", "text": ""}),
        block_delta(0, {"type": "text_delta", "text": "One "}),
        block_delta(0, {"type": "text_delta", "text": "moment."}),
        block_stop(0),
        block_start(1, {"type": "tool_use", "id": "toolu_7", "name": "get_weather", "input": {}}),
        block_delta(1, {"type": "input_json_delta", "partial_json": "{\"ci"}),
        block_delta(1, {"type": "input_json_delta", "partial_json": "ty\": \"Ro"}),
        block_delta(1, {"type": "input_json_delta", "partial_json": "me\"}"}),
        block_stop(1),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                           "usage": {"output_tokens": 20}}),
        MESSAGE_STOP,
    ]
    to_chat = MessagesStreamToChatChunks(model="m", created=0, request_id="r",
                                         include_usage=True)
    chunks = [c for name, data in events for c in to_chat.feed(name, data)]
    _, back = feed_all(chunks)
    assert assemble(back) == assemble(events) == {
        "stop_reason": "tool_use", "output_tokens": 20, "content": [
            text("One moment."),
            {"type": "tool_use", "id": "toolu_7", "name": "get_weather",
             "input": {"city": "Rome"}}]}
    assert back[-2][1]["usage"]["input_tokens"] == 12


def test_readme_lists_every_field() -> None:
    readme = (Path(translate_package.__file__).parent / "README.md").read_text()
    missing = [name for name in [*CHAT_FIELDS, *MESSAGES_FIELDS] if f"`{name}`" not in readme]
    assert missing == []
