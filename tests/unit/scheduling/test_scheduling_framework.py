"""The framework: filters → weighted scorers (clamped) → picker → post-pick, and explanations."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from inferlane.scheduling.framework import (
    PickResult,
    Scheduler,
    SchedulingProfile,
    WeightedScorer,
    bare_states,
)
from inferlane.scheduling.interfaces import Endpoint, PickRequest
from inferlane.scheduling.plugins.picker.max_score import MaxScorePicker
from inferlane.scheduling.plugins.picker.round_robin import RoundRobinPicker
from inferlane.scheduling.types import EndpointState

ENDPOINTS = tuple(Endpoint(f"default/s{i}", f"10.0.0.{i}", 8000) for i in range(4))
REQUEST = PickRequest(request_id="r", model="m")


class Fixed:
    """A scorer returning the given scores, aligned by endpoint port order of the candidates."""

    def __init__(self, by_host: dict[str, float]) -> None:
        self.by_host = by_host

    def score(self, request: PickRequest, candidates: Sequence[EndpointState]) -> list[float]:
        return [self.by_host[s.endpoint.host] for s in candidates]


class Raw:
    def __init__(self, values: list[float]) -> None:
        self.values = values

    def score(self, request: PickRequest, candidates: Sequence[EndpointState]) -> list[float]:
        return list(self.values)


class Drop:
    def __init__(self, host: str, seen: list[list[str]]) -> None:
        self.host = host
        self.seen = seen

    def filter(self, request: PickRequest,
               candidates: Sequence[EndpointState]) -> list[EndpointState]:
        self.seen.append([s.endpoint.host for s in candidates])
        return [s for s in candidates if s.endpoint.host != self.host]


class Recorder:
    def __init__(self) -> None:
        self.picked_hosts: list[str] = []

    def picked(self, request: PickRequest, state: EndpointState) -> None:
        self.picked_hosts.append(state.endpoint.host)


class CountingPredictor:
    """Predicts 0.1 s per post-pick seen so far, so the order of predict/post-pick shows."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def predict_ttft(self, request: PickRequest, state: EndpointState) -> float:
        return 0.1 * (len(self.recorder.picked_hosts) + 1) + int(state.endpoint.host[-1])


def scheduler(*, scorers: Sequence[WeightedScorer] = (), filters: Sequence[object] = (),
              post_picks: Sequence[object] = (), predictor: object = None,
              picker: object | None = None) -> Scheduler:
    profile = SchedulingProfile("test", picker=picker or MaxScorePicker(),  # type: ignore[arg-type]
                                filters=filters, scorers=scorers,  # type: ignore[arg-type]
                                post_picks=post_picks, predictor=predictor)  # type: ignore[arg-type]
    return Scheduler(profile)


def test_weighted_sum_picks_the_highest_total_and_explains_it() -> None:
    a = Fixed({"10.0.0.0": 1.0, "10.0.0.1": 0.0, "10.0.0.2": 0.5, "10.0.0.3": 0.25})
    b = Fixed({"10.0.0.0": 0.0, "10.0.0.1": 1.0, "10.0.0.2": 0.5, "10.0.0.3": 0.25})
    sched = scheduler(scorers=[WeightedScorer("a", a, 2), WeightedScorer("b", b, 1)])
    result = sched.schedule(REQUEST, ENDPOINTS)
    # totals: s0 = 2*1 + 0 = 2.0, s1 = 0 + 1 = 1.0, s2 = 1.0 + 0.5 = 1.5, s3 = 0.5 + 0.25 = 0.75
    assert result.endpoint == ENDPOINTS[0]
    assert [(c.endpoint.host, c.total) for c in result.candidates] == [
        ("10.0.0.0", 2.0), ("10.0.0.2", 1.5), ("10.0.0.1", 1.0)]
    assert result.candidates[0].by_scorer == (("a", 1.0), ("b", 0.0))
    assert result.candidates[1].by_scorer == (("a", 0.5), ("b", 0.5))
    assert (result.profile, result.offered, result.eligible) == ("test", 4, 4)
    assert result.predicted_ttft is None
    assert sched.pick(REQUEST, ENDPOINTS) == ENDPOINTS[0]


def test_weights_change_the_winner() -> None:
    a = Fixed({"10.0.0.0": 1.0, "10.0.0.1": 0.0, "10.0.0.2": 0.0, "10.0.0.3": 0.0})
    b = Fixed({"10.0.0.0": 0.0, "10.0.0.1": 1.0, "10.0.0.2": 0.0, "10.0.0.3": 0.0})
    assert scheduler(scorers=[WeightedScorer("a", a, 1), WeightedScorer("b", b, 3)]).pick(
        REQUEST, ENDPOINTS) == ENDPOINTS[1]
    # Weight 0: explained, but no influence.
    result = scheduler(scorers=[WeightedScorer("a", a, 0), WeightedScorer("b", b, 1)]).schedule(
        REQUEST, ENDPOINTS)
    assert result.endpoint == ENDPOINTS[1]
    assert result.candidates[0].by_scorer == (("a", 0.0), ("b", 1.0))


