"""Anthropic Messages → OpenAI Chat Completions: the request, the response and the stream.

Where it sits: an Anthropic-API client calls ``/v1/messages`` and the route's backend is an
OpenAI-style server (vLLM, SGLang, ...). The adapter builds the upstream body with
``messages_request_to_chat``, then answers with ``chat_response_to_messages`` or, for a stream,
feeds every upstream chunk (parsed ``data:`` JSON) to a ``ChatChunksToMessagesStream``, calls
``finish()`` when the upstream body ends, and writes each pair with ``encode_event``.

The mirror of ``openai_to_anthropic``: same sans-IO rules and one explicit field table,
``MESSAGES_FIELDS``; a rejected or unknown field is a 400 naming it (README.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

import orjson

from inferlane.errors import BadRequest, UpstreamProtocolError
from inferlane.providers.translate._fields import (
    FieldRule,
    Handling,
    check_fields,
    check_keys,
    integer,
    mapping,
    number,
    sequence,
    string,
)

__all__ = [
    "MESSAGES_FIELDS",
    "ChatChunksToMessagesStream",
    "chat_response_to_messages",
    "encode_event",
    "messages_request_to_chat",
]

_M, _I, _R = Handling.MAPPED, Handling.IGNORED, Handling.REJECTED


def _thinking_off(value: Any) -> bool:
    return value is None or (isinstance(value, Mapping) and value.get("type") == "disabled")


def _empty(value: Any) -> bool:
    return value is None or value == [] or value == {}


MESSAGES_FIELDS: Final[Mapping[str, FieldRule]] = MappingProxyType({
    "model": FieldRule(_M, "replaced by the backend's model name from the route"),
    "max_tokens": FieldRule(_M, "→ max_tokens (required, as in the Messages API)"),
    "messages": FieldRule(_M, "user/assistant turns; tool_result blocks → tool messages"),
    "system": FieldRule(_M, "→ a leading system message"),
    "stop_sequences": FieldRule(_M, "→ stop"),
    "stream": FieldRule(_M, "passed through, with stream_options.include_usage"),
    "temperature": FieldRule(_M, "same value (0 to 1 fits OpenAI's 0 to 2)"),
    "top_p": FieldRule(_M, "same value"),
    "metadata": FieldRule(_M, "metadata.user_id → user"),
    "tools": FieldRule(_M, "client (custom) tools → function tools"),
    "tool_choice": FieldRule(_M, "auto/any/tool/none → auto/required/named/none"),
    "cache_control": FieldRule(_I, "a prompt-cache hint; OpenAI-style servers cache prefixes "
                                   "by themselves"),
    "service_tier": FieldRule(_I, "Anthropic capacity tier; the backend has none"),
    "speed": FieldRule(_I, "Anthropic fast mode; a latency choice, the answer is the same"),
    "diagnostics": FieldRule(_I, "asks for Anthropic cache diagnostics in the response; "
                                 "none are produced"),
    "user_profile_id": FieldRule(_I, "Anthropic account attribution"),
    "workspace_id": FieldRule(_I, "Anthropic workspace selection"),
    "top_k": FieldRule(_R, "OpenAI Chat Completions has no top_k; remove it"),
    "thinking": FieldRule(_R, "extended thinking is not translated; send "
                              "{\"type\": \"disabled\"} or omit it", _thinking_off),
    "output_config": FieldRule(_R, "effort and output format are not translated yet; remove it",
                               _empty),
    "inference_geo": FieldRule(_R, "the gateway cannot guarantee where the backend runs; "
                                   "remove it"),
    "container": FieldRule(_R, "Anthropic code-execution containers do not exist here; "
                               "remove it"),
    "mcp_servers": FieldRule(_R, "MCP connectors are not translated; remove it", _empty),
    "context_management": FieldRule(_R, "Anthropic context management is not translated; "
                                        "remove it", _empty),
})

_PROVIDER = "an OpenAI-compatible backend"
_IMAGE_SOURCE_KEYS: Final = {"base64": frozenset({"type", "media_type", "data"}),
                             "url": frozenset({"type", "url"})}
_TOOL_KEYS: Final = frozenset({"name", "description", "input_schema", "type", "strict",
                               "cache_control", "eager_input_streaming"})


def messages_request_to_chat(body: Mapping[str, Any], *, model: str) -> dict[str, Any]:
    """The OpenAI chat completions request for an Anthropic Messages request ``body``."""
    body = mapping(body, "body")
    check_fields(body, MESSAGES_FIELDS, request="messages", provider=_PROVIDER)
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if isinstance(system, str):
        if system:
            messages.append({"role": "system", "content": system})
    elif system is not None:
        parts = [_text_part(b, f"system[{i}]") for i, b in enumerate(sequence(system, "system"))]
        if parts:
            messages.append({"role": "system", "content": _content(parts)})
    turns = sequence(body.get("messages"), "messages")
    if not turns:
        raise BadRequest("'messages' must contain at least one message.", param="messages")
    for i, raw in enumerate(turns):
        messages.extend(_messages(raw, f"messages[{i}]"))
    if "max_tokens" not in body:
        raise BadRequest("'max_tokens' is required.", param="max_tokens")
    request: dict[str, Any] = {"model": model, "messages": messages,
                               "max_tokens": integer(body["max_tokens"], "max_tokens", minimum=1)}
    stops = body.get("stop_sequences")
    if stops is not None:
        stop = [string(s, f"stop_sequences[{i}]")
                for i, s in enumerate(sequence(stops, "stop_sequences"))]
        if stop:
            request["stop"] = stop
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            request[name] = number(body[name], name, maximum=1)
    tools = body.get("tools")
    if tools is not None:
        request["tools"] = [_tool(t, f"tools[{i}]") for i, t in enumerate(sequence(tools, "tools"))]
    _tool_choice(body.get("tool_choice"), request)
    if body.get("metadata") is not None:
        metadata = mapping(body["metadata"], "metadata")
        check_keys(metadata, frozenset({"user_id"}), "metadata", provider=_PROVIDER)
        if metadata.get("user_id") is not None:
            request["user"] = string(metadata["user_id"], "metadata.user_id")
    if body.get("stream") is not None:
        if not isinstance(body["stream"], bool):
            raise BadRequest("'stream' must be true or false.", param="stream")
        request["stream"] = body["stream"]
        if body["stream"]:
            request["stream_options"] = {"include_usage": True}
    return request


def _content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A lone text part as a plain string (what most servers and templates expect)."""
    return parts[0]["text"] if len(parts) == 1 and parts[0]["type"] == "text" else parts


