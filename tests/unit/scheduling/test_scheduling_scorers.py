"""Scorers, each against a table of hand-computed scores."""

from __future__ import annotations

from typing import Any

import pytest

from inferlane.scheduling.interfaces import Endpoint, PickRequest
from inferlane.scheduling.plugins.scorer import (
    kv_cache,
    lora_affinity,
    predicted_latency,
    prefill_load,
    queue,
    running_requests,
    session_affinity,
    token_load,
)
from inferlane.scheduling.prefix_index import PrefixIndex
from inferlane.scheduling.types import EndpointState, ServerMetrics


def endpoint(i: int) -> Endpoint:
    return Endpoint(f"default/s{i}", f"10.0.0.{i}", 8000)


def state(i: int, *, metrics: bool = True, waiting: int = 0, running: int = 0, kv: float = 0.0,
          running_loras: tuple[str, ...] = (), waiting_loras: tuple[str, ...] = (),
          max_loras: int | None = None, in_flight: int = 0, tokens: int = 0,
          prefill: float | None = None, decode: float | None = None,
          pending: int = 0) -> EndpointState:
    return EndpointState(
        endpoint(i),
        ServerMetrics(waiting=waiting, running=running, kv_usage=kv, max_loras=max_loras,
                      running_loras=frozenset(running_loras),
                      waiting_loras=frozenset(waiting_loras)) if metrics else None,
        in_flight_requests=in_flight, in_flight_tokens=tokens, pending_prefill_tokens=pending,
        ewma_prefill_seconds_per_token=prefill, ewma_decode_seconds_per_token=decode)


def request(model: str = "base", **kwargs: Any) -> PickRequest:
    return PickRequest(request_id="r", model=model, **kwargs)


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([state(0, waiting=0), state(1, waiting=2), state(2, waiting=4)], [1.0, 0.5, 0.0]),
        ([state(0, waiting=3), state(1, waiting=3)], [1.0, 1.0]),  # all equal: 1 each
        ([state(0, metrics=False), state(1, waiting=4)], [1.0, 0.0]),  # unscraped counts 0
        ([state(0, waiting=1), state(1, waiting=5), state(2, waiting=2)], [1.0, 0.0, 0.75]),
        ([], []),
    ],
)
def test_queue_scorer(states: list[EndpointState], expected: list[float]) -> None:
    assert queue.factory("", {}).score(request(), states) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([state(0, running=10), state(1, running=20), state(2, running=30)], [1.0, 0.5, 0.0]),
        ([state(0, running=7)], [1.0]),
    ],
)
def test_running_requests_size_scorer(states: list[EndpointState],
                                      expected: list[float]) -> None:
    scorer = running_requests.factory("", {})
    assert scorer.score(request(), states) == pytest.approx(expected)


def test_kv_cache_utilization_scorer() -> None:
    states = [state(0, kv=0.25), state(1, metrics=False), state(2, kv=1.0)]
    assert kv_cache.factory("", {}).score(request(), states) == pytest.approx([0.75, 1.0, 0.0])


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [([100, 300, 500], [1.0, 0.5, 0.0]), ([0, 0], [1.0, 1.0]), ([4000, 1000], [0.0, 1.0])],
)
def test_token_load_scorer(tokens: list[int], expected: list[float]) -> None:
    states = [state(i, tokens=t) for i, t in enumerate(tokens)]
    assert token_load.factory("", {}).score(request(), states) == pytest.approx(expected)


LORA_FLEET = [
    state(0, running_loras=("a",), max_loras=2),  # active
    state(1, running_loras=("b",), max_loras=2),  # free slot
    state(2, running_loras=("b", "c"), waiting_loras=("a",), max_loras=2),  # waiting, full
    state(3, running_loras=("b", "c"), max_loras=2),  # full, not waiting
    state(4, metrics=False),
    state(5, running_loras=("b",), waiting_loras=("a",), max_loras=4),  # free slot beats waiting
    state(6, running_loras=("b",)),  # no LoRA slot info: no free slot
]


@pytest.mark.parametrize(
    ("model", "adapters", "states", "expected"),
    [
        ("a", (), LORA_FLEET, [1.0, 0.8, 0.6, 0.0, 0.0, 0.8, 0.0]),
        # base model: not an adapter anywhere -> no preference
        ("base", (), LORA_FLEET, [1.0] * 7),
        # a cold adapter is only recognised when configured
        ("cold", (), LORA_FLEET[:2], [1.0, 1.0]),
        ("cold", ("cold",), LORA_FLEET[:4], [0.8, 0.8, 0.0, 0.0]),
    ],
)
def test_lora_affinity_scorer(model: str, adapters: tuple[str, ...],
                              states: list[EndpointState], expected: list[float]) -> None:
    scorer = lora_affinity.factory("", {"adapters": list(adapters)} if adapters else {})
    assert scorer.score(request(model), states) == pytest.approx(expected)


