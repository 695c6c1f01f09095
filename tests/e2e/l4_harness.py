"""Echo backends, clients, config builders and ``/admin/l4`` reads for the L4 end-to-end tests
(``test_l4.py``): the gateway's user-space TCP/UDP load balancing over loopback.

- ``EchoBackend``: one echo server process serving TCP and UDP on the same port, below the
  kernel's ephemeral range (so a killed backend's port is not reused as someone's source port
  meanwhile). TCP: it greets every connection with ``NAME:`` and then echoes every byte; after
  the client's FIN it echoes what is left, sends its own FIN and closes. With
  ``proxy_protocol=True`` it first reads a PROXY protocol header (v1 or v2) and greets with
  ``NAME:VERSION SRC_IP:SRC_PORT>DST_IP:DST_PORT\\n``. UDP: every datagram comes back as
  ``NAME:`` + the datagram.
- ``tcp_exchange`` (one connection: send, half-close, read to EOF), ``TcpSession`` (a
  connection held open across reloads and drains) and ``UdpClient`` (one source address, so
  one UDP flow): each tells which backend answered.
- ``L4Config``: the Gateway (an HTTP listener for the admin pages plus TCP/UDP listeners),
  one TCPRoute/UDPRoute per L4 listener, the BackendSets and any extra documents; tests change
  it and ``reload`` it into a running gateway.
- ``listener_status`` / ``wait_listener``: ``GET /admin/l4`` read per listener, and bounded polls.

Every socket operation has a timeout; every wait is a bounded poll.
"""

from __future__ import annotations

import inspect
import itertools
import json
import random
import re
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Literal

from .conftest import HOST, GatewayProcess, Process, http_get, write_config

NAMESPACE = "default"
GATEWAY = "gw"
IO_TIMEOUT = 10.0  # seconds for one socket operation; generous for a loaded 2-core machine
RELOAD_TIMEOUT = 20.0
SPARE_PORTS = (20000, 32768)  # below Linux's default ip_local_port_range
MAX_REPLY = 16 * 1024 * 1024  # a reply longer than this is a bug, not something to wait for
UDP_ATTEMPTS = 3  # a datagram lost on loopback is unlikely, not impossible: ask again
ALGORITHM = "inferlane.dev/l4-algorithm"
TABLE_SIZE = "inferlane.dev/maglev-table-size"
PROXY_PROTOCOL = "inferlane.dev/proxy-protocol"
UDP_IDLE_TIMEOUT = "inferlane.dev/udp-idle-timeout"
DATAPLANE = "inferlane.dev/dataplane"


# -- the echo backend -----------------------------------------------------------------------------


