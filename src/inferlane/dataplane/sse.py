"""Token usage from upstream responses, without slowing the relay.

Streams are relayed chunk by chunk; this scanner looks at each chunk as it passes and parses
only the SSE ``data:`` lines that carry a non-null ``usage`` object (OpenAI and vLLM send it in
the last chunk when ``stream_options.include_usage`` is set). Everything else is skipped with a
substring test, so the cost per chunk is a scan, not a JSON parse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

_USAGE_MARKERS = (b'"usage":{', b'"usage": {')


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seen: bool = False

    def take(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens")
        if isinstance(prompt, int):
            self.prompt_tokens = prompt
        if isinstance(completion, int):
            self.completion_tokens = completion
        self.seen = True


def usage_from_body(body: bytes) -> Usage:
    """Usage of a non-streaming JSON response (empty when absent or not JSON)."""
    usage = Usage()
    if b'"usage"' not in body:
        return usage
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return usage
    if isinstance(document, dict):
        usage.take(document.get("usage"))
    return usage


class SseUsageScanner:
    __slots__ = ("_tail", "usage")

    def __init__(self, usage: Usage | None = None) -> None:
        self._tail = b""
        self.usage = usage if usage is not None else Usage()  # filled in place

    def feed(self, chunk: bytes) -> None:
        data = self._tail + chunk if self._tail else chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            self._tail = data[-65536:]  # a line longer than this carries no usage we can use
            return
        self._tail = data[cut + 1 :]
        if b'"usage"' not in data:
            return
        for line in data[:cut].split(b"\n"):
            if line.startswith(b"data:") and any(m in line for m in _USAGE_MARKERS):
                try:
                    event = orjson.loads(line[5:])
                except orjson.JSONDecodeError:
                    continue
                if isinstance(event, dict):
                    self.usage.take(event.get("usage"))
