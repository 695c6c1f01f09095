"""The flow-control queues of one InferencePool: who waits, who goes next, who is dropped.

Sans-IO state machine driven by the data plane, which owns the futures, timers and replies:

* a request arrives while the pool is saturated -> ``enqueue`` (queued, or rejected with a
  reason; requests of lower priority it displaced are handed back to be answered);
* capacity may have freed -> ``pop_next`` while the pool is not saturated;
* the timer set for ``next_expiry()`` fires -> ``expire`` (TTL or deadline passed);
* the client disconnects -> ``remove``.

Order of dispatch: the highest priority band first; within a band round-robin between flows (a
flow = one fairness id at one priority; one pop per turn) or one band-wide queue (``fcfs``
fairness); within a flow FCFS or earliest deadline first. Requests already expired are never
dispatched; they stay queued until ``expire`` reports them.

Limits: a band's ``max_requests``/``max_bytes`` only ever reject (BAND_FULL). The global limits
displace: the arrival evicts requests of the lowest band strictly below its priority, newest
first from that band's longest flow, moving up band by band but never to its own, until it fits;
if even evicting every lower request would not make room it is rejected (QUEUE_FULL) and nothing
is evicted. So a full queue of sheddable requests never starves a higher band.

``now`` is monotonic seconds, always passed in. Request content is never looked at.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left, insort
from dataclasses import dataclass
from enum import StrEnum

from inferlane.flowcontrol._band import GONE, Band, Entry
from inferlane.flowcontrol.config import BandConfig, FlowControlConfig

__all__ = [
    "Admission",
    "BandStats",
    "ExpiryReason",
    "FlowController",
    "Outcome",
    "QueuedRequest",
    "RejectReason",
]

_HEAP_SLACK = 64  # dead expiry-heap entries tolerated beyond the live count before a rebuild


@dataclass(eq=False, slots=True)
class QueuedRequest:
    """One waiting request as the core sees it; compared by identity."""

    handle: object  # opaque to the core (the data plane's future / request id)
    priority: int  # unset = 0, negative = sheddable
    flow_id: str  # fairness id ("" when the client sent none)
    size_bytes: int
    enqueued_at: float  # monotonic seconds
    deadline: float | None = None  # absolute monotonic seconds; None = only the TTL applies


class Outcome(StrEnum):
    QUEUED = "queued"
    REJECTED = "rejected"


class RejectReason(StrEnum):
    BAND_FULL = "band-full"  # the band's max_requests/max_bytes reached (no displacement)
    QUEUE_FULL = "queue-full"  # global limits reached and not enough lower priority to displace
    TOO_LARGE = "too-large"  # size_bytes alone exceeds the band's or the global max_bytes
    DISPLACED = "displaced"  # for evicted requests: pushed out by a higher-priority arrival


class ExpiryReason(StrEnum):
    TTL = "ttl"
    DEADLINE = "deadline"


@dataclass(frozen=True, slots=True)
class Admission:
    """What ``enqueue`` decided. ``displaced`` requests are no longer queued: answer them."""

    outcome: Outcome
    reason: RejectReason | None = None
    displaced: tuple[QueuedRequest, ...] = ()


@dataclass(frozen=True, slots=True)
class BandStats:
    priority: int
    requests: int
    bytes: int
    flows: int


_QUEUED = Admission(Outcome.QUEUED)
_REJECTED = {reason: Admission(Outcome.REJECTED, reason) for reason in RejectReason}


class FlowController:
    """Priority bands, fairness and ordering for one pool's waiting requests."""

    __slots__ = ("_bands", "_bytes", "_entries", "_expiry", "_priorities", "_seq", "config")

    def __init__(self, config: FlowControlConfig | None = None) -> None:
        self.config = config if config is not None else FlowControlConfig()
        self._bands: dict[int, Band] = {}  # only bands holding requests
        self._priorities: list[int] = []  # keys of _bands, ascending
        self._entries: dict[QueuedRequest, Entry] = {}  # by identity
        self._expiry: list[tuple[float, int, Entry]] = []  # (expires_at, seq); lazy deletion
        self._bytes = 0
        self._seq = 0

    def reconfigure(self, config: FlowControlConfig) -> None:
        """Keep every queued request; the new limits apply to future admissions.

        A request keeps the expiry time it was admitted with. A band whose fairness or ordering
        changed re-sorts its ready requests under the new policy.
        """
        self.config = config
        for priority, band in self._bands.items():
            band.reconfigure(config.band_for(priority))

    # -- the four events ----------------------------------------------------------------------

    def enqueue(self, item: QueuedRequest, now: float) -> Admission:
        """Queue ``item`` or reject it. ``now`` is not needed to decide (items are timed by
        ``enqueued_at``); an item already expired is queued and reported by the next ``expire``.
        """
        if item in self._entries:
            raise ValueError("flow control: this request is already queued; enqueue it once")
        if item.size_bytes < 0:
            raise ValueError(f"flow control: size_bytes must be >= 0, got {item.size_bytes}")
        config = self.config
        band = self._bands.get(item.priority)
        band_config = band.config if band is not None else config.band_for(item.priority)
        size = item.size_bytes
        if size > band_config.max_bytes or size > config.max_bytes:
            return _REJECTED[RejectReason.TOO_LARGE]
        if band is not None and (band.requests >= band_config.max_requests
                                 or band.bytes + size > band_config.max_bytes):
            return _REJECTED[RejectReason.BAND_FULL]
        missing_requests = len(self._entries) + 1 - config.max_requests
        missing_bytes = self._bytes + size - config.max_bytes
        displaced: tuple[QueuedRequest, ...] = ()
        if missing_requests > 0 or missing_bytes > 0:
            # Decide first: evicting every lower request is the most displacement can free.
            lower = [self._bands[p]
                     for p in self._priorities[:bisect_left(self._priorities, item.priority)]]
            if (sum(b.requests for b in lower) < missing_requests
                    or sum(b.bytes for b in lower) < missing_bytes):
                return _REJECTED[RejectReason.QUEUE_FULL]
            displaced = self._displace(lower, missing_requests, missing_bytes)
        self._admit(item, band_config)
        return Admission(Outcome.QUEUED, displaced=displaced) if displaced else _QUEUED

    def pop_next(self, now: float) -> QueuedRequest | None:
        """The next request to dispatch, or None; expired requests are skipped (not returned)."""
        bands = self._bands
        for priority in reversed(self._priorities):
            band = bands[priority]
            if not band.ready:
                continue
            entry = band.pop_ready(now)
            if entry is not None:
                self._forget(entry)
                return entry.item
        return None

    def expire(self, now: float) -> list[tuple[QueuedRequest, ExpiryReason]]:
        """Remove and return every request whose TTL or deadline has passed, earliest first."""
        expired: list[tuple[QueuedRequest, ExpiryReason]] = []
        heap = self._expiry
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)[2]
            if entry.state == GONE:
                continue
            deadline = entry.item.deadline
            reason = (ExpiryReason.DEADLINE if deadline is not None and now >= deadline
                      else ExpiryReason.TTL)
            self._discard(entry)
            expired.append((entry.item, reason))
            heap = self._expiry  # _discard may have rebuilt it
        return expired

    def next_expiry(self) -> float | None:
        """The earliest time at which a queued request expires; None when nothing is queued."""
        heap = self._expiry
        while heap and heap[0][2].state == GONE:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def remove(self, item: QueuedRequest) -> bool:
        """The client gave up: forget ``item``. False if it was not queued."""
        entry = self._entries.get(item)
        if entry is None:
            return False
        self._discard(entry)
        return True

    # -- inspection ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def band_stats(self) -> list[BandStats]:
        """Bands holding requests, highest priority first."""
        stats = []
        for priority in reversed(self._priorities):
            band = self._bands[priority]
            stats.append(BandStats(priority, band.requests, band.bytes, len(band.flows)))
        return stats

    def flow_lengths(self, priority: int) -> dict[str, int]:
        band = self._bands.get(priority)
        return {} if band is None else {fid: f.count for fid, f in band.flows.items()}

    def has_waiting_at_or_above(self, priority: int) -> bool:
        """Whether a dispatchable request of ``priority`` or higher waits, so that an arrival
        does not overtake it. Requests already found expired by ``pop_next`` do not count."""
        start = bisect_left(self._priorities, priority)
        return any(self._bands[p].ready for p in self._priorities[start:])

    # -- internals ----------------------------------------------------------------------------

    def _admit(self, item: QueuedRequest, band_config: BandConfig) -> None:
        band = self._bands.get(item.priority)
        if band is None:
            band = self._bands[item.priority] = Band(band_config)
            insort(self._priorities, item.priority)
        ttl_expiry = item.enqueued_at + self.config.queue_ttl
        deadline = item.deadline
        entry = Entry(
            item=item,
            seq=self._seq,
            size=item.size_bytes,
            expires_at=ttl_expiry if deadline is None else min(ttl_expiry, deadline),
            edf_key=math.inf if deadline is None else deadline,
            band=band,
        )
        self._seq += 1
        band.add(entry)
        self._entries[item] = entry
        self._bytes += entry.size
        heapq.heappush(self._expiry, (entry.expires_at, entry.seq, entry))

    def _displace(self, lower: list[Band], missing_requests: int,
                  missing_bytes: int) -> tuple[QueuedRequest, ...]:
        victims: list[QueuedRequest] = []
        for band in lower:  # lowest priority first
            while (missing_requests > 0 or missing_bytes > 0) and band.requests:
                entry = band.longest_flow().newest()
                missing_requests -= 1
                missing_bytes -= entry.size
                self._discard(entry)
                victims.append(entry.item)
        return tuple(victims)

    def _discard(self, entry: Entry) -> None:
        entry.band.discard(entry)
        self._forget(entry)

    def _forget(self, entry: Entry) -> None:
        """Controller-level bookkeeping once ``entry`` left its band."""
        del self._entries[entry.item]
        self._bytes -= entry.size
        band = entry.band
        if not band.requests:
            priority = band.config.priority
            del self._bands[priority]
            del self._priorities[bisect_left(self._priorities, priority)]
        if len(self._expiry) > 2 * len(self._entries) + _HEAP_SLACK:
            self._expiry = [(e.expires_at, e.seq, e) for e in self._entries.values()]
            heapq.heapify(self._expiry)

