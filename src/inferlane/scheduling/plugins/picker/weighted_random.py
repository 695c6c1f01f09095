"""``weighted-random-picker``: a random candidate with probability proportional to its total.

``P(i) = total_i / Σ total`` (negative totals count as 0); uniform when every total is 0. Unlike
``max-score-picker`` it keeps sending some traffic to second-best endpoints, which hedges
against stale scores. Parameter ``seed`` pins the random source.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence

from inferlane.scheduling.interfaces import PickRequest
from inferlane.scheduling.plugins.picker.seeded import SeededPicker, seeded_factory
from inferlane.scheduling.types import EndpointState


class WeightedRandomPicker(SeededPicker):
    __slots__ = ()

    def pick(self, request: PickRequest, candidates: Sequence[EndpointState],
             totals: Sequence[float]) -> int | None:
        if not totals:
            return None
        cumulative = list(itertools.accumulate(t if t > 0.0 else 0.0 for t in totals))
        whole = cumulative[-1]
        if whole <= 0.0:
            return self._random.randrange(len(totals))
        # bisect_right skips zero-weight entries: their cumulative equals their predecessor's.
        index = bisect.bisect_right(cumulative, self._random.random() * whole)
        return min(index, len(totals) - 1)


factory = seeded_factory(WeightedRandomPicker, "weighted-random-picker")
