import pytest

from inferlane.bench.runner import fleet_config
from inferlane.config.build import build_snapshot
from inferlane.config.loader import load_config_text


@pytest.mark.parametrize("mode", ["round-robin", "default", "predicted-latency"])
def test_bench_config_is_valid_and_selects_every_replica(mode: str) -> None:
    bundle = load_config_text(fleet_config(["127.0.0.1:9001", "127.0.0.1:9002"], mode=mode))
    snapshot = build_snapshot(bundle)
    pool = snapshot.pools["default/fleet"]
    assert pool.load_balancing == mode
    assert [e.port for e in pool.endpoints] == [9001, 9002]
    assert bundle.warnings == ()


def test_bench_config_without_mode_uses_the_default_profile() -> None:
    snapshot = build_snapshot(load_config_text(fleet_config(["127.0.0.1:9001"], listen_port=8080)))
    assert snapshot.pools["default/fleet"].load_balancing == "default"
    assert [listener.port for listener in snapshot.listeners] == [8080]
