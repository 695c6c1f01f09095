"""The per-pool Scheduler: endpoint states in, one decision (and its explanation) out.

``pick`` returns just the endpoint; ``schedule``, which the router calls, adds the explanation
(``PickResult``): the best candidates with each scorer's score and, when the profile predicts
it, the chosen endpoint's time to first token.

Endpoint states come from a callable given at construction (the data layer's
``EndpointStore.states``); ``bare_states`` — states with no metrics — keeps metric-free profiles
(round-robin, random) and tests simple.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence

from inferlane.scheduling.framework.interface import CandidateScore, PickResult
from inferlane.scheduling.framework.profile import ProfileRun, SchedulingProfile
from inferlane.scheduling.interfaces import Endpoint, PickRequest
from inferlane.scheduling.types import EndpointState

StatesFn = Callable[[Sequence[Endpoint]], list[EndpointState]]

DEFAULT_EXPLAIN = 3  # candidates kept in a PickResult


def bare_states(endpoints: Sequence[Endpoint]) -> list[EndpointState]:
    """States that know nothing but the endpoint (no scrape, nothing in flight)."""
    return [EndpointState(endpoint) for endpoint in endpoints]


class Scheduler:
    """Runs one SchedulingProfile for one pool; not thread-safe (one event loop owns it)."""

    __slots__ = ("_states", "profile")

    def __init__(self, profile: SchedulingProfile, states: StatesFn = bare_states) -> None:
        self.profile = profile
        self._states = states

    def pick(self, request: PickRequest, endpoints: Sequence[Endpoint]) -> Endpoint | None:
        """The chosen endpoint, or None when there is none to choose (no explanation)."""
        if not endpoints:
            return None
        run = self.profile.run(request, self._states(endpoints))
        if run.chosen is None:
            return None
        state = run.candidates[run.chosen]
        self.profile.after_pick(request, state)
        return state.endpoint

    def schedule(self, request: PickRequest, endpoints: Sequence[Endpoint], *,
                 explain: int = DEFAULT_EXPLAIN) -> PickResult:
        """Like ``pick``, with the explanation: up to ``explain`` best candidates, chosen first."""
        if not endpoints:
            return PickResult(None, profile=self.profile.name)
        run = self.profile.run(request, self._states(endpoints))
        if run.chosen is None:
            return PickResult(None, profile=self.profile.name, offered=len(endpoints),
                              eligible=len(run.candidates))
        state = run.candidates[run.chosen]
        predictor = self.profile.predictor
        predicted = predictor.predict_ttft(request, state) if predictor is not None else None
        ranked = self._explained(request, run, explain, predicted)
        self.profile.after_pick(request, state)  # after predicting: learn from this pick last
        return PickResult(state.endpoint, ranked, profile=self.profile.name,
                          offered=len(endpoints), eligible=len(run.candidates),
                          predicted_ttft=predicted)

    def predict_ttft(self, request: PickRequest, state: EndpointState) -> float | None:
        """The profile's TTFT estimate (seconds) for ``request`` on ``state``, if it has one."""
        predictor = self.profile.predictor
        return predictor.predict_ttft(request, state) if predictor is not None else None

    def _explained(self, request: PickRequest, run: ProfileRun, explain: int,
                   chosen_ttft: float | None) -> tuple[CandidateScore, ...]:
        """Up to ``explain`` candidates, chosen first; ``chosen_ttft`` is already predicted."""
        if explain <= 0 or run.chosen is None:
            return ()
        totals = run.totals
        chosen = run.chosen
        others = heapq.nlargest(explain, (i for i in range(len(totals)) if i != chosen),
                                key=totals.__getitem__)
        names = self.profile.scorer_names
        predictor = self.profile.predictor
        ranked: list[CandidateScore] = []
        for i in [chosen, *others][:explain]:
            state = run.candidates[i]
            ranked.append(CandidateScore(
                endpoint=state.endpoint,
                total=totals[i],
                by_scorer=tuple((name, run.scores[k][i]) for k, name in enumerate(names)),
                predicted_ttft=(chosen_ttft if i == chosen else
                                predictor.predict_ttft(request, state)
                                if predictor is not None else None),
            ))
        return tuple(ranked)
