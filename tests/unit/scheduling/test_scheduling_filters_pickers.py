"""Filters (saturation, staleness; never empty) and pickers, with hand-computed tables."""

from __future__ import annotations

import random
import re
from collections import Counter
from typing import Any

import pytest

from inferlane.scheduling.interfaces import Endpoint, PickRequest
from inferlane.scheduling.plugins.filter import saturation, stale
from inferlane.scheduling.plugins.picker import (
    least_request,
    max_score,
    random_picker,
    round_robin,
    weighted_random,
)
from inferlane.scheduling.types import EndpointState, ServerMetrics

NOW = 10.0


def state(i: int, *, waiting: int = 0, kv: float = 0.0, at: float | None = NOW,
          in_flight: int = 0) -> EndpointState:
    metrics = None if at is None else ServerMetrics(waiting=waiting, kv_usage=kv, scraped_at=at)
    return EndpointState(Endpoint(f"default/s{i}", f"10.0.0.{i}", 8000), metrics,
                         in_flight_requests=in_flight)


def names(states: list[EndpointState]) -> list[int]:
    return [int(s.endpoint.host.rsplit(".", 1)[1]) for s in states]


REQUEST = PickRequest(request_id="r", model="m", now=NOW)


@pytest.mark.parametrize(
    ("states", "kept"),
    [
        ([state(0), state(1), state(2)], [0, 1, 2]),
        # thresholds are inclusive: waiting 5 and kv 0.8 still pass
        ([state(0, waiting=5), state(1, waiting=6), state(2)], [0, 2]),
        ([state(0, kv=0.8), state(1, kv=0.81), state(2)], [0, 2]),
        # stale after 2 s: scraped at 8.0 is fresh at 10.0, 7.9 is not; never scraped is stale
        ([state(0, at=8.0), state(1, at=7.9), state(2, at=None)], [0]),
        # panic 1: every fresh endpoint saturated -> the fresh ones (not the stale one)
        ([state(0, waiting=9), state(1, kv=0.95), state(2, at=1.0)], [0, 1]),
        # panic 2: nothing fresh -> everything, unchanged
        ([state(0, at=None), state(1, at=1.0, waiting=50)], [0, 1]),
        ([], []),
    ],
)
def test_saturation_filter(states: list[EndpointState], kept: list[int]) -> None:
    assert names(saturation.factory("", {}).filter(REQUEST, states)) == kept


