from collections import Counter
from collections.abc import Sequence

import pytest

from inferlane.scheduling import registry
from inferlane.scheduling.framework import Scheduler
from inferlane.scheduling.interfaces import Endpoint, PickRequest
from inferlane.scheduling.registry import (
    assemble_profile,
    build_plugin,
    build_scheduler,
    register_plugin,
)
from inferlane.scheduling.types import EndpointState

ENDPOINTS = tuple(Endpoint(name=f"default/s{i}", host="127.0.0.1", port=9000 + i)
                  for i in range(3))
REQUEST = PickRequest(request_id="r", model="m")


def test_round_robin_cycles_through_endpoints() -> None:
    picker = build_scheduler("round-robin")
    picks = [picker.pick(REQUEST, ENDPOINTS) for _ in range(6)]
    assert [p.port for p in picks if p] == [9000, 9001, 9002, 9000, 9001, 9002]


def test_random_picker_spreads_load_and_is_seedable() -> None:
    first = build_scheduler("random", params={"seed": 5})
    second = build_scheduler("random", params={"seed": 5})
    picks = [first.pick(REQUEST, ENDPOINTS) for _ in range(3000)]
    assert picks[:20] == [second.pick(REQUEST, ENDPOINTS) for _ in range(20)]
    counts = Counter(p.port for p in picks if p)
    assert set(counts) == {9000, 9001, 9002}
    assert min(counts.values()) > 800


@pytest.mark.parametrize("kind", ["round-robin", "random"])
def test_no_endpoints_means_no_pick(kind: str) -> None:
    assert build_scheduler(kind).pick(REQUEST, ()) is None


def test_unknown_picker_type_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="round-robin"):
        build_scheduler("fastest")


def test_third_party_picker_registers_without_touching_core(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_PLUGINS", dict(registry._PLUGINS))  # keep the table clean

    class Last:
        def pick(self, request: PickRequest, candidates: Sequence[EndpointState],
                 totals: Sequence[float]) -> int | None:
            return len(candidates) - 1 if candidates else None

    register_plugin("test-last-picker", lambda name, params: Last())
    plugin = build_plugin("test-last-picker", "last", None)
    scheduler = Scheduler(assemble_profile("last", [("last", plugin, None)]))
    assert scheduler.pick(REQUEST, ENDPOINTS) == ENDPOINTS[-1]
    with pytest.raises(ValueError, match="already registered"):
        register_plugin("test-last-picker", lambda name, params: Last())


def test_endpoint_address_brackets_ipv6() -> None:
    assert Endpoint("default/a", "::1", 8000).address == "[::1]:8000"
    assert Endpoint("default/a", "10.0.0.1", 8000).address == "10.0.0.1:8000"
