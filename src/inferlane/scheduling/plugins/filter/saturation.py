"""``saturation-filter``: drop endpoints whose metrics are stale or that are saturated.

For each candidate, with ``m`` its last good scrape and ``now = request.now``:

* **stale** when ``m`` is None (never scraped) or ``now - m.scraped_at > metricsStalenessThreshold``
  (default 2 s);
* **saturated** when ``m.waiting > queueThreshold`` (default 5) or ``m.kv_usage > kvThreshold``
  (default 0.8) — the upstream saturation detector's thresholds.

Result: the fresh, unsaturated candidates. **Panic** instead of nothing: when every fresh
candidate is saturated the fresh ones are kept (the scorers then prefer the least loaded), and
when none is fresh (no scrape yet, or the scraper is down) all candidates are kept unchanged.
A request is therefore never left without an endpoint while the pool has one; shedding load is
admission control's job, not a filter's.

When the EndpointPickerConfig has a ``saturationDetector`` section its values are the defaults
of these parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from inferlane.scheduling.interfaces import PickRequest
from inferlane.scheduling.plugins.params import Params
from inferlane.scheduling.types import EndpointState

DEFAULT_QUEUE_THRESHOLD = 5
DEFAULT_KV_THRESHOLD = 0.8
DEFAULT_STALENESS_SECONDS = 2.0


class SaturationFilter:
    __slots__ = ("kv_threshold", "queue_threshold", "staleness_seconds")

    def __init__(self, *, queue_threshold: float = DEFAULT_QUEUE_THRESHOLD,
                 kv_threshold: float = DEFAULT_KV_THRESHOLD,
                 staleness_seconds: float = DEFAULT_STALENESS_SECONDS) -> None:
        self.queue_threshold = queue_threshold
        self.kv_threshold = kv_threshold
        self.staleness_seconds = staleness_seconds

    def filter(self, request: PickRequest,
               candidates: Sequence[EndpointState]) -> list[EndpointState]:
        oldest = request.now - self.staleness_seconds
        queue_threshold = self.queue_threshold
        kv_threshold = self.kv_threshold
        fresh: list[EndpointState] = []
        available: list[EndpointState] = []
        for state in candidates:
            metrics = state.metrics
            if metrics is None or metrics.scraped_at < oldest:
                continue
            fresh.append(state)
            if metrics.waiting <= queue_threshold and metrics.kv_usage <= kv_threshold:
                available.append(state)
        return available or fresh or list(candidates)


def factory(name: str, params: Mapping[str, Any]) -> SaturationFilter:
    p = Params(name or "saturation-filter", params)
    plugin = SaturationFilter(
        queue_threshold=p.number("queueThreshold", DEFAULT_QUEUE_THRESHOLD, minimum=0),
        kv_threshold=p.number("kvThreshold", DEFAULT_KV_THRESHOLD, minimum=0, maximum=1),
        staleness_seconds=p.seconds("metricsStalenessThreshold", DEFAULT_STALENESS_SECONDS),
    )
    p.done()
    return plugin
