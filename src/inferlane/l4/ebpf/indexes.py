"""Which slot of the program's ``backends`` and ``stats`` arrays each backend occupies.

Where it sits: pure bookkeeping for ``dataplane.update``, which asks ``plan`` what to write,
writes the maps, and ``commit``s the plan once the new table is in (a failed update leaves
the bookkeeping as it was). A backend keeps its index for as long as it stays in the set
(weight 0 included: a draining backend still has flows). A freed index goes to the back of
the free queue, so it is reused as late as possible: flows that still name it (until they
are purged) and its final counters stay unambiguous meanwhile; a backend that comes back
before then gets its old index, and its counters continue.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class IndexPlan:
    """The outcome of ``plan``: what the data plane must write and purge."""

    current: dict[str, int]  # backend key -> index, every backend of the new set
    added: dict[str, int]  # new backends: write their entry, zero their counters
    removed: dict[str, int]  # gone backends: purge their flows
    free: tuple[int, ...]  # the free queue after this plan, next to be reused first


class BackendIndexes:
    """Stable indexes in ``[0, capacity)`` for backend keys."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._free: deque[int] = deque(range(capacity))
        self._current: dict[str, int] = {}
        self._names: dict[int, str] = {}  # current and retired-but-not-reused indexes

    def plan(self, keys: Sequence[str]) -> IndexPlan:
        """An index for every key of the new set (existing ones kept); ValueError when the
        set does not fit. Changes nothing until ``commit``."""
        wanted = list(dict.fromkeys(keys))
        removed = {key: index for key, index in self._current.items() if key not in wanted}
        new_keys = [key for key in wanted if key not in self._current]
        if len(new_keys) > len(self._free) + len(removed):
            raise ValueError(f"{len(wanted)} backends do not fit the fast path's "
                             f"{self.capacity} backend slots")
        free = deque(self._free)
        free.extend(removed.values())
        retired = {key: index for index, key in self._names.items()
                   if key not in self._current}
        added = {}
        for key in new_keys:
            if key in retired:
                free.remove(retired[key])
                added[key] = retired[key]
            else:
                added[key] = free.popleft()
        current = {key: self._current[key] if key in self._current else added[key]
                   for key in wanted}
        return IndexPlan(current=current, added=added, removed=removed, free=tuple(free))

    def commit(self, plan: IndexPlan) -> None:
        """Make ``plan`` (the latest from ``plan``) the state."""
        self._current = dict(plan.current)
        self._free = deque(plan.free)
        for key, index in plan.added.items():
            self._names[index] = key  # a reused index forgets its previous backend

    def names(self) -> dict[int, str]:
        """Index -> key for current backends and for removed ones whose index is not reused
        yet (their counters are still theirs)."""
        return dict(self._names)
