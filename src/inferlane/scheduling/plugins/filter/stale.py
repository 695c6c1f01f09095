"""``stale-filter``: drop endpoints whose metrics are missing or older than a threshold.

Stale when ``metrics is None`` or ``request.now - metrics.scraped_at >
metricsStalenessThreshold`` (default 2 s). **Panic**: when every candidate is stale, all are
kept (metric-based scorers then see old data, which beats refusing the request).
``saturation-filter`` includes this check; use this one alone when saturation should only
weigh in through the scorers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from inferlane.scheduling.interfaces import PickRequest
from inferlane.scheduling.plugins.filter.saturation import DEFAULT_STALENESS_SECONDS
from inferlane.scheduling.plugins.params import Params
from inferlane.scheduling.types import EndpointState


class StaleFilter:
    __slots__ = ("staleness_seconds",)

    def __init__(self, *, staleness_seconds: float = DEFAULT_STALENESS_SECONDS) -> None:
        self.staleness_seconds = staleness_seconds

    def filter(self, request: PickRequest,
               candidates: Sequence[EndpointState]) -> list[EndpointState]:
        oldest = request.now - self.staleness_seconds
        fresh = [state for state in candidates
                 if state.metrics is not None and state.metrics.scraped_at >= oldest]
        return fresh or list(candidates)


def factory(name: str, params: Mapping[str, Any]) -> StaleFilter:
    p = Params(name or "stale-filter", params)
    plugin = StaleFilter(
        staleness_seconds=p.seconds("metricsStalenessThreshold", DEFAULT_STALENESS_SECONDS))
    p.done()
    return plugin
