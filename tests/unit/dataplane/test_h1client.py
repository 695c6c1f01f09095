"""The upstream HTTP/1.1 client against scripted raw servers on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from inferlane.dataplane.h1client import (
    UpstreamClosed,
    UpstreamConnectFailed,
    UpstreamInvalidResponse,
    UpstreamPool,
    UpstreamTimeoutError,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


class Server:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture
async def pool() -> AsyncIterator[UpstreamPool]:
    upstream = UpstreamPool(connect_timeout=2, read_timeout=2, keepalive_timeout=30)
    yield upstream
    await upstream.close()


async def test_keep_alive_connection_is_reused(pool: UpstreamPool) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            server.requests.append(await read_request(reader))
            writer.write(OK)
            await writer.drain()

    async with Server(handler) as server:
        for _ in range(3):
            async with await pool.request("POST", "127.0.0.1", server.port, "/v1/x",
                                          [("X-A", "1")], b'{"a":1}') as response:
                assert response.status == 200
                assert response.header("content-type") == "application/json"
                assert await response.read() == b"{}"
        assert server.connections == 1
        first = server.requests[0]
        assert first.startswith(b"POST /v1/x HTTP/1.1\r\n")
        assert b"\r\nX-A: 1\r\n" in first
        assert b"\r\nContent-Length: 7\r\n" in first
        assert first.endswith(b'\r\n\r\n{"a":1}')


async def test_stale_idle_connection_is_retried_once(pool: UpstreamPool) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK)
        await writer.drain()
        # Like a server whose keep-alive timer fires just as the next request arrives.
        await read_request(reader)

    async with Server(handler) as server:
        for _ in range(2):
            async with await pool.request("POST", "127.0.0.1", server.port, "/", [], b"") as r:
                assert await r.read() == b"{}"
        assert server.connections == 2


async def test_streamed_chunked_body_arrives_in_pieces(pool: UpstreamPool) -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n6\r\ndata 1\r\n")
        await writer.drain()
        await release.wait()
        writer.write(b"6\r\ndata 2\r\n0\r\n\r\n")
        await writer.drain()
        await read_request(reader)

    async with Server(handler) as server:
        response = await pool.request("POST", "127.0.0.1", server.port, "/", [], b"")
        async with response:
            chunks = response.iter_chunks()
            assert await chunks.__anext__() == b"data 1"  # before the server sends the rest
            release.set()
            assert [c async for c in chunks] == [b"data 2"]


async def test_body_until_connection_close(pool: UpstreamPool) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
        await writer.drain()

    async with (
        Server(handler) as server,
        await pool.request("POST", "127.0.0.1", server.port, "/", [], b"") as response,
    ):
        assert await response.read() == b"all of it"


async def test_close_before_headers_is_closed_error(pool: UpstreamPool) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async with Server(handler) as server:
        with pytest.raises(UpstreamClosed) as caught:
            await pool.request("POST", "127.0.0.1", server.port, "/", [], b"")
        assert not caught.value.started


async def test_close_mid_body_is_closed_error_after_start(pool: UpstreamPool) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()

    async with Server(handler) as server:
        response = await pool.request("POST", "127.0.0.1", server.port, "/", [], b"")
        async with response:
            with pytest.raises(UpstreamClosed) as caught:
                await response.read()
            assert caught.value.started


async def test_silent_server_times_out(pool: UpstreamPool) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(30)

    async with Server(handler) as server:
        with pytest.raises(UpstreamTimeoutError):
            await pool.request("POST", "127.0.0.1", server.port, "/", [], b"", budget=0.2)


async def test_garbage_response_is_invalid(pool: UpstreamPool) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async with Server(handler) as server:
        with pytest.raises(UpstreamInvalidResponse):
            await pool.request("POST", "127.0.0.1", server.port, "/", [], b"")


async def test_refused_connection(pool: UpstreamPool) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(UpstreamConnectFailed):
        await pool.request("POST", "127.0.0.1", port, "/", [], b"")


async def test_unread_response_closes_its_connection(pool: UpstreamPool) -> None:
    closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await writer.drain()
        if not await reader.read(1):  # EOF: the client dropped the connection
            closed.set()

    async with Server(handler) as server:
        response = await pool.request("POST", "127.0.0.1", server.port, "/", [], b"")
        response.close()  # e.g. the downstream client went away mid-stream
        await asyncio.wait_for(closed.wait(), 5)


async def test_backpressure_pauses_reading() -> None:
    upstream = UpstreamPool(read_timeout=5, high_water=1024)
    sent = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 33554432\r\n\r\n")
        for _ in range(512):
            writer.write(b"x" * 65536)
            await writer.drain()
        sent.set()

    try:
        async with Server(handler) as server:
            response = await upstream.request("POST", "127.0.0.1", server.port, "/", [], b"")
            async with response:
                chunks = response.iter_chunks()
                await chunks.__anext__()
                await asyncio.sleep(0.3)
                # The reader is paused, so 32 MiB cannot all have left the server (socket buffers
                # hold a few MiB at most).
                assert not sent.is_set()
                total = sum([len(c) async for c in chunks])
                assert total > 33_000_000
    finally:
        await upstream.close()


def test_header_injection_is_refused() -> None:
    from inferlane.dataplane.h1client import _encode_head

    with pytest.raises(ValueError, match="line break"):
        _encode_head("POST", "/", "h", 1, [("X-Evil", "a\r\nHost: b")], 0)