def test_lora_affinity_rejects_a_non_list_of_adapters() -> None:
    with pytest.raises(ValueError, match='"adapters" must be a list of strings'):
        lora_affinity.factory("lora", {"adapters": "a,b"})


SESSION_FLEET = [state(0), state(1), state(2)]


def test_session_affinity_binds_a_header_session_until_its_ttl() -> None:
    scorer = session_affinity.factory("", {"ttlSeconds": 300})
    first = request(headers={"x-session-id": "s1"}, now=0.0)
    assert scorer.score(first, SESSION_FLEET) == [0.0, 0.0, 0.0]  # nothing bound yet
    scorer.picked(first, SESSION_FLEET[1])
    assert scorer.score(request(headers={"x-session-id": "s1"}, now=300.0),
                        SESSION_FLEET) == [0.0, 1.0, 0.0]
    assert scorer.score(request(headers={"x-session-id": "s2"}, now=10.0),
                        SESSION_FLEET) == [0.0, 0.0, 0.0]
    assert scorer.score(request(now=10.0), SESSION_FLEET) == [0.0, 0.0, 0.0]  # no key
    # the binding is refreshed on every pick; past its TTL it is gone
    scorer.picked(request(headers={"x-session-id": "s1"}, now=100.0), SESSION_FLEET[2])
    assert scorer.score(request(headers={"x-session-id": "s1"}, now=400.0),
                        SESSION_FLEET) == [0.0, 0.0, 1.0]
    assert scorer.score(request(headers={"x-session-id": "s1"}, now=400.1),
                        SESSION_FLEET) == [0.0, 0.0, 0.0]
    assert len(scorer) == 0


def test_session_affinity_by_cookie_and_custom_header() -> None:
    by_cookie = session_affinity.factory("", {"cookie": "sid"})
    picked = request(headers={"cookie": 'theme=dark; sid="abc"'})
    by_cookie.picked(picked, SESSION_FLEET[2])
    assert by_cookie.score(request(headers={"cookie": "sid=abc"}), SESSION_FLEET) == [0, 0, 1]
    assert by_cookie.score(request(headers={"x-session-id": "abc"}), SESSION_FLEET) == [0, 0, 0]
    by_header = session_affinity.factory("", {"header": "X-Conversation"})
    by_header.picked(request(headers={"x-conversation": "c"}), SESSION_FLEET[0])
    assert by_header.score(request(headers={"x-conversation": "c"}), SESSION_FLEET) == [1, 0, 0]


def test_session_affinity_memory_is_bounded() -> None:
    scorer = session_affinity.factory("", {"maxSessions": 2})
    for key in ("a", "b", "c"):
        scorer.picked(request(headers={"x-session-id": key}), SESSION_FLEET[0])
    assert len(scorer) == 2
    assert scorer.score(request(headers={"x-session-id": "a"}), SESSION_FLEET) == [0, 0, 0]
    assert scorer.score(request(headers={"x-session-id": "c"}), SESSION_FLEET) == [1, 0, 0]


# Predicted latency. Request: 1,000 prompt tokens, no prompt text (so no prefix match).
#   e0: waiting 2, running 4, 8 in flight, 500 prefill tokens pending; prefill 1e-4, decode 0.02
#       ahead = max(500, 2 waiting * 1000) = 2000 -> TTFT = (2000 + 1000) * 1e-4 + 0.02 = 0.32
#   e1: idle; prefill 2e-4, decode 0.01 -> 1000 * 2e-4 + 0.01 = 0.21
#   e2: never scraped, 1 in flight with 1,000 prefill tokens pending, no EWMAs (1e-4, 0.02)
#       -> ahead = max(1000, 0) -> (1000 + 1000) * 1e-4 + 0.02 = 0.22
LATENCY_FLEET = [
    state(0, waiting=2, running=4, in_flight=8, prefill=1e-4, decode=0.02, pending=500),
    state(1, prefill=2e-4, decode=0.01),
    state(2, metrics=False, in_flight=1, pending=1000),
]


@pytest.mark.parametrize(
    ("params", "estimates"),
    [
        ({}, [0.32, 0.21, 0.22]),
        # decode step scaled by the batch: e0 0.02 * (4 + 1) = 0.1 -> 0.4
        ({"decodeScalesWithBatch": True}, [0.40, 0.21, 0.22]),
        # requests ahead (2 waiting + 2 unreported on e0, 1 unreported on e2) assumed 100
        # tokens each: e0 (4*100 + 1000) * 1e-4 + 0.02 = 0.16, e2 (100 + 1000) * 1e-4 + 0.02
        ({"queuedRequestTokens": 100}, [0.16, 0.21, 0.13]),
        ({"defaultPrefillSecondsPerToken": 0.0, "defaultDecodeSecondsPerToken": 0.5},
         [0.32, 0.21, 0.5]),
    ],
)
def test_predicted_latency_estimates(params: dict[str, Any], estimates: list[float]) -> None:
    scorer = predicted_latency.factory("", params)
    req = request(prompt_tokens=1000)
    assert scorer.estimates(req, LATENCY_FLEET) == pytest.approx(estimates)
    best = min(estimates)
    assert scorer.score(req, LATENCY_FLEET) == pytest.approx([best / e for e in estimates])
    assert [scorer.predict_ttft(req, s) for s in LATENCY_FLEET] == pytest.approx(estimates)


