"""The eBPF fast path (issue 7) end to end: real packets through the TC program in a netns lab.

The lab (``l4_netns.l4_lab``) puts a client, the load balancer and three echo backends
(alpha, bravo, charlie) in namespaces of their own; ``EbpfDataPlane`` runs in this process
and attaches to the load balancer's client-facing veth. Every answer names the backend that
sent it, so a test can compare it with the Maglev table it installed (``flowhash`` predicts
the program's slot for a flow). The whole module runs twice: with partial checksums (the
senders' skbs are CHECKSUM_PARTIAL, as with offload, and lb completes them in software after
the rewrite) and with full ones; the receivers verify either way, and the tests assert that
no ``InCsumErrors`` appeared.

Each test balances a VIP port of its own: a late retransmission from an earlier test's
connections then cannot become a flow of the next instance.

Skipped, with the reason, only where namespaces or BPF are not permitted (not root, or the
kernel refuses); a missing toolchain fails instead — ``make system-deps`` installs it.
Nothing here is timed; waits are bounded polls.
"""

from __future__ import annotations

import errno
import itertools
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from inferlane.l4.ebpf import BackendCounters, EbpfDataPlane, EbpfError, availability
from inferlane.l4.ebpf.flowhash import flow_hash
from inferlane.l4.ebpf.indexes import BackendIndexes
from inferlane.l4.ebpf.libbpf import library
from inferlane.l4.flows import FlowKey, L4Backend, Protocol
from inferlane.l4.maglev import MaglevTable

from .l4_netns import L4Lab, ask, ask_udp, l4_lab, send_raw_udp, sysctl, tc
from .netns import netns_unavailable

pytestmark = pytest.mark.e2e

PREFIX = "ilbpf"  # namespaces, host veths and pin directories of this module
BACKEND_PORTS: dict[Protocol, int] = {"tcp": 7000, "udp": 7001}
IP_UDP_HEADERS = 28
WAIT_TIMEOUT = 10.0
MAX_FLOWS = 4096  # the default costs ≈27 MiB of kernel memory per instance; tests need few
_vip_ports = itertools.count(8000)  # never a backend port: the program rewrites ports too


@pytest.fixture(scope="module", params=["partial", "full"], ids=lambda kind: f"{kind}-checksums")
def lab(request: pytest.FixtureRequest) -> Iterator[L4Lab]:
    reason = netns_unavailable(PREFIX)
    if reason is not None:
        pytest.skip(f"needs Linux network namespaces (root and iproute2): {reason}")
    status = availability()
    if status.cause in ("platform", "privileges", "kernel"):
        pytest.skip(f"the kernel or privileges do not allow eBPF here: {status.reason}")
    assert status.available, f"eBPF fast path unavailable: {status.reason}"
    with l4_lab(PREFIX, checksums=request.param, tcp_port=BACKEND_PORTS["tcp"],
                udp_port=BACKEND_PORTS["udp"]) as built:
        yield built


@pytest.fixture
def plane(lab: L4Lab) -> Iterator[EbpfDataPlane]:
    made = EbpfDataPlane(lab.instance_name(), netns=lab.lb)
    errors_before = lab.checksum_errors()
    yield made
    made.close()
    assert not made.pin_dir.exists()
    assert lab.checksum_errors() == errors_before, "a rewritten packet had a bad checksum"


