"""L4 load balancing end to end: the gateway's user-space TCP and UDP listeners.

One stack for the module: three echo backends (``alpha``, ``bravo``, ``charlie``) that serve
TCP and UDP on one port each, a fourth that expects a PROXY protocol header (``papa``), and
one ``inferlane serve`` with a TCP or UDP listener per scenario, each with its own route and
BackendSet, so the scenarios do not interfere. Scenarios that reload change only their own
listener's route or set. The sets list the same three addresses on purpose: a drain or a
health verdict in one set must not leak into another route's. The health scenario kills a
backend, so it has a gateway and three backends of its own.

Which backend answered is the echo's name prefix. Where an algorithm is deterministic the
tests compute the expected backend of every new flow with the same pure core the gateway uses
(``MaglevTable`` over ``FlowKey.hash64`` for maglev, ``RoundRobin`` for round robin); the
proof that a flow stayed is that it still reaches its backend after a change that would
place it elsewhere. Every wait is a bounded poll of ``GET /admin/l4``, ``GET /admin/health``
or ``/readyz``; nothing asserts on timing.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from inferlane.l4.algorithms import RoundRobin
from inferlane.l4.flows import FlowKey, L4Backend, Protocol
from inferlane.l4.maglev import MaglevTable

from .conftest import (
    HOST,
    POLL_INTERVAL,
    GatewayProcess,
    inferlane_command,
    metric_value,
    poll,
    running_stack,
    write_config,
)
from .health_harness import admin_post, monitor_doc
from .l4_harness import (
    ALGORITHM,
    PROXY_PROTOCOL,
    TABLE_SIZE,
    UDP_IDLE_TIMEOUT,
    EchoBackend,
    L4Config,
    TcpSession,
    UdpClient,
    backend_rows,
    backend_set_policy_doc,
    health_endpoint,
    health_pool,
    l4_status,
    listener_key,
    listener_status,
    reload,
    spare_port,
    tcp_exchange,
    wait_listener,
)

pytestmark = pytest.mark.e2e

BACKENDS = ("alpha", "bravo", "charlie")
PROXIED = "papa"
ADMIN_TOKEN = "l4-admin-token-0123456789"
MAGLEV_TABLE = 1009  # a prime; small, so the test builds the same table quickly
UDP_IDLE = 0.5  # seconds, on the udp-idle listener

TCP_MAGLEV = "tcp-maglev"  # maglev over trio-weighted (2:1:1)
UDP_MAGLEV = "udp-maglev"  # the same, over UDP
TCP_RR = "tcp-rr"  # round robin over trio (1:1:1); also half-close and metrics
UDP_RR = "udp-rr"  # the same, over UDP
TCP_RELOAD = "tcp-reload"  # maglev over reload-tcp; the reload scenario changes it
UDP_RELOAD = "udp-reload"  # maglev over reload-udp; the reload scenario changes it
TCP_DRAIN = "tcp-drain"  # round robin over drain; drained by weight and by the admin call
TCP_PROXY = "tcp-proxy"  # PROXY protocol v2 to papa
UDP_IDLE_LISTENER = "udp-idle"  # round robin over idle, sessions idle for 0.5 s expire

CONNECTIONS = 60  # flows per maglev spread check: P(a 1/4 backend gets none) < 1e-7
ROTATIONS = 3  # round-robin checks go around the backends this many times


@dataclass(frozen=True, slots=True)
class L4Stack:
    gateway: GatewayProcess
    config: L4Config
    path: Path
    echoes: Mapping[str, EchoBackend]

    def port(self, listener: str) -> int:
        return self.config.listeners[listener].port

    def address(self, name: str) -> str:
        return self.echoes[name].address

    def name_at(self, address: str) -> str:
        return next(name for name, echo in self.echoes.items() if echo.address == address)

    def weights(self, weights: Mapping[str, int]) -> dict[str, int]:
        """Endpoint weights by address, in ``BACKENDS`` order (the config order)."""
        return {self.address(name): weights[name] for name in BACKENDS if name in weights}

    def reload(self, listener: str) -> None:
        reload(self.gateway, self.path, self.config, listener)


def stack_config(echoes: Mapping[str, EchoBackend]) -> L4Config:
    ports: list[int] = []

    def port() -> int:
        ports.append(spare_port(ports))
        return ports[-1]

    trio = {echoes[name].address: 1 for name in BACKENDS}
    config = L4Config()
    config.backend_sets = {
        "trio": dict(trio),
        "trio-weighted": {address: 2 if i == 0 else 1 for i, address in enumerate(trio)},
        "reload-tcp": dict(trio), "reload-udp": dict(trio), "drain": dict(trio),
        "idle": dict(trio), "proxied": {echoes[PROXIED].address: 1},
    }
    maglev = {ALGORITHM: "maglev", TABLE_SIZE: str(MAGLEV_TABLE)}
    round_robin = {ALGORITHM: "round-robin"}
    config.listen(TCP_MAGLEV, "TCP", port(), "trio-weighted", **maglev)
    config.listen(UDP_MAGLEV, "UDP", port(), "trio-weighted", **maglev)
    config.listen(TCP_RR, "TCP", port(), "trio", **round_robin)
    config.listen(UDP_RR, "UDP", port(), "trio", **round_robin)
    config.listen(TCP_RELOAD, "TCP", port(), "reload-tcp", **maglev)
    config.listen(UDP_RELOAD, "UDP", port(), "reload-udp", **maglev)
    config.listen(TCP_DRAIN, "TCP", port(), "drain", **round_robin)
    config.listen(TCP_PROXY, "TCP", port(), "proxied", **{PROXY_PROTOCOL: "v2"})
    config.listen(UDP_IDLE_LISTENER, "UDP", port(), "idle",
                  **round_robin, **{UDP_IDLE_TIMEOUT: f"{int(UDP_IDLE * 1000)}ms"})
    return config


@contextlib.contextmanager
def echo_backends(log_dir: Path, names: Sequence[str], *,
                  proxy_protocol: Sequence[str] = ()) -> Iterator[dict[str, EchoBackend]]:
    """Started echo backends by name; stopped by PID on exit."""
    with contextlib.ExitStack() as stops:
        started: dict[str, EchoBackend] = {}
        for name in names:
            echo = EchoBackend(log_dir, name, proxy_protocol=name in proxy_protocol)
            stops.callback(echo.stop)
            echo.start()
            started[name] = echo
        yield started


@pytest.fixture(scope="module")
def l4(tmp_path_factory: pytest.TempPathFactory) -> Iterator[L4Stack]:
    log_dir = tmp_path_factory.mktemp("l4")
    token_file = log_dir / "admin.token"
    token_file.write_text(f"{ADMIN_TOKEN}\n", encoding="utf-8")
    with echo_backends(log_dir, [*BACKENDS, PROXIED], proxy_protocol=[PROXIED]) as echoes, \
            running_stack(log_dir) as started:
        config = stack_config(echoes)
        path = write_config(log_dir / "gateway.yaml", config.documents())
        gateway = started.gateway(path, ["--admin-token-file", str(token_file),
                                         "--reload-interval", "0.2"])
        yield L4Stack(gateway, config, path, echoes)


# -- what the algorithms say ----------------------------------------------------------------------


def backends_of(weights: Mapping[str, int]) -> list[L4Backend]:
    """The candidates a selector hands the algorithm: weight > 0, in config order."""
    backends = []
    for address, weight in weights.items():
        host, _, port = address.rpartition(":")
        if weight > 0:
            backends.append(L4Backend(host, int(port), weight))
    return backends


def maglev_choice(weights: Mapping[str, int], protocol: Protocol, client_port: int,
                  listener_port: int) -> str:
    """The address maglev gives a new flow from ``HOST:client_port`` to the listener."""
    table = MaglevTable.build(backends_of(weights), MAGLEV_TABLE)
    flow = FlowKey(protocol, HOST, client_port, HOST, listener_port)
    backend = table.lookup(flow.hash64())
    assert backend is not None
    return backend.key


def round_robin_sequence(weights: Mapping[str, int], count: int) -> list[str]:
    """The addresses smooth weighted round robin gives ``count`` new flows, from a fresh
    cycle."""
    algorithm, candidates = RoundRobin(), backends_of(weights)
    flow = FlowKey("tcp", HOST, 1, HOST, 2)  # round robin ignores the flow
    picks = []
    for _ in range(count):
        backend = algorithm.pick(flow, candidates, {})
        assert backend is not None
        picks.append(backend.key)
    return picks


def assert_rotation(names: Sequence[str], order: Sequence[str]) -> None:
    """``names`` go around ``order`` one by one, starting anywhere."""
    start = order.index(names[0])
    expected = [order[(start + i) % len(order)] for i in range(len(names))]
    assert list(names) == expected


# -- round trips and distribution -----------------------------------------------------------------


def test_tcp_maglev_places_every_connection_by_its_flow_and_spreads_over_all_backends(
        l4: L4Stack) -> None:
    port = l4.port(TCP_MAGLEV)
    weights = l4.config.backend_sets["trio-weighted"]
    seen: dict[str, int] = {}
    for i in range(CONNECTIONS):
        payload = f"maglev {i}".encode()
        reply = tcp_exchange(port, payload)
        assert reply.data == payload
        expected = maglev_choice(weights, "tcp", reply.client_port, port)
        assert l4.address(reply.backend) == expected, f"connection {i} from {reply.client_port}"
        seen[reply.backend] = seen.get(reply.backend, 0) + 1
    assert set(seen) == set(BACKENDS), seen


def test_udp_maglev_places_every_flow_by_its_source_and_spreads_over_all_backends(
        l4: L4Stack) -> None:
    port = l4.port(UDP_MAGLEV)
    weights = l4.config.backend_sets["trio-weighted"]
    seen: dict[str, int] = {}
    for i in range(CONNECTIONS):
        with UdpClient() as client:
            backend = client.ask(port, f"maglev {i}".encode())
            assert client.ask(port, b"again") == backend  # the flow is tracked
            assert l4.address(backend) == maglev_choice(weights, "udp", client.port, port)
        seen[backend] = seen.get(backend, 0) + 1
    assert set(seen) == set(BACKENDS), seen


def test_round_robin_rotates_tcp_connections_and_udp_flows_exactly(l4: L4Stack) -> None:
    tcp = [tcp_exchange(l4.port(TCP_RR), f"rr {i}".encode())
           for i in range(ROTATIONS * len(BACKENDS))]
    assert all(reply.data == f"rr {i}".encode() for i, reply in enumerate(tcp))
    assert_rotation([reply.backend for reply in tcp], BACKENDS)
    udp = []
    for i in range(ROTATIONS * len(BACKENDS)):
        with UdpClient() as client:
            udp.append(client.ask(l4.port(UDP_RR), f"rr {i}".encode()))
    assert_rotation(udp, BACKENDS)


# -- connection tracking across reloads -----------------------------------------------------------


def test_a_tcp_connection_keeps_its_backend_across_reloads(l4: L4Stack) -> None:
    port = l4.port(TCP_RELOAD)
    with TcpSession(port) as held:
        kept = held.backend
        assert held.ask(b"before") == b"before"
        removed = next(name for name in BACKENDS if name != kept)
        other = next(name for name in BACKENDS if name not in (kept, removed))

        # Remove a backend and change the weights of the others.
        l4.config.backend_sets["reload-tcp"] = l4.weights({kept: 1, other: 3})
        l4.reload(TCP_RELOAD)
        assert held.ask(b"after the weights changed") == b"after the weights changed"
        rows = backend_rows(listener_status(l4.gateway, TCP_RELOAD))
        assert l4.address(removed) not in rows
        assert rows[l4.address(kept)]["flows"] == 1
        assert rows[l4.address(kept)]["stats"]["active"] == 1
        weights = l4.config.backend_sets["reload-tcp"]
        for i in range(ROTATIONS * len(BACKENDS)):
            reply = tcp_exchange(port, b"new")
            assert reply.backend != removed
            assert l4.address(reply.backend) == maglev_choice(
                weights, "tcp", reply.client_port, port), f"new connection {i}"

        # Change the algorithm: a new selector over the same connection table.
        annotations = l4.config.listeners[TCP_RELOAD].annotations
        annotations[ALGORITHM] = "round-robin"
        del annotations[TABLE_SIZE]  # maglev's alone (a warning otherwise)
        l4.reload(TCP_RELOAD)
        assert held.ask(b"after the algorithm changed") == b"after the algorithm changed"
        count = ROTATIONS * 4  # weights 1:3 go around in 4 picks
        replies = [tcp_exchange(port, b"new") for _ in range(count)]
        assert [l4.address(reply.backend) for reply in replies] == round_robin_sequence(
            weights, count)
        assert backend_rows(listener_status(l4.gateway, TCP_RELOAD))[
            l4.address(kept)]["flows"] == 1
        assert held.ask(b"still here") == b"still here"
    wait_listener(l4.gateway, TCP_RELOAD, "no tracked flow after the close",
                  lambda entry: entry["flows"] == 0 and entry["totals"]["active"] == 0)


def test_a_udp_flow_keeps_its_backend_across_a_weight_change(l4: L4Stack) -> None:
    port = l4.port(UDP_RELOAD)
    before = l4.config.backend_sets["reload-udp"]

    def after(name: str) -> dict[str, int]:
        return l4.weights({other: 1 if other == name else 50 for other in BACKENDS})

    # A flow that the new weights would place elsewhere, so staying proves the tracking.
    with contextlib.ExitStack() as sockets:
        for _ in range(50):
            client = sockets.enter_context(UdpClient())
            first = l4.name_at(maglev_choice(before, "udp", client.port, port))
            if maglev_choice(after(first), "udp", client.port, port) != l4.address(first):
                break
        else:
            raise AssertionError("no client port whose flow the new weights would move")
        assert client.ask(port, b"before") == first
        l4.config.backend_sets["reload-udp"] = after(first)
        l4.reload(UDP_RELOAD)
        assert [client.ask(port, f"after {i}".encode()) for i in range(5)] == [first] * 5
        with UdpClient() as fresh:  # new flows follow the new weights
            assert l4.address(fresh.ask(port)) == maglev_choice(after(first), "udp",
                                                                fresh.port, port)


# -- drains ---------------------------------------------------------------------------------------


def test_weight_zero_drains_a_backend_and_leaves_its_connection_alone(l4: L4Stack) -> None:
    port = l4.port(TCP_DRAIN)
    with TcpSession(port) as held:
        drained = held.backend
        others = [name for name in BACKENDS if name != drained]
        l4.config.backend_sets["drain"] = l4.weights(
            {name: 0 if name == drained else 1 for name in BACKENDS})
        l4.reload(TCP_DRAIN)
        row = backend_rows(listener_status(l4.gateway, TCP_DRAIN))[l4.address(drained)]
        assert (row["weight"], row["drained"], row["flows"]) == (0, True, 1), row
        names = [tcp_exchange(port, b"new").backend for _ in range(ROTATIONS * 2)]
        assert drained not in names
        assert_rotation(names, others)
        assert held.ask(b"drained but open") == b"drained but open"
    l4.config.backend_sets["drain"] = l4.weights(dict.fromkeys(BACKENDS, 1))
    l4.reload(TCP_DRAIN)
    names = [tcp_exchange(port, b"back").backend for _ in range(len(BACKENDS))]
    assert sorted(names) == sorted(BACKENDS)


def test_an_admin_drain_of_a_backend_set_endpoint_stops_new_connections(l4: L4Stack) -> None:
    port = l4.port(TCP_DRAIN)
    drain = {"pool": health_pool("drain"), "endpoint": "", "draining": True}
    with TcpSession(port) as held:
        target = held.backend
        drain["endpoint"] = l4.address(target)
        status, _ = admin_post(l4.gateway, "/admin/health/drain", drain, None)
        assert status == 401
        status, body = admin_post(l4.gateway, "/admin/health/drain", drain, ADMIN_TOKEN)
        assert status == 200, body
        assert health_endpoint(l4.gateway, "drain", l4.address(target))["draining"] is True
        wait_listener(l4.gateway, TCP_DRAIN, f"{target} not routable",
                      lambda entry: not backend_rows(entry)[l4.address(target)]["routable"])
        names = [tcp_exchange(port, b"new").backend for _ in range(ROTATIONS * 2)]
        assert target not in names, names
        assert held.ask(b"drained but open") == b"drained but open"
        # The drain is the set's: another route over the same address still uses it.
        assert backend_rows(listener_status(l4.gateway, TCP_RR))[l4.address(target)]["routable"]
        names = [tcp_exchange(l4.port(TCP_RR), b"other route").backend for _ in BACKENDS]
        assert target in names
        status, body = admin_post(l4.gateway, "/admin/health/drain",
                                  {**drain, "draining": False}, ADMIN_TOKEN)
        assert status == 200, body
    wait_listener(l4.gateway, TCP_DRAIN, f"{target} routable again",
                  lambda entry: backend_rows(entry)[l4.address(target)]["routable"])
    names = [tcp_exchange(port, b"back").backend for _ in range(len(BACKENDS))]
    assert target in names


# -- half-close, PROXY protocol, UDP idle expiry --------------------------------------------------


def test_a_half_closed_connection_gets_the_whole_echo_and_then_eof(l4: L4Stack) -> None:
    payload = random.Random(7).randbytes(3 * 1024 * 1024)  # more than the proxy buffers
    reply = tcp_exchange(l4.port(TCP_RR), payload)
    assert reply.backend in BACKENDS
    assert len(reply.data) == len(payload)
    assert reply.data == payload
    wait_listener(l4.gateway, TCP_RR, "the connection closed on both sides",
                  lambda entry: entry["totals"]["active"] == 0 and entry["flows"] == 0)


def test_proxy_protocol_v2_tells_the_backend_the_client_address(l4: L4Stack) -> None:
    port = l4.port(TCP_PROXY)
    with TcpSession(port, greeting_end=b"\n") as held:
        assert held.greeting.decode() == (
            f"{PROXIED}:v2 {HOST}:{held.client_port}>{HOST}:{port}\n")
        assert held.ask(b"after the header") == b"after the header"


def test_a_reload_changes_the_proxy_protocol_version_of_new_connections(l4: L4Stack) -> None:
    port = l4.port(TCP_PROXY)

    def v1_connection() -> tuple[str, int] | None:
        # Not visible in /admin/l4: the proof is the header new connections carry.
        with TcpSession(port, greeting_end=b"\n") as fresh:
            greeting = fresh.greeting.decode()
            return (greeting, fresh.client_port) if ":v1 " in greeting else None

    with TcpSession(port, greeting_end=b"\n") as held:
        l4.config.listeners[TCP_PROXY].annotations[PROXY_PROTOCOL] = "v1"
        l4.reload(TCP_PROXY)
        greeting, client_port = l4.gateway.wait_until(
            v1_connection, "a PROXY protocol v1 header on a new connection", 10)
        assert greeting == f"{PROXIED}:v1 {HOST}:{client_port}>{HOST}:{port}\n"
        assert held.greeting.decode().startswith(f"{PROXIED}:v2 ")
        assert held.ask(b"v2 still") == b"v2 still"
    l4.config.listeners[TCP_PROXY].annotations[PROXY_PROTOCOL] = "v2"
    l4.reload(TCP_PROXY)


def test_an_idle_udp_session_expires_and_the_next_datagram_is_placed_afresh(
        l4: L4Stack) -> None:
    port = l4.port(UDP_IDLE_LISTENER)
    with UdpClient() as client:
        first = client.ask(port, b"first")
        opened = listener_status(l4.gateway, UDP_IDLE_LISTENER)["totals"]["accepted"]
        entry = wait_listener(
            l4.gateway, UDP_IDLE_LISTENER, "the session to expire",
            lambda entry: entry["flows"] == 0 and entry["totals"]["active"] == 0)
        assert entry["totals"]["expired"] >= 1
        second = client.ask(port, b"second")
        # Round robin places the returning client as a new flow: the next backend.
        assert second == BACKENDS[(BACKENDS.index(first) + 1) % len(BACKENDS)]
        entry = listener_status(l4.gateway, UDP_IDLE_LISTENER)
        assert entry["totals"]["accepted"] == opened + 1
        assert entry["flows"] == 1


def test_a_reload_changes_the_udp_idle_timeout(l4: L4Stack) -> None:
    annotations = l4.config.listeners[UDP_RELOAD].annotations
    assert UDP_IDLE_TIMEOUT not in annotations  # 30 s, the default
    annotations[UDP_IDLE_TIMEOUT] = f"{int(UDP_IDLE * 1000)}ms"
    l4.reload(UDP_RELOAD)
    with UdpClient() as client:
        client.ask(l4.port(UDP_RELOAD))
        wait_listener(l4.gateway, UDP_RELOAD, "every session to expire after 0.5 s",
                      lambda entry: entry["flows"] == 0 and entry["totals"]["active"] == 0)


# -- inferlane l4 status and metrics --------------------------------------------------------------


def l4_cli(gateway: GatewayProcess, *args: str) -> str:
    result = subprocess.run(
        inferlane_command("l4", "status", "--gateway", gateway.base_url, *args),
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def cli_tables(text: str) -> dict[str, dict[str, list[str]]]:
    """The CLI's backend rows (cells: backend, weight, new flows, flows, ...) by listener and
    backend; rich draws cells between │, a listener's header line names it."""
    tables: dict[str, dict[str, list[str]]] = {}
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        header = re.match(r"(?:tcp|udp) listener (\S+) port ", line)
        if header:
            rows = tables.setdefault(header.group(1), {})
            continue
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if cells and cells[0]:
            rows[cells[0]] = cells
    return tables