def _text_part(raw: Any, param: str) -> dict[str, Any]:
    block = mapping(raw, param)
    if block.get("type") != "text":
        raise BadRequest(f"'{param}.type' must be \"text\".", param=f"{param}.type")
    check_keys(block, frozenset({"type", "text", "cache_control", "citations"}), param,
               provider=_PROVIDER)
    if block.get("citations"):
        raise BadRequest(f"'{param}.citations' is not supported when the model is served by "
                         f"{_PROVIDER}; remove it.", param=f"{param}.citations")
    return {"type": "text", "text": string(block.get("text"), f"{param}.text")}


def _messages(raw: Any, where: str) -> list[dict[str, Any]]:
    """One Anthropic turn as OpenAI messages: a user turn splits around its tool results."""
    message = mapping(raw, where)
    check_keys(message, frozenset({"role", "content"}), where, provider=_PROVIDER)
    role, content = message.get("role"), message.get("content")
    if role not in ("user", "assistant"):
        raise BadRequest(f"'{where}.role' must be user or assistant; got {role!r}.",
                         param=f"{where}.role")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    blocks = [mapping(b, f"{where}.content[{j}]")
              for j, b in enumerate(sequence(content, f"{where}.content"))]
    if role == "assistant":
        return [_assistant(blocks, where)]
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        param = f"{where}.content[{j}]"
        kind = block.get("type")
        if kind == "tool_result":
            if parts:
                out.append({"role": "user", "content": _content(parts)})
                parts = []
            out.append(_tool_message(block, param))
        elif kind == "text":
            parts.append(_text_part(block, param))
        elif kind == "image":
            parts.append(_image_part(block, param))
        else:
            raise BadRequest(f"'{param}.type' {kind!r} is not supported in a user message when "
                             f"the model is served by {_PROVIDER}; send text, image or "
                             "tool_result blocks.", param=f"{param}.type")
    if parts:
        out.append({"role": "user", "content": _content(parts)})
    return out


