"""L4 load-balancing algorithms: which backend a *new* flow goes to.

Where it sits: the L4 data planes look a flow up in the connection table (``conntrack.py``)
first; only a flow without an entry reaches ``LBAlgorithm.pick``, whose answer is then
recorded there. So an algorithm decides placement, never stickiness.

``candidates`` are the backends new flows may use — healthy, weight > 0, in config order
(backends with weight <= 0 are skipped defensively). ``active`` is the number of tracked flows
per backend key (``FlowTable.counts()``); keys missing from it count as 0. Algorithms keep only
the state their rule needs and never read a clock.

The registry (``ALGORITHM_NAMES``, ``build_algorithm``) is filled in ``_FACTORIES`` below.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from inferlane.l4.flows import FlowKey, L4Backend
from inferlane.l4.maglev import DEFAULT_TABLE_SIZE, MaglevTable

_MASK64 = (1 << 64) - 1


class LBAlgorithm(Protocol):
    """Chooses the backend for a new flow, or ``None`` when there is no candidate."""

    name: str

    def pick(self, flow: FlowKey, candidates: Sequence[L4Backend],
             active: Mapping[str, int]) -> L4Backend | None: ...


def _eligible(candidates: Sequence[L4Backend]) -> Sequence[L4Backend]:
    if all(backend.weight > 0 for backend in candidates):
        return candidates
    return [backend for backend in candidates if backend.weight > 0]


def _less_loaded(a: L4Backend, b: L4Backend, active: Mapping[str, int]) -> bool:
    """``a`` has strictly fewer active flows per unit of weight than ``b`` (exact, no floats)."""
    return active.get(a.key, 0) * b.weight < active.get(b.key, 0) * a.weight


class RoundRobin:
    """Smooth weighted round robin (nginx): weights 5,1,1 give a a b a c a a.

    Each pick every candidate gains its weight in "current" credit, the richest (first in
    config order on ties) wins and pays the total weight, so credits always sum to zero. A
    change of the candidate set restarts the cycle from zero credit (carrying credit over would
    break that sum and skew the cycle for good); a weight change alone keeps the credit.
    """

    name = "round-robin"

    def __init__(self) -> None:
        self._current: dict[str, int] = {}

    def pick(self, flow: FlowKey, candidates: Sequence[L4Backend],
             active: Mapping[str, int]) -> L4Backend | None:
        backends = _eligible(candidates)
        if not backends:
            self._current.clear()
            return None
        if len(self._current) != len(backends) or any(
                backend.key not in self._current for backend in backends):
            self._current = dict.fromkeys((backend.key for backend in backends), 0)
        current = self._current
        total = 0
        best: L4Backend | None = None
        best_credit = 0
        for backend in backends:
            credit = current[backend.key] + backend.weight
            current[backend.key] = credit
            total += backend.weight
            if best is None or credit > best_credit:
                best, best_credit = backend, credit
        assert best is not None
        current[best.key] = best_credit - total
        return best


class LeastConnections:
    """Fewest active flows per unit of weight; ties are broken in rotation.

    The scan starts one past the previous winner's position, so equally loaded backends
    take turns instead of the first one in config order taking every tie.
    """

    name = "least-connections"

    def __init__(self) -> None:
        self._start = 0

    def pick(self, flow: FlowKey, candidates: Sequence[L4Backend],
             active: Mapping[str, int]) -> L4Backend | None:
        backends = _eligible(candidates)
        count = len(backends)
        if count == 0:
            return None
        start = self._start % count
        best_index = start
        for offset in range(1, count):
            index = (start + offset) % count
            if _less_loaded(backends[index], backends[best_index], active):
                best_index = index
        self._start = best_index + 1
        return backends[best_index]


class PowerOfTwo:
    """Power of two choices: two distinct weighted random samples, the less loaded wins.

    Load is active flows per unit of weight; on a tie the first sample wins. The random
    source is injected so tests and simulations are reproducible.
    """

    name = "power-of-two"

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng if rng is not None else random.Random()

    def pick(self, flow: FlowKey, candidates: Sequence[L4Backend],
             active: Mapping[str, int]) -> L4Backend | None:
        backends = _eligible(candidates)
        if len(backends) <= 1:
            return backends[0] if backends else None
        weights = [backend.weight for backend in backends]
        first_index = self._rng.choices(range(len(backends)), weights)[0]
        # Draw the second among the others, so a backend is never compared with itself.
        weights[first_index] = 0
        second_index = self._rng.choices(range(len(backends)), weights)[0]
        first, second = backends[first_index], backends[second_index]
        return second if _less_loaded(second, first, active) else first


class Maglev:
    """Maglev consistent hashing of the flow's 5-tuple (``FlowKey.hash64``).

    The table is cached per candidate set — the (key, weight) pairs in order — and rebuilt
    when it changes, so a health or weight change rebuilds it once, not per flow.
    """

    name = "maglev"

    def __init__(self, table_size: int = DEFAULT_TABLE_SIZE) -> None:
        self.table_size = table_size
        self._signature: tuple[tuple[str, int], ...] | None = None
        self._table = MaglevTable.build([], table_size)  # validates the size up front

    @property
    def table(self) -> MaglevTable:
        """The table built for the latest candidate set (for export to the eBPF map)."""
        return self._table

    def pick(self, flow: FlowKey, candidates: Sequence[L4Backend],
             active: Mapping[str, int]) -> L4Backend | None:
        signature = tuple((backend.key, backend.weight) for backend in candidates)
        if signature != self._signature:
            self._table = MaglevTable.build(candidates, self.table_size)
            self._signature = signature
        return self._table.lookup(flow.hash64())


def _mix64(value: int) -> int:
    """splitmix64's finalizer: spreads a 64-bit value over all 64 bits."""
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


