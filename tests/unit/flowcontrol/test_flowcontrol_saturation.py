"""Saturation detector: per-endpoint formula and pool assessment, hand-computed tables."""

from __future__ import annotations

import math

import pytest

from inferlane.flowcontrol import (
    PoolSaturation,
    SaturationConfig,
    SaturationDetector,
    endpoint_saturation,
    free_batch_slots,
)
from inferlane.scheduling.interfaces import Endpoint
from inferlane.scheduling.types import EndpointState, ServerMetrics

NOW = 10.0
DEFAULT = SaturationConfig()  # queue 5, kv 0.8, stale after 2 s


def state(i: int = 0, *, waiting: int = 0, running: int = 0, kv: float = 0.0,
          at: float | None = NOW, in_flight: int = 0) -> EndpointState:
    metrics = (None if at is None
               else ServerMetrics(waiting=waiting, running=running, kv_usage=kv, scraped_at=at))
    return EndpointState(Endpoint(f"default/s{i}", f"10.0.0.{i}", 8000), metrics,
                         in_flight_requests=in_flight)


@pytest.mark.parametrize(
    ("endpoint", "config", "expected"),
    [
        pytest.param(state(), DEFAULT, 0.0, id="idle"),
        pytest.param(state(waiting=2), DEFAULT, 0.4, id="waiting 2/5"),
        pytest.param(state(waiting=5), DEFAULT, 1.0, id="waiting at threshold is saturated"),
        pytest.param(state(waiting=10), DEFAULT, 2.0, id="waiting beyond threshold"),
        pytest.param(state(kv=0.4), DEFAULT, 0.5, id="kv 0.4/0.8"),
        pytest.param(state(kv=0.8), DEFAULT, 1.0, id="kv at threshold"),
        pytest.param(state(waiting=1, kv=0.6), DEFAULT, 0.75, id="max of both terms (kv)"),
        pytest.param(state(waiting=4, kv=0.4), DEFAULT, 0.8, id="max of both terms (queue)"),
        # 5 in flight, the scrape shows 1 waiting + 2 running: 2 unreported count as waiting
        pytest.param(state(waiting=1, running=2, in_flight=5), DEFAULT, 0.6, id="unreported"),
        # fewer in flight than the scrape shows (other clients' load): nothing added
        pytest.param(state(waiting=1, running=4, in_flight=1), DEFAULT, 0.2, id="no unreported"),
        pytest.param(state(in_flight=3), DEFAULT, 0.6, id="all in flight unreported"),
        pytest.param(state(at=8.0), DEFAULT, 0.0, id="2 s old is still fresh"),
        pytest.param(state(at=7.9), DEFAULT, 1.0, id="stale"),
        pytest.param(state(at=None), DEFAULT, 1.0, id="never scraped"),
        pytest.param(state(at=7.9, waiting=50), DEFAULT, 1.0, id="stale counts as exactly 1"),
        pytest.param(state(waiting=4, kv=0.3), SaturationConfig(10, 0.5, 1.0), 0.6, id="custom"),
        pytest.param(state(at=8.5), SaturationConfig(staleness_seconds=1.0), 1.0,
                     id="custom staleness"),
    ],
)
def test_endpoint_saturation(endpoint: EndpointState, config: SaturationConfig,
                             expected: float) -> None:
    assert endpoint_saturation(endpoint, NOW, config) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        pytest.param([], PoolSaturation(1.0, True, 0, 0), id="empty pool"),
        pytest.param([state(0), state(1, kv=0.4)], PoolSaturation(0.25, False, 2, 2),
                     id="mean of two"),
        # 0.4, stale (1), 2.0 capped at 1 -> mean 0.8; one endpoint still has capacity
        pytest.param([state(0, waiting=2), state(1, at=None), state(2, waiting=10)],
                     PoolSaturation(0.8, False, 3, 1), id="capped mean, one with capacity"),
        pytest.param([state(0, waiting=5), state(1, kv=0.9), state(2, at=1.0)],
                     PoolSaturation(1.0, True, 3, 0), id="none with capacity"),
        pytest.param([state(0, waiting=4, kv=0.79)], PoolSaturation(0.9875, False, 1, 1),
                     id="just below"),
    ],
)
def test_pool_assessment(states: list[EndpointState], expected: PoolSaturation) -> None:
    got = SaturationDetector().assess(states, NOW)
    assert (got.saturated, got.endpoints, got.with_capacity) == (
        expected.saturated, expected.endpoints, expected.with_capacity)
    assert got.value == pytest.approx(expected.value)


