"""Probe adapters: the I/O that runs a ``MonitorSpec`` against a ``ProbeTarget``.

One module per monitor type (``http`` for http and https, ``tcp``, ``grpc``, ``inference``),
their pass/fail decisions in ``checks`` (pure), the retry-and-timeout loop in ``tries``.
``Probers`` is the registry: the one place that maps each ``MonitorType`` to its prober, used
by the gateway's health service and by probe agents. A probe never raises for an unhealthy
target; the ``ProbeResult`` says why.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from types import TracebackType
from typing import Protocol

from inferlane.health.monitors import MonitorSpec, MonitorType, Prober, ProbeTarget
from inferlane.health.probes.grpc import GrpcProber
from inferlane.health.probes.http import HttpProber
from inferlane.health.probes.inference import InferenceProber
from inferlane.health.probes.tcp import TcpProber
from inferlane.health.verdicts import ProbeResult


class ClosableProber(Prober, Protocol):
    """A prober holding connections, released by ``close()``."""

    async def close(self) -> None: ...


class Probers:
    """Every monitor type's prober; ``probe`` dispatches by ``monitor.type``.

    ``tls_context`` verifies https endpoints (default: the system's CAs).
    """

    def __init__(self, *, tls_context: ssl.SSLContext | None = None) -> None:
        http = HttpProber(tls_context=tls_context)
        self._by_type: Mapping[MonitorType, ClosableProber] = {
            MonitorType.HTTP: http,
            MonitorType.HTTPS: http,
            MonitorType.TCP: TcpProber(),
            MonitorType.GRPC: GrpcProber(),
            MonitorType.INFERENCE: InferenceProber(),
        }

    def prober(self, monitor_type: MonitorType) -> Prober:
        return self._by_type[monitor_type]

    async def probe(self, monitor: MonitorSpec, target: ProbeTarget) -> ProbeResult:
        return await self._by_type[monitor.type].probe(monitor, target)

    async def close(self) -> None:
        unique = {id(prober): prober for prober in self._by_type.values()}
        for prober in unique.values():
            await prober.close()

    async def __aenter__(self) -> Probers:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()


__all__ = [
    "ClosableProber",
    "GrpcProber",
    "HttpProber",
    "InferenceProber",
    "Probers",
    "TcpProber",
]
