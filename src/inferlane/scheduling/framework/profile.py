"""A scheduling profile: filters → weighted scorers → picker, then the post-pick hooks.

For one request and the pool's endpoint states::

    candidates = states, narrowed by each filter in order
    total[i]   = Σ_s weight_s * clamp(score_s[i], 0, 1)
    chosen     = picker.pick(request, candidates, total)
    post-pick hooks learn about the chosen candidate (``after_pick``, called by the Scheduler
    once the decision is final)

A scorer class may declare ``SCORES_IN_RANGE = True`` when its scores are in [0, 1] by
construction (no NaN either); the profile then skips clamping them, which is most of the cost of
a weighted sum over a few candidates. Third-party scorers are clamped unless they say so.

A profile holds plugin *instances*; building them from names and parameters is the registry's
job (``scheduling.registry``). Runs are synchronous and allocation-light: one list per scorer
plus the totals, so a 1,000-endpoint pool costs a few list passes per scorer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from inferlane.scheduling.framework.interface import (
    Filter,
    Picker,
    PostPick,
    Scorer,
    TTFTPredictor,
)
from inferlane.scheduling.interfaces import PickRequest
from inferlane.scheduling.types import EndpointState


@dataclass(frozen=True, slots=True)
class WeightedScorer:
    """A scorer as a profile uses it: its name (for explanations) and its weight (>= 0)."""

    name: str
    scorer: Scorer
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.weight >= 0:
            raise ValueError(f"scorer {self.name!r}: weight must be >= 0, got {self.weight}")


@dataclass(frozen=True, slots=True)
class ProfileRun:
    """What one run computed: the surviving candidates, their scores and the picker's choice."""

    candidates: Sequence[EndpointState]
    totals: list[float]
    scores: list[list[float]]  # one clamped list per scorer, aligned with ``candidates``
    chosen: int | None


class SchedulingProfile:
    """An ordered pipeline of plugin instances; see the module docstring for the formula."""

    __slots__ = ("_steps", "filters", "name", "picker", "post_picks", "predictor", "scorers")

    def __init__(
        self,
        name: str,
        *,
        picker: Picker,
        filters: Sequence[Filter] = (),
        scorers: Sequence[WeightedScorer] = (),
        post_picks: Sequence[PostPick] = (),
        predictor: TTFTPredictor | None = None,
    ) -> None:
        self.name = name
        self.filters = tuple(filters)
        self.scorers = tuple(scorers)
        self.picker = picker
        self.post_picks = tuple(post_picks)
        self.predictor = predictor
        # (name, score function, weight, clamp?) per scorer: the run loop's view.
        self._steps = tuple(
            (ws.name, ws.scorer.score, ws.weight,
             getattr(type(ws.scorer), "SCORES_IN_RANGE", False) is not True)
            for ws in self.scorers)

    @property
    def scorer_names(self) -> tuple[str, ...]:
        return tuple(ws.name for ws in self.scorers)

    def run(self, request: PickRequest, states: Sequence[EndpointState]) -> ProfileRun:
        candidates = states
        for flt in self.filters:
            if not candidates:
                break
            candidates = flt.filter(request, candidates)
        if not candidates:
            return ProfileRun(candidates, [], [], None)
        count = len(candidates)
        scores: list[list[float]] = []
        totals: list[float] | None = None
        for name, score, weight, clamp in self._steps:
            raw = score(request, candidates)
            values = _clamped(raw) if clamp or not isinstance(raw, list) else raw
            if len(values) != count:
                raise ValueError(f"scorer {name!r} returned {len(values)} scores for "
                                 f"{count} candidates")
            scores.append(values)
            if weight:
                totals = ([weight * v for v in values] if totals is None
                          else [t + weight * v for t, v in zip(totals, values, strict=True)])
        if totals is None:
            totals = [0.0] * count
        chosen = self.picker.pick(request, candidates, totals)
        if chosen is not None and not 0 <= chosen < count:
            raise ValueError(f"picker of profile {self.name!r} chose index {chosen} of "
                             f"{count} candidates")
        return ProfileRun(candidates, totals, scores, chosen)

    def after_pick(self, request: PickRequest, state: EndpointState) -> None:
        for hook in self.post_picks:
            hook.picked(request, state)


def _clamped(raw: Sequence[float]) -> list[float]:
    """``raw`` with every value forced into [0, 1]; NaN counts as 0 (no evidence)."""
    values = raw if isinstance(raw, list) else list(raw)
    if not values:
        return values
    total = sum(values)
    # Fast path: three C-level passes instead of a Python-level one per value.
    if total == total and min(values) >= 0.0 and max(values) <= 1.0:
        return values
    return [1.0 if v > 1.0 else v if v >= 0.0 else 0.0 for v in values]
