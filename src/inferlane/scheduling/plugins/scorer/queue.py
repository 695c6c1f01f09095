"""``queue-scorer``: fewer requests waiting in the server's queue is better.

``score_i = (max_w - w_i) / (max_w - min_w)`` over the candidates, ``w`` = the endpoint's
reported ``waiting`` (0 before its first scrape); all equal → 1.0 each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from inferlane.scheduling.interfaces import PickRequest
from inferlane.scheduling.plugins.params import Params
from inferlane.scheduling.plugins.scorer.normalize import fewer_is_better
from inferlane.scheduling.types import EndpointState


class QueueScorer:
    __slots__ = ()
    SCORES_IN_RANGE = True  # see framework.profile

    def score(self, request: PickRequest, candidates: Sequence[EndpointState]) -> list[float]:
        return fewer_is_better([s.metrics.waiting if s.metrics is not None else 0
                                for s in candidates])


def factory(name: str, params: Mapping[str, Any]) -> QueueScorer:
    Params(name or "queue-scorer", params).done()
    return QueueScorer()