def _image_part(block: Mapping[str, Any], param: str) -> dict[str, Any]:
    check_keys(block, frozenset({"type", "source", "cache_control"}), param, provider=_PROVIDER)
    source = mapping(block.get("source"), f"{param}.source")
    kind = source.get("type")
    allowed = _IMAGE_SOURCE_KEYS.get(kind) if isinstance(kind, str) else None
    if allowed is None:
        raise BadRequest(f"'{param}.source.type' must be base64 or url.",
                         param=f"{param}.source.type")
    check_keys(source, allowed, f"{param}.source", provider=_PROVIDER)
    if source["type"] == "url":
        url = string(source.get("url"), f"{param}.source.url")
    else:
        media = string(source.get("media_type"), f"{param}.source.media_type")
        url = f"data:{media};base64,{string(source.get('data'), f'{param}.source.data')}"
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_message(block: Mapping[str, Any], param: str) -> dict[str, Any]:
    check_keys(block, frozenset({"type", "tool_use_id", "content", "is_error", "cache_control"}),
               param, provider=_PROVIDER)
    content = block.get("content", "")
    if isinstance(content, str):
        parts = [{"type": "text", "text": content}]
    else:
        parts = [_text_part(b, f"{param}.content[{k}]")
                 for k, b in enumerate(sequence(content, f"{param}.content"))]
    if block.get("is_error") is True:  # OpenAI has no error flag: say it in the text
        parts.insert(0, {"type": "text", "text": "Error: "})
        parts = [{"type": "text", "text": "".join(p["text"] for p in parts)}]
    return {"role": "tool", "tool_call_id": string(block.get("tool_use_id"),
                                                   f"{param}.tool_use_id"),
            "content": _content(parts) if parts else ""}


