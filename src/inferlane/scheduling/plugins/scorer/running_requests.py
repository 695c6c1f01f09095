"""``running-requests-size-scorer``: fewer requests in the server's running batch is better.

``score_i = (max_r - r_i) / (max_r - min_r)``, ``r`` = the endpoint's reported ``running`` (0
before its first scrape); all equal → 1.0 each (as upstream llm-d).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from inferlane.scheduling.interfaces import PickRequest
from inferlane.scheduling.plugins.params import Params
from inferlane.scheduling.plugins.scorer.normalize import fewer_is_better
from inferlane.scheduling.types import EndpointState


class RunningRequestsSizeScorer:
    __slots__ = ()
    SCORES_IN_RANGE = True  # see framework.profile

    def score(self, request: PickRequest, candidates: Sequence[EndpointState]) -> list[float]:
        return fewer_is_better([s.metrics.running if s.metrics is not None else 0
                                for s in candidates])


def factory(name: str, params: Mapping[str, Any]) -> RunningRequestsSizeScorer:
    Params(name or "running-requests-size-scorer", params).done()
    return RunningRequestsSizeScorer()
