"""``random-picker``: a uniformly random candidate, ignoring scores.

``P(i) = 1 / n``. Parameter ``seed`` pins the random source.
"""

from __future__ import annotations

from collections.abc import Sequence

from inferlane.scheduling.interfaces import PickRequest
from inferlane.scheduling.plugins.picker.seeded import SeededPicker, seeded_factory
from inferlane.scheduling.types import EndpointState


class RandomPicker(SeededPicker):
    __slots__ = ()

    def pick(self, request: PickRequest, candidates: Sequence[EndpointState],
             totals: Sequence[float]) -> int | None:
        return self._random.randrange(len(candidates)) if candidates else None


factory = seeded_factory(RandomPicker, "random-picker")