def _assistant(blocks: list[Mapping[str, Any]], where: str) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        param = f"{where}.content[{j}]"
        kind = block.get("type")
        if kind == "text":
            parts.append(_text_part(block, param))
        elif kind == "tool_use":
            check_keys(block, frozenset({"type", "id", "name", "input", "cache_control"}), param,
                       provider=_PROVIDER)
            calls.append({"id": string(block.get("id"), f"{param}.id"), "type": "function",
                          "function": {"name": string(block.get("name"), f"{param}.name"),
                                       "arguments": orjson.dumps(
                                           mapping(block.get("input", {}), f"{param}.input"),
                                       ).decode()}})
        elif kind not in ("thinking", "redacted_thinking"):  # the model's own reasoning: dropped
            raise BadRequest(f"'{param}.type' {kind!r} is not supported in an assistant message "
                             f"when the model is served by {_PROVIDER}.", param=f"{param}.type")
    message: dict[str, Any] = {"role": "assistant",
                               "content": _content(parts) if parts else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tool(raw: Any, param: str) -> dict[str, Any]:
    tool = mapping(raw, param)
    if tool.get("type", "custom") not in (None, "custom"):
        raise BadRequest(f"'{param}' is an Anthropic server tool ({tool['type']}), which is not "
                         f"available when the model is served by {_PROVIDER}; remove it.",
                         param=f"{param}.type")
    check_keys(tool, _TOOL_KEYS, param, provider=_PROVIDER)
    function: dict[str, Any] = {"name": string(tool.get("name"), f"{param}.name")}
    if tool.get("description") is not None:
        function["description"] = string(tool["description"], f"{param}.description")
    function["parameters"] = dict(mapping(tool.get("input_schema"), f"{param}.input_schema"))
    if tool.get("strict") is True:
        function["strict"] = True
    return {"type": "function", "function": function}


def _tool_choice(value: Any, request: dict[str, Any]) -> None:
    if value is None:
        return
    choice = mapping(value, "tool_choice")
    kind = choice.get("type")
    if kind in ("auto", "none"):
        request["tool_choice"] = kind
    elif kind == "any":
        request["tool_choice"] = "required"
    elif kind == "tool":
        request["tool_choice"] = {"type": "function", "function": {
            "name": string(choice.get("name"), "tool_choice.name")}}
    else:
        raise BadRequest("'tool_choice.type' must be auto, any, tool or none.",
                         param="tool_choice.type")
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        request["parallel_tool_calls"] = False


# -- response ---------------------------------------------------------------------------------

_STOP_REASONS: Final = MappingProxyType({
    "stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
    "function_call": "tool_use", "content_filter": "refusal",
})


def _stop(choice: Mapping[str, Any]) -> tuple[str, str | None]:
    """Anthropic (stop_reason, stop_sequence) for an OpenAI choice. vLLM's ``stop_reason``
    names the stop string that matched; OpenAI itself does not say."""
    finish = choice.get("finish_reason")
    matched = choice.get("stop_reason")
    if finish == "stop" and isinstance(matched, str):
        return "stop_sequence", matched
    return (_STOP_REASONS.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"), None


def _count(usage: Mapping[str, Any], key: str) -> int:
    value = usage.get(key)
    return value if type(value) is int else 0


def anthropic_usage(usage: Any) -> dict[str, int]:
    """Anthropic usage for OpenAI usage: cached prompt tokens move out of input_tokens."""
    usage = usage if isinstance(usage, Mapping) else {}
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, Mapping) else {}
    read, written = _count(details, "cached_tokens"), _count(details, "cache_write_tokens")
    return {"input_tokens": max(_count(usage, "prompt_tokens") - read - written, 0),
            "output_tokens": _count(usage, "completion_tokens"),
            "cache_creation_input_tokens": written, "cache_read_input_tokens": read}


def chat_response_to_messages(completion: Mapping[str, Any], *, model: str,
                              message_id: str) -> dict[str, Any]:
    """The Anthropic Messages response for an OpenAI ``chat.completion`` (its first choice)."""
    choices = completion.get("choices") if isinstance(completion, Mapping) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping) \
            or not isinstance(choices[0].get("message"), Mapping):
        raise UpstreamProtocolError("The OpenAI-compatible backend answered without "
                                    "choices[0].message.")
    choice, reply = choices[0], choices[0]["message"]
    content: list[dict[str, Any]] = []
    for key in ("content", "refusal"):
        if isinstance(reply.get(key), str) and reply[key]:
            content.append({"type": "text", "text": reply[key]})
    for call in reply.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping):
            raise UpstreamProtocolError("The OpenAI-compatible backend sent a tool call "
                                        "without a function.")
        try:
            arguments = orjson.loads(function.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            arguments = None
        if not isinstance(arguments, dict):
            raise UpstreamProtocolError(f"The OpenAI-compatible backend sent tool call "
                                        f"{function.get('name')!r} with arguments that are not "
                                        "a JSON object.")
        content.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"),
                        "input": arguments})
    stop_reason, stop_sequence = _stop(choice)
    return {"id": message_id, "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop_reason, "stop_sequence": stop_sequence,
            "usage": anthropic_usage(completion.get("usage"))}


# -- stream -----------------------------------------------------------------------------------

