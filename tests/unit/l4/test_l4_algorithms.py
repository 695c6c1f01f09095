"""LBAlgorithm implementations and their registry: rules, distributions, stability."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from inferlane.l4.algorithms import (
    ALGORITHM_NAMES,
    LBAlgorithm,
    LeastConnections,
    Maglev,
    PowerOfTwo,
    RoundRobin,
    SourceHash,
    build_algorithm,
)
from inferlane.l4.flows import FlowKey, L4Backend

A, B, C, D = (L4Backend(f"10.0.0.{i}", 8000) for i in range(1, 5))


def weighted(*weights: int) -> list[L4Backend]:
    return [L4Backend(f"10.0.0.{i}", 8000, weight) for i, weight in enumerate(weights, 1)]


def flow(number: int, *, port: int | None = None) -> FlowKey:
    client = f"192.168.{number // 250}.{number % 250 + 1}"
    return FlowKey("tcp", client, 40000 + number % 20000 if port is None else port, "10.9.9.9", 80)


def place(algorithm: LBAlgorithm, candidates: list[L4Backend], flows: int) -> Counter[str]:
    """Place ``flows`` new flows, counting each as active on its backend (none end)."""
    active: Counter[str] = Counter()
    for number in range(flows):
        chosen = algorithm.pick(flow(number), candidates, active)
        assert chosen is not None
        active[chosen.key] += 1
    return active


def letters(algorithm: LBAlgorithm, candidates: list[L4Backend], picks: int,
            active: dict[str, int] | None = None) -> str:
    """The picks as letters, ``a`` for the first candidate; ``active`` is by letter too."""
    names = {backend.key: "abcd"[index] for index, backend in enumerate(candidates)}
    by_key = {key: (active or {}).get(name, 0) for key, name in names.items()}
    chosen = [algorithm.pick(flow(number), candidates, by_key) for number in range(picks)]
    return "".join(names[backend.key] for backend in chosen if backend is not None)


# --- registry ---------------------------------------------------------------------------------


def test_registry_names() -> None:
    assert ALGORITHM_NAMES == ("round-robin", "least-connections", "power-of-two", "maglev",
                               "source-hash")


@pytest.mark.parametrize(("name", "kind"), [
    ("round-robin", RoundRobin), ("least-connections", LeastConnections),
    ("power-of-two", PowerOfTwo), ("maglev", Maglev), ("source-hash", SourceHash),
])
def test_build_algorithm_makes_a_fresh_instance(name: str, kind: type) -> None:
    algorithm = build_algorithm(name)
    assert isinstance(algorithm, kind)
    assert algorithm.name == name
    assert build_algorithm(name) is not algorithm


def test_unknown_algorithm_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"'random'; known: round-robin, .*, source-hash"):
        build_algorithm("random")


def test_maglev_table_size_is_passed_and_validated() -> None:
    algorithm = build_algorithm("maglev", table_size=251)
    assert isinstance(algorithm, Maglev)
    algorithm.pick(flow(1), [A, B], {})
    assert algorithm.table.size == 251
    with pytest.raises(ValueError, match="size 1000 is not prime"):
        build_algorithm("maglev", table_size=1000)


# --- rules every algorithm follows ------------------------------------------------------------


@pytest.mark.parametrize("name", ALGORITHM_NAMES)
@pytest.mark.parametrize("candidates", [[], weighted(0, 0)])
def test_no_usable_candidate_gives_none(name: str, candidates: list[L4Backend]) -> None:
    assert build_algorithm(name).pick(flow(1), candidates, {}) is None


@pytest.mark.parametrize("name", ALGORITHM_NAMES)
def test_a_single_candidate_takes_everything(name: str) -> None:
    assert place(build_algorithm(name), [B], 50) == {B.key: 50}


@pytest.mark.parametrize("name", ALGORITHM_NAMES)
def test_weight_zero_candidates_get_no_flows(name: str) -> None:
    candidates = weighted(1, 0, 2)
    assert candidates[1].key not in place(build_algorithm(name), candidates, 2000)


# Shares of 10k new flows over weights 1,2,3,4 (absolute tolerance on the share).
@pytest.mark.parametrize(("name", "tolerance"), [
    ("round-robin", 0.0), ("least-connections", 0.0001), ("power-of-two", 0.001),
    ("maglev", 0.015), ("source-hash", 0.015),
])
def test_distribution_follows_weights(name: str, tolerance: float) -> None:
    candidates = weighted(1, 2, 3, 4)
    active = place(build_algorithm(name, rng=random.Random(1)), candidates, 10_000)
    for backend in candidates:
        assert active[backend.key] / 10_000 == pytest.approx(backend.weight / 10, abs=tolerance)


# --- round robin ------------------------------------------------------------------------------


@pytest.mark.parametrize(("weights", "sequence"), [
    ((1, 1, 1), "abcabc"),
    ((5, 1, 1), "aabacaa" * 2),  # nginx's smooth weighted round robin
    ((2, 1), "aba" * 3),
    ((1, 3), "babb" * 2),
    ((2, 2, 1), "abcab" * 2),
])
def test_round_robin_sequence(weights: tuple[int, ...], sequence: str) -> None:
    assert letters(RoundRobin(), weighted(*weights), len(sequence)) == sequence


def test_round_robin_ignores_load() -> None:
    assert letters(RoundRobin(), [A, B], 4, {"a": 100}) == "abab"


def test_round_robin_follows_candidate_changes() -> None:
    algorithm = RoundRobin()
    assert [algorithm.pick(flow(n), [A, B, C], {}) for n in range(2)] == [A, B]
    assert [algorithm.pick(flow(n), [A, C], {}) for n in range(4)] == [A, C, A, C]
    assert [algorithm.pick(flow(n), [A, B, C], {}) for n in range(3)] == [A, B, C]


def test_round_robin_keeps_its_cycle_across_a_weight_change() -> None:
    algorithm = RoundRobin()
    assert letters(algorithm, weighted(1, 1), 1) == "a"
    assert letters(algorithm, weighted(1, 3), 4) == "bbab"


# --- least connections ------------------------------------------------------------------------


@pytest.mark.parametrize(("weights", "active", "expected"), [
    ((1, 1, 1), {"a": 3, "b": 1, "c": 2}, "b"),
    ((1, 1, 1), {"a": 3, "b": 1}, "c"),  # missing from active: no flows
    ((4, 1, 1), {"a": 3, "b": 1, "c": 1}, "a"),  # 3/4 < 1/1
    ((1, 2, 1), {"a": 1, "b": 3, "c": 2}, "a"),  # 1 < 1.5 < 2
])
def test_least_connections_picks_the_lowest_active_per_weight(
        weights: tuple[int, ...], active: dict[str, int], expected: str) -> None:
    assert letters(LeastConnections(), weighted(*weights), 1, active) == expected


@pytest.mark.parametrize(("active", "sequence"), [
    ({}, "abcabc"),
    ({"b": 5}, "acacac"),
    ({"a": 1, "b": 1, "c": 1}, "abcabc"),
])
def test_least_connections_rotates_through_ties(active: dict[str, int], sequence: str) -> None:
    assert letters(LeastConnections(), [A, B, C], len(sequence), active) == sequence


# --- power of two choices ---------------------------------------------------------------------


def test_power_of_two_is_reproducible_with_a_seeded_rng() -> None:
    first = letters(PowerOfTwo(random.Random(42)), [A, B, C, D], 200)
    assert first == letters(PowerOfTwo(random.Random(42)), [A, B, C, D], 200)
    assert set(first) == set("abcd")


def test_power_of_two_compares_two_distinct_backends() -> None:
    # With two candidates both are always sampled, so the less loaded one always wins.
    assert letters(PowerOfTwo(random.Random(3)), [A, B], 100, {"a": 1}) == "b" * 100


def test_power_of_two_never_picks_the_most_loaded() -> None:
    picks = letters(PowerOfTwo(random.Random(5)), [A, B, C, D], 2000, {"a": 100})
    assert "a" not in picks
    assert set(picks) == set("bcd")


def test_power_of_two_loads_are_per_unit_of_weight() -> None:
    active = {"a": 10, "b": 2}  # 1 per unit of weight vs 2
    assert letters(PowerOfTwo(random.Random(9)), weighted(10, 1), 50, active) == "a" * 50


# --- maglev -----------------------------------------------------------------------------------


def test_maglev_maps_a_flow_to_the_same_backend_every_time() -> None:
    algorithm = Maglev(251)
    first = [algorithm.pick(flow(n), [A, B, C], {}) for n in range(500)]
    assert first == [Maglev(251).pick(flow(n), [A, B, C], {}) for n in range(500)]
    assert first == [algorithm.pick(flow(n), [A, B, C], {}) for n in range(500)]


def test_maglev_ignores_load() -> None:
    algorithm = Maglev()
    assert algorithm.pick(flow(1), [A, B], {}) == algorithm.pick(flow(1), [A, B], {A.key: 9,
                                                                                  B.key: 9})


def test_maglev_rebuilds_only_when_the_candidates_change() -> None:
    algorithm = Maglev(251)
    algorithm.pick(flow(1), [A, B, C], {})
    table = algorithm.table
    algorithm.pick(flow(2), [A, B, C], {})
    assert algorithm.table is table
    for changed in ([A, C], [A, B, C, D], weighted(1, 2, 1)):  # health, scale-out, weights
        algorithm.pick(flow(3), changed, {})
        assert algorithm.table is not table
        assert algorithm.table.backends == tuple(changed)
        table = algorithm.table


def test_maglev_removing_a_backend_moves_mostly_its_own_flows() -> None:
    algorithm = Maglev()
    before = [algorithm.pick(flow(n), [A, B, C, D], {}) for n in range(5000)]
    after = [algorithm.pick(flow(n), [A, B, D], {}) for n in range(5000)]
    moved = [old for old, new in zip(before, after, strict=True) if old != new]
    assert all(new != C for new in after)
    assert sum(old != C for old in moved) <= 0.01 * len(before)  # others: a sliver moves


# --- source hash ------------------------------------------------------------------------------


def test_source_hash_keeps_a_client_on_one_backend_whatever_its_port() -> None:
    algorithm = SourceHash()
    for number in range(200):
        chosen = {algorithm.pick(flow(number, port=port), [A, B, C, D], {})
                  for port in (1024, 40000, 65535)}
        assert len(chosen) == 1


def test_source_hash_is_the_same_in_every_instance_and_ignores_load() -> None:
    first = [SourceHash().pick(flow(n), [A, B, C], {}) for n in range(300)]
    assert first == [SourceHash().pick(flow(n), [A, B, C], {A.key: 50}) for n in range(300)]


def test_source_hash_removing_a_backend_moves_only_its_clients() -> None:
    algorithm = SourceHash()
    before = [algorithm.pick(flow(n), [A, B, C, D], {}) for n in range(5000)]
    after = [algorithm.pick(flow(n), [A, B, D], {}) for n in range(5000)]
    moved = [old for old, new in zip(before, after, strict=True) if old != new]
    assert moved
    assert set(moved) == {C}
    assert len(moved) == before.count(C)


def test_source_hash_adding_a_backend_moves_clients_only_onto_it() -> None:
    algorithm = SourceHash()
    before = [algorithm.pick(flow(n), [A, B, C], {}) for n in range(5000)]
    after = [algorithm.pick(flow(n), [A, B, C, D], {}) for n in range(5000)]
    moved_to = {new for old, new in zip(before, after, strict=True) if old != new}
    assert moved_to == {D}
    assert after.count(D) / 5000 == pytest.approx(0.25, abs=0.02)


def test_source_hash_does_not_depend_on_candidate_order() -> None:
    algorithm = SourceHash()
    assert ([algorithm.pick(flow(n), [A, B, C], {}) for n in range(500)]
            == [algorithm.pick(flow(n), [C, A, B], {}) for n in range(500)])
