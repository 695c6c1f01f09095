"""``max-score-picker``: the candidate with the highest total score; ties broken at random.

``chosen = uniform choice among { i : total_i >= max(total) - 1e-9 }`` (the tolerance absorbs
floating-point noise in the weighted sums). Random tie-breaking spreads load when scores carry
no preference (e.g. before the first scrape). Parameter ``seed`` pins the random source (tests).
"""

from __future__ import annotations

from collections.abc import Sequence

from inferlane.scheduling.interfaces import PickRequest
from inferlane.scheduling.plugins.picker.seeded import SeededPicker, seeded_factory
from inferlane.scheduling.types import EndpointState

TIE_TOLERANCE = 1e-9


class MaxScorePicker(SeededPicker):
    __slots__ = ()

    def pick(self, request: PickRequest, candidates: Sequence[EndpointState],
             totals: Sequence[float]) -> int | None:
        if not totals:
            return None
        floor = max(totals) - TIE_TOLERANCE
        best = [i for i, total in enumerate(totals) if total >= floor]
        return best[0] if len(best) == 1 else best[self._random.randrange(len(best))]


factory = seeded_factory(MaxScorePicker, "max-score-picker")