def encode_event(event: str, data: Mapping[str, Any]) -> bytes:
    """One Anthropic SSE frame: ``event: NAME``, ``data: {json}`` and a blank line."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(dict(data)) + b"\n\n"


Event = tuple[str, dict[str, Any]]


class ChatChunksToMessagesStream:
    """OpenAI ``chat.completion.chunk`` dicts in, Anthropic (event, data) pairs out.

    The first chunk opens the message (message_start). Content opens a text block, each tool
    call a tool_use block whose argument fragments become input_json_delta; a block is stopped
    when the next one starts. finish_reason closes the last block; message_delta (stop_reason,
    usage) and message_stop follow once the usage chunk arrives, or at ``finish()`` — call it
    when the upstream body ends. An in-stream ``error`` chunk becomes an ``error`` event.
    """

    __slots__ = ("_block", "_blocks", "_finish", "_message_id", "_model", "_started",
                 "_tools", "_usage", "done")

    def __init__(self, *, model: str, message_id: str) -> None:
        self._model = model
        self._message_id = message_id
        self._started = False
        self._blocks = 0  # Anthropic content blocks opened so far
        self._block: tuple[str, int] | None = None  # the open block: ("text", -1) / ("tool", k)
        self._tools: set[int] = set()  # OpenAI tool_calls indexes already opened
        self._finish: tuple[str, str | None] | None = None
        self._usage: dict[str, int] | None = None
        self.done = False  # message_stop (or error) sent

    def feed(self, chunk: Mapping[str, Any]) -> list[Event]:
        if self.done:
            return []
        events = self._start()
        error = chunk.get("error")
        if isinstance(error, Mapping):
            self.done = True
            return [*events, ("error", {"type": "error", "error": {
                "type": "api_error", "message": str(error.get("message", "upstream error"))}})]
        if isinstance(chunk.get("usage"), Mapping):
            self._usage = anthropic_usage(chunk["usage"])
        choices = chunk.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):
            choice = choices[0]
            delta = choice.get("delta")
            if isinstance(delta, Mapping) and self._finish is None:
                events += self._delta(delta)
            if choice.get("finish_reason") is not None and self._finish is None:
                events += self._close()
                self._finish = _stop(choice)
        if self._finish is not None and self._usage is not None:
            events += self._end()
        return events

    def finish(self) -> list[Event]:
        """The closing events for an upstream body that has ended (idempotent)."""
        if self.done:
            return []
        events = [*self._start(), *self._close()]
        if self._finish is None:
            self._finish = ("end_turn", None)
        return events + self._end()

    def _start(self) -> list[Event]:
        if self._started:
            return []
        self._started = True
        return [("message_start", {"type": "message_start", "message": {
            "id": self._message_id, "type": "message", "role": "assistant",
            "model": self._model, "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0}}})]

    def _open(self, kind: str, key: int, content_block: dict[str, Any]) -> list[Event]:
        events = self._close()
        self._block = (kind, key)
        self._blocks += 1
        return [*events, ("content_block_start", {"type": "content_block_start",
                                                  "index": self._blocks - 1,
                                                  "content_block": content_block})]

    def _close(self) -> list[Event]:
        if self._block is None:
            return []
        self._block = None
        return [("content_block_stop", {"type": "content_block_stop", "index": self._blocks - 1})]

    def _block_delta(self, delta: dict[str, Any]) -> Event:
        return ("content_block_delta", {"type": "content_block_delta", "index": self._blocks - 1,
                                        "delta": delta})

    def _delta(self, delta: Mapping[str, Any]) -> list[Event]:
        events: list[Event] = []
        for key in ("content", "refusal"):
            text = delta.get(key)
            if isinstance(text, str) and text:
                if self._block != ("text", -1):
                    events += self._open("text", -1, {"type": "text", "text": ""})
                events.append(self._block_delta({"type": "text_delta", "text": text}))
        for call in delta.get("tool_calls") or ():
            if not isinstance(call, Mapping) or type(call.get("index")) is not int:
                raise UpstreamProtocolError("The OpenAI-compatible backend streamed a tool call "
                                            "without an index.")
            index = call["index"]
            function = call.get("function")
            function = function if isinstance(function, Mapping) else {}
            if index not in self._tools:
                if not isinstance(function.get("name"), str):
                    raise UpstreamProtocolError("The OpenAI-compatible backend started a tool "
                                                "call without a function name.")
                self._tools.add(index)
                events += self._open("tool", index, {
                    "type": "tool_use", "id": call.get("id") or f"{self._message_id}_{index}",
                    "name": function["name"], "input": {}})
            elif self._block != ("tool", index):
                raise UpstreamProtocolError("The OpenAI-compatible backend interleaved the "
                                            "arguments of parallel tool calls.")
            if isinstance(function.get("arguments"), str) and function["arguments"]:
                events.append(self._block_delta({"type": "input_json_delta",
                                                 "partial_json": function["arguments"]}))
        return events

    def _end(self) -> list[Event]:
        assert self._finish is not None
        self.done = True
        stop_reason, stop_sequence = self._finish
        usage = self._usage or anthropic_usage(None)
        return [("message_delta", {"type": "message_delta",
                                   "delta": {"stop_reason": stop_reason,
                                             "stop_sequence": stop_sequence},
                                   "usage": usage}),
                ("message_stop", {"type": "message_stop"})]
