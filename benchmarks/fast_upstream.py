"""A trivial, very fast OpenAI-compatible upstream used as the benchmark's model server.

It answers with fixed payloads so that the only variable in a benchmark is the proxy in front of
it. A raw ``asyncio.Protocol`` on uvloop with a minimal HTTP/1.1 parser keeps its per-request cost
to a few microseconds; it supports keep-alive and pipelining, ``Content-Length`` request bodies
only (every benchmark client and proxy here sends those) and answers:

- ``POST /v1/chat/completions`` -- a fixed ``chat.completion`` with ``usage``; when the body asks
  for ``"stream": true`` a chunked ``text/event-stream`` of ``--stream-chunks`` SSE events, the
  first sent at once with the headers, the rest ``--chunk-gap-ms`` apart, then ``data: [DONE]``;
- ``GET /v1/models`` and ``GET /health``.

This is a test fixture, not product code: run it with
``python benchmarks/fast_upstream.py --port 9000``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import time
from typing import cast

import orjson

MODEL = "fast-model"
_STREAM_FLAG = re.compile(rb'"stream"\s*:\s*true')
_MAX_HEADER_BYTES = 64 * 1024


def _completion_body() -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello from the fast upstream."},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16},
        }
    )


def _models_body() -> bytes:
    return orjson.dumps(
        {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "bench"}]}
    )


def _fixed_response(status: bytes, body: bytes, content_type: bytes = b"application/json") -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\nContent-Type: "
        + content_type
        + b"\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def _sse_chunk(index: int, total: int) -> bytes:
    last = index == total - 1
    event = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": f"tok{index} "}
                if index == 0
                else ({} if last else {"content": f"tok{index} "}),
                "finish_reason": "stop" if last else None,
            }
        ],
    }
    if last:
        event["usage"] = {"prompt_tokens": 9, "completion_tokens": total, "total_tokens": 9 + total}
    return _http_chunk(b"data: " + orjson.dumps(event) + b"\n\n")


def _http_chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


COMPLETION = _fixed_response(b"200 OK", _completion_body())
MODELS = _fixed_response(b"200 OK", _models_body())
HEALTH = _fixed_response(b"200 OK", b'{"status":"ok"}')
NOT_FOUND = _fixed_response(b"404 Not Found", b'{"error":{"message":"not found"}}')
BAD_REQUEST = _fixed_response(b"400 Bad Request", b'{"error":{"message":"bad request"}}')
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
STREAM_TAIL = _http_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"


class UpstreamProtocol(asyncio.Protocol):
    """One client connection: parse requests from the byte stream, answer each in order."""

    def __init__(self, stream_chunks: int, chunk_gap: float) -> None:
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._stream_chunks = [_sse_chunk(i, stream_chunks) for i in range(stream_chunks)]
        self._chunk_gap = chunk_gap
        # Responses must leave in request order; a stream in flight holds back later answers.
        self._streaming: asyncio.Task[None] | None = None
        self._pending: list[bytes | None] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._streaming is not None:
            self._streaming.cancel()
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (request := self._next_request()) is not None:
            self._answer(*request)

    def _next_request(self) -> tuple[bytes, bytes, bytes] | None:
        """Pop one complete request (method, target, body) off the buffer, if there is one."""
        head_end = self._buffer.find(b"\r\n\r\n")
        if head_end < 0:
            if len(self._buffer) > _MAX_HEADER_BYTES and self._transport is not None:
                self._transport.close()
            return None
        head = bytes(self._buffer[:head_end])
        request_line, _, header_block = head.partition(b"\r\n")
        parts = request_line.split(b" ")
        length = _content_length(header_block)
        total = head_end + 4 + length
        if len(self._buffer) < total:
            return None
        body = bytes(self._buffer[head_end + 4 : total])
        del self._buffer[:total]
        if len(parts) != 3:
            return b"", b"", b""
        return parts[0], parts[1], body

    def _answer(self, method: bytes, target: bytes, body: bytes) -> None:
        if method == b"POST" and target.startswith(b"/v1/chat/completions"):
            if _STREAM_FLAG.search(body):
                self._queue(None)
                return
            self._queue(COMPLETION)
        elif method == b"GET" and target.startswith(b"/v1/models"):
            self._queue(MODELS)
        elif method == b"GET" and target.startswith(b"/health"):
            self._queue(HEALTH)
        elif not method:
            self._queue(BAD_REQUEST)
        else:
            self._queue(NOT_FOUND)

    def _queue(self, response: bytes | None) -> None:
        """Send now when nothing is in flight, else keep order behind the running stream."""
        if self._streaming is None and not self._pending:
            self._send(response)
        else:
            self._pending.append(response)

    def _send(self, response: bytes | None) -> None:
        if self._transport is None:
            return
        if response is not None:
            self._transport.write(response)
            return
        self._streaming = asyncio.get_running_loop().create_task(self._stream())

    async def _stream(self) -> None:
        transport = self._transport
        if transport is None:
            return
        transport.write(STREAM_HEAD + self._stream_chunks[0])
        for chunk in self._stream_chunks[1:]:
            await asyncio.sleep(self._chunk_gap)
            if transport.is_closing():
                return
            transport.write(chunk)
        transport.write(STREAM_TAIL)
        self._streaming = None
        while self._pending and self._streaming is None:
            self._send(self._pending.pop(0))


def _content_length(header_block: bytes) -> int:
    for line in header_block.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


async def serve(host: str, port: int, stream_chunks: int, chunk_gap: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: UpstreamProtocol(stream_chunks, chunk_gap), host, port, backlog=4096
    )
    print(
        f"fast_upstream listening on http://{host}:{port} ({time.strftime('%H:%M:%S')})", flush=True
    )
    async with server:
        await server.serve_forever()


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--stream-chunks", type=int, default=8)
    parser.add_argument("--chunk-gap-ms", type=float, default=2.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a project dependency on Linux
        runner = asyncio.run
    else:
        runner = uvloop.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(serve(args.host, args.port, max(1, args.stream_chunks), args.chunk_gap_ms / 1000))


if __name__ == "__main__":
    main()
