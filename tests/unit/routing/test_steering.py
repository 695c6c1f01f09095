import ipaddress
import math
from collections import Counter
from collections.abc import Callable

import pytest

from inferlane.routing.backends import BackendRef, pool_ref, provider_ref
from inferlane.routing.steering import (
    Candidate,
    GeoSteering,
    LatencyEwma,
    Steering,
    SteeringPolicy,
    steer,
)

A, B, C = pool_ref("ns/a"), pool_ref("ns/b"), pool_ref("ns/c")
P = provider_ref("ns/p")
FAILOVER, RANDOM = SteeringPolicy.FAILOVER, SteeringPolicy.RANDOM
LEAST, LATENCY, GEO = (SteeringPolicy.LEAST_OUTSTANDING, SteeringPolicy.DYNAMIC_LATENCY,
                       SteeringPolicy.GEO)


def cand(backend: BackendRef, weight: int = 1, *, healthy: bool = True, outstanding: int = 0,
         latency: float | None = None) -> Candidate:
    return Candidate(backend, weight, healthy=healthy, outstanding=outstanding, latency=latency)


def geo(header: str | None = "x-region",
        cidrs: tuple[tuple[str, str], ...] = (("10.0.0.0/8", "eu"), ("10.1.0.0/16", "us"),
                                              ("2001:db8::/32", "ap"))) -> GeoSteering:
    return GeoSteering(
        header=header,
        source_cidrs=tuple((ipaddress.ip_network(cidr), region) for cidr, region in cidrs),
        regions={"eu": (B, A), "us": (C,), "ap": (P,)},
    )


GEO_STEERING = Steering(GEO, geo())


@pytest.mark.parametrize(
    ("policy", "candidates", "unit", "expected"),
    [
        # failover: config order, whatever the weights and the draw
        (FAILOVER, [cand(A), cand(B, 5), cand(C)], 0.99, (A, B, C)),
        (FAILOVER, [cand(A, healthy=False), cand(B), cand(C)], 0.0, (B, C, A)),
        (FAILOVER, [cand(A, 0), cand(B), cand(C)], 0.0, (B, C)),
        (FAILOVER, [cand(A), cand(B), cand(A)], 0.0, (A, B)),  # listed twice, tried once
        (FAILOVER, [], 0.5, ()),
        # random: one weighted draw first, then config order (weights 1:1:2)
        (RANDOM, [cand(A), cand(B), cand(C, 2)], 0.0, (A, B, C)),
        (RANDOM, [cand(A), cand(B), cand(C, 2)], 0.2499, (A, B, C)),
        (RANDOM, [cand(A), cand(B), cand(C, 2)], 0.25, (B, A, C)),
        (RANDOM, [cand(A), cand(B), cand(C, 2)], 0.5, (C, A, B)),
        (RANDOM, [cand(A), cand(B), cand(C, 2)], 0.99, (C, A, B)),
        (RANDOM, [cand(A), cand(B, healthy=False), cand(C)], 0.6, (C, A, B)),
        (RANDOM, [cand(A, 0), cand(B, 0), cand(C)], 0.0, (C,)),
        # least outstanding: in flight per unit of weight, ascending
        (LEAST, [cand(A, outstanding=4), cand(B, outstanding=2), cand(C, outstanding=3)], 0.0,
         (B, C, A)),
        (LEAST, [cand(A, 4, outstanding=4), cand(B, 1, outstanding=2),
                 cand(C, 2, outstanding=1)], 0.0, (C, A, B)),  # 1.0, 2.0, 0.5
        # ties (2/1 == 6/3) go by a weighted draw: A holds [0, 0.25), B [0.25, 1)
        (LEAST, [cand(A, 1, outstanding=2), cand(B, 3, outstanding=6), cand(C, outstanding=0)],
         0.2, (C, A, B)),
        (LEAST, [cand(A, 1, outstanding=2), cand(B, 3, outstanding=6), cand(C, outstanding=0)],
         0.5, (C, B, A)),
        (LEAST, [cand(A), cand(B)], 0.7, (B, A)),  # all idle: plain random
        (LEAST, [cand(A, outstanding=0, healthy=False), cand(B, outstanding=9)], 0.0, (B, A)),
        # dynamic latency: fastest first, unknown after known (as one random tie group)
        (LATENCY, [cand(A, latency=0.3), cand(B, latency=0.1), cand(C, latency=0.2)], 0.9,
         (B, C, A)),
        (LATENCY, [cand(A), cand(B, latency=0.5), cand(C), cand(P, latency=0.1)], 0.0,
         (P, B, A, C)),
        (LATENCY, [cand(A), cand(B, latency=0.5), cand(C), cand(P, latency=0.1)], 0.9,
         (P, B, C, A)),
        (LATENCY, [cand(A, latency=0.1), cand(B, latency=0.1)], 0.0, (A, B)),
        (LATENCY, [cand(A, latency=0.1), cand(B, latency=0.1)], 0.6, (B, A)),
        (LATENCY, [cand(A), cand(B, latency=0.0)], 0.0, (B, A)),  # 0 s is known, not unknown
        (LATENCY, [cand(A, latency=0.01, healthy=False), cand(B, latency=2.0)], 0.0, (B, A)),
    ],
)
def test_steer_orders_by_policy(policy: SteeringPolicy, candidates: list[Candidate],
                                unit: float, expected: tuple[BackendRef, ...]) -> None:
    assert steer(Steering(policy), candidates, unit=unit) == expected


