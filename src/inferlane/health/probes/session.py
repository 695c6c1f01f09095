"""The aiohttp side shared by the HTTP-speaking probers (``http``, ``inference``).

``SessionHolder`` owns one ``ClientSession`` per prober, created on first use (it must be made
inside the running event loop) and closed by ``close()``. Every probe opens a fresh connection
(``force_close``): a health check should see what a new client sees, and a pooled connection
that the server closed while idle between probes would fail a probe for no fault of the
endpoint. No cookies, no proxies from the environment, no aiohttp timeouts: each try is bounded
by ``asyncio.timeout`` in ``tries.run_tries``.

``describe_client_error`` maps aiohttp's exceptions to a reason at this boundary.
"""

from __future__ import annotations

import ssl

import aiohttp

from inferlane.health.probes.checks import describe_os_error, one_line

USER_AGENT = "inferlane-health-probe"


class SessionHolder:
    """One lazily created aiohttp session with a bounded connector."""

    def __init__(self, *, limit: int, limit_per_host: int) -> None:
        if limit < 1 or limit_per_host < 1:
            raise ValueError(f"probe connection limits must be >= 1, got limit={limit}, "
                             f"limit_per_host={limit_per_host}")
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def get(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("this prober is closed; build a new one")
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._limit,
                                             limit_per_host=self._limit_per_host,
                                             force_close=True)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(),
                cookie_jar=aiohttp.DummyCookieJar(), headers={"User-Agent": USER_AGENT},
                trust_env=False)
        return self._session

    async def close(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()


async def read_bounded(content: aiohttp.StreamReader, limit: int) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes of a body, and whether more followed."""
    data = bytearray()
    while len(data) < limit:
        chunk = await content.read(limit - len(data))
        if not chunk:
            return bytes(data), False
        data += chunk
    return bytes(data), bool(await content.read(1))


def describe_client_error(error: aiohttp.ClientError) -> tuple[str, bool]:
    """The reason for a failed request, and whether the server answered at all (False: no
    round trip to report)."""
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        certificate = error.certificate_error
        detail = getattr(certificate, "verify_message", "") or str(certificate)
        return f"TLS certificate rejected ({one_line(detail)})", False
    if isinstance(error, aiohttp.ClientSSLError):
        cause = error.os_error
        if isinstance(cause, ssl.SSLError):
            detail = getattr(cause, "reason", None) or cause.strerror or str(cause)
        else:
            detail = describe_os_error(cause)
        return f"TLS handshake failed ({one_line(detail)})", False
    if isinstance(error, aiohttp.ClientConnectorError):  # refused, unreachable, DNS, ...
        return describe_os_error(error.os_error), False
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without answering", False
    if isinstance(error, aiohttp.TooManyRedirects):
        return f"too many redirects ({len(error.history)})", True
    if isinstance(error, aiohttp.RedirectClientError):
        return "redirected to an unusable URL", True
    if isinstance(error, aiohttp.ClientPayloadError):
        return "the response body broke off", True
    if isinstance(error, aiohttp.ClientResponseError):
        return f"malformed response ({one_line(error.message)})", True
    if isinstance(error, aiohttp.InvalidURL):
        return "invalid probe URL (check the monitor's path)", False
    if isinstance(error, aiohttp.ClientOSError):
        return describe_os_error(error), False
    return f"HTTP client error ({type(error).__name__})", False