def test_l4_status_shows_listeners_backends_and_weights(l4: L4Stack) -> None:
    tables = cli_tables(l4_cli(l4.gateway))
    for name, spec in l4.config.listeners.items():
        rows = tables[listener_key(name)]
        weights = l4.config.backend_sets[spec.backend_set]
        assert {address: cells[1] for address, cells in rows.items()} == {
            address: str(weight) for address, weight in weights.items()}, name
        assert all(cells[2] in ("yes", "drained") for cells in rows.values()), rows

    def stable_json() -> tuple[Any, Any] | None:
        # Counters move while UDP sessions expire: compare with a status that held still.
        before = l4_status(l4.gateway)
        printed = json.loads(l4_cli(l4.gateway, "--json"))
        return (printed, before) if l4_status(l4.gateway) == before else None

    printed, served = poll(stable_json, "an /admin/l4 that holds still", 30, interval=0.5)
    assert printed == served


class Added:
    """What some traffic added to one listener's metrics."""

    def __init__(self, gateway: GatewayProcess, listener: str) -> None:
        self.gateway = gateway
        self.listener = listener_key(listener)
        self.before = gateway.metrics()
        self.after = self.before

    def __enter__(self) -> Added:
        return self

    def __exit__(self, *exc: object) -> None:
        self.after = self.gateway.metrics()

    def __call__(self, name: str, **labels: str) -> float:
        return (metric_value(self.after, name, listener=self.listener, **labels)
                - metric_value(self.before, name, listener=self.listener, **labels))


