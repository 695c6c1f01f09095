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
def map_upstream_errors(where: str, *, timeout: float | None) -> Iterator[None]:
    """Turn upstream client errors into RequestErrors naming ``where`` ("the model server at
    endpoint A of InferencePool P", "provider P at host:port")."""
    subject = where[:1].upper() + where[1:]
    try:
        yield
    except UpstreamTimeoutError as exc:
        limit = f" within {timeout:g}s" if timeout is not None else " in time"
        raise UpstreamTimeout(f"{subject} did not answer{limit}.") from exc
    except UpstreamConnectFailed as exc:
        raise UpstreamConnectError(
            f"Could not connect to {where}: {exc}."
        ) from exc
    except UpstreamClosed as exc:
        if exc.started:
            raise UpstreamProtocolError(
                f"{subject} closed the connection mid-response."
            ) from exc
        raise UpstreamConnectError(
            f"{subject} closed the connection before answering."
        ) from exc
    except UpstreamError as exc:
        raise UpstreamProtocolError(
            f"{subject} sent an invalid response: {exc}."
        ) from exc