@dataclass
class Vip:
    """One balanced VIP:port of a test, and how to reach it from the client."""

    lab: L4Lab
    protocol: Protocol
    port: int

    def backends(self, weights: dict[str, int] | None = None) -> list[L4Backend]:
        """The lab's backends: all (weight 1), or those named in ``weights``."""
        names = dict.fromkeys(self.lab.backends, 1) if weights is None else weights
        return [L4Backend(self.lab.backends[name], BACKEND_PORTS[self.protocol], weight)
                for name, weight in names.items()]

    def key(self, name: str) -> str:
        """The backend key of ``name``, as ``counters()`` names it."""
        return f"{self.lab.backends[name]}:{BACKEND_PORTS[self.protocol]}"

    def owner(self, table: MaglevTable, source_port: int) -> str:
        """The backend (name) ``table`` gives a new flow from ``source_port``."""
        found = table.lookup(flow_hash(FlowKey(self.protocol, self.lab.client_address,
                                               source_port, self.lab.vip, self.port)))
        assert found is not None
        return self.lab.name_of(found.host)

    def owned_by(self, table: MaglevTable, name: str) -> Callable[[int], bool]:
        return lambda source_port: self.owner(table, source_port) == name

    def connect(self, source_port: int) -> socket.socket:
        return self.lab.tcp_connect(self.port, source_port)

    def ask(self, sock: socket.socket, payload: bytes) -> tuple[str, bytes, tuple[str, int]]:
        return ask_udp(sock, payload, self.port, self.lab.vip)


def start(lab: L4Lab, plane: EbpfDataPlane, protocol: Protocol, weights: dict[str, int] | None
          = None, udp_idle_timeout: float | None = None) -> tuple[Vip, MaglevTable]:
    """Start ``plane`` on a fresh VIP port over the lab's backends; the VIP and its table."""
    vip = Vip(lab, protocol, next(_vip_ports))
    members = vip.backends(weights)
    table = MaglevTable.build(members)
    plane.start(lab.vip, vip.port, protocol, lab.client_iface, members, table=table,
                udp_idle_timeout=udp_idle_timeout, max_flows=MAX_FLOWS)
    return vip, table


# -- balancing --------------------------------------------------------------------------------


def test_tcp_connections_reach_the_backend_the_table_names(lab: L4Lab,
                                                           plane: EbpfDataPlane) -> None:
    vip, table = start(lab, plane, "tcp")
    answered: dict[int, str] = {}
    connections = []
    try:
        for _ in range(24):
            port = lab.source_port()
            connections.append(vip.connect(port))
            answered[port] = ask(connections[-1], f"hello from {port}")
    finally:
        for connection in connections:
            connection.close()
    assert answered == {port: vip.owner(table, port) for port in answered}
    assert len(set(answered.values())) >= 2, answered
    assert plane.flows() == 24
    counters = plane.counters()
    for name in lab.backends:
        used = name in answered.values()
        seen = counters[vip.key(name)]
        assert (seen.packets > 0, seen.reply_packets > 0) == (used, used), (name, seen)


def test_a_direct_connection_from_a_port_an_ended_vip_flow_used_is_left_alone(
        lab: L4Lab, plane: EbpfDataPlane) -> None:
    """A client (a health checker, say) that connects straight to a backend from the
    address:port of an ended VIP flow must get the backend's own replies: the old flow's reply
    entry must not rewrite its SYN-ACK to come from the VIP (it would never connect)."""
    vip, table = start(lab, plane, "tcp")
    port = lab.source_port()
    name = vip.owner(table, port)
    through_vip = vip.connect(port)
    try:
        assert ask(through_vip, "through the vip") == name
    finally:
        through_vip.close()
    # Rewritten, its SYN-ACK would come from the VIP and the connect would time out.
    direct = lab.tcp_connect(BACKEND_PORTS["tcp"], port, host=lab.backends[name])
    try:
        assert ask(direct, "straight to the backend") == name
    finally:
        direct.close()


def test_udp_counters_count_packets_and_bytes_per_backend(lab: L4Lab,
                                                          plane: EbpfDataPlane) -> None:
    vip, table = start(lab, plane, "udp")
    expected = {name: [0, 0, 0, 0] for name in lab.backends}
    for sender in range(12):
        port = lab.source_port()
        with lab.udp_socket(port) as sock:
            for size in (1, 100, 1000):
                payload = bytes([65 + sender]) * size
                name, reply, source = vip.ask(sock, payload)
                assert source == (lab.vip, vip.port), "the reply must come from the VIP"
                assert name == vip.owner(table, port)
                counts = expected[name]
                counts[0] += 1
                counts[1] += IP_UDP_HEADERS + size
                counts[2] += 1
                counts[3] += IP_UDP_HEADERS + len(reply)
    assert plane.counters() == {vip.key(name): BackendCounters(*counts)
                                for name, counts in expected.items()}
    assert plane.flows() == 12
    assert plane.dropped() == 0


