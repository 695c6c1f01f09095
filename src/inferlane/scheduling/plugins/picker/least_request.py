"""``least-request-picker``: power of two choices on load, ignoring scores.

Sample two distinct candidates uniformly; take the one with the smaller load
``in_flight_requests + waiting`` (the gateway's dispatched-not-finished count plus the server's
reported queue), the first sampled on a tie. One candidate → it. Two random choices avoid both
herding on a single "least loaded" endpoint between metric updates and the cost of a full scan
(Mitzenmacher; Envoy's LEAST_REQUEST). Parameter ``seed`` pins the random source.
"""

from __future__ import annotations

from collections.abc import Sequence

from inferlane.scheduling.interfaces import PickRequest
from inferlane.scheduling.plugins.picker.seeded import SeededPicker, seeded_factory
from inferlane.scheduling.types import EndpointState


def load(state: EndpointState) -> int:
    metrics = state.metrics
    return state.in_flight_requests + (metrics.waiting if metrics is not None else 0)


class LeastRequestPicker(SeededPicker):
    __slots__ = ()

    def pick(self, request: PickRequest, candidates: Sequence[EndpointState],
             totals: Sequence[float]) -> int | None:
        count = len(candidates)
        if count <= 1:
            return 0 if count else None
        first, second = self._random.sample(range(count), 2)
        return first if load(candidates[first]) <= load(candidates[second]) else second


factory = seeded_factory(LeastRequestPicker, "least-request-picker", upstream_list_size=False)