@pytest.mark.parametrize(
    ("region", "candidates", "unit", "expected"),
    [
        # eu prefers B then A; the others (C, P) follow by a weighted draw
        ("eu", [cand(A), cand(B), cand(C), cand(P)], 0.0, (B, A, C, P)),
        ("eu", [cand(A), cand(B), cand(C), cand(P)], 0.9, (B, A, P, C)),
        ("eu", [cand(A), cand(B, healthy=False), cand(C), cand(P)], 0.0, (A, C, P, B)),
        ("eu", [cand(A), cand(B, 0), cand(C), cand(P)], 0.0, (A, C, P)),
        ("us", [cand(A), cand(B), cand(C), cand(P)], 0.99, (C, P, A, B)),
        ("ap", [cand(A), cand(B)], 0.7, (B, A)),  # preferred P is not a candidate: random
        ("mars", [cand(A), cand(B), cand(C), cand(P)], 0.99, (P, A, B, C)),
        (None, [cand(A), cand(B), cand(C), cand(P)], 0.99, (P, A, B, C)),
        (None, [cand(A), cand(B), cand(C, 2)], 0.5, (C, A, B)),
    ],
)
def test_geo_prefers_the_client_region(region: str | None, candidates: list[Candidate],
                                       unit: float, expected: tuple[BackendRef, ...]) -> None:
    assert steer(GEO_STEERING, candidates, unit=unit, client_region=region) == expected


@pytest.mark.parametrize("policy", list(SteeringPolicy))
def test_all_unhealthy_falls_back_to_config_order(policy: SteeringPolicy) -> None:
    steering = GEO_STEERING if policy is GEO else Steering(policy)
    candidates = [cand(C, 3, healthy=False, outstanding=0, latency=0.1),
                  cand(A, healthy=False, outstanding=5, latency=0.5),
                  cand(B, 0, healthy=False), cand(P, 2, healthy=False)]
    assert steer(steering, candidates, unit=0.99, client_region="eu") == (C, A, P)


@pytest.mark.parametrize("policy", list(SteeringPolicy))
def test_weight_zero_is_never_returned(policy: SteeringPolicy) -> None:
    steering = GEO_STEERING if policy is GEO else Steering(policy)
    candidates = [cand(B, 0, outstanding=0, latency=0.0), cand(A, outstanding=7)]
    for unit in (0.0, 0.5, 0.99):
        assert steer(steering, candidates, unit=unit, client_region="eu") == (A,)
    assert steer(steering, [cand(A, 0), cand(B, 0)], unit=0.5, client_region="eu") == ()


