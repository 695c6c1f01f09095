"""Anthropic Messages stream → OpenAI chat completion chunks: a small state machine.

Feed each Anthropic SSE event (name and parsed JSON) to ``MessagesStreamToChatChunks.feed``
and write what it returns with ``encode_chunk``; write ``DONE`` once ``done`` is true. Sans-IO,
like the rest of ``translate``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

from inferlane.errors import InferlaneError, UpstreamProtocolError
from inferlane.providers.translate.openai_to_anthropic import chat_usage, finish_reason

__all__ = ["DONE", "MessagesStreamToChatChunks", "UpstreamStreamError", "encode_chunk"]

DONE: Final = b"data: [DONE]\n\n"


class UpstreamStreamError(InferlaneError):
    """The Anthropic provider sent an ``error`` event mid-stream (``overloaded_error``, ...).

    The status line and earlier chunks are already sent, so this cannot become an HTTP status:
    the data plane ends the client's stream with ``to_sse()`` (OpenAI's in-stream error shape).
    """

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"Anthropic provider stream error {error_type}: {message}")
        self.error_type = error_type
        self.message = message

    def to_sse(self) -> bytes:
        return encode_chunk({"error": {"message": self.message, "type": self.error_type,
                                       "param": None, "code": None}})


def encode_chunk(chunk: Mapping[str, Any]) -> bytes:
    """One OpenAI SSE frame: ``data: {json}`` and a blank line."""
    return b"data: " + orjson.dumps(dict(chunk)) + b"\n\n"


class MessagesStreamToChatChunks:
    """Anthropic SSE events in, OpenAI ``chat.completion.chunk`` dicts out, one choice.

    message_start → the role chunk; text_delta → ``delta.content``; a tool_use block → a
    tool_calls delta (index, id, name, empty arguments), each input_json_delta → an
    ``arguments`` fragment at that index; message_delta → the ``finish_reason`` chunk; with
    ``include_usage``, message_stop → a usage-only chunk (``choices: []``). ``ping``, thinking
    and unknown events give nothing; ``error`` raises ``UpstreamStreamError``.
    """

    __slots__ = ("_created", "_finished", "_include_usage", "_model", "_request_id",
                 "_started", "_tool_index", "_usage", "done")

    def __init__(self, *, model: str, created: int, request_id: str,
                 include_usage: bool) -> None:
        self._model = model
        self._created = created
        self._request_id = request_id
        self._include_usage = include_usage
        self._started = False
        self._finished = False
        self._tool_index: dict[int, int] = {}  # Anthropic block index → OpenAI tool_calls index
        self._usage: dict[str, Any] = {}
        self.done = False  # message_stop seen: write DONE next

    def feed(self, event: str, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        if self.done or event == "ping":
            return []
        if event == "error":
            error = data.get("error")
            error = error if isinstance(error, Mapping) else {}
            raise UpstreamStreamError(str(error.get("type", "api_error")),
                                      str(error.get("message", "unknown error")))
        if event == "message_start":
            message = data.get("message")
            if isinstance(message, Mapping) and isinstance(message.get("usage"), Mapping):
                self._usage.update(message["usage"])
            return self._start()
        if event == "content_block_start":
            return self._block_start(data)
        if event == "content_block_delta":
            return self._block_delta(data)
        if event == "message_delta":
            return self._message_delta(data)
        if event == "message_stop":
            return self._stop()
        return []  # content_block_stop, and event types added after this was written

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self._request_id, "object": "chat.completion.chunk", "created": self._created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self._include_usage:
            chunk["usage"] = None
        return chunk

    def _start(self) -> list[dict[str, Any]]:
        if self._started:
            return []
        self._started = True
        return [self._chunk({"role": "assistant", "content": ""})]

    def _block_start(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        index, block = data.get("index"), data.get("content_block")
        if type(index) is not int or not isinstance(block, Mapping):
            raise UpstreamProtocolError("Anthropic stream event content_block_start has no "
                                        "index or content_block.")
        chunks = self._start()
        if block.get("type") == "text" and block.get("text"):
            chunks.append(self._chunk({"content": block["text"]}))
        elif block.get("type") == "tool_use":
            position = self._tool_index[index] = len(self._tool_index)
            chunks.append(self._chunk({"tool_calls": [{
                "index": position, "id": block.get("id"), "type": "function",
                "function": {"name": block.get("name"), "arguments": ""}}]}))
        return chunks

    def _block_delta(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        delta = data.get("delta")
        if not isinstance(delta, Mapping):
            raise UpstreamProtocolError("Anthropic stream event content_block_delta has no "
                                        "delta.")
        chunks = self._start()
        if delta.get("type") == "text_delta" and delta.get("text"):
            chunks.append(self._chunk({"content": delta["text"]}))
        elif delta.get("type") == "input_json_delta" and delta.get("partial_json"):
            index = data.get("index")
            position = self._tool_index.get(index) if type(index) is int else None
            if position is None:
                raise UpstreamProtocolError("Anthropic stream sent input_json_delta for a "
                                            "block that is not a tool_use.")
            chunks.append(self._chunk({"tool_calls": [{
                "index": position, "function": {"arguments": delta["partial_json"]}}]}))
        return chunks

    def _message_delta(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        usage = data.get("usage")
        if isinstance(usage, Mapping):  # cumulative counts: the latest wins
            self._usage.update({k: v for k, v in usage.items() if v is not None})
        delta = data.get("delta")
        stop_reason = delta.get("stop_reason") if isinstance(delta, Mapping) else None
        if self._finished or stop_reason is None:
            return []
        self._finished = True
        return [*self._start(), self._chunk({}, finish_reason(stop_reason))]

    def _stop(self) -> list[dict[str, Any]]:
        chunks = self._start()
        if not self._finished:
            self._finished = True
            chunks.append(self._chunk({}, "stop"))
        self.done = True
        if self._include_usage:
            chunks.append({"id": self._request_id, "object": "chat.completion.chunk",
                           "created": self._created, "model": self._model, "choices": [],
                           "usage": chat_usage(self._usage)})
        return chunks
