"""``TcpProber`` and ``GrpcProber`` against the real servers of conftest.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from inferlane.health.probes import GrpcProber, TcpProber

from .conftest import SHORT, grpc_monitor, grpc_serving, target, tcp_monitor, tcp_serving

pytestmark = pytest.mark.integration


# --- TCP -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("check", "ok", "reason"),
    [
        pytest.param({}, True, "connected", id="connect-only"),
        pytest.param({"send": b"PING\r\n", "expect": b"+PONG"}, True,
                     "connected and got b'+PONG'", id="send-expect"),
        pytest.param({"send": b"HELLO\r\n", "expect": b"+PONG"}, False,
                     "connection closed before b'+PONG' arrived (got b'-ERR unknown\\r\\n')",
                     id="wrong-answer"),
    ],
)
async def test_tcp_checks(tcp_port: int, check: dict[str, Any], ok: bool, reason: str) -> None:
    result = await TcpProber().probe(tcp_monitor(**check), target(tcp_port))
    assert (result.ok, result.reason) == (ok, reason)
    assert result.rtt is not None


async def test_tcp_silent_server_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            await reader.read()  # until the probe drops the connection
        writer.close()

    async with tcp_serving(silent) as port:
        monitor = tcp_monitor(send=b"PING\r\n", expect=b"+PONG", timeout=SHORT)
        result = await TcpProber().probe(monitor, target(port))
    assert (result.ok, result.reason, result.rtt) == (False, "timed out after 0.2 s", None)


async def test_tcp_refused(refused_port: int) -> None:
    result = await TcpProber().probe(tcp_monitor(), target(refused_port))
    assert (result.ok, result.reason, result.rtt) == (False, "connection refused", None)


# --- gRPC ----------------------------------------------------------------------------------


@pytest.fixture
async def grpc_prober() -> AsyncIterator[GrpcProber]:
    prober = GrpcProber()
    try:
        yield prober
    finally:
        await prober.close()


@pytest.mark.parametrize(
    ("service", "ok", "reason"),
    [
        pytest.param("", True, "SERVING", id="server"),
        pytest.param("llm", True, "SERVING", id="service-serving"),
        pytest.param("down", False, "service 'down' is NOT_SERVING", id="not-serving"),
        pytest.param("nope", False,
                     "the server does not know service 'nope' (gRPC NOT_FOUND)",
                     id="unknown-service"),
    ],
)
async def test_grpc_health(grpc_prober: GrpcProber, grpc_port: int, service: str, ok: bool,
                           reason: str) -> None:
    result = await grpc_prober.probe(grpc_monitor(service), target(grpc_port))
    assert (result.ok, result.reason) == (ok, reason)
    assert result.rtt is not None


async def test_grpc_without_health_service(grpc_prober: GrpcProber) -> None:
    async with grpc_serving(health=False) as port:
        result = await grpc_prober.probe(grpc_monitor(), target(port))
    assert (result.ok, result.reason) == (
        False, "the server does not implement grpc.health.v1.Health (gRPC UNIMPLEMENTED)")


async def test_grpc_refused(grpc_prober: GrpcProber, refused_port: int) -> None:
    result = await grpc_prober.probe(grpc_monitor(), target(refused_port))
    assert (result.ok, result.reason, result.rtt) == (False, "connection refused", None)


async def test_grpc_channel_cache_evicts_and_reconnects() -> None:
    prober = GrpcProber(max_channels=1)
    try:
        async with grpc_serving() as first, grpc_serving() as second:
            for port in (first, second, first, second):
                result = await prober.probe(grpc_monitor(), target(port))
                assert (result.ok, result.reason) == (True, "SERVING"), port
    finally:
        await prober.close()


async def test_grpc_cached_channel_sees_the_server_return(grpc_prober: GrpcProber) -> None:
    async with grpc_serving() as port:
        assert (await grpc_prober.probe(grpc_monitor(), target(port))).ok
    down = await grpc_prober.probe(grpc_monitor(), target(port))
    assert not down.ok
    async with grpc_serving(port=port):
        # The channel reconnects on its own schedule; bounded, not timed.
        for _ in range(50):
            back = await grpc_prober.probe(grpc_monitor(), target(port))
            if back.ok:
                break
            await asyncio.sleep(0.1)
    assert (back.ok, back.reason) == (True, "SERVING")
