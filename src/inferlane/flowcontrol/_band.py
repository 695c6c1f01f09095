"""Internal: the structures of one priority band, used only by ``queue.FlowController``.

Design notes (why it looks like this):

* Every queued request is one ``Entry``, referenced from up to three places: its ready queue
  (what ``pop_next`` draws from), its flow's arrival list (what displacement and
  ``flow_lengths`` read) and the controller's expiry heap. Removing a request from the middle
  (client gone, expired, displaced) only marks the entry ``GONE``; each structure drops such
  entries when they reach an end, and rebuilds itself once dead entries outnumber live ones, so
  every operation is amortised O(1) or O(log n) and memory stays proportional to what is queued.
* A **ready queue** holds the requests ``pop_next`` may still return: one per flow with
  round-robin fairness, one for the whole band with ``fcfs`` fairness. FCFS ordering is a deque,
  EDF a heap keyed by (deadline or +inf, arrival sequence). The band's ``rotation`` is the
  round-robin order of its ready queues; a queue that runs dry is dropped.
* A request found expired at the head of a ready queue is **parked**: taken out of the ready
  queue but still queued (counted, reported by ``expire``). Each request is parked at most once,
  so skipping expired requests costs nothing in the long run.
* Flow lengths are kept in buckets (length -> flows of that length) so the longest flow, which
  displacement draws from, is found in O(1).
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from inferlane.flowcontrol.config import BandConfig

if TYPE_CHECKING:
    from inferlane.flowcontrol.queue import QueuedRequest

QUEUED = 0  # in a ready queue
PARKED = 1  # expired when it reached a ready queue's head; waits for expire()
GONE = 2  # popped, removed, expired or displaced

_SLACK = 8  # dead entries tolerated before a rebuild, so tiny structures never churn


@dataclass(eq=False, slots=True)
class Entry:
    item: QueuedRequest
    seq: int  # arrival order across the controller
    size: int  # size_bytes at admission (the item is not frozen)
    expires_at: float  # min(enqueued_at + queue_ttl, deadline)
    edf_key: float  # deadline, +inf without one
    band: Band
    flow: Flow | None = None
    queue: FifoQueue | EdfQueue | None = None
    state: int = QUEUED


class Flow:
    """One fairness id in one band: its live requests in arrival order."""

    __slots__ = ("arrivals", "count", "flow_id")

    def __init__(self, flow_id: str) -> None:
        self.flow_id = flow_id
        self.arrivals: deque[Entry] = deque()
        self.count = 0  # queued + parked entries; maintained by Band's length buckets

    def newest(self) -> Entry:
        return self.arrivals[-1]  # prune() leaves no GONE entry at either end

    def prune(self) -> None:
        arrivals = self.arrivals
        while arrivals and arrivals[-1].state == GONE:
            arrivals.pop()
        while arrivals and arrivals[0].state == GONE:
            arrivals.popleft()
        if len(arrivals) > 2 * self.count + _SLACK:
            self.arrivals = deque(e for e in arrivals if e.state != GONE)


class FifoQueue:
    """Ready requests in arrival order."""

    __slots__ = ("_entries", "active", "key", "ready")

    def __init__(self, key: str) -> None:
        self.key = key
        self.active = True  # False once dropped from the band (its rotation slot is stale)
        self.ready = 0
        self._entries: deque[Entry] = deque()

    def push(self, entry: Entry) -> None:
        self._entries.append(entry)
        self.ready += 1

    def head(self) -> Entry | None:
        entries = self._entries
        while entries and entries[0].state != QUEUED:
            entries.popleft()
        return entries[0] if entries else None

    def pop_head(self) -> None:
        self._entries.popleft()
        self.ready -= 1

    def note_gone(self) -> None:
        self.ready -= 1
        if len(self._entries) > 2 * self.ready + _SLACK:
            self._entries = deque(e for e in self._entries if e.state == QUEUED)


class EdfQueue:
    """Ready requests by earliest deadline, ties (and no deadline, +inf) by arrival."""

    __slots__ = ("_heap", "active", "key", "ready")

    def __init__(self, key: str) -> None:
        self.key = key
        self.active = True
        self.ready = 0
        self._heap: list[tuple[float, int, Entry]] = []

    def push(self, entry: Entry) -> None:
        heapq.heappush(self._heap, (entry.edf_key, entry.seq, entry))
        self.ready += 1

    def head(self) -> Entry | None:
        heap = self._heap
        while heap and heap[0][2].state != QUEUED:
            heapq.heappop(heap)
        return heap[0][2] if heap else None

    def pop_head(self) -> None:
        heapq.heappop(self._heap)
        self.ready -= 1

    def note_gone(self) -> None:
        self.ready -= 1
        if len(self._heap) > 2 * self.ready + _SLACK:
            self._heap = [t for t in self._heap if t[2].state == QUEUED]
            heapq.heapify(self._heap)


class Band:
    """All requests of one priority: flows, ready queues, rotation and totals."""

    __slots__ = ("_by_length", "_longest", "bytes", "config", "flows", "queues", "ready",
                 "requests", "rotation")

    def __init__(self, config: BandConfig) -> None:
        self.config = config
        self.requests = 0  # queued + parked
        self.bytes = 0
        self.ready = 0  # requests pop_next may still return (in ready queues)
        self.flows: dict[str, Flow] = {}
        self.queues: dict[str, FifoQueue | EdfQueue] = {}
        self.rotation: deque[FifoQueue | EdfQueue] = deque()
        self._by_length: dict[int, dict[Flow, None]] = {}  # ordered sets
        self._longest = 0

    # -- admission and removal -------------------------------------------------------------

    def add(self, entry: Entry) -> None:
        flow_id = entry.item.flow_id
        flow = self.flows.get(flow_id)
        if flow is None:
            flow = self.flows[flow_id] = Flow(flow_id)
        self._lengthen(flow)
        flow.arrivals.append(entry)
        entry.flow = flow
        self.requests += 1
        self.bytes += entry.size
        self._make_ready(entry)

    def pop_ready(self, now: float) -> Entry | None:
        """Detach and return the next request by fairness and ordering; park expired heads."""
        rotation = self.rotation
        while rotation:
            queue = rotation[0]
            if not queue.active:
                rotation.popleft()
                continue
            entry = queue.head()
            while entry is not None and now >= entry.expires_at:
                queue.pop_head()
                self.ready -= 1
                entry.state = PARKED
                entry.queue = None
                entry = queue.head()
            rotation.popleft()
            if entry is None:
                self._drop_queue(queue)
                continue
            queue.pop_head()
            self.ready -= 1
            if queue.ready:
                rotation.append(queue)
            else:
                self._drop_queue(queue)
            self._release(entry)
            return entry
        return None

    def discard(self, entry: Entry) -> None:
        """Take out a queued or parked request (removed, expired or displaced)."""
        queue = entry.queue
        if queue is not None:
            entry.state = GONE  # before note_gone, so a rebuild leaves it out
            queue.note_gone()
            self.ready -= 1
            if not queue.ready:
                self._drop_queue(queue)
        self._release(entry)

    def longest_flow(self) -> Flow:
        """The longest flow; among equals the one that reached that length first."""
        return next(iter(self._by_length[self._longest]))

    def reconfigure(self, config: BandConfig) -> None:
        """New limits apply to future admissions; new policies rebuild the ready queues."""
        old, self.config = self.config, config
        if (old.fairness, old.ordering) == (config.fairness, config.ordering):
            return
        ready = sorted((e for f in self.flows.values() for e in f.arrivals if e.state == QUEUED),
                       key=lambda e: e.seq)
        for queue in self.queues.values():
            queue.active = False
        self.queues = {}
        self.rotation = deque()
        self.ready = 0
        for entry in ready:
            self._make_ready(entry)

    # -- internals ---------------------------------------------------------------------------

    def _make_ready(self, entry: Entry) -> None:
        key = entry.item.flow_id if self.config.fairness == "round-robin" else ""
        queue = self.queues.get(key)
        if queue is None:
            queue = FifoQueue(key) if self.config.ordering == "fcfs" else EdfQueue(key)
            self.queues[key] = queue
            self.rotation.append(queue)
        queue.push(entry)
        entry.queue = queue
        entry.state = QUEUED
        self.ready += 1

    def _drop_queue(self, queue: FifoQueue | EdfQueue) -> None:
        del self.queues[queue.key]  # only active queues are dropped, and each once
        queue.active = False
        if len(self.rotation) > 2 * len(self.queues) + _SLACK:
            self.rotation = deque(q for q in self.rotation if q.active)

    def _release(self, entry: Entry) -> None:
        entry.state = GONE
        entry.queue = None
        flow = entry.flow
        assert flow is not None
        self._shorten(flow)
        flow.prune()
        self.requests -= 1
        self.bytes -= entry.size

    def _lengthen(self, flow: Flow) -> None:
        length = flow.count
        if length:
            self._leave_bucket(flow, length)
        flow.count = length + 1
        self._by_length.setdefault(length + 1, {})[flow] = None
        self._longest = max(self._longest, length + 1)

    def _shorten(self, flow: Flow) -> None:
        length = flow.count
        self._leave_bucket(flow, length)
        if self._longest == length and length not in self._by_length:
            self._longest = length - 1  # the flow just shortened now has that length (or none)
        flow.count = length - 1
        if length > 1:
            self._by_length.setdefault(length - 1, {})[flow] = None
        else:
            del self.flows[flow.flow_id]

    def _leave_bucket(self, flow: Flow, length: int) -> None:
        bucket = self._by_length[length]
        del bucket[flow]
        if not bucket:
            del self._by_length[length]
