"""The L4 benchmark's traffic: a backend server and a load agent, run as their own processes.

    python benchmarks/l4_load.py backend --host 127.0.0.1 --port 9000 [--port 9001 ...]
    python benchmarks/l4_load.py agent            # reads JSON commands on stdin, answers on stdout

``l4.py`` starts both, pinned with taskset and, for the veth paths, inside a network namespace
(``ip netns exec``): sockets then live where the process lives, so the same code loads a
loopback address and a VIP in a namespace. Standard library and uvloop only.

The backend's protocol: the first byte of a connection picks its mode.

- ``S`` sink: discard everything until EOF, then answer the byte count (8 bytes, big endian,
  the ``S`` included) and close; the sender's clock stops when that count arrives, so a
  throughput run times delivery, not buffering.
- ``E`` echo: echo every byte back until EOF (round trips on one persistent connection).
- ``C`` one shot: read 64 bytes, answer 64 bytes, close. The server closes first, so its
  accepted socket (not the client's ephemeral port) holds TIME_WAIT, and short-connection runs
  never run out of client ports.

Agent commands (one JSON object per line; one JSON answer per line):

- ``{"op": "bulk", "host", "port", "connections", "seconds", "max_bytes"}``: that many
  connections, connected first, then each sends 256 KiB writes until its share of
  ``max_bytes`` or the deadline, shuts down its write side and reads the sink's count;
  answers delivered bytes and seconds (first write to last count).
- ``{"op": "conn", "host", "port", "concurrency", "count", "seconds"}``: short connections
  (connect, 64-byte request, 64-byte reply, close) with ``concurrency`` in flight, until
  ``count`` are done or the deadline; answers completed, errors, seconds.
- ``{"op": "rr", "host", "port", "count", "seconds"}``: 64-byte round trips on one
  connection; answers every round trip time in microseconds.
- ``{"op": "probe", "host", "port", "seconds"}``: one echo through the target, retried until
  it works or time is up (readiness).
- ``{"op": "quit"}``.

Every loop is bounded by a count and by time; every socket has a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import selectors
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

MESSAGE_SIZE = 64
CHUNK = 256 * 1024
IO_TIMEOUT = 15.0  # seconds any single socket call may block
SINK_BUFFER = bytearray(1024 * 1024)  # sink reads land here and are dropped (one thread)
MODES = (b"S"[0], b"E"[0], b"C"[0])


# --- the backend --------------------------------------------------------------------------------


class _BackendConnection(asyncio.BufferedProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.mode = 0
        self.received = 0
        self.small = bytearray(64 * 1024)
        self.pending = 0  # one-shot mode: bytes of the request read so far

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.mode == MODES[0]:
            return memoryview(SINK_BUFFER)
        return memoryview(self.small)

    def buffer_updated(self, nbytes: int) -> None:
        assert self.transport is not None
        buffer = SINK_BUFFER if self.mode == MODES[0] else self.small
        if self.mode == 0:
            self.mode = buffer[0]
            if self.mode not in MODES:
                self.transport.abort()
                return
            if self.mode == MODES[0]:  # the first read went to ``small``
                self.received += nbytes
                return
        self.received += nbytes
        if self.mode == MODES[1]:
            self.transport.write(bytes(buffer[:nbytes]))
        elif self.mode == MODES[2]:
            self.pending += nbytes
            if self.pending >= MESSAGE_SIZE:
                self.transport.write(bytes(MESSAGE_SIZE))
                self.transport.close()

    def eof_received(self) -> bool:
        assert self.transport is not None
        if self.mode == MODES[0]:
            self.transport.write(self.received.to_bytes(8, "big"))
        self.transport.close()
        return True


async def serve_backend(host: str, ports: list[int]) -> None:
    """Serve every port until killed (``l4.py`` stops the process by its PID)."""
    loop = asyncio.get_running_loop()
    servers = [await loop.create_server(_BackendConnection, host, port, backlog=4096,
                                        reuse_address=True) for port in ports]
    print(f"backend listening on {host} ports {ports}", flush=True)
    await asyncio.gather(*(server.serve_forever() for server in servers))


# --- the agent: throughput ------------------------------------------------------------------------


def _connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=IO_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def bulk(host: str, port: int, connections: int, seconds: float, max_bytes: int) -> dict[str, Any]:
    """See the module docstring. One thread, non-blocking sockets and epoll: the connections are
    opened before the clock starts, each then sends while writable."""
    sockets = [_connect(host, port) for _ in range(connections)]
    share = max(CHUNK, max_bytes // connections)
    chunk = memoryview(bytearray(CHUNK))
    chunk[0:1] = b"S"
    sent = [0] * connections
    answers = [b""] * connections
    errors: list[str] = []
    poller = selectors.DefaultSelector()
    for index, sock in enumerate(sockets):
        sock.setblocking(False)
        poller.register(sock, selectors.EVENT_WRITE, index)
    began = time.perf_counter()
    deadline = began + seconds
    hard_deadline = deadline + 4 * IO_TIMEOUT  # draining must end too
    open_count = connections
    try:
        while open_count and time.perf_counter() < hard_deadline:
            sending = time.perf_counter() < deadline
            for key, events in poller.select(timeout=1.0):
                index, connection = key.data, key.fileobj
                assert isinstance(connection, socket.socket)
                try:
                    if events & selectors.EVENT_WRITE:
                        if sending and sent[index] < share:
                            # The first write starts with the sink's mode byte, the rest is zeros.
                            sent[index] += connection.send(chunk if sent[index] == 0 else chunk[1:])
                            continue
                        connection.shutdown(socket.SHUT_WR)
                        poller.modify(connection, selectors.EVENT_READ, index)
                        continue
                    data = connection.recv(8 - len(answers[index]))
                    if not data:
                        raise ConnectionError(f"sink closed after {len(answers[index])} bytes "
                                              "of its count")
                    answers[index] += data
                    if len(answers[index]) < 8:
                        continue
                    counted = int.from_bytes(answers[index], "big")
                    if counted != sent[index]:
                        errors.append(f"sent {sent[index]}, sink counted {counted}")
                except BlockingIOError:  # readiness was spurious: wait for the next event
                    continue
                except OSError as error:
                    errors.append(f"{type(error).__name__}: {error}")
                poller.unregister(connection)
                connection.close()
                open_count -= 1
            if not sending:  # past the deadline: stop writing on every connection
                for key in list(poller.get_map().values()):
                    if key.events & selectors.EVENT_WRITE:
                        connection = key.fileobj
                        assert isinstance(connection, socket.socket)
                        with contextlib.suppress(OSError):  # a reset shows on the read
                            connection.shutdown(socket.SHUT_WR)
                        poller.modify(connection, selectors.EVENT_READ, key.data)
    finally:
        elapsed = time.perf_counter() - began
        for key in list(poller.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        poller.close()
    if open_count:
        errors.append(f"{open_count} connections still open after the drain time")
    delivered = sum(int.from_bytes(answer, "big") for answer in answers if len(answer) == 8)
    return {"bytes": delivered, "seconds": elapsed, "errors": len(errors),
            "error_detail": errors[:3]}


# --- the agent: short connections ---------------------------------------------------------------


class _OneShot(asyncio.Protocol):
    def __init__(self, done: asyncio.Future[bool]) -> None:
        self.done = done
        self.received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(b"C" + bytes(MESSAGE_SIZE - 1))  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.received += len(data)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(exc is None and self.received == MESSAGE_SIZE)


async def _connections(host: str, port: int, concurrency: int, count: int,
                       seconds: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    completed = 0
    errors: dict[str, int] = {}
    started = 0
    deadline = loop.time() + seconds

    async def worker() -> None:
        nonlocal completed, started
        while started < count and loop.time() < deadline:
            started += 1
            done: asyncio.Future[bool] = loop.create_future()
            transport: asyncio.BaseTransport | None = None
            try:
                async with asyncio.timeout(IO_TIMEOUT):
                    transport, _ = await loop.create_connection(
                        lambda done=done: _OneShot(done), host, port)
                    ok = await done
            except (OSError, TimeoutError) as error:
                key = type(error).__name__
                errors[key] = errors.get(key, 0) + 1
                if transport is not None:
                    transport.abort()  # type: ignore[attr-defined]
                continue
            if ok:
                completed += 1
            else:
                errors["short reply"] = errors.get("short reply", 0) + 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"completed": completed, "seconds": time.perf_counter() - began,
            "errors": sum(errors.values()), "error_detail": errors}


def connections(host: str, port: int, concurrency: int, count: int,
                seconds: float) -> dict[str, Any]:
    return _run(lambda: _connections(host, port, concurrency, count, seconds))


def _run(factory: Callable[[], Any]) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a project dependency on Linux
        return asyncio.run(factory())
    return uvloop.run(factory())


# --- the agent: round trips ---------------------------------------------------------------------


def round_trips(host: str, port: int, count: int, seconds: float) -> dict[str, Any]:
    """``count`` 64-byte round trips (after 50 unmeasured ones), or as many as fit."""
    message = b"E" + bytes(MESSAGE_SIZE - 1)
    times: list[float] = []
    with _connect(host, port) as sock:
        deadline = time.perf_counter() + seconds
        for index in range(count + 50):
            if time.perf_counter() > deadline:
                break
            began = time.perf_counter_ns()
            sock.sendall(message)
            received = 0
            while received < MESSAGE_SIZE:
                data = sock.recv(MESSAGE_SIZE - received)
                if not data:
                    raise ConnectionError("echo closed the connection")
                received += len(data)
            if index >= 50:
                times.append((time.perf_counter_ns() - began) / 1000)
    return {"rtt_us": times}


def probe(host: str, port: int, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    last = "no attempt"
    while time.monotonic() < deadline:
        try:
            round_trips(host, port, 1, 2.0)
            return {"ok": True}
        except OSError as error:
            last = f"{type(error).__name__}: {error}"
        time.sleep(0.1)
    return {"ok": False, "error": last}


def agent() -> None:
    """Answer commands from stdin until ``quit`` or EOF."""
    for line in sys.stdin:
        command = json.loads(line)
        op = command.pop("op")
        if op == "quit":
            break
        handler = {"bulk": bulk, "conn": connections, "rr": round_trips, "probe": probe}[op]
        try:
            answer = handler(**command)
        except OSError as error:
            answer = {"failed": f"{type(error).__name__}: {error}"}
        print(json.dumps(answer), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="role", required=True)
    backend = sub.add_parser("backend")
    backend.add_argument("--host", default="127.0.0.1")
    backend.add_argument("--port", type=int, action="append", required=True)
    sub.add_parser("agent")
    args = parser.parse_args()
    if args.role == "backend":
        _run(lambda: serve_backend(args.host, args.port))
    else:
        agent()


if __name__ == "__main__":
    main()