def test_saturation_filter_parameters() -> None:
    flt = saturation.factory("sat", {"queueThreshold": 1, "kvThreshold": 0.5,
                                     "metricsStalenessThreshold": "500ms"})
    states = [state(0, waiting=2), state(1, kv=0.6), state(2, at=9.4), state(3, waiting=1)]
    assert names(flt.filter(REQUEST, states)) == [3]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"queueThreshold": "5"}, 'sat: parameter "queueThreshold" must be a number'),
        ({"kvThreshold": 1.5}, "between 0 and 1"),
        ({"metricsStalenessThreshold": "2 seconds"}, "a duration"),
        ({"queueTreshold": 5}, "sat: unknown parameter 'queueTreshold' (known: kvThreshold, "
                               "metricsStalenessThreshold, queueThreshold)"),
    ],
)
def test_saturation_filter_rejects_bad_parameters(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        saturation.factory("sat", params)


@pytest.mark.parametrize(
    ("states", "kept"),
    [
        ([state(0), state(1, at=7.0), state(2, at=None)], [0]),
        ([state(0, waiting=100, kv=1.0)], [0]),  # load is not this filter's business
        ([state(0, at=None), state(1, at=3.0)], [0, 1]),  # panic: all stale -> all
    ],
)
def test_stale_filter(states: list[EndpointState], kept: list[int]) -> None:
    assert names(stale.factory("", {}).filter(REQUEST, states)) == kept


CANDIDATES = [state(i) for i in range(4)]


def test_max_score_picks_the_highest_total() -> None:
    picker = max_score.MaxScorePicker(random.Random(0))
    assert picker.pick(REQUEST, CANDIDATES[:3], [1.0, 3.0, 2.0]) == 1
    assert picker.pick(REQUEST, [], []) is None


def test_max_score_breaks_ties_at_random_within_tolerance() -> None:
    picker = max_score.factory("", {"seed": 3})
    totals = [3.0, 1.0, 3.0 + 1e-12, 2.999]
    counts = Counter(picker.pick(REQUEST, CANDIDATES, totals) for _ in range(1000))
    assert set(counts) == {0, 2}
    assert min(counts.values()) > 400


def test_random_picker_is_uniform_and_seedable() -> None:
    first = random_picker.factory("", {"seed": 7})
    second = random_picker.factory("", {"seed": 7})
    picks = [first.pick(REQUEST, CANDIDATES, [0.0] * 4) for _ in range(4000)]
    assert picks[:50] == [second.pick(REQUEST, CANDIDATES, [0.0] * 4) for _ in range(50)]
    counts = Counter(picks)
    assert set(counts) == {0, 1, 2, 3}
    assert min(counts.values()) > 850
    assert first.pick(REQUEST, [], []) is None


@pytest.mark.parametrize(
    ("totals", "expected"),
    [
        ([0.0, 1.0, 3.0, 0.0], [0.0, 0.25, 0.75, 0.0]),  # P(i) = total_i / sum
        ([-5.0, 2.0, 2.0, 0.0], [0.0, 0.5, 0.5, 0.0]),  # negatives count as 0
        ([0.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]),  # nothing to go on: uniform
    ],
)
def test_weighted_random_picks_in_proportion_to_totals(totals: list[float],
                                                       expected: list[float]) -> None:
    picker = weighted_random.factory("", {"seed": 11})
    runs = 8000
    counts = Counter(picker.pick(REQUEST, CANDIDATES, totals) for _ in range(runs))
    for index, share in enumerate(expected):
        assert counts[index] / runs == pytest.approx(share, abs=0.03)
        if share == 0.0:
            assert counts[index] == 0


def test_least_request_takes_the_less_loaded_of_two() -> None:
    picker = least_request.factory("", {"seed": 5})
    two = [state(0, waiting=3, in_flight=2), state(1, in_flight=1)]  # loads 5 and 1
    assert {picker.pick(REQUEST, two, [0.0, 0.0]) for _ in range(50)} == {1}
    assert picker.pick(REQUEST, two[:1], [0.0]) == 0
    assert picker.pick(REQUEST, [], []) is None


def test_least_request_is_power_of_two_choices() -> None:
    # Loads 0, 10, 10: the idle endpoint wins whenever it is one of the two sampled, i.e. with
    # probability 1 - C(2,2)/C(3,2) = 2/3; the busy ones split the rest.
    picker = least_request.factory("", {"seed": 9})
    candidates = [state(0), state(1, in_flight=10), state(2, in_flight=10)]
    runs = 6000
    counts = Counter(picker.pick(REQUEST, candidates, [0.0] * 3) for _ in range(runs))
    assert counts[0] / runs == pytest.approx(2 / 3, abs=0.03)
    assert counts[1] / runs == pytest.approx(1 / 6, abs=0.03)


def test_least_request_ignores_metrics_it_does_not_have() -> None:
    unscraped = [state(0, at=None, in_flight=4), state(1, at=None, in_flight=0)]
    picker = least_request.LeastRequestPicker(random.Random(1))
    assert {picker.pick(REQUEST, unscraped, [0.0, 0.0]) for _ in range(20)} == {1}


def test_round_robin_cycles_and_survives_a_shrinking_list() -> None:
    picker = round_robin.factory("", {})
    assert [picker.pick(REQUEST, CANDIDATES, []) for _ in range(5)] == [0, 1, 2, 3, 0]
    assert [picker.pick(REQUEST, CANDIDATES[:2], []) for _ in range(3)] == [1, 0, 1]
    assert picker.pick(REQUEST, [], []) is None


@pytest.mark.parametrize("module", [max_score, random_picker, weighted_random, least_request])
def test_pickers_reject_unknown_parameters(module: Any) -> None:
    with pytest.raises(ValueError, match="unknown parameter 'sed'"):
        module.factory("p", {"sed": 1})
