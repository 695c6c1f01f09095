"""``GrpcProber``: ``grpc`` monitors, grpc.health.v1 ``Health/Check`` over grpc.aio.

One channel per (host, port), reused across probes (a channel is a connection manager, costly
to build), at most ``max_channels`` of them: the least recently used one is closed, letting its
calls in flight finish. Channels are plaintext (``GrpcCheck`` has no TLS settings). Only
SERVING passes; NOT_FOUND (unknown service) and UNIMPLEMENTED (no health service) are answers
that fail; UNAVAILABLE and DEADLINE_EXCEEDED mean nothing answered.

grpcio ships no type hints, hence the ``Any`` of channels and stubs here.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any

import grpc  # type: ignore[import-untyped]
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]

from inferlane.health.monitors import GrpcCheck, MonitorSpec, MonitorType, ProbeTarget
from inferlane.health.probes.checks import grpc_error, grpc_outcome, host_port
from inferlane.health.probes.tries import Attempt, run_tries
from inferlane.health.verdicts import ProbeResult

# Our tries are the retries, not the channel's. A short reconnect backoff: after the endpoint
# was down, a reused channel must not keep failing fast (gRPC's default backoff grows to 120 s)
# once it is back.
_CHANNEL_OPTIONS = (
    ("grpc.enable_retries", 0),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)
_EVICTION_GRACE = 5.0  # seconds an evicted channel's calls in flight may still take


class GrpcProber:
    """Probes ``grpc`` monitors over cached channels (``close()`` it)."""

    def __init__(self, *, max_channels: int = 256) -> None:
        if max_channels < 1:
            raise ValueError(f"max_channels must be >= 1, got {max_channels}")
        self._max_channels = max_channels
        self._channels: OrderedDict[tuple[str, int], tuple[Any, Any]] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    async def probe(self, monitor: MonitorSpec, target: ProbeTarget) -> ProbeResult:
        check = monitor.grpc
        if check is None or monitor.type is not MonitorType.GRPC:
            raise ValueError(f"monitor {monitor.key} is a {monitor.type} monitor, not grpc")
        return await run_tries(monitor, lambda: self._try(target, check, monitor.timeout))

    async def close(self) -> None:
        self._closed = True
        channels = [channel for channel, _ in self._channels.values()]
        self._channels.clear()
        await asyncio.gather(*(channel.close() for channel in channels), *self._closing)

    async def _try(self, target: ProbeTarget, check: GrpcCheck, deadline: float) -> Attempt:
        stub = self._stub(target.host, target.port)
        request = health_pb2.HealthCheckRequest(service=check.service)
        started = time.monotonic()
        try:
            # The deadline travels to the server too, so it can give up on our behalf.
            response = await stub.Check(request, timeout=deadline)
        except grpc.aio.AioRpcError as error:
            code: str = error.code().name
            details: str = error.details() or ""
            reason, answered = grpc_error(code, details, check.service, deadline)
            return Attempt(False, reason, time.monotonic() - started if answered else None)
        rtt = time.monotonic() - started
        status = int(response.status)
        try:
            name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
        except ValueError:  # a status newer than our health_pb2
            name = f"status {status}"
        outcome = grpc_outcome(name, check.service)
        return Attempt(outcome.ok, outcome.reason, rtt)

    def _stub(self, host: str, port: int) -> Any:
        if self._closed:
            raise RuntimeError("this prober is closed; build a new one")
        key = (host, port)
        cached = self._channels.get(key)
        if cached is not None:
            self._channels.move_to_end(key)
            return cached[1]
        channel = grpc.aio.insecure_channel(host_port(host, port), options=_CHANNEL_OPTIONS)
        stub = health_pb2_grpc.HealthStub(channel)
        self._channels[key] = (channel, stub)
        while len(self._channels) > self._max_channels:
            _, (evicted, _) = self._channels.popitem(last=False)
            task = asyncio.get_running_loop().create_task(evicted.close(grace=_EVICTION_GRACE))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        return stub
