"""OpenAI Chat Completions → Anthropic Messages: the request, the response and the stream.

Where it sits: a route sends an OpenAI ``/v1/chat/completions`` request to an Anthropic provider.
The provider adapter (the I/O, elsewhere) builds the upstream body with
``chat_request_to_messages``, then answers the client with ``messages_response_to_chat`` or, for
``stream: true``, feeds every Anthropic SSE event to a ``MessagesStreamToChatChunks`` and writes
what it returns (``encode_chunk`` each chunk, ``DONE`` at the end).

Sans-IO: dicts in, dicts and bytes out; no sockets, clocks or tasks (``created`` and the ids are
passed in). Every top-level request field is in ``CHAT_FIELDS`` once, with its handling; a field
that table rejects, or does not know, is a 400 naming it, so nothing a client asked for is
dropped without the client being told. README.md has the tables and the stream mapping.
"""

from __future__ import annotations

import binascii
import re
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
    is_empty,
    is_false,
    is_one,
    is_text_format,
    is_text_modality,
    is_zero,
    mapping,
    number,
    one_of,
    sequence,
    string,
)

__all__ = [
    "CHAT_FIELDS",
    "chat_request_to_messages",
    "chat_usage",
    "finish_reason",
    "messages_response_to_chat",
]


_M, _I, _R = Handling.MAPPED, Handling.IGNORED, Handling.REJECTED

CHAT_FIELDS: Final[Mapping[str, FieldRule]] = MappingProxyType({
    "messages": FieldRule(_M, "system/developer → system; user/assistant/tool → alternating turns"),
    "model": FieldRule(_M, "replaced by the provider's model name from the route"),
    "max_completion_tokens": FieldRule(_M, "→ max_tokens"),
    "max_tokens": FieldRule(_M, "→ max_tokens (default when neither is sent)"),
    "stop": FieldRule(_M, "→ stop_sequences"),
    "temperature": FieldRule(_M, "same value; above 1 is a 400 (Anthropic's range is 0 to 1)"),
    "top_p": FieldRule(_M, "same value"),
    "tools": FieldRule(_M, "function tools → name/description/input_schema"),
    "tool_choice": FieldRule(_M, "auto/none/required/named → auto/none/any/tool"),
    "parallel_tool_calls": FieldRule(_M, "false → tool_choice.disable_parallel_tool_use"),
    "stream": FieldRule(_M, "passed through"),
    "user": FieldRule(_M, "→ metadata.user_id"),
    "safety_identifier": FieldRule(_M, "→ metadata.user_id (wins over user)"),
    "stream_options": FieldRule(_I, "include_usage is read by the caller for the stream "
                                    "translator; include_obfuscation has no equivalent"),
    "seed": FieldRule(_I, "best-effort determinism even at OpenAI; Anthropic has no seed"),
    "metadata": FieldRule(_I, "tags for OpenAI's stored completions; nothing is stored"),
    "prompt_cache_key": FieldRule(_I, "OpenAI prompt-cache routing hint"),
    "prompt_cache_retention": FieldRule(_I, "OpenAI prompt-cache lifetime hint"),
    "prompt_cache_options": FieldRule(_I, "OpenAI prompt-cache breakpoints"),
    "prediction": FieldRule(_I, "a latency hint (predicted output); the answer is the same"),
    "n": FieldRule(_R, "Anthropic returns one choice per request; send n=1 or omit it", is_one),
    "logprobs": FieldRule(_R, "Anthropic returns no token log probabilities; remove it",
                          is_false),
    "top_logprobs": FieldRule(_R, "Anthropic returns no token log probabilities; remove it",
                              is_zero),
    "logit_bias": FieldRule(_R, "Anthropic has no logit bias; remove it", is_empty),
    "frequency_penalty": FieldRule(_R, "Anthropic has no frequency penalty; remove it", is_zero),
    "presence_penalty": FieldRule(_R, "Anthropic has no presence penalty; remove it", is_zero),
    "response_format": FieldRule(_R, "only {\"type\": \"text\"} is translated; ask for JSON in "
                                     "the prompt or with a tool instead", is_text_format),
    "audio": FieldRule(_R, "Anthropic produces no audio; remove it"),
    "modalities": FieldRule(_R, "Anthropic produces text only; send [\"text\"] or omit it",
                            is_text_modality),
    "reasoning_effort": FieldRule(_R, "reasoning effort is not translated yet; remove it"),
    "verbosity": FieldRule(_R, "Anthropic has no verbosity setting; remove it",
                           one_of("medium")),
    "service_tier": FieldRule(_R, "the provider's tier is set by the gateway; send \"auto\" or "
                                  "omit it", one_of("auto", "default")),
    "store": FieldRule(_R, "the gateway stores no completions; remove it", is_false),
    "web_search_options": FieldRule(_R, "OpenAI's web search is not translated; remove it"),
    "moderation": FieldRule(_R, "OpenAI moderation is not available here; remove it"),
    "functions": FieldRule(_R, "deprecated by OpenAI; send 'tools' instead"),
    "function_call": FieldRule(_R, "deprecated by OpenAI; send 'tool_choice' instead"),
})

