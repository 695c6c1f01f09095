"""``token-load-scorer``: fewer tokens in flight from this gateway is better.

``score_i = (max_t - t_i) / (max_t - min_t)``, ``t`` = ``in_flight_tokens`` (prompt + expected
output of requests dispatched and not finished); all equal → 1.0 each. Unlike the scraped
queue/running counts, in-flight counts change at dispatch, so this scorer spreads a burst of
requests that lands between two scrapes. (Upstream normalises against a fixed threshold
instead; min-max needs no tuning.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from inferlane.scheduling.interfaces import PickRequest
from inferlane.scheduling.plugins.params import Params
from inferlane.scheduling.plugins.scorer.normalize import fewer_is_better
from inferlane.scheduling.types import EndpointState


class TokenLoadScorer:
    __slots__ = ()
    SCORES_IN_RANGE = True  # see framework.profile

    def score(self, request: PickRequest, candidates: Sequence[EndpointState]) -> list[float]:
        return fewer_is_better([s.in_flight_tokens for s in candidates])


def factory(name: str, params: Mapping[str, Any]) -> TokenLoadScorer:
    Params(name or "token-load-scorer", params).done()
    return TokenLoadScorer()
