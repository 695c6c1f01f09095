"""The user-space TCP data plane: accept, pick a backend, connect, pump bytes both ways.

Where it sits: one ``TcpProxy`` per TCP listener of a route; ``BackendSelector`` decides the
backend (connection tracking, drains, health), this module only moves bytes.

The pump is two ``asyncio.Protocol``s joined back to back (no streams, no buffers of our own
beyond the transports' write buffers):
- Backpressure: each socket's write buffer has high/low water marks; when the buffer towards
  one side passes the high mark, ``pause_writing`` stops reading from the other side, and
  ``resume_writing`` restarts it below the low mark. The kernel's TCP window then slows the
  sender. What the proxy holds per direction stays within ``MAX_BUFFERED`` (the high mark plus
  one read).
- Half-close: a FIN read from one side becomes ``write_eof`` towards the other, after what is
  buffered; the other direction stays open until it ends too, then both sockets close.
- An error on one side (reset, broken pipe) resets the other.

Until a backend accepted the connection nothing is forwarded: at most one read per side is held
(uvloop starts reading right after ``connection_made``), then the PROXY protocol header, if any,
goes first. A refused or timed-out connect tries the next candidate, at most
``CONNECT_ATTEMPTS`` backends; with none left the client gets a reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import cast

from inferlane.l4.flows import FlowKey, L4Backend
from inferlane.l4.proxy_protocol import ProxyProtocolVersion, encode_header
from inferlane.l4.selector import BackendSelector
from inferlane.l4.stats import BackendStats, ProxyStats, StatsSnapshot

HIGH_WATER = 256 * 1024  # bytes buffered towards one socket before its peer stops being read
LOW_WATER = 64 * 1024  # ... and below which reading resumes
READ_SIZE = 256 * 1024  # the most asyncio and uvloop hand to data_received at once
MAX_BUFFERED = HIGH_WATER + READ_SIZE  # per direction of one connection, at any moment
CONNECT_ATTEMPTS = 3  # distinct backends tried for one connection
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


def _reset(transport: asyncio.Transport) -> None:
    """Close with a TCP reset, so the peer sees an error rather than a clean end."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    transport.abort()


class _Side(asyncio.Protocol):
    """One socket of a proxied connection; what it reads is written to ``peer``."""

    def __init__(self, connection: _Connection) -> None:
        self.connection = connection
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.peer_transport: asyncio.Transport | None = None  # the peer's, for the hot path
        self.counters: BackendStats | None = None  # set once the backend is known
        self.early: list[bytes] = []  # read before the sides were joined (one read at most)
        self.read_eof = False  # the remote end sent FIN
        self.held = False  # reading paused because the peer's write buffer is full
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)

    def data_received(self, data: bytes) -> None:
        transport = self.peer_transport
        if transport is None:
            # Not joined yet: uvloop starts reading right after connection_made, whatever
            # pause_reading said there. Hold this one read and stop until joined.
            self.early.append(data)
            assert self.transport is not None
            self.transport.pause_reading()
            return
        transport.write(data)
        self.count(len(data))
        buffered = transport.get_write_buffer_size()
        stats = self.connection.proxy.stats
        if buffered > stats.peak_buffered:
            stats.peak_buffered = buffered

    def count(self, size: int) -> None:
        raise NotImplementedError

    def eof_received(self) -> bool:
        if not self.read_eof:
            self.read_eof = True
            if self.peer is not None:  # else forwarded when joined
                self.connection.forward_eof(self)
        return True  # keep the socket open: the other direction may still be flowing

    def pause_writing(self) -> None:
        # Our write buffer is full: stop reading the side that fills it.
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.read_eof \
                and not peer.transport.is_closing():
            peer.held = True
            peer.transport.pause_reading()

    def resume_writing(self) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.read_eof \
                and not peer.transport.is_closing():
            peer.held = False
            peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.connection.side_lost(self, exc)


class _ClientSide(_Side):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.pause_reading()  # nothing is read before a backend is connected
        self.connection.start(self.transport)

    def count(self, size: int) -> None:
        assert self.counters is not None
        self.counters.bytes_in += size


class _BackendSide(_Side):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.pause_reading()  # until joined to the client (a greeting may be quick)

    def count(self, size: int) -> None:
        assert self.counters is not None
        self.counters.bytes_out += size


