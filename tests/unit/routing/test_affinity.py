import functools
import random
import re
from collections import Counter
from collections.abc import Callable

import pytest

from inferlane.routing.affinity import (
    AffinityTable,
    backend_for_token,
    cookie_token,
    hrw_order,
    pin,
)
from inferlane.routing.backends import BackendRef, pool_ref, provider_ref
from inferlane.routing.steering import Candidate

A, B, C, D = (pool_ref(f"ns/{name}") for name in "abcd")
P = provider_ref("ns/p")
FIVE = [Candidate(backend, 1) for backend in (A, B, C, D, P)]
KEYS = [f"session-{i}" for i in range(10_000)]


@functools.cache
def five_orders() -> dict[str, tuple[BackendRef, ...]]:
    return {key: hrw_order(key, FIVE) for key in KEYS}


# --- rendezvous hashing -----------------------------------------------------------------------


def test_hrw_is_stable_and_a_permutation_of_the_live_backends() -> None:
    candidates = [Candidate(A, 1), Candidate(B, 2, healthy=False), Candidate(C, 0),
                  Candidate(D, 3), Candidate(P, 1, healthy=False)]
    for key in KEYS[:200]:
        order = hrw_order(key, candidates)
        assert order == hrw_order(key, candidates)
        assert set(order[:2]) == {A, D}  # healthy first, in hash order
        assert order[2:] == (B, P)  # then unhealthy in config order; weight 0 never


def test_hrw_ignores_config_order_of_healthy_backends() -> None:
    shuffled = FIVE[:]
    random.Random(7).shuffle(shuffled)
    assert all(hrw_order(key, FIVE) == hrw_order(key, shuffled) for key in KEYS[:500])


def test_hrw_spreads_keys_across_backends() -> None:
    firsts = Counter(hrw_order(key, FIVE)[0] for key in KEYS)
    assert set(firsts) == {A, B, C, D, P}
    assert all(abs(count - 2000) < 200 for count in firsts.values())  # 5 sigma is 200


@pytest.mark.parametrize(
    "remove",
    [
        pytest.param(lambda c: None, id="dropped"),
        pytest.param(lambda c: Candidate(c.backend, c.weight, healthy=False), id="unhealthy"),
        pytest.param(lambda c: Candidate(c.backend, 0), id="weight-0"),
    ],
)
@pytest.mark.parametrize("removed", [A, C, P])
def test_hrw_removing_a_backend_moves_only_its_sessions(
        remove: Callable[[Candidate], Candidate | None], removed: BackendRef) -> None:
    after_candidates = [c for c in (remove(c) if c.backend == removed else c for c in FIVE)
                        if c is not None]
    before = five_orders()
    after = {key: hrw_order(key, after_candidates) for key in KEYS}
    moved = {key for key in KEYS if after[key][0] != before[key][0]}
    assert moved == {key for key in KEYS if before[key][0] == removed}
    assert abs(len(moved) - len(KEYS) / 5) < 200  # ~1/N, 5 sigma
    # Stronger: every key keeps the relative order of the backends that remain.
    for key in KEYS:
        assert [b for b in after[key] if b != removed] == [b for b in before[key] if b != removed]


def test_hrw_honours_weights() -> None:
    candidates = [Candidate(A, 1), Candidate(B, 2), Candidate(C, 3), Candidate(D, 4)]
    firsts = Counter(hrw_order(f"user-{i}", candidates)[0] for i in range(20_000))
    for backend, share in ((A, 0.1), (B, 0.2), (C, 0.3), (D, 0.4)):
        # sigma <= sqrt(0.25 / 20_000) ~ 0.0035; 0.02 is over 5 sigma
        assert firsts[backend] / 20_000 == pytest.approx(share, abs=0.02)


def test_hrw_with_nothing_live() -> None:
    assert hrw_order("k", []) == ()
    assert hrw_order("k", [Candidate(A, 0)]) == ()
    assert hrw_order("k", [Candidate(A, 1, healthy=False), Candidate(B, 1, healthy=False)]) == (
        A, B)


# --- the affinity table -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("idle", "absolute", "lookups", "expected"),
    [
        # remembered at t=0; each hit counts as a use
        (10.0, None, [9.9], [A]),
        (10.0, None, [10.0], [None]),  # idle for exactly idle_timeout: gone
        (10.0, None, [5.0, 14.0, 23.9, 33.8], [A, A, A, A]),
        (10.0, None, [5.0, 15.0], [A, None]),
        (10.0, None, [10.0, 1.0], [None, None]),  # an expired session is dropped
        (None, 30.0, [10.0, 20.0, 29.9, 30.0], [A, A, A, None]),
        (10.0, 30.0, [9.0, 18.0, 27.0, 30.0], [A, A, A, None]),  # used, yet too old
        (None, None, [1e9], [A]),
    ],
)
def test_affinity_table_expiry(idle: float | None, absolute: float | None,
                               lookups: list[float], expected: list[BackendRef | None]) -> None:
    table = AffinityTable()
    table.remember("k", A, 0.0)
    found = [table.lookup("k", now, idle_timeout=idle, absolute_timeout=absolute)
             for now in lookups]
    assert found == expected
    assert len(table) == (0 if expected[-1] is None else 1)


