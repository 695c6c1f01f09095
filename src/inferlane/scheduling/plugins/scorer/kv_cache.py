"""``kv-cache-utilization-scorer``: more free KV cache is better.

``score_i = 1 - kv_usage_i`` (the server's reported utilisation, 0..1; 1.0 before its first
scrape). Not normalised across candidates: a pool that is 90 % full everywhere scores low
everywhere, which other scorers then outweigh.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from inferlane.scheduling.interfaces import PickRequest
from inferlane.scheduling.plugins.params import Params
from inferlane.scheduling.types import EndpointState


class KVCacheUtilizationScorer:
    __slots__ = ()

    def score(self, request: PickRequest, candidates: Sequence[EndpointState]) -> list[float]:
        return [1.0 - s.metrics.kv_usage if s.metrics is not None else 1.0 for s in candidates]


def factory(name: str, params: Mapping[str, Any]) -> KVCacheUtilizationScorer:
    Params(name or "kv-cache-utilization-scorer", params).done()
    return KVCacheUtilizationScorer()
