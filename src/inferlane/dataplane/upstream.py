"""Upstream options, the pool factory, and the mapping of upstream client exceptions.

Every exception the upstream client (``h1client``) can raise on a proxied request is mapped
here, at the boundary, into the gateway's own errors with a message naming the endpoint and
pool — so the proxy never catches blindly and the client never sees a stack trace.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from inferlane.dataplane.h1client import (
    UpstreamClosed,
    UpstreamConnectFailed,
    UpstreamError,
    UpstreamPool,
    UpstreamTimeoutError,
)
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


def create_pool(options: UpstreamOptions) -> UpstreamPool:
    return UpstreamPool(
        connect_timeout=options.connect_timeout,
        read_timeout=options.read_timeout,
        keepalive_timeout=options.keepalive_timeout,
    )


@contextmanager
def map_upstream_errors(endpoint: str, pool: str, *, timeout: float | None) -> Iterator[None]:
    """Turn upstream client errors into RequestErrors naming ``endpoint`` of ``pool``."""
    where = f"endpoint {endpoint} of InferencePool {pool}"
    try:
        yield
    except UpstreamTimeoutError as exc:
        limit = f" within {timeout:g}s" if timeout is not None else " in time"
        raise UpstreamTimeout(f"The model server at {where} did not answer{limit}.") from exc
    except UpstreamConnectFailed as exc:
        raise UpstreamConnectError(
            f"Could not connect to the model server at {where}: {exc}."
        ) from exc
    except UpstreamClosed as exc:
        if exc.started:
            raise UpstreamProtocolError(
                f"The model server at {where} closed the connection mid-response."
            ) from exc
        raise UpstreamConnectError(
            f"The model server at {where} closed the connection before answering."
        ) from exc
    except UpstreamError as exc:
        raise UpstreamProtocolError(
            f"The model server at {where} sent an invalid response: {exc}."
        ) from exc
