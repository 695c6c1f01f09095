"""TcpProxy and UdpProxy over real loopback sockets, against echo backends written here.

Every scenario runs once on asyncio's loop and once on uvloop (the CLI runtime's): they differ
in when reading starts and how much one read returns. Backends are asyncio servers on
127.0.0.1 ephemeral ports, each answering with its own name first, so a reply tells which
backend served it. Nothing asserts on timing: waits are bounded polls (``until``) and every
scenario runs under ``SCENARIO_TIMEOUT``; loads are bounded in bytes and datagrams.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Self

import pytest
import uvloop

from inferlane.l4.algorithms import build_algorithm
from inferlane.l4.conntrack import FlowTable
from inferlane.l4.flows import L4Backend
from inferlane.l4.proxy_protocol import ProxyProtocolVersion
from inferlane.l4.proxy_tcp import MAX_BUFFERED, TcpProxy
from inferlane.l4.proxy_udp import UdpProxy
from inferlane.l4.selector import BackendSelector

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"
GENEROUS = 10.0  # seconds: one reply or one poll, on a loaded machine
SCENARIO_TIMEOUT = 60.0
POLL_STEP = 0.02
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
Scenario = Coroutine[Any, Any, None]
Runner = Callable[[Scenario], None]


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Runner:
    def runner(scenario: Scenario) -> None:
        async def bounded() -> None:
            async with asyncio.timeout(SCENARIO_TIMEOUT):
                await scenario

        with asyncio.Runner(loop_factory=LOOPS[request.param]) as loop_runner:
            loop_runner.run(bounded())

    return runner


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(int(GENEROUS / POLL_STEP)):
        if condition():
            return
        await asyncio.sleep(POLL_STEP)
    raise AssertionError(f"gave up waiting for {what}")


def selector(*backends: L4Backend, idle_timeout: float | None = None) -> BackendSelector:
    return BackendSelector(backends, build_algorithm("round-robin"),
                           FlowTable(idle_timeout=idle_timeout))


def refused_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# -- TCP backends and clients --------------------------------------------------------------------


class TcpBackend:
    """An asyncio server; ``serve`` handles one connection. Tracks its handlers to close them."""

    def __init__(self, name: str, *, rcvbuf: int | None = None) -> None:
        self.name = name
        self.rcvbuf = rcvbuf
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def backend(self) -> L4Backend:
        assert self._server is not None
        return L4Backend(HOST, int(self._server.sockets[0].getsockname()[1]))

    async def __aenter__(self) -> Self:
        sock = socket.socket()
        if self.rcvbuf is not None:  # small and fixed: the kernel cannot absorb a flood for us
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.bind((HOST, 0))
        self._server = await asyncio.start_server(self._handle, sock=sock)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        self.accepted += 1
        try:
            await self.serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class LineEcho(TcpBackend):
    """Reads a PROXY header if told to, answers each line with ``name:line``; at the
    client's EOF answers ``name:eof`` and then half-closes too."""

    def __init__(self, name: str, *, header: ProxyProtocolVersion | None = None) -> None:
        super().__init__(name)
        self.header = header
        self.headers: list[bytes] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.header == "v1":
            self.headers.append(await reader.readline())
        elif self.header == "v2":
            fixed = await reader.readexactly(16)
            self.headers.append(fixed + await reader.readexactly(int.from_bytes(fixed[14:], "big")))
        prefix = self.name.encode() + b":"
        while line := await reader.readline():
            writer.write(prefix + line)
            await writer.drain()
        writer.write(prefix + b"eof\n")
        writer.write_eof()
        await writer.drain()


class SlowSink(TcpBackend):
    """Reads ``chunk`` bytes at a time with a pause between reads, calling ``on_read`` after
    each; at EOF answers the byte count."""

    def __init__(self, name: str, on_read: Callable[[], None], *, chunk: int = 64 * 1024,
                 pause: float = 0.001) -> None:
        super().__init__(name, rcvbuf=chunk)
        self.on_read, self.chunk, self.pause = on_read, chunk, pause

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        total = 0
        while data := await reader.read(self.chunk):
            total += len(data)
            self.on_read()
            await asyncio.sleep(self.pause)
        writer.write(f"{total}\n".encode())
        writer.write_eof()
        await writer.drain()


class LineClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> LineClient:
        return cls(*await asyncio.open_connection(HOST, port))

    async def ask(self, line: str) -> str:
        self.writer.write(f"{line}\n".encode())
        await self.writer.drain()
        return await self.read_line()

    async def read_line(self) -> str:
        async with asyncio.timeout(GENEROUS):
            return (await self.reader.readline()).decode()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def tcp_proxy(chooser: BackendSelector, **options: Any) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(chooser, host=HOST, port=0, **options)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close(0.0)


@contextlib.asynccontextmanager
async def line_echoes(*names: str) -> AsyncIterator[list[LineEcho]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(LineEcho(name)) for name in names]


# -- TCP -------------------------------------------------------------------------------------------


def test_tcp_round_trip_and_counters(run: Runner) -> None:
    async def scenario() -> None:
        async with line_echoes("a") as (a,), tcp_proxy(selector(a.backend)) as proxy:
            client = await LineClient.connect(proxy.port)
            assert await client.ask("hello") == "a:hello\n"
            row = proxy.stats.backend(a.backend.key)
            assert (row.active, row.total, row.bytes_in, row.bytes_out) == (1, 1, 6, 8)
            await client.close()
            await until(lambda: proxy.connections == 0, "the connection to end")
            assert (row.active, proxy.stats.accepted, len(proxy.selector)) == (0, 1, 0)
            assert proxy.snapshot()["backends"][a.backend.key]["total"] == 1

    run(scenario())


def test_tcp_connections_spread_by_the_algorithm(run: Runner) -> None:
    async def scenario() -> None:
        async with line_echoes("a", "b", "c") as echoes, \
                tcp_proxy(selector(*(echo.backend for echo in echoes))) as proxy:
            clients = [await LineClient.connect(proxy.port) for _ in range(6)]
            answers = [await client.ask("hi") for client in clients]
            assert answers == ["a:hi\n", "b:hi\n", "c:hi\n"] * 2
            assert [proxy.stats.backend(echo.backend.key).active for echo in echoes] == [2] * 3
            for client in clients:
                await client.close()

    run(scenario())


def test_tcp_open_connection_keeps_its_backend_across_updates_and_drain(run: Runner) -> None:
    async def scenario() -> None:
        async with line_echoes("a", "b", "c") as (a, b, c), \
                tcp_proxy(selector(a.backend, b.backend)) as proxy:
            held = await LineClient.connect(proxy.port)
            assert await held.ask("1") == "a:1\n"
            chooser = proxy.selector
            chooser.update([L4Backend(HOST, a.backend.port, 5), c.backend])  # b out, a heavier
            assert await held.ask("2") == "a:2\n"
            chooser.drain(a.backend.key)
            assert await held.ask("3") == "a:3\n"
            fresh = await LineClient.connect(proxy.port)
            assert await fresh.ask("4") == "c:4\n"  # the drained one gets no new connection
            chooser.update([c.backend])  # a removed entirely: established TCP goes on
            assert await held.ask("5") == "a:5\n"
            assert (a.accepted, b.accepted, c.accepted) == (1, 0, 1)
            for client in (held, fresh):
                await client.close()

    run(scenario())


@pytest.mark.parametrize("how", ["drain", "weight-0", "unroutable"])
def test_tcp_new_connections_avoid_an_excluded_backend(run: Runner, how: str) -> None:
    async def scenario() -> None:
        async with line_echoes("a", "b") as (a, b), \
                tcp_proxy(selector(a.backend, b.backend)) as proxy:
            if how == "drain":
                proxy.selector.drain(a.backend.key)
            elif how == "weight-0":
                proxy.selector.update([L4Backend(HOST, a.backend.port, 0), b.backend])
            else:
                proxy.selector.set_routable(lambda key: key != a.backend.key)
            clients = [await LineClient.connect(proxy.port) for _ in range(4)]
            assert [await client.ask("x") for client in clients] == ["b:x\n"] * 4
            for client in clients:
                await client.close()

    run(scenario())