_PROVIDER = "an Anthropic provider"


# -- request ----------------------------------------------------------------------------------

_MESSAGE_KEYS: Final = {
    "system": frozenset({"role", "content"}),
    "developer": frozenset({"role", "content"}),
    "user": frozenset({"role", "content"}),
    "assistant": frozenset({"role", "content", "tool_calls", "refusal"}),
    "tool": frozenset({"role", "content", "tool_call_id"}),
}
_IMAGE_MEDIA_TYPES: Final = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_RANGE_HINTS: Final = {"temperature": " (Anthropic's temperature range; OpenAI's is 0 to 2)"}
_DATA_URL: Final = re.compile(r"data:(?P<media>[^;,]+);base64,(?P<data>.*)", re.DOTALL)


def chat_request_to_messages(body: Mapping[str, Any], *, model: str,
                             default_max_tokens: int = 4096,
                             sampling_parameters: bool = True) -> dict[str, Any]:
    """The Anthropic Messages request for an OpenAI chat completions request ``body``.

    ``model`` is the provider's model name. ``sampling_parameters=False`` is for a provider on
    ``anthropic-version: 2026-10-21`` or later, which refuses ``temperature``/``top_p`` at any
    value: sending either is then a 400 here instead of an upstream one.
    """
    body = mapping(body, "body")
    check_fields(body, CHAT_FIELDS, request="chat completions", provider=_PROVIDER)
    system, turns = _turns(body.get("messages"))
    request: dict[str, Any] = {"model": model, "max_tokens": _max_tokens(body, default_max_tokens)}
    if system:
        request["system"] = system[0]["text"] if len(system) == 1 else system
    request["messages"] = turns
    stop = body.get("stop")
    if isinstance(stop, str):
        request["stop_sequences"] = [stop]
    elif stop is not None:
        stops = [string(s, f"stop[{i}]") for i, s in enumerate(sequence(stop, "stop"))]
        if stops:
            request["stop_sequences"] = stops
    for name in ("temperature", "top_p"):
        if body.get(name) is None:
            continue
        if not sampling_parameters:
            raise BadRequest(f"Parameter '{name}' is not accepted by this Anthropic provider "
                             "(its API version removed sampling parameters); remove it.",
                             param=name)
        request[name] = number(body[name], name, maximum=1, hint=_RANGE_HINTS.get(name, ""))
    tools = body.get("tools")
    if tools is not None:
        request["tools"] = [_tool(t, f"tools[{i}]") for i, t in enumerate(sequence(tools, "tools"))]
    tool_choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"),
                               has_tools=bool(request.get("tools")))
    if tool_choice is not None:
        request["tool_choice"] = tool_choice
    user_field = "safety_identifier" if body.get("safety_identifier") is not None else "user"
    if body.get(user_field) is not None:
        request["metadata"] = {"user_id": string(body[user_field], user_field)}
    if body.get("stream") is not None:
        if not isinstance(body["stream"], bool):
            raise BadRequest("'stream' must be true or false.", param="stream")
        request["stream"] = body["stream"]
    return request


def _max_tokens(body: Mapping[str, Any], default: int) -> int:
    completion = body.get("max_completion_tokens")
    legacy = body.get("max_tokens")
    if completion is not None and legacy is not None and completion != legacy:
        raise BadRequest("'max_tokens' and 'max_completion_tokens' differ; send only "
                         "'max_completion_tokens'.", param="max_tokens")
    if completion is not None:
        return integer(completion, "max_completion_tokens", minimum=1)
    if legacy is not None:
        return integer(legacy, "max_tokens", minimum=1)
    return default