@pytest.mark.parametrize(
    ("raw", "clamped"),
    [
        ([0.0, 0.5, 1.0, 0.25], [0.0, 0.5, 1.0, 0.25]),
        ([1.5, -0.2, math.nan, 0.3], [1.0, 0.0, 0.0, 0.3]),
        ([math.inf, -math.inf, 0.5, 2], [1.0, 0.0, 0.5, 1.0]),
    ],
)
def test_scores_are_clamped_to_unit_interval(raw: list[float], clamped: list[float]) -> None:
    profile = SchedulingProfile("p", picker=MaxScorePicker(),
                                scorers=[WeightedScorer("raw", Raw(raw), 1)])
    run = profile.run(REQUEST, bare_states(ENDPOINTS))
    assert run.scores == [clamped]
    assert run.totals == clamped


def test_a_scorer_returning_the_wrong_number_of_scores_is_an_error() -> None:
    sched = scheduler(scorers=[WeightedScorer("short", Raw([1.0]), 1)])
    with pytest.raises(ValueError, match="'short' returned 1 scores for 4 candidates"):
        sched.pick(REQUEST, ENDPOINTS)


def test_negative_weight_is_rejected() -> None:
    with pytest.raises(ValueError, match="weight must be >= 0"):
        WeightedScorer("a", Raw([]), -1)


def test_filters_run_in_order_on_what_the_previous_one_kept() -> None:
    seen: list[list[str]] = []
    sched = scheduler(filters=[Drop("10.0.0.0", seen), Drop("10.0.0.2", seen)])
    result = sched.schedule(REQUEST, ENDPOINTS)
    assert seen == [["10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3"],
                    ["10.0.0.1", "10.0.0.2", "10.0.0.3"]]
    assert result.eligible == 2
    assert result.endpoint in (ENDPOINTS[1], ENDPOINTS[3])


def test_everything_filtered_means_no_endpoint_and_no_post_pick() -> None:
    recorder = Recorder()
    seen: list[list[str]] = []
    only = (ENDPOINTS[0],)
    sched = scheduler(filters=[Drop("10.0.0.0", seen)], post_picks=[recorder])
    assert sched.pick(REQUEST, only) is None
    result = sched.schedule(REQUEST, only)
    assert (result.endpoint, result.eligible, result.offered) == (None, 0, 1)
    assert recorder.picked_hosts == []


def test_no_endpoints_returns_none_without_asking_for_states() -> None:
    asked: list[Sequence[Endpoint]] = []

    def states(endpoints: Sequence[Endpoint]) -> list[EndpointState]:
        asked.append(endpoints)
        return bare_states(endpoints)

    sched = Scheduler(SchedulingProfile("p", picker=MaxScorePicker()), states)
    assert sched.pick(REQUEST, ()) is None
    assert sched.schedule(REQUEST, ()) == PickResult(None, profile="p")
    assert asked == []
    sched.pick(REQUEST, ENDPOINTS)
    assert asked == [ENDPOINTS]


def test_post_pick_hooks_learn_the_chosen_endpoint_once_per_decision() -> None:
    recorder = Recorder()
    sched = scheduler(picker=RoundRobinPicker(), post_picks=[recorder])
    sched.pick(REQUEST, ENDPOINTS)
    sched.schedule(REQUEST, ENDPOINTS)
    assert recorder.picked_hosts == ["10.0.0.0", "10.0.0.1"]


def test_predicted_ttft_is_computed_before_the_post_pick_hooks_run() -> None:
    recorder = Recorder()
    sched = scheduler(picker=RoundRobinPicker(), post_picks=[recorder],
                      predictor=CountingPredictor(recorder))
    result = sched.schedule(REQUEST, ENDPOINTS[:2], explain=2)
    assert result.predicted_ttft == pytest.approx(0.1)  # no post-pick seen yet; host ...0
    assert [c.predicted_ttft for c in result.candidates] == [pytest.approx(0.1),
                                                             pytest.approx(1.1)]
    assert sched.predict_ttft(REQUEST, bare_states(ENDPOINTS[:1])[0]) == pytest.approx(0.2)
    assert scheduler().predict_ttft(REQUEST, bare_states(ENDPOINTS[:1])[0]) is None


def test_a_picker_choosing_out_of_range_is_an_error() -> None:
    class Broken:
        def pick(self, request: PickRequest, candidates: Sequence[EndpointState],
                 totals: Sequence[float]) -> int | None:
            return len(candidates)

    with pytest.raises(ValueError, match="chose index 4 of 4"):
        scheduler(picker=Broken()).pick(REQUEST, ENDPOINTS)


@pytest.mark.parametrize(("explain", "expected"), [(0, 0), (1, 1), (3, 3), (10, 4)])
def test_explain_limits_the_candidates_kept(explain: int, expected: int) -> None:
    result = scheduler().schedule(REQUEST, ENDPOINTS, explain=explain)
    assert len(result.candidates) == expected
    if expected:
        assert result.candidates[0].endpoint == result.endpoint


def test_explain_renders_one_line() -> None:
    a = Fixed({"10.0.0.0": 1.0, "10.0.0.1": 0.5, "10.0.0.2": 0.0, "10.0.0.3": 0.0})
    result = scheduler(scorers=[WeightedScorer("queue", a, 2)]).schedule(REQUEST, ENDPOINTS,
                                                                         explain=2)
    assert result.explain() == ("profile=test; eligible=4/4; 10.0.0.0:8000 total=2.000 "
                                "queue=1.000; 10.0.0.1:8000 total=1.000 queue=0.500")
