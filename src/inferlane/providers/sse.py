"""An incremental Server-Sent Events parser (the WHATWG event-stream rules we need).

Bytes arrive cut anywhere; ``feed`` returns every complete event as ``(event, data)``: the
``event:`` field (default ``"message"``) and the ``data:`` lines joined by newlines. Comments
(``:``) and ``id:``/``retry:`` fields are skipped. CRLF, LF and CR line ends are accepted.
A line longer than ``max_line`` bytes, or an event whose data lines add up to more than
``max_event`` bytes, is a protocol error (a stream cannot make us buffer without bound), however
the bytes were cut.
"""

from __future__ import annotations

from typing import NoReturn

from inferlane.errors import UpstreamProtocolError


class SseEventParser:
    __slots__ = ("_after_cr", "_buffer", "_data", "_event", "_max_event", "_max_line", "_size")

    def __init__(self, *, max_line: int = 4 * 1024 * 1024,
                 max_event: int = 4 * 1024 * 1024) -> None:
        self._buffer = b""  # the unfinished line (never holds a CR or LF)
        self._after_cr = False  # the last chunk ended with CR: skip a leading LF
        self._event = ""
        self._data: list[str] = []
        self._size = 0  # bytes of the data lines of the event being read
        self._max_line = max_line
        self._max_event = max_event

    def feed(self, chunk: bytes) -> list[tuple[str, str]]:
        if not chunk:
            return []
        if self._after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]  # the LF of a CRLF cut between chunks: that line already ended
        # A CR ends its line at once (an event is not held back waiting for a maybe-LF).
        self._after_cr = chunk.endswith(b"\r")
        buffer = self._buffer + chunk if self._buffer else chunk
        buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *lines, rest = buffer.split(b"\n")
        if len(rest) > self._max_line:
            self._line_too_long()
        self._buffer = rest
        events: list[tuple[str, str]] = []
        for raw in lines:
            if not raw:
                if self._data:
                    events.append((self._event or "message", "\n".join(self._data)))
                self._event, self._data, self._size = "", [], 0
                continue
            if len(raw) > self._max_line:  # one chunk may carry a whole over-long line
                self._line_too_long()
            line = raw.decode("utf-8", "replace")
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                self._size += len(raw)
                if self._size > self._max_event:
                    raise UpstreamProtocolError("The backend sent an event-stream event with "
                                                f"more than {self._max_event} bytes of data.")
                self._data.append(value)
            elif name == "event":
                self._event = value
        return events

    def _line_too_long(self) -> NoReturn:
        raise UpstreamProtocolError("The backend sent an event-stream line longer than "
                                    f"{self._max_line} bytes.")
