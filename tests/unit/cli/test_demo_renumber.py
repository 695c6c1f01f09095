"""``inferlane demo --sim-port`` moves the simulated servers and keeps the rest of the config."""

from __future__ import annotations

from importlib import resources

from inferlane.cli.demo import _renumber_servers
from inferlane.config.loader import load_config_text


def test_renumbering_servers_keeps_every_other_resource() -> None:
    text = resources.files("inferlane").joinpath("examples/providers.yaml").read_text()
    bundle = load_config_text(text, "providers.yaml")
    moved = _renumber_servers(bundle, 19500)
    assert [s.spec.address for s in moved.model_servers] == ["127.0.0.1:19500",
                                                           "127.0.0.1:19501"]
    assert moved.providers == bundle.providers
    assert moved.traffic_policies == bundle.traffic_policies
    assert moved.model_rewrites == bundle.model_rewrites
    assert moved.http_routes == bundle.http_routes