class SourceHash:
    """Weighted rendezvous hashing of the client IP (``FlowKey.client_hash64``).

    Every (client, backend) pair gets a pseudo-random ``u`` in (0, 1); the backend with the
    highest ``weight / -ln(u)`` wins. A client stays on its backend while that backend is a
    candidate, a removed backend's clients spread over the rest by weight, and nobody else
    moves. Backends are hashed once per key (stable across processes: blake2b).
    """

    name = "source-hash"

    def __init__(self) -> None:
        self._backend_hashes: dict[str, int] = {}

    def _backend_hash(self, key: str) -> int:
        cached = self._backend_hashes.get(key)
        if cached is None:
            digest = hashlib.blake2b(key.encode(), digest_size=8, person=b"il-srchash-node")
            cached = int.from_bytes(digest.digest(), "big")
            if len(self._backend_hashes) > 4096:  # keys churn with config; stay bounded
                self._backend_hashes.clear()
            self._backend_hashes[key] = cached
        return cached

    def pick(self, flow: FlowKey, candidates: Sequence[L4Backend],
             active: Mapping[str, int]) -> L4Backend | None:
        client = flow.client_hash64()
        best: L4Backend | None = None
        best_score = -1.0
        for backend in candidates:
            if backend.weight <= 0:
                continue
            mixed = _mix64(client ^ self._backend_hash(backend.key))
            unit = (mixed + 0.5) / 2.0**64  # in (0, 1)
            score = backend.weight / -math.log(unit)
            if score > best_score:
                best, best_score = backend, score
        return best


# The registry: one entry per algorithm name accepted in a route's config.
_FACTORIES: dict[str, Callable[[int, random.Random | None], LBAlgorithm]] = {
    RoundRobin.name: lambda table_size, rng: RoundRobin(),
    LeastConnections.name: lambda table_size, rng: LeastConnections(),
    PowerOfTwo.name: lambda table_size, rng: PowerOfTwo(rng),
    Maglev.name: lambda table_size, rng: Maglev(table_size),
    SourceHash.name: lambda table_size, rng: SourceHash(),
}

ALGORITHM_NAMES: tuple[str, ...] = tuple(_FACTORIES)


def build_algorithm(name: str, *, table_size: int = DEFAULT_TABLE_SIZE,
                    rng: random.Random | None = None) -> LBAlgorithm:
    """A fresh algorithm instance (they keep per-route state: never share one across routes)."""
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ValueError(f"unknown L4 load-balancing algorithm {name!r}; "
                         f"known: {', '.join(ALGORITHM_NAMES)}")
    return factory(table_size, rng)