def _turns(value: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """System text blocks and the user/assistant turns, same-role neighbours merged."""
    messages = sequence(value, "messages")
    if not messages:
        raise BadRequest("'messages' must contain at least one message.", param="messages")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, raw in enumerate(messages):
        where = f"messages[{i}]"
        message = mapping(raw, where)
        role = message.get("role")
        allowed = _MESSAGE_KEYS.get(role) if isinstance(role, str) else None
        if allowed is None:
            raise BadRequest(f"'{where}.role' must be system, developer, user, assistant or "
                             f"tool; got {role!r}.", param=f"{where}.role")
        check_keys(message, allowed, where, provider=_PROVIDER)
        if role in ("system", "developer"):
            system.extend({"type": "text", "text": text}
                          for text in _texts(message.get("content"), f"{where}.content") if text)
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"), f"{where}.content")
        elif role == "assistant":
            blocks = _assistant_blocks(message, where)
        else:
            role, blocks = "user", [_tool_result(message, where)]
        if not blocks:
            raise BadRequest(f"'{where}' has no content; Anthropic needs every message to have "
                             "non-empty content.", param=f"{where}.content")
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if not turns:
        raise BadRequest("'messages' has only system messages; add a user message.",
                         param="messages")
    return system, turns


def _texts(content: Any, param: str, *, refusal: bool = False) -> list[str]:
    """The texts of a string or an array of text (and, for assistants, refusal) parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    texts = []
    for j, raw in enumerate(sequence(content, param)):
        part = mapping(raw, f"{param}[{j}]")
        kind = part.get("type")
        if kind == "text":
            texts.append(string(part.get("text"), f"{param}[{j}].text"))
        elif kind == "refusal" and refusal:
            texts.append(string(part.get("refusal"), f"{param}[{j}].refusal"))
        else:
            raise BadRequest(f"'{param}[{j}].type' {kind!r} is not supported here; only text "
                             "parts are.", param=f"{param}[{j}].type")
    return texts


def _user_blocks(content: Any, param: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for j, raw in enumerate(sequence(content, param)):
        where = f"{param}[{j}]"
        part = mapping(raw, where)
        kind = part.get("type")
        if kind == "text":
            text = string(part.get("text"), f"{where}.text")
            if text:
                blocks.append({"type": "text", "text": text})
        elif kind == "image_url":
            blocks.append(_image_block(part.get("image_url"), f"{where}.image_url"))
        elif kind in ("input_audio", "file"):
            raise BadRequest(f"'{where}' is a {kind} part, which is not supported when the "
                             f"model is served by {_PROVIDER}; send text or images.",
                             param=f"{where}.type")
        else:
            raise BadRequest(f"'{where}.type' {kind!r} is not a known content part type.",
                             param=f"{where}.type")
    return blocks


def _image_block(value: Any, param: str) -> dict[str, Any]:
    url = value if isinstance(value, str) else mapping(value, param).get("url")
    url = string(url, f"{param}.url")
    if url.startswith("data:"):
        match = _DATA_URL.fullmatch(url)
        if match is None or match["media"] not in _IMAGE_MEDIA_TYPES:
            raise BadRequest(f"'{param}.url' must be a base64 data URL of a JPEG, PNG, GIF or "
                             "WebP image (data:image/png;base64,...).", param=f"{param}.url")
        try:
            binascii.a2b_base64(match["data"], strict_mode=True)
        except binascii.Error:
            raise BadRequest(f"'{param}.url' has invalid base64 data.",
                             param=f"{param}.url") from None
        return {"type": "image", "source": {"type": "base64", "media_type": match["media"],
                                            "data": match["data"]}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise BadRequest(f"'{param}.url' must be an http(s) URL or a base64 data URL.",
                     param=f"{param}.url")


def _assistant_blocks(message: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    texts = _texts(message.get("content"), f"{where}.content", refusal=True)
    if message.get("refusal") is not None:
        texts.append(string(message["refusal"], f"{where}.refusal"))
    blocks: list[dict[str, Any]] = [{"type": "text", "text": t} for t in texts if t]
    calls = message.get("tool_calls")
    for k, raw in enumerate(sequence(calls, f"{where}.tool_calls") if calls is not None else ()):
        param = f"{where}.tool_calls[{k}]"
        call = mapping(raw, param)
        if call.get("type", "function") != "function":
            raise BadRequest(f"'{param}.type' must be \"function\"; custom tool calls are not "
                             f"supported by {_PROVIDER}.", param=f"{param}.type")
        function = mapping(call.get("function"), f"{param}.function")
        blocks.append({"type": "tool_use", "id": string(call.get("id"), f"{param}.id"),
                       "name": string(function.get("name"), f"{param}.function.name"),
                       "input": _arguments(function.get("arguments"),
                                           f"{param}.function.arguments")})
    return blocks


def _arguments(value: Any, param: str) -> dict[str, Any]:
    text = string(value if value is not None else "", param)
    if not text.strip():
        return {}
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise BadRequest(f"'{param}' is not valid JSON; Anthropic needs tool-call arguments as "
                         "a JSON object.", param=param) from None
    if not isinstance(parsed, dict):
        raise BadRequest(f"'{param}' must encode a JSON object.", param=param)
    return parsed


def _tool_result(message: Mapping[str, Any], where: str) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result",
                             "tool_use_id": string(message.get("tool_call_id"),
                                                   f"{where}.tool_call_id")}
    text = "".join(_texts(message.get("content"), f"{where}.content"))
    if text:
        block["content"] = text
    return block


def _tool(value: Any, param: str) -> dict[str, Any]:
    tool = mapping(value, param)
    if tool.get("type") != "function":
        raise BadRequest(f"'{param}.type' must be \"function\"; other tool types are not "
                         f"supported by {_PROVIDER}.", param=f"{param}.type")
    function = mapping(tool.get("function"), f"{param}.function")
    out: dict[str, Any] = {"name": string(function.get("name"), f"{param}.function.name")}
    if function.get("description") is not None:
        out["description"] = string(function["description"], f"{param}.function.description")
    parameters = function.get("parameters")
    out["input_schema"] = (dict(mapping(parameters, f"{param}.function.parameters"))
                           if parameters is not None else {"type": "object", "properties": {}})
    if function.get("strict") is True:
        out["strict"] = True
    return out


def _tool_choice(value: Any, parallel: Any, *, has_tools: bool) -> dict[str, Any] | None:
    if parallel is not None and not isinstance(parallel, bool):
        raise BadRequest("'parallel_tool_calls' must be true or false.",
                         param="parallel_tool_calls")
    choice: dict[str, Any] | None
    if value is None:
        choice = {"type": "auto"} if has_tools and parallel is False else None
    elif value in ("auto", "none"):
        choice = {"type": value}
    elif value == "required":
        choice = {"type": "any"}
    elif isinstance(value, Mapping) and value.get("type") == "function":
        function = mapping(value.get("function"), "tool_choice.function")
        choice = {"type": "tool", "name": string(function.get("name"),
                                                 "tool_choice.function.name")}
    else:
        raise BadRequest("'tool_choice' must be \"auto\", \"none\", \"required\" or "
                         "{\"type\": \"function\", \"function\": {\"name\": ...}}; allowed_tools "
                         f"and custom tools are not supported by {_PROVIDER}.",
                         param="tool_choice")
    if choice is not None and parallel is False and choice["type"] != "none":
        choice["disable_parallel_tool_use"] = True
    return choice


# -- response ---------------------------------------------------------------------------------

_FINISH_REASONS: Final = MappingProxyType({
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop",
    "max_tokens": "length", "model_context_window_exceeded": "length",
    "tool_use": "tool_calls", "refusal": "content_filter",
})


def finish_reason(stop_reason: Any) -> str:
    """OpenAI's finish_reason for an Anthropic stop_reason (unknown or missing → "stop")."""
    return _FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def _count(usage: Mapping[str, Any], key: str) -> int:
    value = usage.get(key)
    return value if type(value) is int else 0


def chat_usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI usage for Anthropic usage. Anthropic's input_tokens leave out cached tokens;
    OpenAI's prompt_tokens include them, so the cache reads and writes are added back."""
    read = _count(usage, "cache_read_input_tokens")
    written = _count(usage, "cache_creation_input_tokens")
    prompt = _count(usage, "input_tokens") + read + written
    completion = _count(usage, "output_tokens")
    details: dict[str, int] = {"cached_tokens": read}
    if written:
        details["cache_write_tokens"] = written
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion, "prompt_tokens_details": details}


