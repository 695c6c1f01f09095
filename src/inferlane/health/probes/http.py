"""``HttpProber``: ``http`` and ``https`` monitors with aiohttp.

One request per try: the monitor's method, path and headers; redirects followed only when the
monitor says so; at most ``BODY_LIMIT`` bytes of the body read, and only when the monitor
expects a body substring. HTTPS verifies the endpoint's certificate (against ``tls_context``,
the system's CAs by default) unless the monitor sets ``insecure_skip_verify``; when the monitor
sends a ``Host`` header, that name is the TLS server name, since endpoints are addressed by IP.
"""

from __future__ import annotations

import ssl
import time

import aiohttp

from inferlane.health.monitors import HttpCheck, MonitorSpec, MonitorType, ProbeTarget
from inferlane.health.probes.checks import (
    BODY_LIMIT,
    decode_body,
    describe_os_error,
    http_outcome,
    probe_url,
    tls_server_name,
)
from inferlane.health.probes.session import SessionHolder, describe_client_error, read_bounded
from inferlane.health.probes.tries import Attempt, run_tries
from inferlane.health.verdicts import ProbeResult


class HttpProber:
    """Probes ``http``/``https`` monitors over one shared session (``close()`` it)."""

    def __init__(self, *, tls_context: ssl.SSLContext | None = None, limit: int = 256,
                 limit_per_host: int = 8) -> None:
        self._sessions = SessionHolder(limit=limit, limit_per_host=limit_per_host)
        self._tls: ssl.SSLContext | bool = tls_context if tls_context is not None else True

    async def probe(self, monitor: MonitorSpec, target: ProbeTarget) -> ProbeResult:
        check = monitor.http
        if check is None or monitor.type not in (MonitorType.HTTP, MonitorType.HTTPS):
            raise ValueError(f"monitor {monitor.key} is a {monitor.type} monitor, not http(s)")
        url = probe_url(str(monitor.type), target.host, target.port, check.path)
        https = monitor.type is MonitorType.HTTPS
        return await run_tries(monitor, lambda: self._try(url, check, https=https))

    async def close(self) -> None:
        await self._sessions.close()

    async def _try(self, url: str, check: HttpCheck, *, https: bool) -> Attempt:
        session = self._sessions.get()
        tls: ssl.SSLContext | bool = False if check.insecure_skip_verify else self._tls
        started = time.monotonic()
        try:
            async with session.request(
                    check.method, url, headers=check.headers,
                    allow_redirects=check.follow_redirects, ssl=tls,
                    server_hostname=tls_server_name(check.headers) if https else None,
            ) as response:
                body: str | None = None
                truncated = False
                if check.expected_body:
                    data, truncated = await read_bounded(response.content, BODY_LIMIT)
                    body = decode_body(data, response.charset)
                outcome = http_outcome(response.status, body, check, truncated=truncated)
        except aiohttp.ClientError as error:
            reason, answered = describe_client_error(error)
            return Attempt(False, reason, time.monotonic() - started if answered else None)
        except OSError as error:  # raised by the socket or TLS layer without aiohttp's wrapper
            return Attempt(False, describe_os_error(error), None)
        return Attempt(outcome.ok, outcome.reason, time.monotonic() - started)
