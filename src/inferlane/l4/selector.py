"""Which backend a flow goes to: connection tracking in front of a load-balancing algorithm.

Where it sits: the user-space data planes (``proxy_tcp.py``, ``proxy_udp.py``) ask
``BackendSelector.choose`` for every new connection (TCP) or datagram (UDP). Pure and
single-threaded: the caller passes the clock and does the I/O the answers imply.

The rules:
- A tracked flow keeps its backend while that backend is in the set — even if it is now
  drained, weight 0 or failing health checks. That is what lets config reloads, weight changes
  and drains leave existing connections and sessions alone.
- A new flow goes to ``algorithm.pick`` over the candidates: in the set, weight > 0,
  ``routable`` (the health view) and not drained by an admin.
- A tracked flow whose backend left the set is placed again like a new one. TCP asks only once
  per connection, so an established connection keeps going; a UDP session moves (the UDP proxy
  closes its old socket). ``update`` also returns such flows, for a data plane that wants to act
  at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Iterable

from inferlane.l4.algorithms import LBAlgorithm
from inferlane.l4.conntrack import FlowTable
from inferlane.l4.flows import FlowKey, L4Backend

Routable = Callable[[str], bool]  # backend key -> may take new flows (health)
EVICTIONS_KEPT = 4096  # evictions remembered for ``take_evicted``; older ones only counted


def _always_routable(key: str) -> bool:
    return True


class BackendSelector:
    """One route's backends, drains, health view, algorithm and connection table."""

    __slots__ = ("_algorithm", "_backends", "_by_key", "_drained", "_evicted", "_flows",
                 "_open", "_routable", "evictions")

    def __init__(self, backends: Iterable[L4Backend], algorithm: LBAlgorithm, flows: FlowTable,
                 *, routable: Routable | None = None, drained: Iterable[str] = ()) -> None:
        self._algorithm = algorithm
        self._flows = flows
        self._routable: Routable = routable or _always_routable
        self._drained: set[str] = set(drained)
        self._evicted: deque[tuple[FlowKey, str]] = deque(maxlen=EVICTIONS_KEPT)
        self.evictions = 0  # flows dropped from the full table (least recently seen first)
        self._backends: tuple[L4Backend, ...] = ()
        self._by_key: dict[str, L4Backend] = {}
        self._open: tuple[L4Backend, ...] = ()  # weight > 0 and not drained
        self._set_backends(backends)

    # -- reading -------------------------------------------------------------------------

    @property
    def algorithm(self) -> LBAlgorithm:
        return self._algorithm

    @property
    def backends(self) -> tuple[L4Backend, ...]:
        return self._backends

    @property
    def drained(self) -> frozenset[str]:
        return frozenset(self._drained)

    def backend(self, key: str) -> L4Backend | None:
        """The backend of the current set with ``key``, if any."""
        return self._by_key.get(key)

    def candidates(self, exclude: Collection[str] = ()) -> list[L4Backend]:
        """Backends a new flow may go to, in config order."""
        routable = self._routable
        return [backend for backend in self._open
                if backend.key not in exclude and routable(backend.key)]

    def active(self) -> dict[str, int]:
        """Tracked flows per backend key."""
        return self._flows.counts()

    def __len__(self) -> int:
        return len(self._flows)

    # -- deciding ------------------------------------------------------------------------

    def choose(self, flow: FlowKey, now: float, *,
               exclude: Collection[str] = ()) -> L4Backend | None:
        """The flow's backend: its tracked one if still in the set and not in ``exclude``
        (backends that just failed to connect), else a new pick, which is tracked.
        ``None`` when no candidate is left; the flow is then not tracked."""
        key = self._flows.get(flow, now)
        if key is not None:
            backend = self._by_key.get(key)
            if backend is not None and key not in exclude:
                return backend
        picked = self._algorithm.pick(flow, self.candidates(exclude), self._flows.counts())
        if picked is None:
            if key is not None:
                self._flows.remove(flow)
            return None
        evicted = self._flows.add(flow, picked.key, now)
        if evicted is not None:
            self.evictions += 1
            self._evicted.append(evicted)
        return picked

    def touch(self, flow: FlowKey, now: float) -> str | None:
        """Refresh a tracked flow's idle clock (traffic the other way); its backend key, or
        ``None`` if it is not tracked (any more: idle past the timeout)."""
        return self._flows.get(flow, now)

    def release(self, flow: FlowKey) -> str | None:
        """The flow ended (connection closed, session gone); returns its backend key."""
        return self._flows.remove(flow)

    def expire(self, now: float) -> list[tuple[FlowKey, str]]:
        """Remove and return flows idle past the table's timeout, for the caller to close."""
        return self._flows.expired(now)

    def take_evicted(self) -> list[tuple[FlowKey, str]]:
        """Flows dropped from the full table since the last call (at most ``EVICTIONS_KEPT``)."""
        evicted = list(self._evicted)
        self._evicted.clear()
        return evicted

    # -- changing ------------------------------------------------------------------------

    def update(self, backends: Iterable[L4Backend]) -> list[tuple[FlowKey, str]]:
        """Replace the backend set (a reload or weight change). Tracked flows keep their
        backend if its key is still in the set; returns the flows whose backend left it."""
        old_keys = set(self._by_key)
        self._set_backends(backends)
        orphans: list[tuple[FlowKey, str]] = []
        for key in sorted(old_keys - set(self._by_key)):
            orphans.extend((flow, key) for flow in self._flows.flows_of(key))
        return orphans

    def drain(self, key: str, draining: bool = True) -> None:
        """An admin drain: ``key`` keeps its flows and gets no new ones (until undrained).
        Remembered across ``update`` even while the key is not in the set."""
        if draining:
            self._drained.add(key)
        else:
            self._drained.discard(key)
        self._set_backends(self._backends)

    def set_routable(self, routable: Routable | None) -> None:
        """Swap the health view (``None``: every backend routable)."""
        self._routable = routable or _always_routable

    def _set_backends(self, backends: Iterable[L4Backend]) -> None:
        by_key: dict[str, L4Backend] = {}
        for backend in backends:
            if backend.key in by_key:
                raise ValueError(f"L4 backend {backend.key} appears twice in one backend set")
            by_key[backend.key] = backend
        self._by_key = by_key
        self._backends = tuple(by_key.values())
        self._open = tuple(backend for backend in self._backends
                           if backend.weight > 0 and backend.key not in self._drained)
