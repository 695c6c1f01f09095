"""The connection table: which backend each live flow is pinned to.

Where it sits: an L4 data plane looks every flow up here first and asks an ``LBAlgorithm``
only for flows without an entry, then records the answer. That is what keeps existing flows
on their backend when the backend set, weights or health change, and what lets a drained
(weight 0) backend finish its flows while receiving no new ones.

Pure state: the caller passes ``now`` (a monotonic clock, never decreasing) and performs the
closes this table decides (``expired``, evictions returned by ``add``). Entries live in an
``OrderedDict`` in last-seen order, so expiry and LRU eviction pop from the front.
"""

from __future__ import annotations

from collections import OrderedDict

from inferlane.l4.flows import FlowKey

DEFAULT_MAX_FLOWS = 1_000_000


class FlowTable:
    """Flow → backend key, with idle expiry (``idle_timeout`` seconds, ``None``: never) and an
    LRU bound of ``max_flows`` entries. Katran's UDP timeout is 30 s; TCP flows usually end
    with their connection and pass ``None``."""

    __slots__ = ("_counts", "_entries", "idle_timeout", "max_flows")

    def __init__(self, *, idle_timeout: float | None,
                 max_flows: int = DEFAULT_MAX_FLOWS) -> None:
        if idle_timeout is not None and not idle_timeout > 0:
            raise ValueError(f"idle_timeout must be > 0 seconds or None, got {idle_timeout}")
        if max_flows < 1:
            raise ValueError(f"max_flows must be >= 1, got {max_flows}")
        self.idle_timeout = idle_timeout
        self.max_flows = max_flows
        # flow -> (backend key, last seen); least recently seen first.
        self._entries: OrderedDict[FlowKey, tuple[str, float]] = OrderedDict()
        self._counts: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def _is_idle(self, last_seen: float, now: float) -> bool:
        return self.idle_timeout is not None and now - last_seen > self.idle_timeout

    def _forget(self, backend_key: str) -> None:
        remaining = self._counts[backend_key] - 1
        if remaining:
            self._counts[backend_key] = remaining
        else:
            del self._counts[backend_key]

    def get(self, flow: FlowKey, now: float) -> str | None:
        """The flow's backend key, refreshing its last-seen time; ``None`` if unknown or idle
        for longer than ``idle_timeout`` (such an entry is dropped)."""
        entry = self._entries.get(flow)
        if entry is None:
            return None
        backend_key, last_seen = entry
        if self._is_idle(last_seen, now):
            del self._entries[flow]
            self._forget(backend_key)
            return None
        self._entries[flow] = (backend_key, now)
        self._entries.move_to_end(flow)
        return backend_key

    def add(self, flow: FlowKey, backend_key: str, now: float) -> tuple[FlowKey, str] | None:
        """Pin ``flow`` to ``backend_key`` (replacing any entry); returns the least recently
        seen entry evicted to stay within ``max_flows``, for the caller to close."""
        previous = self._entries.pop(flow, None)
        if previous is not None:
            self._forget(previous[0])
        self._entries[flow] = (backend_key, now)
        self._counts[backend_key] = self._counts.get(backend_key, 0) + 1
        if len(self._entries) <= self.max_flows:
            return None
        evicted_flow, (evicted_key, _) = self._entries.popitem(last=False)
        self._forget(evicted_key)
        return evicted_flow, evicted_key

    def remove(self, flow: FlowKey) -> str | None:
        """Forget ``flow`` (its connection closed); returns the backend key it was pinned to."""
        entry = self._entries.pop(flow, None)
        if entry is None:
            return None
        self._forget(entry[0])
        return entry[0]

    def expired(self, now: float) -> list[tuple[FlowKey, str]]:
        """Remove and return the entries idle for longer than ``idle_timeout``, oldest first."""
        if self.idle_timeout is None:
            return []
        gone: list[tuple[FlowKey, str]] = []
        entries = self._entries
        while entries:
            flow, (backend_key, last_seen) = next(iter(entries.items()))
            if not self._is_idle(last_seen, now):
                break
            entries.popitem(last=False)
            self._forget(backend_key)
            gone.append((flow, backend_key))
        return gone

    def counts(self) -> dict[str, int]:
        """Tracked flows per backend key (only keys with at least one flow)."""
        return dict(self._counts)

    def flows_of(self, backend_key: str) -> list[FlowKey]:
        """The flows pinned to ``backend_key``, least recently seen first.

        A scan of the whole table: meant for rare events (a backend removed from config).
        """
        return [flow for flow, (key, _) in self._entries.items() if key == backend_key]