def test_a_udp_datagram_without_checksum_keeps_none(lab: L4Lab, plane: EbpfDataPlane) -> None:
    # 0 means "no checksum" in IPv4 UDP: patched like a real one it would become a wrong one.
    vip, table = start(lab, plane, "udp")
    port = lab.source_port()
    with lab.udp_socket(port) as sock:
        send_raw_udp(lab.client, port, (lab.vip, vip.port), b"unchecked", checksum=0)
        reply, source = sock.recvfrom(65535)
    assert source == (lab.vip, vip.port)
    assert reply == f"{vip.owner(table, port)} unchecked".encode()


# -- table swaps --------------------------------------------------------------------------------


def test_a_flow_keeps_its_backend_across_a_swap_and_new_flows_follow_the_new_table(
        lab: L4Lab, plane: EbpfDataPlane) -> None:
    vip, old = start(lab, plane, "tcp")
    # charlie leaves and bravo's weight triples: many of alpha's slots move to bravo.
    new_set = vip.backends({"alpha": 1, "bravo": 3})
    new = MaglevTable.build(new_set)
    moved_port = lab.source_port(lambda port: vip.owner(old, port) == "alpha"
                                 and vip.owner(new, port) == "bravo")
    with vip.connect(moved_port) as kept, \
            vip.connect(lab.source_port(vip.owned_by(old, "charlie"))) as orphan:
        assert ask(kept, "before") == "alpha"
        assert ask(orphan, "before") == "charlie"
        assert plane.flows() == 2

        plane.update(new_set, new)

        assert ask(kept, "after") == "alpha", "an existing flow must keep its backend"
        assert plane.flows() == 1, "the removed backend's flow should be purged"
        # Its next segment is balanced afresh; the new backend knows no such connection.
        with pytest.raises(ConnectionResetError):
            ask(orphan, "after")
    for _ in range(8):
        port = lab.source_port(vip.owned_by(old, "charlie"))
        with vip.connect(port) as fresh:
            assert ask(fresh, "new") == vip.owner(new, port) != "charlie"
    counters = plane.counters()
    assert counters[vip.key("charlie")].packets > 0, "kept until its index is reused"
    assert counters[vip.key("bravo")].packets > 0


def test_weight_zero_drains_a_backend(lab: L4Lab, plane: EbpfDataPlane) -> None:
    vip, old = start(lab, plane, "tcp")
    port = lab.source_port(vip.owned_by(old, "charlie"))
    with vip.connect(port) as draining:
        assert ask(draining, "before") == "charlie"
        drained = vip.backends({"alpha": 1, "bravo": 1, "charlie": 0})
        plane.update(drained)  # the default: a Maglev table over them, built here
        new = MaglevTable.build(drained)
        assert ask(draining, "after") == "charlie"
        for _ in range(6):
            fresh_port = lab.source_port(vip.owned_by(old, "charlie"))
            with vip.connect(fresh_port) as fresh:
                assert ask(fresh, "new") == vip.owner(new, fresh_port) != "charlie"
        assert plane.flows() == 7


def test_a_udp_flow_of_a_removed_backend_moves(lab: L4Lab, plane: EbpfDataPlane) -> None:
    vip, old = start(lab, plane, "udp")
    port = lab.source_port(vip.owned_by(old, "charlie"))
    with lab.udp_socket(port) as sock:
        assert vip.ask(sock, b"before")[0] == "charlie"
        remaining = vip.backends({"alpha": 1, "bravo": 1})
        plane.update(remaining)
        name, _, source = vip.ask(sock, b"after")
        assert name == vip.owner(MaglevTable.build(remaining), port)
        assert source == (lab.vip, vip.port)
    assert plane.flows() == 1


