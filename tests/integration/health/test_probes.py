"""``HttpProber`` (http and https) against the real servers of conftest.py, and the
``Probers`` registry dispatching every monitor type."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from inferlane.health.monitors import CodeRange, MonitorType
from inferlane.health.probes import HttpProber, Probers

from .conftest import (
    SECRET,
    SHORT,
    SIM_MODEL,
    Tls,
    WebServer,
    grpc_monitor,
    http_monitor,
    inference_monitor,
    target,
    tcp_monitor,
    tcp_serving,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def http_prober() -> AsyncIterator[HttpProber]:
    prober = HttpProber()
    try:
        yield prober
    finally:
        await prober.close()


async def test_http_passes_with_expected_body(http_prober: HttpProber,
                                              web_server: WebServer) -> None:
    result = await http_prober.probe(http_monitor(expected_body="ready"), target(web_server.port))
    assert (result.ok, result.reason) == (True, "HTTP 200")
    assert result.rtt is not None


@pytest.mark.parametrize(
    ("path", "check", "ok", "reason"),
    [
        pytest.param("/status/503", {}, False, "HTTP 503, expected 2xx", id="503"),
        pytest.param("/status/404", {"expected_codes": (CodeRange(404, 404),)}, True,
                     "HTTP 404", id="404-expected"),
        pytest.param("/health", {"expected_body": "healthy"}, False,
                     "HTTP 200 but the body lacks 'healthy'", id="body-lacks"),
        pytest.param("/big", {"expected_body": "ready"}, False,
                     "HTTP 200 but the first 64 KiB of the body lacks 'ready'",
                     id="body-beyond-64-KiB"),
        pytest.param("/redirect", {}, False, "HTTP 302, expected 2xx",
                     id="redirect-not-followed"),
        pytest.param("/redirect", {"follow_redirects": True, "expected_body": "ready"}, True,
                     "HTTP 200", id="redirect-followed"),
        pytest.param("/loop", {"follow_redirects": True}, False, "too many redirects (10)",
                     id="redirect-loop"),
        pytest.param("/method", {"method": "DELETE", "expected_body": "method=DELETE"}, True,
                     "HTTP 200", id="method-sent"),
        pytest.param("/token", {"headers": (("X-Probe-Token", SECRET),)}, True, "HTTP 200",
                     id="header-sent"),
    ],
)
async def test_http_checks(http_prober: HttpProber, web_server: WebServer, path: str,
                           check: dict[str, Any], ok: bool, reason: str) -> None:
    result = await http_prober.probe(http_monitor(path=path, **check), target(web_server.port))
    assert (result.ok, result.reason) == (ok, reason)
    assert result.rtt is not None  # the server answered, pass or fail


async def test_http_reason_never_shows_header_values(http_prober: HttpProber,
                                                     web_server: WebServer) -> None:
    monitor = http_monitor(path="/token", headers=(("X-Probe-Token", "wrong-" + SECRET),),
                           retries=1)
    result = await http_prober.probe(monitor, target(web_server.port))
    assert (result.ok, result.reason) == (False, "HTTP 403, expected 2xx (failed 2 tries)")
    assert SECRET not in result.reason


async def test_http_timeout(http_prober: HttpProber, web_server: WebServer) -> None:
    result = await http_prober.probe(http_monitor(path="/slow", timeout=SHORT),
                                     target(web_server.port))
    assert (result.ok, result.reason, result.rtt) == (False, "timed out after 0.2 s", None)


async def test_http_refused(http_prober: HttpProber, refused_port: int) -> None:
    result = await http_prober.probe(http_monitor(), target(refused_port))
    assert (result.ok, result.reason, result.rtt) == (False, "connection refused", None)


async def test_http_retry_passes_on_second_try(http_prober: HttpProber,
                                               web_server: WebServer) -> None:
    result = await http_prober.probe(http_monitor(path="/flaky", retries=1),
                                     target(web_server.port))
    assert (result.ok, result.reason) == (True, "HTTP 200 (on try 2 of 2)")
    assert web_server.seen.count("/flaky") == 2


async def test_http_without_retries_fails_on_first_try(http_prober: HttpProber,
                                                       web_server: WebServer) -> None:
    result = await http_prober.probe(http_monitor(path="/flaky"), target(web_server.port))
    assert (result.ok, result.reason) == (False, "HTTP 500, expected 2xx")


async def test_http_all_tries_fail(http_prober: HttpProber, web_server: WebServer) -> None:
    result = await http_prober.probe(http_monitor(path="/status/500", retries=2),
                                     target(web_server.port))
    assert (result.ok, result.reason) == (False, "HTTP 500, expected 2xx (failed 3 tries)")
    assert web_server.seen.count("/status/500") == 3


async def test_https_with_trusted_ca(tls: Tls, https_port: int) -> None:
    prober = HttpProber(tls_context=tls.client)
    try:
        monitor = http_monitor(MonitorType.HTTPS, expected_body="ready")
        result = await prober.probe(monitor, target(https_port))
    finally:
        await prober.close()
    assert (result.ok, result.reason) == (True, "HTTP 200")


async def test_https_untrusted_certificate_fails(http_prober: HttpProber,
                                                 https_port: int) -> None:
    result = await http_prober.probe(http_monitor(MonitorType.HTTPS), target(https_port))
    assert not result.ok
    assert result.reason.startswith("TLS certificate rejected"), result.reason
    assert result.rtt is None


async def test_https_insecure_skip_verify(http_prober: HttpProber, https_port: int) -> None:
    monitor = http_monitor(MonitorType.HTTPS, insecure_skip_verify=True)
    result = await http_prober.probe(monitor, target(https_port))
    assert (result.ok, result.reason) == (True, "HTTP 200")


@pytest.mark.parametrize(
    ("host", "ok"),
    [pytest.param("localhost:443", True, id="name-in-certificate"),
     pytest.param("api.example.com", False, id="name-not-in-certificate")],
)
async def test_https_host_header_is_the_tls_name(tls: Tls, https_port: int, host: str,
                                                 ok: bool) -> None:
    prober = HttpProber(tls_context=tls.client)
    try:
        monitor = http_monitor(MonitorType.HTTPS, headers=(("Host", host),))
        result = await prober.probe(monitor, target(https_port))
    finally:
        await prober.close()
    assert result.ok is ok, result.reason
    if not ok:
        assert result.reason.startswith("TLS certificate rejected"), result.reason


async def test_http_against_servers_that_break_http(http_prober: HttpProber) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async def not_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b"-ERR unknown\r\n")
        await writer.drain()

    async def cut_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nready")
        await writer.drain()

    monitor = http_monitor(expected_body="ready")
    async with tcp_serving(hang_up) as port:
        hung_up = await http_prober.probe(monitor, target(port))
    async with tcp_serving(not_http) as port:
        garbage = await http_prober.probe(monitor, target(port))
        plaintext = await http_prober.probe(http_monitor(MonitorType.HTTPS), target(port))
    async with tcp_serving(cut_body) as port:
        cut = await http_prober.probe(monitor, target(port))
    # Whether the request left before the close decides between the two.
    assert hung_up.reason in ("connection reset by the peer",
                              "the server closed the connection without answering")
    assert garbage.reason.startswith("malformed response (Bad status line"), garbage.reason
    assert "\n" not in garbage.reason
    assert plaintext.reason.startswith("TLS handshake failed ("), plaintext.reason
    assert cut.reason == "the response body broke off"
    assert not any(r.ok for r in (hung_up, garbage, plaintext, cut))


# --- the registry ----------------------------------------------------------------------------


async def test_probers_dispatch_every_type(tls: Tls, web_server: WebServer, https_port: int,
                                           tcp_port: int, grpc_port: int, sim: int) -> None:
    plan = [
        (http_monitor(expected_body="ready"), target(web_server.port)),
        (http_monitor(MonitorType.HTTPS), target(https_port)),
        (tcp_monitor(send=b"PING\r\n", expect=b"+PONG"), target(tcp_port)),
        (grpc_monitor("llm"), target(grpc_port)),
        (inference_monitor(), target(sim, model=SIM_MODEL)),
    ]
    assert {monitor.type for monitor, _ in plan} == set(MonitorType)
    async with Probers(tls_context=tls.client) as probers:
        results = await asyncio.gather(*(probers.probe(m, t) for m, t in plan))
    assert [r.reason for r in results if not r.ok] == []