def test_metrics_count_connections_and_bytes_per_backend(l4: L4Stack) -> None:
    with Added(l4.gateway, TCP_RR) as added:
        replies = [tcp_exchange(l4.port(TCP_RR), b"x" * (100 + i))
                   for i in range(2 * len(BACKENDS))]
    for name in BACKENDS:
        mine = [reply for reply in replies if reply.backend == name]
        backend = l4.address(name)
        assert added("inferlane_l4_opened_total", backend=backend) == len(mine)
        assert added("inferlane_l4_bytes_total", backend=backend, direction="in") == sum(
            len(reply.data) for reply in mine)
        assert added("inferlane_l4_bytes_total", backend=backend, direction="out") == sum(
            len(name) + 1 + len(reply.data) for reply in mine)

    flows: dict[str, int] = {}
    with Added(l4.gateway, UDP_RR) as added:
        for _ in range(2 * len(BACKENDS)):
            with UdpClient() as client:
                backend = client.ask(l4.port(UDP_RR), b"count me")
                assert client.ask(l4.port(UDP_RR), b"count me too") == backend
            flows[backend] = flows.get(backend, 0) + 1
    for name, count in flows.items():
        backend = l4.address(name)
        assert added("inferlane_l4_opened_total", backend=backend) == count
        for direction in ("in", "out"):
            assert added("inferlane_l4_datagrams_total", backend=backend,
                         direction=direction) == 2 * count


