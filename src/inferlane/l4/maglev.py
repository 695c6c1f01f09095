"""Maglev consistent hashing: a lookup table from flow hash to backend.

Where it sits: the ``maglev`` algorithm (``algorithms.py``) builds one table per candidate set
and looks new flows up in it; the eBPF fast path will copy ``slots()`` into an array map. The
table is pure data: built from backends, no clock, no I/O.

Population (Eisenbud et al., "Maglev", NSDI 2016, §3.4) with weights:

* Each backend gets a permutation of the ``M`` slots from two stable hashes of its key:
  ``offset = h1(key) % M``, ``skip = h2(key) % (M - 1) + 1``, slot ``j`` of the permutation is
  ``(offset + j * skip) % M``. ``M`` is prime, so every permutation visits every slot.
* Backends take turns in config order. Per round each backend earns ``weight`` credit and, for
  each whole ``max_weight`` of credit it holds, claims its next preferred slot still free. The
  heaviest backend thus claims one slot per round and a backend of weight ``w`` claims
  ``w / max_weight`` on average, so its share of the table is within one slot of
  ``M * w / sum(weights)``. With equal weights this is exactly the paper's round robin.
* Filling stops the moment the last slot is claimed. Weight-0 backends take no part.

Removing one of N backends moves its ≈1/N of the slots plus a few others (Maglev trades a
little extra disruption for even load); a larger ``M`` moves fewer.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

from inferlane.l4.flows import L4Backend

DEFAULT_TABLE_SIZE = 65537  # Katran's size: prime, about 650 slots per backend at 100.


def _key_hash(key: str, person: bytes) -> int:
    digest = hashlib.blake2b(key.encode(), digest_size=8, person=person).digest()
    return int.from_bytes(digest, "big")


def _is_prime(number: int) -> bool:
    if number < 2:
        return False
    if number % 2 == 0 or number % 3 == 0:
        return number in (2, 3)
    divisor = 5
    while divisor * divisor <= number:
        if number % divisor == 0 or number % (divisor + 2) == 0:
            return False
        divisor += 6
    return True


def _populate(offsets: list[int], skips: list[int], weights: list[int], size: int) -> array[int]:
    """Fill ``size`` slots with backend indexes (see the module docstring for the scheme)."""
    # The hot loop of a build (≈ M·ln M probes): locals only, a list for the table while
    # filling (list indexing beats array indexing), converted to array('I') once at the end.
    count = len(offsets)
    owner = [-1] * size
    position = list(offsets)
    credit = [0] * count
    max_weight = max(weights)
    filled = 0
    while True:
        for index in range(count):
            earned = credit[index] + weights[index]
            if earned < max_weight:
                credit[index] = earned
                continue
            skip = skips[index]
            slot = position[index]
            while earned >= max_weight:
                earned -= max_weight
                while owner[slot] >= 0:
                    slot += skip
                    if slot >= size:
                        slot -= size
                owner[slot] = index
                filled += 1
                if filled == size:
                    return array("I", owner)
            credit[index] = earned
            position[index] = slot


@dataclass(frozen=True, slots=True)
class MaglevTable:
    """A populated Maglev table; ``slots()[i]`` is an index into ``backends``.

    ``backends`` holds only the backends that take part (weight > 0), in the order given.
    A table without backends has no slots and every lookup returns ``None``.
    """

    backends: tuple[L4Backend, ...]
    size: int
    _slots: array[int]

    @classmethod
    def build(cls, backends: Sequence[L4Backend],
              size: int = DEFAULT_TABLE_SIZE) -> MaglevTable:
        """Populate a table of ``size`` slots (prime, >= the number of backends)."""
        if not _is_prime(size):
            raise ValueError(f"Maglev table size {size} is not prime; "
                             f"use a prime such as {DEFAULT_TABLE_SIZE}")
        members = tuple(backend for backend in backends if backend.weight > 0)
        if size < len(members):
            raise ValueError(f"Maglev table size {size} is smaller than the number of "
                             f"backends ({len(members)}); use a prime >= {len(members)}")
        keys = [backend.key for backend in members]
        if len(set(keys)) != len(keys):
            duplicates = sorted({key for key in keys if keys.count(key) > 1})
            raise ValueError(f"Maglev backends must be unique; duplicated: {', '.join(duplicates)}")
        if not members:
            return cls(members, size, array("I"))
        offsets = [_key_hash(key, b"il-maglev-offset") % size for key in keys]
        skips = [_key_hash(key, b"il-maglev-skip") % (size - 1) + 1 for key in keys]
        weights = [backend.weight for backend in members]
        return cls(members, size, _populate(offsets, skips, weights, size))

    def lookup(self, flow_hash: int) -> L4Backend | None:
        """The backend owning ``flow_hash`` (e.g. ``FlowKey.hash64()``), ``None`` when empty."""
        if not self.backends:
            return None
        return self.backends[self._slots[flow_hash % self.size]]

    def slots(self) -> array[int]:
        """A copy of the table: ``size`` backend indexes (empty when there are no backends)."""
        return array("I", self._slots)
