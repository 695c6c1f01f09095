"""Flow disruption when a backend leaves: which fraction of flows changes backend (pure, no I/O).

Part of the L4 benchmark (``l4.py``, issue 7). Seeded flows (``make_flows``) are placed over
``N`` backends, one backend is removed, and the flows are placed again over the rest; a flow
"moved" when its backend differs. The flows of the removed backend must move (about 1/N, the
ideal); everything above that is disruption the placement method adds. Every backend is
removed in turn and the fractions are summarized (mean, min, max).

Methods (``METHODS``), each placing flows on backends (one backend key per flow):

- ``maglev``: inferlane's Maglev table (``inferlane.l4.maglev``) looked up with
  ``FlowKey.hash64``, as the user-space data plane places a new flow;
- ``maglev, eBPF hash``: the same table looked up with the TC program's ``jhash_3words``
  (``inferlane.l4.ebpf.flowhash``), as the eBPF fast path places one;
- ``modulo``: ``hash64 % N`` over the backends in config order -- the naive "round-robin
  hash" (a stateless round robin, by arrival order, moves flows the same way);
- ``rendezvous``: inferlane's ``source-hash`` algorithm (weighted rendezvous hashing of the
  client IP, ``inferlane.l4.algorithms.SourceHash``).

Without connection tracking (an LB restart, another LB instance, or a flow evicted from a
full table) this is the fraction of established connections that break; with it (both
inferlane data planes track flows), only the removed backend's flows move.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from inferlane.l4.algorithms import SourceHash
from inferlane.l4.ebpf.flowhash import flow_hash
from inferlane.l4.flows import FlowKey, L4Backend
from inferlane.l4.maglev import DEFAULT_TABLE_SIZE, MaglevTable

VIP = ("10.0.0.100", 80)


class Method:
    """A placement method: ``prepare`` hashes the flows once, ``place`` puts the prepared
    flows on ``backends`` (one backend key per flow); removals reuse the hashes."""

    def __init__(self, prepare: Callable[[Sequence[FlowKey]], list[Any]],
                 place: Callable[[list[Any], Sequence[L4Backend]], list[str]]) -> None:
        self.prepare = prepare
        self.place = place


def make_flows(count: int, seed: int = 7) -> list[FlowKey]:
    """``count`` TCP flows from random clients (10.0.0.0/8, ports 1024-65535) to one VIP."""
    rng = random.Random(seed)
    return [FlowKey("tcp", f"10.{rng.randrange(256)}.{rng.randrange(256)}."
                           f"{rng.randrange(1, 255)}", rng.randrange(1024, 65536), *VIP)
            for _ in range(count)]


def make_backends(count: int) -> list[L4Backend]:
    return [L4Backend(f"10.1.{index // 250}.{index % 250 + 1}", 8080) for index in range(count)]


def maglev(hash_of: Callable[[FlowKey], int], table_size: int = DEFAULT_TABLE_SIZE) -> Method:
    def place(hashes: list[int], backends: Sequence[L4Backend]) -> list[str]:
        table = MaglevTable.build(backends, table_size)
        keys = [backend.key for backend in table.backends]
        slots = table.slots()
        return [keys[slots[value % table.size]] for value in hashes]
    return Method(lambda flows: [hash_of(flow) for flow in flows], place)


def _modulo(hashes: list[int], backends: Sequence[L4Backend]) -> list[str]:
    return [backends[value % len(backends)].key for value in hashes]


@dataclass(frozen=True, slots=True)
class _ClientHashed:
    """A flow whose client hash is computed once (``SourceHash.pick`` reads only that)."""

    hashed: int

    def client_hash64(self) -> int:
        return self.hashed


def _rendezvous(flows: list[_ClientHashed], backends: Sequence[L4Backend]) -> list[str]:
    algorithm = SourceHash()
    placed = []
    for flow in flows:
        backend = algorithm.pick(flow, backends, {})  # type: ignore[arg-type]
        assert backend is not None
        placed.append(backend.key)
    return placed


METHODS: dict[str, Method] = {
    "maglev": maglev(FlowKey.hash64),
    "maglev, eBPF hash": maglev(flow_hash),
    "modulo (hash % N)": Method(lambda flows: [flow.hash64() for flow in flows], _modulo),
    "rendezvous (source-hash)": Method(
        lambda flows: [_ClientHashed(flow.client_hash64()) for flow in flows], _rendezvous),
}


def moved_fraction(before: Sequence[str], after: Sequence[str]) -> float:
    """Fraction of flows whose backend differs between two placements of the same flows."""
    if len(before) != len(after):
        raise ValueError(f"placements of {len(before)} and {len(after)} flows")
    if not before:
        return 0.0
    return sum(1 for old, new in zip(before, after, strict=True) if old != new) / len(before)


@dataclass(frozen=True, slots=True)
class Disruption:
    """One method's fractions of moved flows over every choice of the removed backend."""

    method: str
    flows: int
    backends: int
    moved_mean: float
    moved_min: float
    moved_max: float
    extra_mean: float  # flows moved although their backend stayed (fraction of all flows)
    extra_max: float
    imbalance: float  # largest backend's share of flows / the fair share, before removal

    @property
    def ideal(self) -> float:
        return 1 / self.backends


def disruption(name: str, method: Method, flows: Sequence[FlowKey],
               backends: Sequence[L4Backend]) -> Disruption:
    """Remove each backend in turn; see the module docstring."""
    if len(backends) < 2:
        raise ValueError("removing a backend needs at least two")
    prepared = method.prepare(flows)
    before = method.place(prepared, backends)
    counts = {backend.key: 0 for backend in backends}
    for key in before:
        counts[key] += 1
    moved, extra = [], []
    for gone in backends:
        after = method.place(prepared, [backend for backend in backends if backend is not gone])
        moved.append(moved_fraction(before, after))
        extra.append(moved[-1] - counts[gone.key] / len(flows))
    return Disruption(name, len(flows), len(backends), statistics.fmean(moved), min(moved),
                      max(moved), statistics.fmean(extra), max(extra),
                      max(counts.values()) / (len(flows) / len(backends)))


def measure(flow_count: int, backend_count: int, seed: int = 7,
            methods: dict[str, Method] | None = None) -> list[Disruption]:
    flows = make_flows(flow_count, seed)
    backends = make_backends(backend_count)
    return [disruption(name, method, flows, backends)
            for name, method in (methods or METHODS).items()]