def test_tcp_half_close_keeps_the_other_direction_open(run: Runner) -> None:
    lines = 20_000  # ~0.3 MB each way: more than one socket buffer, bounded

    async def scenario() -> None:
        async with line_echoes("a") as (a,), tcp_proxy(selector(a.backend)) as proxy:
            client = await LineClient.connect(proxy.port)

            async def send() -> None:
                for number in range(lines):
                    client.writer.write(f"line {number}\n".encode())
                    await client.writer.drain()
                client.writer.write_eof()  # our side is done; answers must still come

            sender = asyncio.create_task(send())
            received = [await client.read_line() for _ in range(lines + 1)]
            await sender
            assert received[:3] == ["a:line 0\n", "a:line 1\n", "a:line 2\n"]
            assert received[-2:] == [f"a:line {lines - 1}\n", "a:eof\n"]
            assert len(received) == lines + 1
            assert await client.read_line() == ""  # then the backend's EOF, forwarded
            await client.close()
            await until(lambda: proxy.connections == 0, "both directions to end")

    run(scenario())


def test_tcp_backpressure_bounds_what_the_proxy_buffers(run: Runner) -> None:
    chunk, chunks = 64 * 1024, 256  # 16 MiB towards a backend that reads 64 KiB at a time

    async def scenario() -> None:
        samples: list[int] = []
        proxies: list[TcpProxy] = []
        async with SlowSink("sink", lambda: samples.append(proxies[0].buffered())) as sink, \
                tcp_proxy(selector(sink.backend)) as proxy:
            proxies.append(proxy)
            client = await LineClient.connect(proxy.port)
            payload = b"\x5a" * chunk
            for _ in range(chunks):
                client.writer.write(payload)
                await client.writer.drain()
            client.writer.write_eof()
            assert await client.read_line() == f"{chunk * chunks}\n"
            await client.close()
        assert samples
        assert max(samples) <= MAX_BUFFERED
        assert proxy.stats.peak_buffered <= MAX_BUFFERED
        # Without backpressure the proxy would have held most of the 16 MiB at some point.
        assert chunk * chunks // 8 > MAX_BUFFERED

    run(scenario())


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_tcp_proxy_protocol_header_comes_first(run: Runner, version: ProxyProtocolVersion) -> None:
    async def scenario() -> None:
        async with LineEcho("a", header=version) as a, \
                tcp_proxy(selector(a.backend), proxy_protocol=version) as proxy:
            client = await LineClient.connect(proxy.port)
            assert await client.ask("hi") == "a:hi\n"
            client_port = int(client.writer.get_extra_info("sockname")[1])
            if version == "v1":
                expected = f"PROXY TCP4 {HOST} {HOST} {client_port} {proxy.port}\r\n".encode()
            else:
                expected = (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11, 0, 12])
                            + socket.inet_aton(HOST) * 2 + client_port.to_bytes(2, "big")
                            + proxy.port.to_bytes(2, "big"))
            assert a.headers == [expected]
            await client.close()

    run(scenario())


def test_tcp_refused_backend_is_skipped(run: Runner) -> None:
    async def scenario() -> None:
        dead = L4Backend(HOST, refused_port())
        async with line_echoes("a") as (a,), tcp_proxy(selector(dead, a.backend)) as proxy:
            client = await LineClient.connect(proxy.port)  # round robin starts at the dead one
            assert await client.ask("hi") == "a:hi\n"
            assert proxy.stats.backend(dead.key).connect_failures == 1
            await client.close()
        async with tcp_proxy(selector(dead)) as proxy:
            client = await LineClient.connect(proxy.port)
            with pytest.raises(ConnectionResetError):  # no backend: a reset, not a clean EOF
                await client.read_line()
            await client.close()
            assert proxy.stats.rejected == 1

    run(scenario())


def test_tcp_close_stops_accepting_and_lets_open_connections_finish(run: Runner) -> None:
    async def scenario() -> None:
        async with line_echoes("a") as (a,):
            proxy = TcpProxy(selector(a.backend), host=HOST, port=0)
            await proxy.start()
            port = proxy.port
            client = await LineClient.connect(port)
            assert await client.ask("1") == "a:1\n"
            closing = asyncio.create_task(proxy.close(GENEROUS))
            await asyncio.sleep(0)  # the task runs up to its wait: the listener is closed
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection(HOST, port)
            assert await client.ask("2") == "a:2\n"
            assert not closing.done()
            await client.close()
            await closing
            assert (proxy.connections, proxy.stats.active) == (0, 0)

    run(scenario())


# -- UDP -------------------------------------------------------------------------------------------