@pytest.mark.parametrize(
    ("second", "lookup_at", "expected"),
    [
        (A, 25.0, A),  # the same backend again: idle refreshed, age kept
        (A, 30.0, None),
        (B, 30.0, B),  # moved to another backend: a new binding, age restarts
        (B, 49.9, B),
        (B, 50.0, None),
    ],
)
def test_remember_again_refreshes_and_rebinding_restarts_the_age(
        second: BackendRef, lookup_at: float, expected: BackendRef | None) -> None:
    table = AffinityTable()
    table.remember("k", A, 0.0)
    table.remember("k", second, 20.0)
    assert table.lookup("k", lookup_at, idle_timeout=None, absolute_timeout=30.0) == expected


def test_unknown_and_forgotten_sessions() -> None:
    table = AffinityTable()
    assert table.lookup("k", 0.0, idle_timeout=None, absolute_timeout=None) is None
    table.remember("k", A, 0.0)
    table.forget("k")
    table.forget("never-seen")
    assert table.lookup("k", 0.0, idle_timeout=None, absolute_timeout=None) is None
    assert len(table) == 0


def test_least_recently_used_session_is_evicted() -> None:
    table = AffinityTable(max_entries=3)
    for now, key in enumerate(("k1", "k2", "k3")):
        table.remember(key, A, float(now))
    assert table.lookup("k1", 3.0, idle_timeout=None, absolute_timeout=None) == A  # a use
    table.remember("k4", B, 4.0)  # evicts k2
    table.remember("k3", A, 5.0)  # a use
    table.remember("k5", C, 6.0)  # evicts k1
    assert len(table) == 3
    present = {key: table.lookup(key, 7.0, idle_timeout=None, absolute_timeout=None)
               for key in ("k1", "k2", "k3", "k4", "k5")}
    assert present == {"k1": None, "k2": None, "k3": A, "k4": B, "k5": C}


def test_affinity_table_needs_room() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        AffinityTable(max_entries=0)


# --- the cookie codec -------------------------------------------------------------------------


CANDIDATES = [Candidate(A, 1), Candidate(B, 1, healthy=False), Candidate(P, 2)]


@pytest.mark.parametrize("backend", [A, B, P])
def test_cookie_token_round_trip(backend: BackendRef) -> None:
    token = cookie_token(backend)
    assert re.fullmatch(r"[0-9a-f]{16}", token)
    assert token == cookie_token(backend)
    assert backend.key not in token
    assert backend_for_token(token, CANDIDATES) == backend  # healthy or not: pin checks
    assert backend_for_token(token.upper(), CANDIDATES) == backend


def test_cookie_token_is_stable_across_releases() -> None:
    # Cookies outlive deploys: changing the encoding breaks every live session.
    assert cookie_token(pool_ref("a/b")) == "adba6cb21640ddff"
    assert cookie_token(pool_ref("ns/x")) != cookie_token(provider_ref("ns/x"))


@pytest.mark.parametrize(
    "token",
    [
        cookie_token(C),  # a backend that is not a candidate (removed from the route)
        "",
        "xyz",
        "0123456789abcdef0",
        "zzzzzzzzzzzzzzzz",
        cookie_token(A, secret=b"other replica key"),
    ],
)
def test_unknown_token_finds_nothing(token: str) -> None:
    assert backend_for_token(token, CANDIDATES) is None


def test_cookie_token_with_a_secret() -> None:
    token = cookie_token(P, secret=b"s3cret")
    assert token != cookie_token(P)
    assert backend_for_token(token, CANDIDATES, secret=b"s3cret") == P
    assert backend_for_token(token, CANDIDATES) is None


def test_weight_zero_backend_is_not_found_by_token() -> None:
    assert backend_for_token(cookie_token(A), [Candidate(A, 0), Candidate(B, 1)]) is None


# --- pinning ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pinned", "unhealthy", "expected"),
    [
        (C, set(), (C, A, B)),
        (A, set(), (A, B, C)),
        (None, set(), (A, B, C)),
        (D, set(), (A, B, C)),  # not in the chain
        (C, {C}, (A, B, C)),  # unhealthy: steering's order stands
        (B, {A}, (B, A, C)),  # others' health is not pin's business
    ],
)
def test_pin(pinned: BackendRef | None, unhealthy: set[BackendRef],
             expected: tuple[BackendRef, ...]) -> None:
    assert pin((A, B, C), pinned, lambda backend: backend not in unhealthy) == expected