# -- health (a stack of its own) ------------------------------------------------------------------

GUARDED = ("delta", "echo", "foxtrot")
TCP_GUARDED = "tcp-guarded"
VERDICT_TIMEOUT = 20.0
MAX_CONNECTIONS = 1000  # bound of the loop that connects until the verdict (and the time)


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[tuple[GatewayProcess, dict[str, EchoBackend]]]:
    """A gateway of its own (a backend gets killed) with a tcp Monitor on its BackendSet."""
    with echo_backends(tmp_path, GUARDED) as echoes, running_stack(tmp_path) as started:
        config = L4Config()
        config.backend_sets["guarded"] = {echoes[name].address: 1 for name in GUARDED}
        config.listen(TCP_GUARDED, "TCP", spare_port(), "guarded", **{ALGORITHM: "round-robin"})
        config.extra = [
            monitor_doc("connect", "tcp", interval="500ms", timeout="300ms", up=1, down=2),
            backend_set_policy_doc("guarded-health", "guarded", "connect"),
        ]
        path = write_config(tmp_path / "gateway.yaml", config.documents())
        yield started.gateway(path), echoes


def test_a_backend_that_fails_its_tcp_monitor_gets_no_new_connections(
        guarded: tuple[GatewayProcess, dict[str, EchoBackend]]) -> None:
    gateway, echoes = guarded
    port = listener_status(gateway, TCP_GUARDED)["port"]
    victim = echoes["foxtrot"]
    for name in GUARDED:
        gateway.wait_until(
            lambda name=name: health_endpoint(gateway, "guarded", echoes[name].address)[
                "verdict"] == "healthy" or None, f"{name} healthy", VERDICT_TIMEOUT)
    assert sorted(tcp_exchange(port, b"hi").backend for _ in GUARDED) == sorted(GUARDED)

    victim.send_signal(signal.SIGKILL)
    victim.wait_exit(timeout=10)
    failures: list[str] = []
    answered: list[str] = []
    deadline = time.monotonic() + VERDICT_TIMEOUT
    for _ in range(MAX_CONNECTIONS):
        if health_endpoint(gateway, "guarded", victim.address)["verdict"] == "unhealthy":
            break
        assert time.monotonic() < deadline, f"no unhealthy verdict for {victim.address} " \
                                            f"within {VERDICT_TIMEOUT:g}s\n{gateway.describe()}"
        try:
            answered.append(tcp_exchange(port, b"before the verdict").backend)
        except OSError as error:
            failures.append(repr(error))
        time.sleep(POLL_INTERVAL)
    else:
        raise AssertionError(f"no unhealthy verdict for {victim.address} after "
                             f"{MAX_CONNECTIONS} connections\n{gateway.describe()}")
    # Before the verdict the proxy retried the refused connects on the other backends.
    assert failures == []
    assert "foxtrot" not in answered
    rows = backend_rows(listener_status(gateway, TCP_GUARDED))
    failed_connects = rows[victim.address]["stats"]["connect_failures"]
    if len(answered) >= len(GUARDED):  # round robin picked foxtrot at least once
        assert failed_connects >= 1

    assert rows[victim.address]["routable"] is False
    names = [tcp_exchange(port, b"after the verdict").backend for _ in range(ROTATIONS * 2)]
    assert_rotation(names, ["delta", "echo"])
    rows = backend_rows(listener_status(gateway, TCP_GUARDED))
    assert rows[victim.address]["stats"]["connect_failures"] == failed_connects
    rows = cli_tables(l4_cli(gateway))[listener_key(TCP_GUARDED)]
    assert [rows[echoes[name].address][2] for name in GUARDED] == ["yes", "yes", "no (health)"]