def test_detector_uses_its_config() -> None:
    assert SaturationDetector().config == SaturationConfig()
    lenient = SaturationDetector(SaturationConfig(queue_threshold=20))
    assert not lenient.assess([state(waiting=10)], NOW).saturated
    assert SaturationDetector().assess([state(waiting=10)], NOW).saturated


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"queue_threshold": 0}, "queue_threshold"),
        ({"queue_threshold": -1}, "queue_threshold"),
        ({"queue_threshold": math.nan}, "queue_threshold"),
        ({"queue_threshold": math.inf}, "queue_threshold"),
        ({"kv_threshold": 0}, "kv_threshold"),
        ({"kv_threshold": 1.01}, "kv_threshold"),
        ({"kv_threshold": math.nan}, "kv_threshold"),
        ({"staleness_seconds": 0}, "staleness_seconds"),
        ({"staleness_seconds": -2.0}, "staleness_seconds"),
    ],
)
def test_config_rejects_out_of_range(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        SaturationConfig(**kwargs)


def test_config_accepts_boundaries() -> None:
    assert SaturationConfig(queue_threshold=0.5, kv_threshold=1.0).kv_threshold == 1.0


def limited(*, running: int, waiting: int = 0, in_flight: int = 0, kv: float = 0.0,
            limit: int | None = 16, at: float | None = NOW) -> EndpointState:
    endpoint = state(running=running, waiting=waiting, in_flight=in_flight, kv=kv, at=at)
    endpoint.batch_limit = limit
    return endpoint


@pytest.mark.parametrize(
    ("endpoint", "free"),
    [
        pytest.param(limited(running=10), 6, id="six free slots"),
        pytest.param(limited(running=10, in_flight=15), 1, id="our in-flight count is newer"),
        pytest.param(limited(running=16, waiting=1), 0, id="full, one waiting"),
        pytest.param(limited(running=10, limit=None), None, id="limit never seen"),
        pytest.param(limited(running=2, at=NOW - 5), 0, id="stale"),
        pytest.param(limited(running=2, kv=0.9), 0, id="KV over its threshold"),
    ],
)
def test_free_batch_slots(endpoint: EndpointState, free: int | None) -> None:
    assert free_batch_slots(endpoint, NOW, DEFAULT) == free


def test_a_batch_aware_detector_releases_only_into_free_slots() -> None:
    release = SaturationDetector(SaturationConfig(queue_threshold=1), batch_aware=True)
    full = limited(running=16)  # no one waits, but the batch is full: a new one would wait
    roomy = limited(running=15)
    unknown = limited(running=30, waiting=0, limit=None)  # falls back to the waiting threshold
    assert release.with_capacity([full, roomy, unknown], NOW) == [roomy, unknown]
    assert release.assess([full], NOW).saturated
    assert not SaturationDetector(SaturationConfig(queue_threshold=1)).assess(
        [full], NOW).saturated  # without batch awareness only the waiting queue counts


def test_a_pool_never_scraped_is_unknown_not_saturated() -> None:
    # Servers without a metrics endpoint: flow control cannot see their load and must not hold
    # their traffic (it would only ever time out in the queue).
    detector = SaturationDetector(DEFAULT)
    blind = [state(0, at=None), state(1, at=None)]
    assessed = detector.assess(blind, NOW)
    assert not assessed.saturated
    assert (assessed.endpoints, assessed.with_capacity) == (2, 2)
    assert detector.with_capacity(blind, NOW) == blind
    # One scraped endpoint is enough to see: the never-scraped one counts as saturated again.
    mixed = [state(0, at=None), state(1, waiting=9)]
    assert detector.assess(mixed, NOW).saturated
    # Metrics that went stale mean the server stopped answering: saturated.
    assert detector.assess([state(0, at=NOW - 60)], NOW).saturated