def test_an_idle_udp_flow_is_balanced_afresh(lab: L4Lab, plane: EbpfDataPlane) -> None:
    idle_timeout = 0.2
    vip, old = start(lab, plane, "udp", udp_idle_timeout=idle_timeout)
    port = lab.source_port(vip.owned_by(old, "alpha"))
    with lab.udp_socket(port) as sock:
        assert vip.ask(sock, b"first")[0] == "alpha"
        drained = vip.backends({"alpha": 0, "bravo": 1, "charlie": 1})
        plane.update(drained)  # alpha drains: only an idle flow leaves it
        time.sleep(idle_timeout * 3)  # a lower bound on the gap, not a measurement
        name = vip.ask(sock, b"later")[0]
    assert name == vip.owner(MaglevTable.build(drained), port) != "alpha"


def test_without_backends_packets_are_dropped_and_counted(lab: L4Lab,
                                                           plane: EbpfDataPlane) -> None:
    vip, _ = start(lab, plane, "udp", weights={})
    with lab.udp_socket(lab.source_port()) as sock:
        sock.sendto(b"anyone?", (lab.vip, vip.port))
        poll(lambda: plane.dropped() == 1, "the dropped datagram to be counted")
        plane.update(vip.backends({"alpha": 1}))
        assert vip.ask(sock, b"now?")[0] == "alpha"
    assert plane.counters()[vip.key("alpha")].packets == 1


# -- lifecycle ----------------------------------------------------------------------------------


