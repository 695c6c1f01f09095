"""EndpointStore with a fake clock: staleness edges, reload sync, in-flight counts, EWMA math."""

from __future__ import annotations

import math

import pytest

from inferlane.endpoints.store import EndpointStore
from inferlane.scheduling.interfaces import Endpoint
from inferlane.scheduling.types import ServerMetrics

A = Endpoint("default/a", "10.0.0.1", 8000)
B = Endpoint("default/b", "10.0.0.2", 8000)
C = Endpoint("default/c", "::1", 8000, engine="sglang")


def scrape(at: float, waiting: int = 0) -> ServerMetrics:
    return ServerMetrics(waiting=waiting, scraped_at=at)


def test_constructor_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="stale_after"):
        EndpointStore(stale_after=0)
    with pytest.raises(ValueError, match="ewma_alpha"):
        EndpointStore(ewma_alpha=1.5)


@pytest.mark.parametrize(("scraped_at", "now", "stale"), [
    (None, 0.0, True),  # never scraped
    (10.0, 10.0, False),
    (10.0, 12.0, False),  # exactly stale_after old: still fresh
    (10.0, 12.000001, True),
    (10.0, 9.0, False),  # a clock read before the scrape landed
])
def test_staleness_threshold(scraped_at: float | None, now: float, stale: bool) -> None:
    store = EndpointStore(stale_after=2.0)
    store.sync([A])
    if scraped_at is not None:
        store.record_scrape(A, scrape(scraped_at))
    assert store.is_stale(A, now) is stale
    assert store.staleness(now) == {"10.0.0.1:8000": stale}


def test_unknown_endpoint_is_stale_and_staleness_lists_all() -> None:
    store = EndpointStore()
    store.sync([A, C])
    store.record_scrape(A, scrape(1.0))
    assert store.is_stale(B, 1.0)
    assert store.staleness(1.0) == {"10.0.0.1:8000": False, "[::1]:8000": True}


def test_scrape_errors_count_consecutively_and_keep_the_last_metrics() -> None:
    store = EndpointStore()
    store.sync([A])
    store.record_scrape(A, scrape(1.0, waiting=3))
    store.record_scrape_error(A)
    store.record_scrape_error(A)
    state = store.state(A)
    assert state.scrape_errors == 2
    assert state.metrics == scrape(1.0, waiting=3)
    store.record_scrape(A, scrape(2.0, waiting=4))
    assert (state.scrape_errors, state.metrics.waiting) == (0, 4)


def test_an_older_scrape_never_replaces_a_newer_one() -> None:
    store = EndpointStore()
    store.record_scrape(A, scrape(1.0))  # unknown: ignored
    assert A not in store
    store.sync([A])
    store.record_scrape(A, scrape(5.0, waiting=5))
    store.record_scrape(A, scrape(4.0, waiting=4))
    assert store.state(A).metrics == scrape(5.0, waiting=5)


def test_sync_keeps_survivors_adds_and_drops() -> None:
    store = EndpointStore()
    store.sync([A, B])
    store.record_scrape(A, scrape(1.0, waiting=7))
    store.on_dispatch(A, 100)
    survivor = store.state(A)
    renamed = Endpoint("prod/a-renamed", "10.0.0.1", 8000, engine="sglang")
    store.sync([renamed, C])
    assert store.endpoints() == [renamed, C]
    assert store.state(renamed) is survivor  # same address: same state
    assert survivor.endpoint == renamed
    assert (survivor.metrics, survivor.in_flight_requests) == (scrape(1.0, waiting=7), 1)
    assert B not in store
    # The request dispatched before the reload is released against the same counters.
    store.on_complete(A, 100)
    assert (survivor.in_flight_requests, survivor.in_flight_tokens) == (0, 0)


def test_sync_with_a_duplicate_address_keeps_one_state() -> None:
    store = EndpointStore()
    twin = Endpoint("default/a-twin", "10.0.0.1", 8000)
    store.sync([A, twin])
    assert store.endpoints() == [twin]
    assert len(store) == 1


def test_late_events_for_a_dropped_endpoint_do_not_resurrect_it() -> None:
    store = EndpointStore()
    store.sync([A])
    store.on_dispatch(A, 10)
    store.sync([])
    store.on_first_token(A, uncached_prompt_tokens=10, seconds=0.1)
    store.on_complete(A, 10, output_tokens=5, decode_seconds=0.4)
    store.record_scrape(A, scrape(1.0))
    store.record_scrape_error(A)
    assert store.endpoints() == []


def test_state_creates_on_first_use_and_states_keep_order() -> None:
    store = EndpointStore()
    states = store.states([C, A, C])
    assert [s.endpoint for s in states] == [C, A, C]
    assert states[0] is states[2]
    assert store.endpoints() == [C, A]


def test_in_flight_never_goes_negative() -> None:
    store = EndpointStore()
    store.on_dispatch(A, 300)
    store.on_dispatch(A, 200)
    state = store.state(A)
    assert (state.in_flight_requests, state.in_flight_tokens) == (2, 500)
    store.on_complete(A, 300)
    assert (state.in_flight_requests, state.in_flight_tokens) == (1, 200)
    for _ in range(3):
        store.on_complete(A, 1000)
    assert (state.in_flight_requests, state.in_flight_tokens) == (0, 0)
    store.on_dispatch(A, -5)  # a bogus estimate never subtracts
    assert (state.in_flight_requests, state.in_flight_tokens) == (1, 0)


