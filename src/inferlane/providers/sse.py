"""An incremental Server-Sent Events parser (the WHATWG event-stream rules we need).

Bytes arrive cut anywhere; ``feed`` returns every complete event as ``(event, data)``: the
``event:`` field (default ``"message"``) and the ``data:`` lines joined by newlines. Comments
(``:``) and ``id:``/``retry:`` fields are skipped. CRLF, LF and CR line ends are accepted.
A line longer than ``max_line`` bytes is a protocol error (a stream cannot make us buffer
without bound).
"""

from __future__ import annotations

from inferlane.errors import UpstreamProtocolError


class SseEventParser:
    __slots__ = ("_buffer", "_data", "_event", "_max_line")

    def __init__(self, *, max_line: int = 4 * 1024 * 1024) -> None:
        self._buffer = b""
        self._event = ""
        self._data: list[str] = []
        self._max_line = max_line

    def feed(self, chunk: bytes) -> list[tuple[str, str]]:
        buffer = self._buffer + chunk if self._buffer else chunk
        held = b""
        if buffer.endswith(b"\r"):  # maybe the first half of a CRLF cut between chunks
            buffer, held = buffer[:-1], b"\r"
        buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *lines, rest = buffer.split(b"\n")
        if len(rest) > self._max_line:
            raise UpstreamProtocolError("The backend sent an event-stream line longer than "
                                        f"{self._max_line} bytes.")
        self._buffer = rest + held
        events: list[tuple[str, str]] = []
        for raw in lines:
            if not raw:
                if self._data:
                    events.append((self._event or "message", "\n".join(self._data)))
                self._event, self._data = "", []
                continue
            line = raw.decode("utf-8", "replace")
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                self._data.append(value)
            elif name == "event":
                self._event = value
        return events
