"""A NAT load balancer between network namespaces, for the eBPF fast path's end-to-end tests.

One lab (``L4Lab``) inside a random free 10.231.X.0/24 (``netns.NetnsLab`` builds and removes
the namespaces and veths)::

    client ── v0r .2 ═══ v0l .1 ── lb ── v1l .5 ═══ v1r .6 ── back
                                   │                          backends .11 .12 .13 on lo
                   ip_forward on, the TC programs on v0l      (tcp and udp echo)

The VIP (.100) has no address anywhere: the client routes it to lb, where the program
rewrites it before routing. ``back`` routes the client's address back through lb, as a
NAT load balancer needs. Veth offloads are set so that the client and the backends verify
every checksum they receive, whether the senders' skbs carry full checksums or partial ones
that lb completes on the way out (``checksums``, see ``l4_lab``): a wrong rewrite shows up as
a dropped packet and an ``InCsumErrors`` count. The lab checks first that a corrupt datagram
is indeed counted there.

The backends are sockets created inside ``back`` and served by one thread of the test
process (``EchoBackends``): the kernel path under test is the same as for a separate
process, and nothing can outlive the test. Client sockets are created inside ``client``
the same way (``in_namespace``); a socket keeps its namespace wherever it is used.

Cleanup: ``NetnsLab`` removes namespaces of dead runs of the same prefix; pinned BPF maps
of dead runs (``/sys/fs/bpf/inferlane/PREFIX-PID-...``) are removed by
``remove_pinned_leftovers``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import re
import selectors
import socket
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from inferlane.l4.ebpf.dataplane import DEFAULT_PIN_ROOT
from inferlane.l4.ebpf.netns import run_in_namespace

from .netns import NetnsLab, netns_unavailable

T = TypeVar("T")
Checksums = Literal["partial", "full"]  # see l4_lab

BACKEND_NAMES = ("alpha", "bravo", "charlie")
IO_TIMEOUT = 10.0  # seconds for one reply; generous for a loaded 2-core machine
COMMAND_TIMEOUT = 10.0


def in_namespace(namespace: str, function: Callable[[], T]) -> T:
    """``function()`` run inside ``namespace`` (sockets made there stay there)."""
    return run_in_namespace(namespace, function)


def run(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                          check=False)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr}")
    return done.stdout


def tc(namespace: str, *args: str) -> str:
    return run(["tc", "-netns", namespace, *args])


def sysctl(namespace: str, name: str, value: str) -> None:
    path = Path("/proc/sys") / name.replace(".", "/")
    in_namespace(namespace, lambda: path.write_text(value + "\n"))


def checksum_errors(namespace: str) -> dict[str, int]:
    """``InCsumErrors`` of TCP and UDP in ``namespace`` (``/proc/net/snmp`` of the thread)."""
    text = in_namespace(namespace, Path("/proc/thread-self/net/snmp").read_text)
    rows = [line.split() for line in text.splitlines()]
    found = {}
    for names, values in itertools.pairwise(rows):
        if names[0] in ("Tcp:", "Udp:") and names[0] == values[0] and names[1] != values[1]:
            found[names[0].rstrip(":")] = int(values[names.index("InCsumErrors")])
    return found


class EchoBackends:
    """Each backend answers ``NAME LINE`` per TCP line and ``NAME PAYLOAD`` per datagram."""

    def __init__(self, namespace: str, addresses: dict[str, str], tcp_port: int,
                 udp_port: int) -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = socket.socketpair()
        self._selector.register(self._wake_read, selectors.EVENT_READ, ("wake", ""))
        self._stopping = False
        self._buffers: dict[socket.socket, bytes] = {}

        def bind_all() -> None:
            for name, address in addresses.items():
                listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind((address, tcp_port))
                listener.listen(128)
                listener.setblocking(False)
                self._selector.register(listener, selectors.EVENT_READ, ("accept", name))
                datagrams = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                datagrams.bind((address, udp_port))
                datagrams.setblocking(False)
                self._selector.register(datagrams, selectors.EVENT_READ, ("udp", name))

        try:
            in_namespace(namespace, bind_all)
        except BaseException:
            self._close_all()
            raise
        self._thread = threading.Thread(target=self._serve, name="echo-backends", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping:
            for key, _ in self._selector.select():
                kind, name = key.data
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if kind == "accept":
                    with contextlib.suppress(BlockingIOError):
                        connection, _ = sock.accept()
                        connection.setblocking(True)
                        connection.settimeout(IO_TIMEOUT)
                        self._buffers[connection] = b""
                        self._selector.register(connection, selectors.EVENT_READ,
                                                ("tcp", name))
                elif kind == "udp":
                    with contextlib.suppress(BlockingIOError):
                        payload, peer = sock.recvfrom(65535)
                        sock.sendto(name.encode() + b" " + payload, peer)
                elif kind == "tcp":
                    self._echo_lines(sock, name)

    def _echo_lines(self, connection: socket.socket, name: str) -> None:
        try:
            data = connection.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._selector.unregister(connection)
            self._buffers.pop(connection, None)
            connection.close()
            return
        pending = self._buffers[connection] + data
        *lines, self._buffers[connection] = pending.split(b"\n")
        with contextlib.suppress(OSError):
            for line in lines:
                connection.sendall(name.encode() + b" " + line + b"\n")

    def _close_all(self) -> None:
        for key in list(self._selector.get_map().values()):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            sock.close()
        self._selector.close()
        self._wake_write.close()

    def stop(self) -> None:
        self._stopping = True
        self._wake_write.send(b"x")
        self._thread.join(timeout=IO_TIMEOUT)
        self._close_all()


@dataclass
class L4Lab:
    """See the module docstring; made by ``l4_lab``."""

    netns: NetnsLab
    client: str
    lb: str
    back: str
    client_iface: str  # lb's end of the client link, where the programs attach
    client_address: str
    vip: str
    backends: dict[str, str]  # name -> address
    checksums: Checksums
    prefix: str
    _ports: Iterator[int] = field(default_factory=lambda: itertools.count(
        random.randrange(20000, 40000)))
    _instances: Iterator[int] = field(default_factory=itertools.count)

    def name_of(self, address: str) -> str:
        return next(name for name, found in self.backends.items() if found == address)

    def instance_name(self) -> str:
        """A pin-directory name no other run uses (PREFIX-PID-N-RANDOM)."""
        return f"{self.prefix}-{os.getpid()}-{next(self._instances)}-" \
               f"{random.randrange(16**6):06x}"

    def source_port(self, wanted: Callable[[int], bool] = lambda _: True,
                    attempts: int = 20000) -> int:
        """An unused client port for which ``wanted(port)`` holds."""
        for _ in range(attempts):
            port = next(self._ports)
            if port > 65000:
                self._ports = itertools.count(20000)
                continue
            if wanted(port):
                return port
        raise AssertionError(f"no client port in {attempts} tries fits the test's condition")

    def tcp_connect(self, port: int, source_port: int, host: str | None = None) -> socket.socket:
        """A connection from the client to VIP:``port`` (or ``host``:``port``) from
        ``source_port``."""
        sock = in_namespace(self.client, lambda: socket.socket(socket.AF_INET,
                                                                socket.SOCK_STREAM))
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.settimeout(IO_TIMEOUT)
            sock.bind((self.client_address, source_port))
            sock.connect((self.vip if host is None else host, port))
        except BaseException:
            sock.close()
            raise
        return sock

    def udp_socket(self, source_port: int) -> socket.socket:
        sock = in_namespace(self.client, lambda: socket.socket(socket.AF_INET,
                                                                socket.SOCK_DGRAM))
        sock.settimeout(IO_TIMEOUT)
        sock.bind((self.client_address, source_port))
        return sock

    def checksum_errors(self) -> dict[str, dict[str, int]]:
        return {namespace: checksum_errors(namespace) for namespace in (self.client, self.back)}


def ask(sock: socket.socket, text: str) -> str:
    """Send one line over a TCP connection; the name of the backend that echoed it."""
    sock.sendall(text.encode() + b"\n")
    reply = b""
    while not reply.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"connection closed after {reply!r}")
        reply += chunk
    name, _, echoed = reply.decode().rstrip("\n").partition(" ")
    assert echoed == text, f"{name} echoed {echoed!r}, not {text!r}"
    return name


def ask_udp(sock: socket.socket, payload: bytes, port: int, vip: str) -> tuple[str, bytes,
                                                                               tuple[str, int]]:
    """One datagram to VIP:``port``; (backend name, whole reply, the reply's source)."""
    sock.sendto(payload, (vip, port))
    reply, source = sock.recvfrom(65535)
    name, _, echoed = reply.partition(b" ")
    assert echoed == payload, f"{name!r} echoed {echoed[:40]!r}..., not the payload"
    return name.decode(), reply, source


def remove_pinned_leftovers(prefix: str, root: Path = DEFAULT_PIN_ROOT) -> list[Path]:
    """Pin directories of ``prefix`` whose creating process is gone (a crashed run)."""
    removed: list[Path] = []
    ours = re.compile(rf"{re.escape(prefix)}-(\d+)-\d+-[0-9a-f]{{6}}")
    if not root.is_dir():
        return removed
    for directory in root.iterdir():
        match = ours.fullmatch(directory.name)
        if not match or Path(f"/proc/{match.group(1)}").exists():
            continue
        for pinned in directory.iterdir():
            pinned.unlink()
        directory.rmdir()
        removed.append(directory)
    return removed


def send_raw_udp(namespace: str, source_port: int, destination: tuple[str, int],
                 payload: bytes, checksum: int) -> None:
    """A datagram with a UDP header of our making (the kernel adds the IP header)."""
    raw = in_namespace(namespace, lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW,
                                                        socket.IPPROTO_UDP))
    with raw:
        header = struct.pack("!HHHH", source_port, destination[1], 8 + len(payload), checksum)
        raw.sendto(header + payload, (destination[0], 0))


