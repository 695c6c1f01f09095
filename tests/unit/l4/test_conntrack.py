"""FlowTable with a fake clock: stickiness across backend-set changes, expiry, LRU, counts."""

from __future__ import annotations

import random

import pytest

from inferlane.l4.algorithms import ALGORITHM_NAMES, LBAlgorithm, build_algorithm
from inferlane.l4.conntrack import FlowTable
from inferlane.l4.flows import FlowKey, L4Backend


def flow(number: int, protocol: str = "tcp") -> FlowKey:
    return FlowKey("udp" if protocol == "udp" else "tcp",
                   f"192.168.{number // 250}.{number % 250 + 1}", 40000 + number, "10.9.9.9", 53)


def backends(*weights: int) -> list[L4Backend]:
    return [L4Backend(f"10.0.0.{i}", 8000, weight) for i, weight in enumerate(weights, 1)]


def route(table: FlowTable, algorithm: LBAlgorithm, flow_key: FlowKey,
          candidates: list[L4Backend], now: float) -> str | None:
    """What a data plane does per packet or connection: the table first, then the algorithm."""
    pinned = table.get(flow_key, now)
    if pinned is not None:
        return pinned
    chosen = algorithm.pick(flow_key, candidates, table.counts())
    if chosen is None:
        return None
    table.add(flow_key, chosen.key, now)
    return chosen.key


F1, F2, F3, F4 = (flow(n) for n in range(4))


# --- basics -----------------------------------------------------------------------------------


def test_add_get_remove_and_counts() -> None:
    table = FlowTable(idle_timeout=None)
    assert table.get(F1, 0.0) is None
    assert table.add(F1, "a:1", 0.0) is None
    table.add(F2, "a:1", 0.0)
    table.add(F3, "b:1", 0.0)
    assert (len(table), table.get(F1, 1.0), table.counts()) == (3, "a:1", {"a:1": 2, "b:1": 1})
    assert table.flows_of("a:1") == [F2, F1]  # least recently seen first: F1 was just read
    assert table.remove(F3) == "b:1"
    assert table.remove(F3) is None
    assert table.counts() == {"a:1": 2}
    assert table.flows_of("b:1") == []


def test_adding_a_known_flow_repins_it() -> None:
    table = FlowTable(idle_timeout=None)
    table.add(F1, "a:1", 0.0)
    assert table.add(F1, "b:1", 1.0) is None
    assert (len(table), table.get(F1, 2.0), table.counts()) == (1, "b:1", {"b:1": 1})


def test_counts_is_a_copy() -> None:
    table = FlowTable(idle_timeout=None)
    table.add(F1, "a:1", 0.0)
    table.counts()["a:1"] = 99
    assert table.counts() == {"a:1": 1}