def echo_server() -> None:
    """The echo backend's program: ``python -c`` runs this function's source (``ECHO_SOURCE``),
    so the subprocess imports nothing of the test suite. Arguments: ``NAME [--proxy-protocol]``.
    """
    import argparse
    import asyncio
    import ipaddress
    import random
    import socket
    import struct

    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--proxy-protocol", action="store_true")
    args = parser.parse_args()
    greeting = f"{args.name}:".encode()
    signature = b"\r\n\r\n\x00\r\nQUIT\n"

    def bind() -> tuple[socket.socket, socket.socket]:
        chooser = random.Random()
        for _ in range(500):
            port = chooser.randrange(20000, 32768)
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                tcp.bind((args.host, port))
                udp.bind((args.host, port))
            except OSError:
                tcp.close()
                udp.close()
                continue
            tcp.listen(128)
            return tcp, udp
        raise SystemExit(f"echo {args.name}: no port free for both TCP and UDP")

    async def proxy_header(reader: asyncio.StreamReader) -> bytes:
        """``v1 SRC>DST`` or ``v2 SRC>DST`` from the header; anything else says what came."""
        fixed = await reader.readexactly(16)
        if fixed.startswith(b"PROXY "):
            line = (fixed + await reader.readuntil(b"\r\n")).decode("ascii").split()
            if line[1] != "TCP4" or len(line) != 6:
                return f"unexpected-v1-header {line}".encode()
            return f"v1 {line[2]}:{line[4]}>{line[3]}:{line[5]}".encode()
        if fixed[:12] != signature:
            return b"no-proxy-header " + fixed
        command, family, length = struct.unpack("!BBH", fixed[12:])
        body = await reader.readexactly(length)
        if command != 0x21 or family != 0x11 or length < 12:
            return f"unexpected-v2-header {command:#x} {family:#x} {length}".encode()
        source, destination = ipaddress.IPv4Address(body[:4]), ipaddress.IPv4Address(body[4:8])
        source_port, destination_port = struct.unpack("!HH", body[8:12])
        return f"v2 {source}:{source_port}>{destination}:{destination_port}".encode()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if args.proxy_protocol:
                writer.write(greeting + await proxy_header(reader) + b"\n")
            else:
                writer.write(greeting)
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.write_eof()
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # health probes connect and leave; clients may reset
        finally:
            writer.close()

    class Datagrams(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.transport.sendto(greeting + data, addr)  # type: ignore[attr-defined]

    async def main() -> None:
        tcp, udp = bind()
        loop = asyncio.get_running_loop()
        server = await asyncio.start_server(serve, sock=tcp)
        await loop.create_datagram_endpoint(Datagrams, sock=udp)
        host, port = tcp.getsockname()[:2]
        print(f"echo {args.name} listening on {host}:{port}", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


ECHO_SOURCE = ("from __future__ import annotations\n" + inspect.getsource(echo_server)
               + "\necho_server()\n")
_LISTENING = re.compile(r"^echo (\S+) listening on (\S+):(\d+)$", re.M)


class EchoBackend(Process):
    """One echo server (TCP and UDP on ``port``); ``address`` is its BackendSet endpoint."""

    def __init__(self, log_dir: Path, name: str, *, proxy_protocol: bool = False) -> None:
        argv = [sys.executable, "-c", ECHO_SOURCE, name]
        if proxy_protocol:
            argv.append("--proxy-protocol")
        super().__init__(f"echo-{name}", argv, log_dir)
        self.backend_name = name
        self.port = 0

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self) -> None:
        super().start()
        self.port = self.wait_until(self._listening, f"echo {self.backend_name} to listen")

    def _listening(self) -> int | None:
        for name, _, port in _LISTENING.findall(self.stdout()):
            if name == self.backend_name:
                return int(port)
        return None


def spare_port(taken: Sequence[int] = (), attempts: int = 500) -> int:
    """A port below the ephemeral range, free for both TCP and UDP a moment ago."""
    chooser = random.Random()
    for _ in range(attempts):
        port = chooser.randrange(*SPARE_PORTS)
        if port in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                tcp.bind((HOST, port))
                udp.bind((HOST, port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no port free for TCP and UDP in {SPARE_PORTS} after {attempts} tries")


# -- clients --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    backend: str  # the name the echo answered with
    data: bytes  # what followed ``NAME:``
    client_port: int  # the client's source port (the flow's identity with the listener port)


def split_name(raw: bytes) -> tuple[str, bytes]:
    name, colon, rest = raw.partition(b":")
    assert colon, f"the reply does not start with a backend name: {raw[:80]!r}"
    return name.decode(), rest


def _read_to_eof(sock: socket.socket) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := sock.recv(256 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        assert size <= MAX_REPLY, f"reply longer than {MAX_REPLY} bytes"
    return b"".join(chunks)


def tcp_exchange(port: int, payload: bytes) -> Reply:
    """One connection to ``HOST:port``: send ``payload``, shut the write side, read to EOF.

    The payload is sent from a thread while this one reads, so a payload larger than the
    socket buffers cannot deadlock against our own unread echo. Raises OSError when the
    connection fails (refused, reset, timed out).
    """
    with socket.create_connection((HOST, port), timeout=IO_TIMEOUT) as sock:
        client_port = int(sock.getsockname()[1])
        failures: list[BaseException] = []

        def send() -> None:
            try:
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)
            except OSError as error:
                failures.append(error)

        sender = threading.Thread(target=send, name=f"send-{client_port}", daemon=True)
        sender.start()
        try:
            raw = _read_to_eof(sock)
        finally:
            sender.join(IO_TIMEOUT)
        if failures:
            raise failures[0]
        assert not sender.is_alive(), "the sender thread is stuck"
    backend, data = split_name(raw)
    return Reply(backend, data, client_port)


class TcpSession:
    """A connection held open: ``backend`` is the echo that greeted it, ``ask`` round-trips."""

    def __init__(self, port: int, *, greeting_end: bytes = b":") -> None:
        self.sock = socket.create_connection((HOST, port), timeout=IO_TIMEOUT)
        self.client_port = int(self.sock.getsockname()[1])
        greeting = b""
        while greeting_end not in greeting:
            chunk = self.sock.recv(4096)
            assert chunk, f"the connection closed before a greeting: {greeting!r}"
            greeting += chunk
            assert len(greeting) < 4096, f"no greeting end in {greeting!r}"
        self.greeting = greeting
        self.backend = split_name(greeting)[0]

    def ask(self, data: bytes) -> bytes:
        """Send ``data`` and read as many bytes back (the echo)."""
        self.sock.sendall(data)
        echoed = b""
        while len(echoed) < len(data):
            chunk = self.sock.recv(len(data) - len(echoed))
            assert chunk, f"EOF after {len(echoed)} of {len(data)} echoed bytes"
            echoed += chunk
        return echoed

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> TcpSession:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


class UdpClient:
    """One UDP socket, so one flow (its source address) per listener it talks to.

    Its port was never used by an earlier client of this process: the gateway tracks a UDP
    flow until it idles out, so a reused port would continue an old flow, not start a new one.
    """

    _nonces: ClassVar[Iterator[int]] = itertools.count()
    _used_ports: ClassVar[set[int]] = set()

    def __init__(self) -> None:
        for _ in range(100):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind((HOST, 0))
            self.port = int(self.sock.getsockname()[1])
            if self.port not in self._used_ports:
                break
            self.sock.close()
        else:
            raise RuntimeError("no UDP source port unused by earlier clients in 100 binds")
        self._used_ports.add(self.port)
        self.sock.settimeout(IO_TIMEOUT / UDP_ATTEMPTS)

    def ask(self, port: int, data: bytes = b"ping") -> str:
        """Send ``data`` (tagged, so a late reply to a lost attempt is not mistaken for this
        one's) to ``HOST:port``; the name of the backend that echoed it."""
        message = f"{next(self._nonces)}|".encode() + data
        for _ in range(UDP_ATTEMPTS):
            self.sock.sendto(message, (HOST, port))
            try:
                while True:
                    raw, source = self.sock.recvfrom(65536)
                    backend, echoed = split_name(raw)
                    if echoed == message:
                        assert source == (HOST, port), f"reply from {source}, not the listener"
                        return backend
            except TimeoutError:
                continue
        raise AssertionError(f"no UDP echo through port {port} in {UDP_ATTEMPTS} attempts")

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> UdpClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


# -- config ---------------------------------------------------------------------------------------

Transport = Literal["TCP", "UDP"]


@dataclass(slots=True)
class ListenerSpec:
    """One TCP or UDP Gateway listener and its route (named after the listener)."""

    name: str
    protocol: Transport
    port: int
    backend_set: str
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class L4Config:
    """What the tests change; ``documents`` renders the whole config file."""

    listeners: dict[str, ListenerSpec] = field(default_factory=dict)
    backend_sets: dict[str, dict[str, int]] = field(default_factory=dict)  # address -> weight
    extra: list[dict[str, Any]] = field(default_factory=list)

    def listen(self, name: str, protocol: Transport, port: int, backend_set: str,
               **annotations: str) -> None:
        self.listeners[name] = ListenerSpec(name, protocol, port, backend_set, dict(annotations))

    def documents(self) -> list[dict[str, Any]]:
        listeners = [{"name": "http", "port": 8080, "protocol": "HTTP"}]  # --port replaces it
        listeners += [{"name": spec.name, "port": spec.port, "protocol": spec.protocol}
                      for spec in self.listeners.values()]
        docs: list[dict[str, Any]] = [{
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": GATEWAY},
            "spec": {"gatewayClassName": "inferlane", "listeners": listeners},
        }]
        for spec in self.listeners.values():
            docs.append(route_doc(spec))
        for name, endpoints in self.backend_sets.items():
            docs.append(backend_set_doc(name, endpoints))
        return [*docs, *self.extra]


def route_doc(spec: ListenerSpec) -> dict[str, Any]:
    """The listener's TCPRoute/UDPRoute; always in user space (the eBPF path has its tests)."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1alpha2",
        "kind": "TCPRoute" if spec.protocol == "TCP" else "UDPRoute",
        "metadata": {"name": spec.name,
                     "annotations": {DATAPLANE: "userspace", **spec.annotations}},
        "spec": {
            "parentRefs": [{"name": GATEWAY, "sectionName": spec.name}],
            "rules": [{"backendRefs": [{"group": "inferlane.dev", "kind": "BackendSet",
                                        "name": spec.backend_set}]}],
        },
    }


def backend_set_doc(name: str, endpoints: Mapping[str, int]) -> dict[str, Any]:
    return {
        "apiVersion": "inferlane.dev/v1alpha1",
        "kind": "BackendSet",
        "metadata": {"name": name},
        "spec": {"endpoints": [{"address": address, "weight": weight}
                               for address, weight in endpoints.items()]},
    }


def backend_set_policy_doc(name: str, backend_set: str, monitor: str) -> dict[str, Any]:
    """A HealthCheckPolicy probing ``backend_set`` with ``monitor`` (no passive checks:
    nothing reports L4 outcomes to them)."""
    return {
        "apiVersion": "inferlane.dev/v1alpha1",
        "kind": "HealthCheckPolicy",
        "metadata": {"name": name},
        "spec": {"targetRefs": [{"group": "inferlane.dev", "kind": "BackendSet",
                                 "name": backend_set}],
                 "monitorRef": {"kind": "Monitor", "name": monitor},
                 "slowStart": "0s", "passive": {"enabled": False}},
    }


def health_pool(backend_set: str) -> str:
    """How health (reports, drains) names a BackendSet."""
    return f"backendset/{NAMESPACE}/{backend_set}"


def listener_key(name: str) -> str:
    """How ``/admin/l4`` and the metrics name a listener."""
    return f"{NAMESPACE}/{GATEWAY}/{name}"


# -- reading the gateway --------------------------------------------------------------------------


def l4_status(gateway: GatewayProcess) -> dict[str, Any]:
    status, body = http_get(f"{gateway.base_url}/admin/l4")
    assert status == 200, f"GET /admin/l4 answered {status}\n{gateway.describe()}"
    result: dict[str, Any] = json.loads(body)
    return result


def listener_status(gateway: GatewayProcess, name: str) -> dict[str, Any]:
    for listener in l4_status(gateway)["listeners"]:
        if listener["listener"] == listener_key(name):
            found: dict[str, Any] = listener
            return found
    raise AssertionError(f"/admin/l4 has no listener {listener_key(name)}")


def backend_rows(listener: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The listener's backends by address."""
    return {row["backend"]: row for row in listener["backends"]}


def wait_listener(gateway: GatewayProcess, name: str, what: str,
                  check: Callable[[dict[str, Any]], bool],
                  timeout: float = RELOAD_TIMEOUT) -> dict[str, Any]:
    """Poll the listener's ``/admin/l4`` entry until ``check`` holds; returns that entry."""

    def matched() -> dict[str, Any] | None:
        listener = listener_status(gateway, name)
        return listener if check(listener) else None

    return gateway.wait_until(matched, f"listener {name}: {what}", timeout)


def reload(gateway: GatewayProcess, path: Path, config: L4Config, listener: str) -> None:
    """Write ``config``, wait for the gateway to load it (a new config generation), then until
    ``listener`` serves its backends, weights and algorithm (L4 applies the snapshot in a task
    of its own)."""
    before = gateway.generation()
    write_config(path, config.documents())
    gateway.wait_until(lambda: gateway.generation() > before or None,
                       f"config generation past {before}", RELOAD_TIMEOUT)
    spec = config.listeners[listener]
    weights = config.backend_sets[spec.backend_set]
    algorithm = spec.annotations.get(ALGORITHM, "maglev")
    wait_listener(
        gateway, listener, f"weights {weights} and algorithm {algorithm}",
        lambda entry: entry["algorithm"] == algorithm and {
            row["backend"]: row["weight"] for row in entry["backends"]} == weights)



def health_endpoint(gateway: GatewayProcess, backend_set: str, address: str) -> dict[str, Any]:
    """The ``GET /admin/health`` entry of ``address`` in ``backend_set``."""
    status, body = http_get(f"{gateway.base_url}/admin/health")
    assert status == 200, f"GET /admin/health answered {status}\n{gateway.describe()}"
    for pool in json.loads(body)["pools"]:
        if pool["pool"] == health_pool(backend_set):
            for endpoint in pool["endpoints"]:
                if endpoint["endpoint"] == address:
                    found: dict[str, Any] = endpoint
                    return found
    raise AssertionError(f"/admin/health has no {address} in {health_pool(backend_set)}")