def messages_response_to_chat(message: Mapping[str, Any], *, model: str, created: int,
                              request_id: str) -> dict[str, Any]:
    """The OpenAI ``chat.completion`` for an Anthropic Messages response.

    Text blocks are joined into ``content``; tool_use blocks become ``tool_calls`` (the
    Anthropic id kept, the input as a JSON string); thinking and other blocks are left out.
    """
    if not isinstance(message, Mapping) or not isinstance(message.get("content"), list):
        raise UpstreamProtocolError("The Anthropic provider answered without a message "
                                    "'content' array.")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message["content"]:
        if not isinstance(block, Mapping):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "tool_use":
            calls.append({"id": block.get("id"), "type": "function",
                          "function": {"name": block.get("name"),
                                       "arguments": orjson.dumps(block.get("input", {})).decode()}})
    reply: dict[str, Any] = {"role": "assistant",
                             "content": "".join(texts) if texts or not calls else None,
                             "refusal": None}
    if calls:
        reply["tool_calls"] = calls
    usage = message.get("usage")
    return {"id": request_id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": reply, "logprobs": None,
                         "finish_reason": finish_reason(message.get("stop_reason"))}],
            "usage": chat_usage(usage if isinstance(usage, Mapping) else {})}


# -- stream -----------------------------------------------------------------------------------