@pytest.mark.parametrize(("fields", "message"), [
    ({"idle_timeout": 0.0}, "idle_timeout must be > 0 seconds or None, got 0.0"),
    ({"idle_timeout": -1.0}, "idle_timeout must be > 0"),
    ({"idle_timeout": None, "max_flows": 0}, "max_flows must be >= 1, got 0"),
])
def test_rejects_nonsense(fields: dict[str, float | None], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FlowTable(**fields)  # type: ignore[arg-type]


# --- idle expiry (UDP sessions) ---------------------------------------------------------------


@pytest.mark.parametrize(("idle", "alive"), [(0.0, True), (29.9, True), (30.0, True),
                                             (30.001, False), (300.0, False)])
def test_get_drops_a_flow_idle_past_the_timeout(idle: float, alive: bool) -> None:
    table = FlowTable(idle_timeout=30.0)
    table.add(flow(1, "udp"), "a:1", 100.0)
    assert (table.get(flow(1, "udp"), 100.0 + idle) == "a:1") is alive
    assert (len(table), table.counts()) == ((1, {"a:1": 1}) if alive else (0, {}))


def test_traffic_keeps_a_udp_session_alive() -> None:
    table = FlowTable(idle_timeout=30.0)
    table.add(F1, "a:1", 0.0)
    for now in (20.0, 40.0, 60.0, 80.0):
        assert table.get(F1, now) == "a:1"
        assert table.expired(now) == []
    assert table.expired(110.0) == []
    assert table.expired(110.5) == [(F1, "a:1")]


def test_expired_returns_idle_flows_oldest_first_and_removes_them() -> None:
    table = FlowTable(idle_timeout=30.0)
    table.add(F1, "a:1", 0.0)
    table.add(F2, "b:1", 5.0)
    table.add(F3, "a:1", 10.0)
    table.add(F4, "b:1", 20.0)
    table.get(F1, 22.0)  # F1 is now the most recently seen
    assert table.expired(30.0) == []
    assert table.expired(41.0) == [(F2, "b:1"), (F3, "a:1")]
    assert (len(table), table.counts()) == (2, {"a:1": 1, "b:1": 1})
    assert table.expired(100.0) == [(F4, "b:1"), (F1, "a:1")]
    assert (len(table), table.counts()) == (0, {})


def test_without_a_timeout_nothing_expires() -> None:
    table = FlowTable(idle_timeout=None)
    table.add(F1, "a:1", 0.0)
    assert table.expired(1e9) == []
    assert table.get(F1, 1e9) == "a:1"


# --- LRU bound --------------------------------------------------------------------------------


def test_past_max_flows_the_least_recently_seen_is_evicted() -> None:
    table = FlowTable(idle_timeout=None, max_flows=3)
    table.add(F1, "a:1", 0.0)
    table.add(F2, "b:1", 1.0)
    table.add(F3, "a:1", 2.0)
    table.get(F1, 3.0)
    assert table.add(F4, "a:1", 4.0) == (F2, "b:1")
    assert (len(table), table.get(F2, 5.0), table.counts()) == (3, None, {"a:1": 3})
    assert table.add(F3, "b:1", 6.0) is None  # a known flow: no growth, no eviction


# --- stickiness: the data plane consults the table first --------------------------------------


@pytest.mark.parametrize("name", ALGORITHM_NAMES)
@pytest.mark.parametrize("change", ["scale-out", "unhealthy", "weights", "reorder"])
def test_existing_flows_keep_their_backend_when_the_set_changes(name: str, change: str) -> None:
    table = FlowTable(idle_timeout=None)
    algorithm = build_algorithm(name, rng=random.Random(1), table_size=251)
    start = backends(1, 1, 1, 1)
    changed = {
        "scale-out": [*start, *backends(1, 1, 1, 1, 1, 1)[4:]],
        "unhealthy": start[1:],
        "weights": backends(5, 1, 3, 1),
        "reorder": start[::-1],
    }[change]
    pinned = {flow(n): route(table, algorithm, flow(n), start, 0.0) for n in range(400)}
    assert table.counts() == {b.key: list(pinned.values()).count(b.key) for b in start}
    for flow_key, backend_key in pinned.items():
        assert route(table, algorithm, flow_key, changed, 1.0) == backend_key
    new_flows = {route(table, algorithm, flow(n), changed, 2.0) for n in range(400, 800)}
    assert new_flows <= {backend.key for backend in changed}


@pytest.mark.parametrize("name", ALGORITHM_NAMES)
def test_a_drained_backend_keeps_its_flows_and_gets_no_new_ones(name: str) -> None:
    table = FlowTable(idle_timeout=None)
    algorithm = build_algorithm(name, rng=random.Random(2), table_size=251)
    start = backends(1, 1, 1)
    for n in range(300):
        route(table, algorithm, flow(n), start, 0.0)
    drained_key = start[0].key
    old_flows = table.flows_of(drained_key)
    assert old_flows
    draining = backends(0, 1, 1)  # weight 0 stays in the candidate list: algorithms skip it
    assert all(route(table, algorithm, f, draining, 1.0) == drained_key for f in old_flows)
    assert all(route(table, algorithm, flow(n), draining, 1.0) != drained_key
               for n in range(300, 600))
    for flow_key in old_flows:  # its connections end one by one
        table.remove(flow_key)
    assert drained_key not in table.counts()


def test_an_expired_udp_session_is_placed_afresh() -> None:
    table = FlowTable(idle_timeout=30.0)
    algorithm = build_algorithm("round-robin")
    first, second = backends(1, 1)
    assert route(table, algorithm, F1, [first, second], 0.0) == first.key
    assert route(table, algorithm, F1, [second], 10.0) == first.key  # sticky while alive
    assert route(table, algorithm, F1, [second], 41.0) == second.key  # expired: new pick
