"""``lora-affinity-scorer``: prefer endpoints where the request's LoRA adapter is or can be loaded.

For an adapter request, with ``m`` the endpoint's last scrape:

* 1.0 — the adapter is in ``m.running_loras`` (loaded and serving);
* 0.8 — a free adapter slot: ``|running_loras | waiting_loras| < max_loras`` (adapters already
  waiting will take slots first, as upstream counts them);
* 0.6 — the adapter is in ``m.waiting_loras`` (queued for a slot there);
* 0.0 — otherwise, and for endpoints without metrics or LoRA info.

**Is the request for an adapter?** Yes when ``request.model`` is in the ``adapters`` parameter
(a list of adapter names, for adapters not loaded anywhere yet), or appears in any candidate's
running or waiting adapters. Otherwise it is a base-model request and every candidate scores
1.0 (no preference).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from inferlane.scheduling.interfaces import PickRequest
from inferlane.scheduling.plugins.params import Params
from inferlane.scheduling.types import EndpointState

ACTIVE, FREE_SLOT, WAITING = 1.0, 0.8, 0.6


class LoraAffinityScorer:
    __slots__ = ("adapters",)
    SCORES_IN_RANGE = True  # see framework.profile

    def __init__(self, adapters: Iterable[str] = ()) -> None:
        self.adapters = frozenset(adapters)

    def is_adapter(self, model: str, candidates: Sequence[EndpointState]) -> bool:
        if model in self.adapters:
            return True
        for state in candidates:
            metrics = state.metrics
            if metrics is not None and (model in metrics.running_loras
                                        or model in metrics.waiting_loras):
                return True
        return False

    def score(self, request: PickRequest, candidates: Sequence[EndpointState]) -> list[float]:
        model = request.model
        if not self.is_adapter(model, candidates):
            return [1.0] * len(candidates)
        scores: list[float] = []
        for state in candidates:
            metrics = state.metrics
            if metrics is None:
                scores.append(0.0)
            elif model in metrics.running_loras:
                scores.append(ACTIVE)
            elif (metrics.max_loras is not None
                  and len(metrics.running_loras | metrics.waiting_loras) < metrics.max_loras):
                scores.append(FREE_SLOT)
            elif model in metrics.waiting_loras:
                scores.append(WAITING)
            else:
                scores.append(0.0)
        return scores


def factory(name: str, params: Mapping[str, Any]) -> LoraAffinityScorer:
    p = Params(name or "lora-affinity-scorer", params)
    plugin = LoraAffinityScorer(p.strings("adapters"))
    p.done()
    return plugin