class UdpEcho(asyncio.DatagramProtocol):
    """Answers each datagram with ``name:data``; remembers the source addresses it saw."""

    def __init__(self, name: str) -> None:
        self.name = name.encode()
        self.sources: list[tuple[str, int]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sources.append(addr)
        assert self.transport is not None
        self.transport.sendto(self.name + b":" + data, addr)


class UdpClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.replies.put_nowait(data)

    async def ask(self, data: bytes) -> bytes:
        assert self.transport is not None
        self.transport.sendto(data)
        async with asyncio.timeout(GENEROUS):
            return await self.replies.get()


@contextlib.asynccontextmanager
async def udp_world(names: tuple[str, ...], clients: int, idle_timeout: float = 30.0,
                    **options: Any) -> AsyncIterator[tuple[UdpProxy, list[UdpEcho],
                                                           list[UdpClient]]]:
    loop = asyncio.get_running_loop()
    transports: list[asyncio.BaseTransport] = []
    echoes: list[UdpEcho] = []
    backends: list[L4Backend] = []
    try:
        for name in names:
            transport, echo = await loop.create_datagram_endpoint(
                lambda name=name: UdpEcho(name), local_addr=(HOST, 0))  # type: ignore[misc]
            transports.append(transport)
            echoes.append(echo)
            backends.append(L4Backend(HOST, int(transport.get_extra_info("sockname")[1])))
        proxy = UdpProxy(selector(*backends, idle_timeout=idle_timeout), host=HOST, port=0,
                         idle_timeout=idle_timeout, **options)
        await proxy.start()
        try:
            users: list[UdpClient] = []
            for _ in range(clients):
                client_transport, user = await loop.create_datagram_endpoint(
                    UdpClient, remote_addr=(HOST, proxy.port))
                transports.append(client_transport)
                users.append(user)
            yield proxy, echoes, users
        finally:
            await proxy.close()
    finally:
        for opened in transports:
            opened.close()


def test_udp_round_trip_and_a_client_stays_on_one_backend(run: Runner) -> None:
    async def scenario() -> None:
        async with udp_world(("a", "b"), clients=2) as (proxy, (a, _), (first, second)):
            assert [await first.ask(b"%d" % n) for n in range(5)] == [
                b"a:%d" % n for n in range(5)]
            assert await second.ask(b"x") == b"b:x"
            assert await first.ask(b"y") == b"a:y"
            assert (proxy.sessions, proxy.stats.accepted) == (2, 2)
            assert len(set(a.sources)) == 1  # one upstream socket for the session
            row = proxy.stats.backend(proxy.selector.backends[1].key)
            assert (row.datagrams_in, row.datagrams_out, row.bytes_out) == (1, 1, 3)

    run(scenario())


def test_udp_session_expires_after_idle_timeout_then_a_new_one_starts(run: Runner) -> None:
    async def scenario() -> None:
        async with udp_world(("a",), clients=1, idle_timeout=0.3) as (proxy, (a,), (client,)):
            assert await client.ask(b"1") == b"a:1"
            assert proxy.sessions == 1
            await until(lambda: proxy.sessions == 0, "the idle session to expire")
            assert (proxy.stats.expired, len(proxy.selector)) == (1, 0)
            assert await client.ask(b"2") == b"a:2"
            assert (proxy.sessions, proxy.stats.accepted) == (1, 2)
            assert a.sources[0] != a.sources[1]  # a new upstream socket

    run(scenario())


def test_udp_drain_keeps_a_session_and_removal_moves_it(run: Runner) -> None:
    async def scenario() -> None:
        async with udp_world(("a", "b"), clients=2) as (proxy, _, (held, fresh)):
            a_backend, b_backend = proxy.selector.backends
            assert await held.ask(b"1") == b"a:1"
            proxy.selector.drain(a_backend.key)
            assert await held.ask(b"2") == b"a:2"
            assert await fresh.ask(b"3") == b"b:3"
            proxy.selector.update([b_backend])
            assert await held.ask(b"4") == b"b:4"
            assert proxy.sessions == 2
            assert proxy.stats.backend(a_backend.key).active == 0

    run(scenario())


def test_udp_session_limit_drops_new_clients(run: Runner) -> None:
    async def scenario() -> None:
        async with udp_world(("a",), clients=2, max_sessions=1) as (proxy, _, (first, second)):
            assert await first.ask(b"1") == b"a:1"
            assert second.transport is not None
            second.transport.sendto(b"2")
            await until(lambda: proxy.stats.dropped.get("session-limit") == 1, "a drop")
            assert (proxy.sessions, len(proxy.selector)) == (1, 1)

    run(scenario())