def test_random_first_choice_follows_weights() -> None:
    candidates = [cand(A, 70), cand(B, 20), cand(C, 10)]
    firsts = Counter(steer(Steering(RANDOM), candidates, unit=i / 1000)[0] for i in range(1000))
    assert firsts == {A: 700, B: 200, C: 100}


@pytest.mark.parametrize(
    ("headers", "remote", "expected"),
    [
        ({"x-region": "eu-west"}, "10.1.2.3", "eu-west"),  # the header wins
        ({"x-region": " us "}, None, "us"),
        ({"x-region": "  "}, "10.1.2.3", "us"),  # blank header: the address decides
        ({}, "10.1.2.3", "us"),  # /16 beats /8
        ({}, "10.2.0.1", "eu"),
        ({}, "192.0.2.1", None),
        ({}, "2001:db8::1", "ap"),
        ({}, "2001:db9::1", None),
        ({}, "::ffff:10.1.0.5", "us"),  # IPv4-mapped IPv6
        ({}, "not-an-address", None),
        ({}, "10.1.2.3:443", None),
        ({}, "", None),
        ({}, None, None),
    ],
)
def test_client_region_header_then_longest_prefix(headers: dict[str, str], remote: str | None,
                                                  expected: str | None) -> None:
    assert geo().client_region(headers, remote) == expected


def test_client_region_longest_prefix_whatever_the_order() -> None:
    cidrs = (("10.1.2.0/24", "rack"), ("0.0.0.0/0", "world"), ("10.0.0.0/8", "eu"),
             ("10.1.0.0/16", "us"), ("::/0", "world6"))
    steering = geo(header=None, cidrs=cidrs)
    assert steering.client_region({"x-region": "ignored"}, "10.1.2.9") == "rack"
    assert steering.client_region({}, "10.1.3.9") == "us"
    assert steering.client_region({}, "10.9.3.9") == "eu"
    assert steering.client_region({}, "8.8.8.8") == "world"
    assert steering.client_region({}, "fe80::1") == "world6"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Steering(GEO), "needs a geo section"),
        (lambda: Steering(RANDOM, geo()), "ignores the geo section"),
        (lambda: geo(header="X-Region"), "lower-case"),
        (lambda: geo(header=""), "lower-case"),
        (lambda: Candidate(A, -1), "weight"),
        (lambda: Candidate(A, 1, outstanding=-1), "outstanding"),
        (lambda: Candidate(A, 1, latency=math.nan), "latency"),
        (lambda: Candidate(A, 1, latency=-0.1), "latency"),
        (lambda: steer(Steering(), [cand(A)], unit=1.0), "unit"),
        (lambda: steer(Steering(), [cand(A)], unit=-0.1), "unit"),
        (lambda: LatencyEwma(alpha=0.0), "alpha"),
        (lambda: LatencyEwma(alpha=1.5), "alpha"),
        (lambda: LatencyEwma().update(math.inf), "sample"),
    ],
)
def test_invalid_values_are_refused(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    ("alpha", "samples", "expected"),
    [
        (0.5, [1.0], [1.0]),  # the first sample sets it
        (0.5, [1.0, 3.0, 2.0], [1.0, 2.0, 2.0]),
        (0.25, [0.4, 0.0, 0.0], [0.4, 0.3, 0.225]),
        (1.0, [0.4, 0.1, 0.7], [0.4, 0.1, 0.7]),  # alpha 1: the last sample
    ],
)
def test_latency_ewma(alpha: float, samples: list[float], expected: list[float]) -> None:
    ewma = LatencyEwma(alpha)
    assert ewma.value is None
    assert [ewma.update(sample) for sample in samples] == pytest.approx(expected)
    assert ewma.value == pytest.approx(expected[-1])