class _Connection:
    """One client connection and (once connected) its backend connection."""

    def __init__(self, proxy: TcpProxy) -> None:
        self.proxy = proxy
        self.client = _ClientSide(self)
        self.backend_side: _BackendSide | None = None
        self.backend: L4Backend | None = None
        self.flow: FlowKey | None = None
        self.connecting: asyncio.Task[None] | None = None
        self.finished = False

    def start(self, client: asyncio.Transport) -> None:
        peer = client.get_extra_info("peername")
        local = client.get_extra_info("sockname")
        self.flow = FlowKey("tcp", str(peer[0]), int(peer[1]), str(local[0]), int(local[1]))
        self.proxy.connection_started(self)
        self.connecting = asyncio.get_running_loop().create_task(
            self._connect((str(peer[0]), int(peer[1])), (str(local[0]), int(local[1]))))

    async def _connect(self, source: tuple[str, int], destination: tuple[str, int]) -> None:
        proxy, flow = self.proxy, self.flow
        assert flow is not None
        loop = asyncio.get_running_loop()
        failed: list[str] = []
        for _ in range(CONNECT_ATTEMPTS):
            backend = proxy.selector.choose(flow, loop.time(), exclude=failed)
            if backend is None:
                break
            try:
                async with asyncio.timeout(proxy.connect_timeout):
                    _, side = await loop.create_connection(
                        lambda: _BackendSide(self), backend.host, backend.port)
            except (OSError, TimeoutError):
                proxy.stats.backend(backend.key).connect_failures += 1
                failed.append(backend.key)
                continue
            self._joined(backend, side, source, destination)
            return
        proxy.selector.release(flow)
        proxy.stats.rejected += 1
        client = self.client.transport
        if client is not None and not client.is_closing():
            _reset(client)

    def _joined(self, backend: L4Backend, side: _BackendSide, source: tuple[str, int],
                destination: tuple[str, int]) -> None:
        assert side.transport is not None
        assert self.client.transport is not None
        if self.client.lost:  # the client went away while we connected (already finished)
            side.transport.abort()
            return
        self.backend, self.backend_side = backend, side
        counters = self.proxy.stats.backend(backend.key)
        counters.active += 1
        counters.total += 1
        self.client.counters = side.counters = counters
        self.client.peer, side.peer = side, self.client
        self.client.peer_transport, side.peer_transport = side.transport, self.client.transport
        if self.proxy.proxy_protocol is not None:
            side.transport.write(encode_header(self.proxy.proxy_protocol, source, destination))
        for this in (self.client, side):
            for data in this.early:
                this.data_received(data)
            this.early = []
        for this in (self.client, side):
            if this.read_eof:
                self.forward_eof(this)
            elif not this.held and this.transport is not None and not this.lost:
                this.transport.resume_reading()

    def forward_eof(self, side: _Side) -> None:
        peer = side.peer
        if peer is None or peer.transport is None or peer.transport.is_closing():
            return
        if peer.transport.can_write_eof():
            peer.transport.write_eof()
        if peer.read_eof:
            # Both directions ended: close, after what is still buffered is written.
            peer.transport.close()
            if side.transport is not None and not side.transport.is_closing():
                side.transport.close()

    def side_lost(self, side: _Side, exc: Exception | None) -> None:
        if side is self.client and self.connecting is not None and not self.connecting.done():
            self.connecting.cancel()
        peer = side.peer
        if peer is not None and peer.transport is not None and not peer.lost:
            if exc is not None:
                _reset(peer.transport)
            elif not peer.transport.is_closing():
                peer.transport.close()
        if self.client.lost and (self.backend_side is None or self.backend_side.lost):
            self._finish()

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        if self.backend is not None:
            self.proxy.stats.backend(self.backend.key).active -= 1
        if self.flow is not None:
            self.proxy.selector.release(self.flow)
        self.proxy.connection_finished(self)

    def buffered(self) -> int:
        total = 0
        for side in (self.client, self.backend_side):
            if side is not None and side.transport is not None and not side.lost:
                total += side.transport.get_write_buffer_size()
        return total

    def abort(self) -> None:
        for side in (self.client, self.backend_side):
            if side is not None and side.transport is not None and not side.lost:
                side.transport.abort()


class TcpProxy:
    """Listens on ``host:port`` (0: ephemeral) and proxies each connection to a backend."""

    def __init__(self, selector: BackendSelector, *, host: str, port: int,
                 proxy_protocol: ProxyProtocolVersion | None = None,
                 connect_timeout: float = 5.0, backlog: int = 1024) -> None:
        self.selector = selector
        self.host = host
        self.proxy_protocol = proxy_protocol
        self.connect_timeout = connect_timeout
        self.stats = ProxyStats(protocol="tcp")
        self._requested_port = port
        self._backlog = backlog
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._accept, self.host, self._requested_port, backlog=self._backlog,
            reuse_address=True)

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("TcpProxy.port: the proxy is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def connections(self) -> int:
        """Open client connections (connecting ones included)."""
        return len(self._connections)

    def buffered(self) -> int:
        """Bytes the proxy holds right now in its sockets' write buffers, all connections."""
        return sum(connection.buffered() for connection in self._connections)

    def snapshot(self) -> StatsSnapshot:
        return self.stats.snapshot(buffered=self.buffered())

    def _accept(self) -> _ClientSide:
        return _Connection(self).client

    def connection_started(self, connection: _Connection) -> None:
        self._connections.add(connection)
        self._idle.clear()
        self.stats.accepted += 1

    def connection_finished(self, connection: _Connection) -> None:
        self._connections.discard(connection)
        if not self._connections:
            self._idle.set()

    async def close(self, grace: float = 0.0) -> None:
        """Stop accepting; let open connections finish for up to ``grace`` seconds, then
        abort the rest."""
        if self._server is not None:
            self._server.close()
        if grace > 0 and self._connections:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._idle.wait()
        for connection in list(self._connections):
            connection.abort()
            if connection.connecting is not None:
                connection.connecting.cancel()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
