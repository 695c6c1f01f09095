"""Counters of the user-space L4 proxies, read by ``/metrics`` and ``inferlane l4 status``.

Where it sits: ``proxy_tcp.py`` and ``proxy_udp.py`` bump these plain integers on their hot
paths (no locks: one event loop owns them); readers take a ``snapshot()``, a JSON-ready dict.
Totals are sums over the per-backend counters, so a hot path touches one object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypedDict

DropReason = Literal[
    "no-backend",  # no candidate backend for a new UDP session
    "session-limit",  # the UDP session table is full
    "pending-full",  # a UDP session's socket is still opening and its small queue is full
    "upstream-full",  # the backend-side socket's send buffer is full
    "client-full",  # the listening socket's send buffer is full (replies to clients)
]


class BackendSnapshot(TypedDict):
    active: int
    total: int
    bytes_in: int
    bytes_out: int
    datagrams_in: int
    datagrams_out: int
    connect_failures: int


class StatsSnapshot(TypedDict):
    protocol: str
    active: int
    accepted: int
    rejected: int
    expired: int
    bytes_in: int
    bytes_out: int
    buffered: int
    peak_buffered: int
    dropped: dict[str, int]
    backends: dict[str, BackendSnapshot]


@dataclass(slots=True)
class BackendStats:
    """One backend's counters; ``in`` is client → backend, ``out`` is backend → client."""

    active: int = 0  # open TCP connections / UDP sessions
    total: int = 0  # connections / sessions ever opened
    bytes_in: int = 0
    bytes_out: int = 0
    datagrams_in: int = 0
    datagrams_out: int = 0
    connect_failures: int = 0  # TCP connects refused or timed out

    def snapshot(self) -> BackendSnapshot:
        return BackendSnapshot(
            active=self.active, total=self.total, bytes_in=self.bytes_in,
            bytes_out=self.bytes_out, datagrams_in=self.datagrams_in,
            datagrams_out=self.datagrams_out, connect_failures=self.connect_failures)


@dataclass(slots=True)
class ProxyStats:
    """One proxy's counters. A backend removed from the set keeps its row (its totals stay)."""

    protocol: Literal["tcp", "udp"]
    backends: dict[str, BackendStats] = field(default_factory=dict)
    accepted: int = 0  # TCP connections accepted / UDP sessions opened
    rejected: int = 0  # TCP connections closed because no backend took them
    expired: int = 0  # UDP sessions ended by the idle timeout
    peak_buffered: int = 0  # the largest write buffer seen on one socket, in bytes
    dropped: dict[str, int] = field(default_factory=dict)  # UDP datagrams, by DropReason

    def backend(self, key: str) -> BackendStats:
        row = self.backends.get(key)
        if row is None:
            row = self.backends[key] = BackendStats()
        return row

    def drop(self, reason: DropReason, count: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + count

    @property
    def active(self) -> int:
        return sum(row.active for row in self.backends.values())

    @property
    def bytes_in(self) -> int:
        return sum(row.bytes_in for row in self.backends.values())

    @property
    def bytes_out(self) -> int:
        return sum(row.bytes_out for row in self.backends.values())

    def snapshot(self, *, buffered: int = 0) -> StatsSnapshot:
        """Everything as plain values; ``buffered`` is the proxy's live write-buffer total."""
        return StatsSnapshot(
            protocol=self.protocol, active=self.active, accepted=self.accepted,
            rejected=self.rejected, expired=self.expired, bytes_in=self.bytes_in,
            bytes_out=self.bytes_out, buffered=buffered, peak_buffered=self.peak_buffered,
            dropped=dict(self.dropped),
            backends={key: row.snapshot() for key, row in sorted(self.backends.items())})