def test_prefill_ewma() -> None:
    store = EndpointStore(ewma_alpha=0.25)
    store.sync([A])
    state = store.state(A)
    store.on_first_token(A, uncached_prompt_tokens=1000, seconds=0.2)  # 0.2 ms/token: seeds
    assert state.ewma_prefill_seconds_per_token == pytest.approx(0.0002)
    # 300 of ours behind 700 pending: 0.6 s over 1,000 tokens = 0.6 ms/token
    store.on_first_token(A, uncached_prompt_tokens=300, seconds=0.6, prefill_tokens_ahead=700)
    # 0.0002 + 0.25 * (0.0006 - 0.0002) = 0.0003
    assert state.ewma_prefill_seconds_per_token == pytest.approx(0.0003)


def test_prefill_ewma_takes_off_one_step_once_the_decode_rate_is_known() -> None:
    store = EndpointStore(ewma_alpha=1.0)
    store.sync([A])
    store.on_complete(A, 0, output_tokens=3, decode_seconds=0.1)  # 50 ms per step
    store.on_first_token(A, uncached_prompt_tokens=500, seconds=0.15)
    assert store.state(A).ewma_prefill_seconds_per_token == pytest.approx(0.1 / 500)


@pytest.mark.parametrize(("tokens", "seconds"), [
    (0, 0.1), (-3, 0.1), (300, -0.1), (300, math.nan), (300, math.inf),
    (255, 0.1),  # too little prefill work to say anything about the prefill rate
])
def test_prefill_ewma_ignores_unusable_samples(tokens: int, seconds: float) -> None:
    store = EndpointStore()
    store.sync([A])
    store.on_first_token(A, uncached_prompt_tokens=tokens, seconds=seconds)
    assert store.state(A).ewma_prefill_seconds_per_token is None


def test_pending_prefill_is_released_at_first_token_or_completion() -> None:
    store = EndpointStore()
    store.sync([A])
    state = store.state(A)
    assert store.on_dispatch(A, 600, prefill_tokens=500) == 0
    assert store.on_dispatch(A, 300, prefill_tokens=200) == 500  # what stood ahead of it
    assert state.pending_prefill_tokens == 700
    store.on_first_token(A, uncached_prompt_tokens=500, seconds=0.1)
    assert state.pending_prefill_tokens == 200
    store.on_complete(A, 600)  # its prefill was released at the first token
    assert state.pending_prefill_tokens == 200
    store.on_complete(A, 300, pending_prefill_tokens=200)  # failed before its first token
    assert state.pending_prefill_tokens == 0
    store.on_complete(A, 300, pending_prefill_tokens=999)  # never below zero
    store.on_first_token(A, uncached_prompt_tokens=999, seconds=0.1)
    assert state.pending_prefill_tokens == 0


def test_decode_ewma_counts_intervals_between_tokens() -> None:
    store = EndpointStore(ewma_alpha=0.5)
    store.sync([A])
    state = store.state(A)
    store.on_dispatch(A, 50)
    store.on_complete(A, 50, output_tokens=11, decode_seconds=0.2)  # 10 intervals: 20 ms
    assert state.ewma_decode_seconds_per_token == pytest.approx(0.02)
    store.on_complete(A, 50, output_tokens=5, decode_seconds=0.16)  # 4 intervals: 40 ms
    assert state.ewma_decode_seconds_per_token == pytest.approx(0.03)  # halfway
    store.on_complete(A, 50, output_tokens=1, decode_seconds=5.0)  # no interval: no sample
    store.on_complete(A, 50)
    assert state.ewma_decode_seconds_per_token == pytest.approx(0.03)


def test_the_batch_limit_is_learned_from_scrapes_that_show_requests_waiting() -> None:
    store = EndpointStore()
    store.sync([A])
    state = store.state(A)
    store.record_scrape(A, ServerMetrics(running=10, waiting=0, scraped_at=1.0))
    assert state.batch_limit is None  # nothing waits: the batch may hold more
    store.record_scrape(A, ServerMetrics(running=16, waiting=3, scraped_at=2.0))
    assert state.batch_limit == 16
    store.record_scrape(A, ServerMetrics(running=12, waiting=2, scraped_at=3.0))
    assert state.batch_limit == 16  # KV pressure held it lower for a while: keep the largest


def test_a_refused_connection_makes_an_endpoint_stale_until_it_is_scraped_again() -> None:
    store = EndpointStore(stale_after=2.0)
    store.sync([A, B])
    store.record_scrape(A, scrape(10.0))
    assert not store.is_stale(A, 10.5)
    store.forget_metrics(A.address)
    store.forget_metrics("10.9.9.9:1")  # not in the store: nothing happens
    assert store.is_stale(A, 10.5)
    store.record_scrape(A, scrape(10.6))
    assert not store.is_stale(A, 10.7)