def test_predicted_latency_subtracts_the_cached_prefix() -> None:
    index = PrefixIndex()
    scorer = predicted_latency.PredictedLatencyScorer(prefix_index=index)
    prompt = "x" * 4000  # 62 whole 64-character blocks = 992 tokens
    req = request(prompt=prompt, prompt_tokens=1000)
    scorer.picked(req, LATENCY_FLEET[1])  # records: the scorer owns its index
    # e1: only 1000 - 992 = 8 tokens left to prefill -> 8 * 2e-4 + 0.01 = 0.0116
    assert scorer.predict_ttft(req, LATENCY_FLEET[1]) == pytest.approx(0.0116)
    assert scorer.predict_ttft(req, LATENCY_FLEET[0]) == pytest.approx(0.32)


def test_predicted_latency_reads_a_shared_index_without_recording() -> None:
    shared = PrefixIndex()
    scorer = predicted_latency.PredictedLatencyScorer()
    scorer.use_prefix_index(shared)
    req = request(prompt="y" * 640)
    scorer.picked(req, LATENCY_FLEET[1])
    assert shared.size(LATENCY_FLEET[1].endpoint) == 0  # the index's owner records, not us
    shared.record_request(req, LATENCY_FLEET[1])
    # prompt tokens from the text: 640 / 4 = 160, all cached on e1 -> only the decode step
    assert scorer.predict_ttft(req, LATENCY_FLEET[1]) == pytest.approx(0.01)


def test_predicted_latency_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match='"queuedRequestTokens" must be an integer >= 1'):
        predicted_latency.factory("pl", {"queuedRequestTokens": 0})
    with pytest.raises(ValueError, match="unknown parameter 'decodeScaling'"):
        predicted_latency.factory("pl", {"decodeScaling": True})


# Prefill load. Request: 1,000 prompt tokens, no prompt text (no prefix match); 300 tokens per
# request in the batch (the default).
#   e0: 500 pending, running 4 (scraped) vs 2 in flight -> batch 4: 500 + 1000 + 1200 = 2700
#   e1: idle: 0 + 1000 + 0 = 1000 (the least work: score 1)
#   e2: never scraped, 3 in flight (batch 3), 2,000 pending: 2000 + 1000 + 900 = 3900
PREFILL_FLEET = [
    state(0, running=4, in_flight=2, pending=500),
    state(1),
    state(2, metrics=False, in_flight=3, pending=2000),
]


@pytest.mark.parametrize(
    ("params", "work"),
    [
        ({}, [2700.0, 1000.0, 3900.0]),
        ({"runningRequestTokens": 0}, [1500.0, 1000.0, 3000.0]),
    ],
)
def test_prefill_load_scorer(params: dict[str, Any], work: list[float]) -> None:
    scorer = prefill_load.factory("", params)
    req = request(prompt_tokens=1000)
    assert scorer.work(req, PREFILL_FLEET) == pytest.approx(work)
    assert scorer.score(req, PREFILL_FLEET) == pytest.approx([min(work) / w for w in work])
    assert scorer.score(req, []) == []


def test_prefill_load_scorer_prices_a_cache_miss_against_queued_work() -> None:
    scorer = prefill_load.PrefillLoadScorer(running_request_tokens=0)
    prompt = "x" * 4000  # 62 whole 64-character blocks = 992 tokens cached once recorded
    req = request(prompt=prompt, prompt_tokens=1000)
    warm, cold = state(0, pending=600), state(1)
    scorer.picked(req, warm)  # records: the scorer owns its index
    # warm: 600 pending + 8 uncached = 608; cold: 1000 uncached -> the warm endpoint wins
    assert scorer.work(req, [warm, cold]) == pytest.approx([608.0, 1000.0])
    busy = state(0, pending=1200)
    # 1,208 tokens of work on the warm endpoint now outweigh re-reading the prefix elsewhere
    assert scorer.score(req, [busy, cold]) == pytest.approx([1000 / 1208, 1.0])


def test_prefill_load_scorer_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match="runningRequestTokens"):
        prefill_load.factory("pl", {"runningRequestTokens": -1})
    with pytest.raises(ValueError, match="unknown parameter 'tokensPerRequest'"):
        prefill_load.factory("pl", {"tokensPerRequest": 1})
