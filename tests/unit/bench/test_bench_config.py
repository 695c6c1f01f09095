import pytest

from inferlane.bench.runner import config_text
from inferlane.config.build import build_snapshot
from inferlane.config.loader import load_config_text


@pytest.mark.parametrize("mode", ["round-robin", "default", "predicted-latency"])
def test_bench_config_is_valid_and_selects_every_replica(mode: str) -> None:
    bundle = load_config_text(config_text(mode, ["127.0.0.1:9001", "127.0.0.1:9002"]))
    snapshot = build_snapshot(bundle)
    pool = snapshot.pools["default/fleet"]
    assert pool.load_balancing == mode
    assert [e.port for e in pool.endpoints] == [9001, 9002]
    assert bundle.warnings == ()