def poll(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_TIMEOUT
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {WAIT_TIMEOUT:g}s waiting for {what}")
        time.sleep(0.02)


def program_exists(program_id: int) -> bool:
    fd = library().bpf_prog_get_fd_by_id(program_id)
    if fd >= 0:
        os.close(fd)
        return True
    assert fd == -errno.ENOENT, os.strerror(-fd)
    return False


def test_close_removes_programs_maps_and_the_qdisc_it_added(lab: L4Lab) -> None:
    plane = EbpfDataPlane(lab.instance_name(), netns=lab.lb)
    try:
        start(lab, plane, "tcp")
        ids = plane.program_ids
        assert len(ids) == 2
        assert all(program_exists(found) for found in ids)
        assert "clsact" in tc(lab.lb, "qdisc", "show", "dev", lab.client_iface)
        assert "to_backend" in tc(lab.lb, "filter", "show", "dev", lab.client_iface, "ingress")
        assert "from_backend" in tc(lab.lb, "filter", "show", "dev", lab.client_iface, "egress")
        assert sorted(path.name for path in plane.pin_dir.iterdir()) == [
            "backends", "config", "flows", "maglev", "replies", "stats"]
    finally:
        plane.close()
    assert "clsact" not in tc(lab.lb, "qdisc", "show", "dev", lab.client_iface)
    assert not plane.pin_dir.exists()
    poll(lambda: not any(program_exists(found) for found in ids), "the programs to be freed")
    plane.close()  # a second close is harmless


def test_close_keeps_a_clsact_qdisc_it_did_not_add(lab: L4Lab) -> None:
    tc(lab.lb, "qdisc", "add", "dev", lab.client_iface, "clsact")
    try:
        plane = EbpfDataPlane(lab.instance_name(), netns=lab.lb)
        try:
            vip, _ = start(lab, plane, "udp")
            with lab.udp_socket(lab.source_port()) as sock:
                vip.ask(sock, b"through")
        finally:
            plane.close()
        assert "clsact" in tc(lab.lb, "qdisc", "show", "dev", lab.client_iface)
        for direction in ("ingress", "egress"):
            assert tc(lab.lb, "filter", "show", "dev", lab.client_iface, direction) == ""
    finally:
        tc(lab.lb, "qdisc", "del", "dev", lab.client_iface, "clsact")


def test_a_failed_start_removes_what_it_set_up(lab: L4Lab) -> None:
    plane = EbpfDataPlane(lab.instance_name(), netns=lab.lb)
    sysctl(lab.lb, "net.ipv4.ip_forward", "0")
    try:
        with pytest.raises(EbpfError, match=r"ip_forward is 0 .*sysctl -w net.ipv4.ip_forward=1"):
            start(lab, plane, "tcp")
    finally:
        sysctl(lab.lb, "net.ipv4.ip_forward", "1")
    assert not plane.pin_dir.exists()
    assert "clsact" not in tc(lab.lb, "qdisc", "show", "dev", lab.client_iface)
    assert plane.program_ids == ()


# -- availability -------------------------------------------------------------------------------

PROBE = """
import logging, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
from inferlane.l4.ebpf import availability, open_fast_path
status = availability()
print(status.available, status.cause)
print(status.reason)
print(open_fast_path("probe", "10.0.0.1", 80, "tcp", "lo", []))
"""


def run_probe(argv_prefix: list[str], env: dict[str, str]) -> tuple[list[str], str]:
    done = subprocess.run([*argv_prefix, sys.executable, "-c", PROBE], capture_output=True,
                          text=True, timeout=60, env=env, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines(), done.stderr


def test_unavailable_without_privileges() -> None:
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) drops the capabilities for this test"
        prefix = [setpriv, "--bounding-set=-all", "--inh-caps=-all", "--"]
    else:
        prefix = []
    lines, log = run_probe(prefix, dict(os.environ))
    assert lines[0] == "False privileges"
    assert "needs root (CAP_BPF or CAP_SYS_ADMIN, and CAP_NET_ADMIN)" in lines[1]
    assert lines[2] == "None"
    assert "L4 10.0.0.1:80/tcp: eBPF fast path unavailable (loading and attaching TC " \
           "programs needs root" in log
    assert "falling back to the user-space data plane" in log


def test_unavailable_without_clang(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("privileges are checked before the toolchain: needs root")
    env = {key: value for key, value in os.environ.items() if key != "INFERLANE_CLANG"}
    env.update(PATH=str(tmp_path), XDG_CACHE_HOME=str(tmp_path))
    lines, log = run_probe([], env)
    assert lines[0] == "False toolchain"
    assert lines[1].startswith("clang is not installed (or not on PATH): install clang")
    assert "falling back to the user-space data plane" in log
    assert not list(tmp_path.glob("inferlane/ebpf/*.o")), "nothing compiled without clang"



# -- the pure bookkeeping behind update() (no kernel; its tests would live in tests/unit) -------


def test_backend_indexes_are_stable_and_freed_ones_are_reused_last() -> None:
    indexes = BackendIndexes(capacity=4)
    first = indexes.plan(["a", "b", "c"])
    indexes.commit(first)
    assert first.current == {"a": 0, "b": 1, "c": 2}
    second = indexes.plan(["a", "c", "d"])
    indexes.commit(second)
    assert (second.current, second.added, second.removed) == (
        {"a": 0, "c": 2, "d": 3}, {"d": 3}, {"b": 1})
    assert indexes.names()[1] == "b", "a removed backend keeps its counters until reuse"
    third = indexes.plan(["a", "c", "d", "e"])
    indexes.commit(third)
    assert third.added == {"e": 1}
    assert indexes.names()[1] == "e"


def test_backend_indexes_give_a_returning_backend_its_old_index() -> None:
    indexes = BackendIndexes(capacity=8)
    for keys in (["a", "b", "c"], ["a", "c"], ["a", "c", "x"]):
        indexes.commit(indexes.plan(keys))
    back = indexes.plan(["a", "b", "c", "x"])
    assert back.added == {"b": 1}


def test_backend_indexes_change_nothing_until_committed_or_when_the_set_does_not_fit() -> None:
    indexes = BackendIndexes(capacity=2)
    indexes.commit(indexes.plan(["a", "b"]))
    with pytest.raises(ValueError, match="3 backends do not fit the fast path's 2 backend"):
        indexes.plan(["a", "b", "c"])
    indexes.plan(["c", "d"])  # fits (both old ones leave), but is never committed
    assert indexes.plan(["a", "b"]).added == {}
    assert indexes.names() == {0: "a", 1: "b"}
