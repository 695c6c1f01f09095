"""The text of an answer as the client received it, for comparing a primary with its shadow.

Reads OpenAI (chat and completions, bodies and SSE chunks) and Anthropic (message bodies and
SSE events) answers; tool calls count as their name and arguments. Bounded: only the first
``limit`` characters are kept. Parsing costs a JSON decode per frame, so the proxy runs it only
for mirrored requests. It never raises: a malformed stream just ends what is collected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from inferlane.errors import UpstreamProtocolError
from inferlane.providers.sse import SseEventParser

MAX_TEXT = 16_384


class AnswerText:
    __slots__ = ("_limit", "_parser", "_parts", "_size")

    def __init__(self, limit: int = MAX_TEXT) -> None:
        self._limit = limit
        self._parts: list[str] = []
        self._size = 0
        self._parser = SseEventParser()

    @property
    def text(self) -> str:
        return "".join(self._parts)[: self._limit]

    def body(self, payload: bytes) -> None:
        """A whole JSON answer."""
        document = _json(payload)
        if document is None:
            return
        content = document.get("content")
        for block in content if isinstance(content, list) else ():  # Anthropic message
            if isinstance(block, Mapping):
                self._add(block.get("text"))
                if block.get("type") == "tool_use":
                    self._add(str(block.get("name", "")))
                    self._add(orjson.dumps(block.get("input", {})).decode())
        choices = document.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):
            choice = choices[0]
            self._add(choice.get("text"))  # completions
            message = choice.get("message")
            if isinstance(message, Mapping):
                self._add(message.get("content"))
                self._calls(message.get("tool_calls"))

    def stream(self, chunk: bytes) -> None:
        """SSE bytes as relayed to the client."""
        if self._size >= self._limit:
            return
        try:
            frames = self._parser.feed(chunk)
        except UpstreamProtocolError:  # on the primary's path too: never fail the request
            self._size = self._limit  # keep what was read, read no more
            return
        for _, data in frames:
            event = _json(data.encode())
            if event is None:
                continue
            delta = event.get("delta")
            if isinstance(delta, Mapping):  # Anthropic content_block_delta
                self._add(delta.get("text"))
                self._add(delta.get("partial_json"))
            block = event.get("content_block")
            if isinstance(block, Mapping):  # Anthropic content_block_start
                self._add(block.get("text"))  # usually "", but a block may start with text
                if block.get("type") == "tool_use":
                    self._add(str(block.get("name", "")))
            choices = event.get("choices")
            if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):
                choice = choices[0]
                self._add(choice.get("text"))
                delta = choice.get("delta")
                if isinstance(delta, Mapping):
                    self._add(delta.get("content"))
                    self._calls(delta.get("tool_calls"))

    def _calls(self, calls: Any) -> None:
        for call in calls if isinstance(calls, list) else ():
            function = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(function, Mapping):
                self._add(function.get("name"))
                self._add(function.get("arguments"))

    def _add(self, value: Any) -> None:
        if isinstance(value, str) and value and self._size < self._limit:
            self._parts.append(value)
            self._size += len(value)


def _json(payload: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
