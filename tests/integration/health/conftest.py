"""Real servers on 127.0.0.1 for the probe adapters' tests, started and stopped per test.

- ``serving``: an aiohttp app on an ephemeral port; ``health_app`` is the monitors' target app
  (statuses, bodies, redirects, headers, a slow and a flaky handler), served plain
  (``web_server``) and with a throwaway ``trustme`` CA (``tls``, ``https_port``).
- ``tcp_serving``: an asyncio server for a connection handler; ``tcp_port`` speaks a tiny
  PING/PONG line protocol.
- ``grpc_serving``: a ``grpc.aio`` server with grpc_health.v1's ``HealthServicer`` (or none).
- ``sim``: the simulator in-process (``SimReplica``); ``set_faults`` breaks it through
  ``POST /sim/faults``.
- ``refused_port``: a port bound a moment ago, then closed: nobody listens there.

The test modules import the helpers (``from .conftest import ...``) and take the fixtures.
Nothing asserts on timing: timeouts come from handlers that wait far longer than a monitor's
``SHORT`` timeout; every other test uses a ``GENEROUS`` one.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import grpc
import pytest
import trustme
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from inferlane.health.monitors import (
    GrpcCheck,
    HttpCheck,
    InferenceCheck,
    MonitorSpec,
    MonitorType,
    ProbeTarget,
    TcpCheck,
)
from inferlane.sim.server import ReplicaSettings, SimReplica

HOST = "127.0.0.1"
GENEROUS = 10.0  # seconds: the timeout of tests about correctness, on a loaded machine
SHORT = 0.2  # seconds: the timeout of tests about timeouts (the server waits far longer)
SECRET = "s3cret-t0ken-value"
SIM_MODEL = "sim-model"


def target(port: int, model: str = "") -> ProbeTarget:
    return ProbeTarget(endpoint=f"{HOST}:{port}", host=HOST, port=port, model=model)


def http_monitor(kind: MonitorType = MonitorType.HTTP, *, timeout: float = GENEROUS,
                 retries: int = 0, **check: Any) -> MonitorSpec:
    return MonitorSpec(key="default/http", type=kind, interval=max(timeout, 10.0),
                       timeout=timeout, retries=retries, http=HttpCheck(**check))


def tcp_monitor(*, timeout: float = GENEROUS, **check: Any) -> MonitorSpec:
    return MonitorSpec(key="default/tcp", type=MonitorType.TCP, timeout=timeout,
                       tcp=TcpCheck(**check))


def grpc_monitor(service: str = "", *, timeout: float = GENEROUS) -> MonitorSpec:
    return MonitorSpec(key="default/grpc", type=MonitorType.GRPC, timeout=timeout,
                       grpc=GrpcCheck(service=service))


def inference_monitor(*, timeout: float = GENEROUS, **check: Any) -> MonitorSpec:
    return MonitorSpec(key="default/inference", type=MonitorType.INFERENCE, timeout=timeout,
                       inference=InferenceCheck(**check))


@pytest.fixture
def refused_port() -> int:
    """A port nobody listens on (it was bound a moment ago, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serving(app: web.Application, tls: ssl.SSLContext | None = None
                  ) -> AsyncIterator[int]:
    """Serve ``app`` on an ephemeral loopback port; handlers are cancelled when the client
    leaves (the slow handler must not outlive the test)."""
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None,
                           shutdown_timeout=0.5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, HOST, 0, ssl_context=tls)
        await site.start()
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def tcp_serving(handler: Any) -> AsyncIterator[int]:
    """Serve ``handler`` on an ephemeral port; its connections are cancelled at the end."""
    connections: set[asyncio.Task[Any]] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections.add(task)
        try:
            await handler(reader, writer)
        finally:
            connections.discard(task)
            writer.close()  # also when cancelled at the end

    server = await asyncio.start_server(tracked, HOST, 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        for task in list(connections):
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)
        await server.wait_closed()


# --- HTTP(S) servers ---------------------------------------------------------------------


