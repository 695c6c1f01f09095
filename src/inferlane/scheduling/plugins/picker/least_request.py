"""``least-request-picker``: power of two choices on load, ignoring scores.

Sample two distinct candidates uniformly; take the one with the smaller load
``in_flight_requests + waiting`` (the gateway's dispatched-not-finished count plus the server's
reported queue), the first sampled on a tie. One candidate → it. Two random choices avoid both
herding on a single "least loaded" endpoint between metric updates and the cost of a full scan
(Mitzenmacher; Envoy's LEAST_REQUEST). Parameter ``seed`` pins the random source.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from inferlane.scheduling.interfaces import PickRequest
from inferlane.scheduling.plugins.params import Params
from inferlane.scheduling.types import EndpointState


def load(state: EndpointState) -> int:
    metrics = state.metrics
    return state.in_flight_requests + (metrics.waiting if metrics is not None else 0)


class LeastRequestPicker:
    __slots__ = ("_random",)

    def __init__(self, rng: random.Random | None = None) -> None:
        self._random = rng or random.Random()

    def pick(self, request: PickRequest, candidates: Sequence[EndpointState],
             totals: Sequence[float]) -> int | None:
        count = len(candidates)
        if count <= 1:
            return 0 if count else None
        first, second = self._random.sample(range(count), 2)
        return first if load(candidates[first]) <= load(candidates[second]) else second


def factory(name: str, params: Mapping[str, Any]) -> LeastRequestPicker:
    p = Params(name or "least-request-picker", params)
    plugin = LeastRequestPicker(random.Random(p.seed()))
    p.done()
    return plugin
