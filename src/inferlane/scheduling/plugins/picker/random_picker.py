"""``random-picker``: a uniformly random candidate, ignoring scores.

``P(i) = 1 / n``. Parameter ``seed`` pins the random source.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from inferlane.scheduling.interfaces import PickRequest
from inferlane.scheduling.plugins.params import Params
from inferlane.scheduling.types import EndpointState


class RandomPicker:
    __slots__ = ("_random",)

    def __init__(self, rng: random.Random | None = None) -> None:
        self._random = rng or random.Random()

    def pick(self, request: PickRequest, candidates: Sequence[EndpointState],
             totals: Sequence[float]) -> int | None:
        return self._random.randrange(len(candidates)) if candidates else None


def factory(name: str, params: Mapping[str, Any]) -> RandomPicker:
    p = Params(name or "random-picker", params)
    p.optional_integer("maxNumOfEndpoints", minimum=1)  # upstream: fallback list size; unused
    plugin = RandomPicker(random.Random(p.seed()))
    p.done()
    return plugin
