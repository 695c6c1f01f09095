"""The user-space UDP data plane: one listening socket, one upstream socket per client.

Where it sits: one ``UdpProxy`` per UDP listener of a route; ``BackendSelector`` decides the
backend and tracks sessions (its ``FlowTable`` carries the idle timeout), this module moves
datagrams.

A session is a client address and a connected UDP socket towards its backend: what the client
sends goes out through that socket, what comes back on it is sent to the client from the
listening socket (so the client sees replies from the address it talked to). Every datagram
asks the selector, which refreshes the session's idle clock; if the answer changed (the backend
left the set, or the session had expired) the session moves to a new socket. A periodic sweep
closes sessions idle past the timeout.

Nothing queues without bound: a session holds at most ``PENDING_LIMIT`` datagrams while its
socket opens; a datagram whose socket's send buffer is full (the transport paused writing, or
past ``SEND_BUFFER_LIMIT``) is dropped and counted, as UDP allows; ``max_sessions`` caps the
table and a new client over the cap is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Literal, Protocol, cast

from inferlane.l4.flows import FlowKey, L4Backend
from inferlane.l4.selector import BackendSelector
from inferlane.l4.stats import BackendStats, ProxyStats, StatsSnapshot

PENDING_LIMIT = 64  # datagrams held per session while its upstream socket opens
SEND_BUFFER_LIMIT = 256 * 1024  # bytes a transport may queue before datagrams are dropped
DEFAULT_MAX_SESSIONS = 65_536
EndReason = Literal["moved", "expired", "failed", "closed"]
Address = Any  # (host, port) or (host, port, flowinfo, scope_id), as the socket gives it


class _UdpTransport(Protocol):
    """What asyncio's and uvloop's datagram transports offer (typeshed omits the buffer
    calls, which both implement)."""

    def sendto(self, data: bytes, addr: Address = None) -> None: ...
    def get_write_buffer_size(self) -> int: ...
    def set_write_buffer_limits(self, high: int | None = None,
                                low: int | None = None) -> None: ...
    def get_extra_info(self, name: str, default: Any = None) -> Any: ...
    def close(self) -> None: ...


class _Session(asyncio.DatagramProtocol):
    """One client's upstream socket, connected to its backend."""

    def __init__(self, proxy: UdpProxy, client: Address, flow: FlowKey,
                 backend: L4Backend) -> None:
        self.proxy = proxy
        self.client = client
        self.flow = flow
        self.backend = backend
        self.counters: BackendStats = proxy.stats.backend(backend.key)
        self.transport: _UdpTransport | None = None
        self.pending: list[bytes] = []
        self.paused = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(_UdpTransport, transport)  # uvloop's is not a subclass
        self.transport.set_write_buffer_limits(high=SEND_BUFFER_LIMIT)
        if self.closed:
            self.transport.close()
            return
        pending, self.pending = self.pending, []
        for data in pending:
            self.send(data)

    def send(self, data: bytes) -> None:
        transport = self.transport
        if transport is None:
            if len(self.pending) >= PENDING_LIMIT:
                self.proxy.stats.drop("pending-full")
                return
            self.pending.append(data)
            return
        if self.paused or transport.get_write_buffer_size() >= SEND_BUFFER_LIMIT:
            self.proxy.stats.drop("upstream-full")
            return
        transport.sendto(data)
        self.counters.datagrams_in += 1
        self.counters.bytes_in += len(data)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.proxy.reply(self, data)

    def error_received(self, exc: Exception) -> None:
        # e.g. ICMP port unreachable from the backend: UDP has no more to say; health checks
        # (not this socket) decide whether the backend takes new sessions.
        self.proxy.upstream_errors += 1

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.pending = []
        if self.transport is not None:
            self.transport.close()


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, proxy: UdpProxy) -> None:
        self.proxy = proxy
        self.paused = False

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.proxy.from_client(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.proxy.client_errors += 1

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False


class UdpProxy:
    """Listens on ``host:port`` (0: ephemeral) and relays each client's datagrams to one
    backend. ``idle_timeout`` paces the sweep; the selector's ``FlowTable`` should carry the
    same timeout, and at least ``max_sessions`` flows (else evicted sessions are closed)."""

    def __init__(self, selector: BackendSelector, *, host: str, port: int,
                 idle_timeout: float, max_sessions: int = DEFAULT_MAX_SESSIONS) -> None:
        if not idle_timeout > 0:
            raise ValueError(f"UdpProxy: idle_timeout must be > 0 seconds, got {idle_timeout}")
        self.selector = selector
        self.host = host
        self.idle_timeout = idle_timeout
        self.max_sessions = max_sessions
        self.stats = ProxyStats(protocol="udp")
        self.upstream_errors = 0
        self.client_errors = 0
        self._requested_port = port
        self._listener = _Listener(self)
        self._transport: _UdpTransport | None = None
        self._vip: tuple[str, int] = (host, port)
        self._sessions: dict[Address, _Session] = {}
        self._by_flow: dict[FlowKey, _Session] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._opening: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        endpoint, _ = await loop.create_datagram_endpoint(
            lambda: self._listener, local_addr=(self.host, self._requested_port))
        transport = cast(_UdpTransport, endpoint)
        transport.set_write_buffer_limits(high=SEND_BUFFER_LIMIT)
        self._transport = transport
        local = transport.get_extra_info("sockname")
        self._vip = (str(local[0]), int(local[1]))
        self._sweeper = loop.create_task(self._sweep())

    @property
    def port(self) -> int:
        if self._transport is None:
            raise RuntimeError("UdpProxy.port: the proxy is not started")
        return self._vip[1]

    @property
    def sessions(self) -> int:
        return len(self._sessions)

    def session_backend(self, client: Address) -> str | None:
        """The backend key of ``client``'s session, if it has one."""
        session = self._sessions.get(client)
        return session.backend.key if session is not None else None

    def buffered(self) -> int:
        total = self._transport.get_write_buffer_size() if self._transport is not None else 0
        for session in self._sessions.values():
            if session.transport is not None and not session.closed:
                total += session.transport.get_write_buffer_size()
            total += sum(len(data) for data in session.pending)
        return total

    def snapshot(self) -> StatsSnapshot:
        return self.stats.snapshot(buffered=self.buffered())

    # -- the datagram path ---------------------------------------------------------------

    def from_client(self, data: bytes, client: Address) -> None:
        session = self._sessions.get(client)
        flow = session.flow if session is not None else FlowKey(
            "udp", str(client[0]), int(client[1]), self._vip[0], self._vip[1])
        backend = self.selector.choose(flow, asyncio.get_running_loop().time())
        if backend is None:
            if session is not None:
                self._end(session, "moved")
            self.stats.drop("no-backend")
            return
        if session is not None and session.backend.key != backend.key:
            self._end(session, "moved")  # its backend left the set, or it had expired
            session = None
        if session is None:
            if len(self._sessions) >= self.max_sessions:
                self.selector.release(flow)
                self.stats.drop("session-limit")
                return
            session = self._open(client, flow, backend)
            for evicted, _ in self.selector.take_evicted():
                gone = self._by_flow.get(evicted)
                if gone is not None:
                    self._end(gone, "moved")
        session.send(data)

    def reply(self, session: _Session, data: bytes) -> None:
        transport = self._transport
        if session.closed or transport is None:
            return
        if self._listener.paused or transport.get_write_buffer_size() >= SEND_BUFFER_LIMIT:
            self.stats.drop("client-full")
            return
        transport.sendto(data, session.client)
        session.counters.datagrams_out += 1
        session.counters.bytes_out += len(data)
        # A reply is activity too: a server that streams keeps its client's session alive.
        if self.selector.touch(session.flow, asyncio.get_running_loop().time()) is None:
            self._end(session, "expired")  # idle past the timeout before the sweep saw it

    def _open(self, client: Address, flow: FlowKey, backend: L4Backend) -> _Session:
        session = _Session(self, client, flow, backend)
        self._sessions[client] = session
        self._by_flow[flow] = session
        session.counters.active += 1
        session.counters.total += 1
        self.stats.accepted += 1
        task = asyncio.get_running_loop().create_task(self._connect(session))
        self._opening.add(task)
        task.add_done_callback(self._opening.discard)
        return session

    async def _connect(self, session: _Session) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_datagram_endpoint(
                lambda: session, remote_addr=(session.backend.host, session.backend.port))
        except OSError:
            self.upstream_errors += 1
            self._end(session, "failed")

    def _end(self, session: _Session, why: EndReason) -> None:
        """Close ``session``; ``moved``: the selector already tracks the flow elsewhere (or
        dropped it); ``expired``: the selector removed it; ``failed``/``closed``: release it."""
        if session.closed:
            return
        if self._sessions.get(session.client) is session:
            del self._sessions[session.client]
        current = self._by_flow.get(session.flow) is session
        if current:
            del self._by_flow[session.flow]
        session.counters.active -= 1
        session.close()
        if why == "expired":
            self.stats.expired += 1
        elif why in ("failed", "closed") and current:
            self.selector.release(session.flow)

    async def _sweep(self) -> None:
        interval = min(max(self.idle_timeout / 4, 0.05), 1.0)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            for flow, _ in self.selector.expire(loop.time()):
                session = self._by_flow.get(flow)
                if session is not None:
                    self._end(session, "expired")

    async def close(self, grace: float = 0.0) -> None:
        """Stop: close the listening socket and every session (UDP has nothing to finish,
        so ``grace`` is accepted for symmetry with ``TcpProxy.close`` and unused)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for task in list(self._opening):
            task.cancel()
        for session in list(self._sessions.values()):
            self._end(session, "closed")
        if self._transport is not None:
            self._transport.close()
            self._transport = None