@dataclass
class Seen:
    """What the test app saw: requests per path."""

    paths: list[str] = field(default_factory=list)

    def count(self, path: str) -> int:
        return self.paths.count(path)


SEEN = web.AppKey("seen", Seen)


def health_app() -> web.Application:
    async def health(request: web.Request) -> web.Response:
        return web.Response(text="status: READY")

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="as asked")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/health")

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(60)  # cancelled when the probe gives up
        return web.Response(text="too late")

    async def flaky(request: web.Request) -> web.Response:
        first = request.app[SEEN].count("/flaky") == 1
        return web.Response(status=500 if first else 200, text="flaky")

    async def big(request: web.Request) -> web.Response:
        return web.Response(text="x" * (100 * 1024) + "ready")

    async def token(request: web.Request) -> web.Response:
        ok = request.headers.get("X-Probe-Token") == SECRET
        return web.Response(status=200 if ok else 403, text="token checked")

    async def method(request: web.Request) -> web.Response:
        return web.Response(text=f"method={request.method}")

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        request.app[SEEN].paths.append(request.path)
        response: web.StreamResponse = await handler(request)
        return response

    app = web.Application(middlewares=[record])
    app[SEEN] = Seen()
    app.router.add_get("/health", health)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/loop", loop)
    app.router.add_get("/slow", slow)
    app.router.add_get("/flaky", flaky)
    app.router.add_get("/big", big)
    app.router.add_get("/token", token)
    app.router.add_route("*", "/method", method)
    return app


@dataclass
class WebServer:
    port: int
    seen: Seen


@pytest.fixture
async def web_server() -> AsyncIterator[WebServer]:
    app = health_app()
    async with serving(app) as port:
        yield WebServer(port, app[SEEN])


@dataclass(frozen=True)
class Tls:
    server: ssl.SSLContext
    client: ssl.SSLContext  # trusts the throwaway CA


@pytest.fixture(scope="module")
def tls() -> Tls:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST, "localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return Tls(server, client)


@pytest.fixture
async def https_port(tls: Tls) -> AsyncIterator[int]:
    async with serving(health_app(), tls.server) as port:
        yield port


# --- TCP server ------------------------------------------------------------------------


async def ping_pong(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """``PING`` → ``+PONG``; anything else → ``-ERR unknown`` and hang up."""
    with contextlib.suppress(OSError):
        line = await reader.readline()
        writer.write(b"+PONG\r\n" if line.strip() == b"PING" else b"-ERR unknown\r\n")
        await writer.drain()
    writer.close()


@pytest.fixture
async def tcp_port() -> AsyncIterator[int]:
    async with tcp_serving(ping_pong) as port:
        yield port


# --- gRPC servers ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def grpc_serving(*, health: bool = True, port: int = 0) -> AsyncIterator[int]:
    """A grpc.aio server: overall SERVING, service ``llm`` SERVING, ``down`` NOT_SERVING."""
    server = grpc.aio.server()
    if health:
        servicer = health_aio.HealthServicer()
        await servicer.set("llm", health_pb2.HealthCheckResponse.SERVING)
        await servicer.set("down", health_pb2.HealthCheckResponse.NOT_SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"{HOST}:{port}")
    await server.start()
    try:
        yield bound
    finally:
        await server.stop(None)


@pytest.fixture
async def grpc_port() -> AsyncIterator[int]:
    async with grpc_serving() as port:
        yield port


# --- the simulator ---------------------------------------------------------------------


@pytest.fixture
async def sim() -> AsyncIterator[int]:
    replica = SimReplica(0, ReplicaSettings(model=SIM_MODEL))
    await replica.start(HOST, 0)
    try:
        yield int(replica.address.rsplit(":", 1)[1])
    finally:
        await replica.stop()


async def set_faults(port: int, **faults: Any) -> None:
    async with aiohttp.ClientSession() as session, session.post(
            f"http://{HOST}:{port}/sim/faults", json=faults) as response:
        assert response.status == 200, await response.text()