def _udp_checksum_is_verified(lab: L4Lab, port: int) -> bool:
    """Send the first backend a datagram with a wrong UDP checksum straight from the client
    (routed by lb, no VIP involved); True when ``back`` counted it as a checksum error."""
    target = next(iter(lab.backends.values()))
    before = checksum_errors(lab.back)["Udp"]
    send_raw_udp(lab.client, 40000, (target, port), b"corrupt", 0xBAD)
    for _ in range(200):  # a bounded wait for the counter, not a timing assertion
        if checksum_errors(lab.back)["Udp"] > before:
            return True
        threading.Event().wait(0.02)
    return False


@contextlib.contextmanager
def l4_lab(prefix: str, *, checksums: Checksums, tcp_port: int,
           udp_port: int) -> Iterator[L4Lab]:
    """Build the lab with its echo backends on ``tcp_port``/``udp_port`` (removing leftovers
    of ``prefix`` first); always torn down."""
    reason = netns_unavailable(prefix)
    if reason is not None:
        raise RuntimeError(reason)
    remove_pinned_leftovers(prefix)
    netns = NetnsLab.create(prefix)
    try:
        client, lb, back = (netns.namespace(role) for role in ("client", "lb", "back"))
        to_client = netns.link(lb, client, 1, 2)
        to_back = netns.link(lb, back, 5, 6)
        backends = {name: netns.local_address(back, 11 + i)
                    for i, name in enumerate(BACKEND_NAMES)}
        vip = netns.address(100)
        netns.route(client, vip, to_client)
        for address in backends.values():
            netns.route(lb, address, to_back)
            netns.route(client, address, to_client)  # for the checksum self-check only
        netns.route(back, to_client.right_address, to_back)
        sysctl(lb, "net.ipv4.ip_forward", "1")
        # Receivers verify every checksum (rx off). "full": senders compute checksums in
        # software too; "partial": senders leave them to the "hardware" (CHECKSUM_PARTIAL
        # skbs, TSO) and lb's veths, lacking tx offload, complete them in software after the
        # program ran, as a NIC would: a wrong pseudo-header seed then shows up at the
        # receiver instead of being carried through unchecked.
        for link in (to_client, to_back):
            assert link.left is not None
            off = {"full": ("rx", "off", "tx", "off"), "partial": ("tx", "off")}[checksums]
            run(["ip", "netns", "exec", link.left, "ethtool", "-K", link.left_device, *off])
            off = {"full": ("rx", "off", "tx", "off"), "partial": ("rx", "off")}[checksums]
            run(["ip", "netns", "exec", link.right, "ethtool", "-K", link.right_device, *off])
        lab = L4Lab(netns, client, lb, back, to_client.left_device, to_client.right_address,
                    vip, backends, checksums, prefix)
        echo = EchoBackends(back, backends, tcp_port, udp_port)
        try:
            if not _udp_checksum_is_verified(lab, udp_port):
                raise AssertionError("a corrupt UDP checksum should be counted in "
                                     "InCsumErrors: this lab would not catch a bad rewrite")
            yield lab
        finally:
            echo.stop()
    finally:
        netns.close()
        left = netns.leftovers()
        assert not left, f"namespaces or links left behind: {left}"
