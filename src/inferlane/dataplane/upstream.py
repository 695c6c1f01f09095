"""Upstream HTTP client: one pooled keep-alive session, and the mapping of its exceptions.

Every aiohttp client exception that can escape a proxied request is mapped here, at the
boundary, into the gateway's own errors with a message naming the endpoint and pool — so the
proxy never catches blindly and the client never sees a stack trace.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import aiohttp

from inferlane.errors import UpstreamConnectError, UpstreamProtocolError, UpstreamTimeout


@dataclass(frozen=True, slots=True)
class UpstreamOptions:
    connect_timeout: float = 5.0
    # Idle time allowed between bytes of an upstream response (a generation may be long, but it
    # must keep moving). Route timeouts bound the whole request.
    read_timeout: float = 300.0
    # Below uvicorn's default 5 s keep-alive (vLLM, SGLang), so we rarely reuse a connection the
    # server is about to close.
    keepalive_timeout: float = 4.0
    max_connections: int = 0  # 0 = unlimited; model servers do their own admission


def create_session(options: UpstreamOptions) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=options.max_connections,
        keepalive_timeout=options.keepalive_timeout,
        ttl_dns_cache=30,
        enable_cleanup_closed=False,
    )
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,  # relay bytes as the upstream sent them
        skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        timeout=aiohttp.ClientTimeout(
            total=None, connect=options.connect_timeout, sock_read=options.read_timeout
        ),
        cookie_jar=aiohttp.DummyCookieJar(),
    )


@contextmanager
def map_upstream_errors(
    endpoint: str, pool: str, *, timeout: float | None, started: bool = False
) -> Iterator[None]:
    """Turn aiohttp/OS errors into RequestErrors naming ``endpoint`` of ``pool``.

    ``started`` says whether response headers were already received (then a failure is a
    broken response rather than a failed connect).
    """
    where = f"endpoint {endpoint} of InferencePool {pool}"
    try:
        yield
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        limit = f" within {timeout:g}s" if timeout is not None else " in time"
        raise UpstreamTimeout(f"The model server at {where} did not answer{limit}.") from exc
    except aiohttp.ClientConnectorError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise UpstreamConnectError(
            f"Could not connect to the model server at {where}: {reason}."
        ) from exc
    except aiohttp.ClientPayloadError as exc:
        raise UpstreamProtocolError(
            f"The model server at {where} broke off its response mid-body."
        ) from exc
    except aiohttp.ServerDisconnectedError as exc:
        if started:
            raise UpstreamProtocolError(
                f"The model server at {where} closed the connection mid-response."
            ) from exc
        raise UpstreamConnectError(
            f"The model server at {where} closed the connection before answering."
        ) from exc
    except (aiohttp.ClientResponseError, aiohttp.ClientOSError) as exc:
        raise UpstreamProtocolError(
            f"The model server at {where} sent an invalid response or reset the connection."
        ) from exc
