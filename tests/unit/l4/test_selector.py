"""BackendSelector with a fake clock: new flows by algorithm over candidates (weight, health,
drain), tracked flows sticky across updates/drains, removal, release, expiry, eviction."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from inferlane.l4.algorithms import build_algorithm
from inferlane.l4.conntrack import FlowTable
from inferlane.l4.flows import FlowKey, L4Backend
from inferlane.l4.selector import BackendSelector

A, B, C = (L4Backend(f"10.0.0.{i}", 8000) for i in (1, 2, 3))


def flow(number: int) -> FlowKey:
    return FlowKey("tcp", "192.168.1.1", 40000 + number, "10.9.9.9", 80)


def selector(backends: list[L4Backend] | None = None, *, idle_timeout: float | None = None,
             max_flows: int = 1000, algorithm: str = "round-robin",
             routable: Callable[[str], bool] | None = None) -> BackendSelector:
    return BackendSelector([A, B, C] if backends is None else backends,
                           build_algorithm(algorithm),
                           FlowTable(idle_timeout=idle_timeout, max_flows=max_flows),
                           routable=routable)


def keys(chosen: list[L4Backend | None]) -> list[str | None]:
    return [backend.key if backend is not None else None for backend in chosen]


def test_new_flows_follow_the_algorithm_and_are_tracked() -> None:
    chooser = selector()
    assert keys([chooser.choose(flow(n), 0.0) for n in range(6)]) == [
        A.key, B.key, C.key, A.key, B.key, C.key]
    assert len(chooser) == 6
    assert chooser.active() == {A.key: 2, B.key: 2, C.key: 2}


def test_a_tracked_flow_keeps_its_backend() -> None:
    chooser = selector()
    first = chooser.choose(flow(1), 0.0)
    assert [chooser.choose(flow(1), t) for t in (1.0, 2.0, 3.0)] == [first] * 3


@pytest.mark.parametrize(
    ("change", "new_flow_keys", "tracked_stays"),
    [
        pytest.param(lambda s: s.drain(A.key), [B.key, C.key, B.key], True, id="admin-drain"),
        pytest.param(lambda s: s.update([L4Backend("10.0.0.1", 8000, 0), B, C]),
                     [B.key, C.key, B.key], True, id="weight-0"),
        pytest.param(lambda s: s.set_routable(lambda key: key != A.key),
                     [B.key, C.key, B.key], True, id="unhealthy"),
        pytest.param(lambda s: s.update([A, B, C, L4Backend("10.0.0.4", 8000)]),
                     [A.key, B.key, C.key], True, id="added"),
        # Its backend left the set: the flow is placed again (a UDP session moves; TCP asks
        # only once per connection, so an established one is unaffected).
        pytest.param(lambda s: s.update([B, C]), [B.key, C.key, B.key], False, id="removed"),
    ],
)
def test_changes_steer_new_flows_but_not_tracked_ones(
        change: Callable[[BackendSelector], object], new_flow_keys: list[str],
        tracked_stays: bool) -> None:
    chooser = selector()
    assert chooser.choose(flow(0), 0.0) == A
    change(chooser)
    assert keys([chooser.choose(flow(n), 1.0) for n in (10, 11, 12)]) == new_flow_keys
    tracked = chooser.choose(flow(0), 2.0)
    assert tracked is not None
    assert (tracked.key == A.key) is tracked_stays


def test_update_reports_flows_whose_backend_left_and_refreshes_weights() -> None:
    chooser = selector()
    placed = {n: chooser.choose(flow(n), 0.0) for n in range(3)}
    assert keys(list(placed.values())) == [A.key, B.key, C.key]
    heavier_b = L4Backend("10.0.0.2", 8000, 5)
    assert chooser.update([heavier_b, C]) == [(flow(0), A.key)]
    tracked = chooser.choose(flow(1), 1.0)
    assert tracked is not None
    assert tracked.weight == 5  # same key, the new object
    assert chooser.backend(A.key) is None


def test_drain_is_remembered_across_updates_and_can_be_lifted() -> None:
    chooser = selector([A, B])
    chooser.drain(A.key)
    chooser.update([A, B, C])
    assert chooser.drained == {A.key}
    assert [b.key for b in chooser.candidates()] == [B.key, C.key]
    chooser.drain(A.key, False)
    assert [b.key for b in chooser.candidates()] == [A.key, B.key, C.key]


def test_no_candidate_gives_none_and_tracks_nothing() -> None:
    chooser = selector(routable=lambda key: False)
    assert chooser.choose(flow(1), 0.0) is None
    assert len(chooser) == 0


def test_exclude_moves_a_flow_off_a_failed_backend() -> None:
    chooser = selector([A, B])
    assert chooser.choose(flow(1), 0.0) == A
    assert chooser.choose(flow(1), 0.0, exclude=[A.key]) == B
    assert chooser.active() == {B.key: 1}
    assert chooser.choose(flow(1), 0.0, exclude=[A.key, B.key]) is None
    assert len(chooser) == 0


def test_release_forgets_the_flow() -> None:
    chooser = selector()
    chooser.choose(flow(1), 0.0)
    assert chooser.release(flow(1)) == A.key
    assert chooser.release(flow(1)) is None
    assert len(chooser) == 0


def test_idle_flows_expire_and_touch_keeps_them() -> None:
    chooser = selector(idle_timeout=0.3)
    chooser.choose(flow(1), 0.0)
    chooser.choose(flow(2), 0.0)
    assert chooser.touch(flow(2), 0.2) == B.key
    assert chooser.expire(0.25) == []
    assert chooser.expire(0.35) == [(flow(1), A.key)]
    assert chooser.expire(0.6) == [(flow(2), B.key)]
    assert chooser.touch(flow(2), 0.7) is None
    assert chooser.choose(flow(1), 1.0) == C  # a new flow again: the rotation goes on


def test_a_full_table_evicts_the_least_recently_seen_flow() -> None:
    chooser = selector(max_flows=2)
    for n in range(3):
        chooser.choose(flow(n), float(n))
    assert chooser.evictions == 1
    assert chooser.take_evicted() == [(flow(0), A.key)]
    assert chooser.take_evicted() == []
    assert len(chooser) == 2


def test_a_key_twice_in_one_set_is_refused() -> None:
    with pytest.raises(ValueError, match=r"10\.0\.0\.1:8000 appears twice"):
        selector([A, L4Backend("10.0.0.1", 8000, 3)])
