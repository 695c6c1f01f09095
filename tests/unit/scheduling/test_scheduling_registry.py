"""The registry: plugin and mode tables, building profiles, third-party plugins."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, get_args

import pytest

from inferlane.config.resources import (
    DEFAULT_LOAD_BALANCING,
    EndpointPickerConfig,
    LoadBalancing,
    PluginSpec,
)
from inferlane.scheduling import registry
from inferlane.scheduling.framework import Scheduler
from inferlane.scheduling.interfaces import Endpoint, PickRequest
from inferlane.scheduling.plugins.filter.saturation import SaturationFilter
from inferlane.scheduling.plugins.picker.max_score import MaxScorePicker
from inferlane.scheduling.plugins.picker.round_robin import RoundRobinPicker
from inferlane.scheduling.plugins.scorer.predicted_latency import PredictedLatencyScorer
from inferlane.scheduling.plugins.scorer.prefill_load import PrefillLoadScorer
from inferlane.scheduling.plugins.scorer.prefix_cache import PrefixCacheScorer
from inferlane.scheduling.types import EndpointState, ServerMetrics

ENDPOINTS = tuple(Endpoint(f"default/s{i}", f"10.0.0.{i}", 8000) for i in range(3))


def config(plugins: list[dict[str, Any]], profiles: list[list[dict[str, Any]]],
           **extra: Any) -> EndpointPickerConfig:
    return EndpointPickerConfig.model_validate({
        "apiVersion": "inference.networking.x-k8s.io/v1alpha1",
        "kind": "EndpointPickerConfig",
        "metadata": {"name": "epp"},
        "plugins": plugins,
        "schedulingProfiles": [{"name": f"p{i}", "plugins": refs}
                               for i, refs in enumerate(profiles)],
        **extra,
    })


def fleet(*waiting: int, now: float = 0.0) -> list[EndpointState]:
    return [EndpointState(ENDPOINTS[i], ServerMetrics(waiting=w, scraped_at=now))
            for i, w in enumerate(waiting)]


def test_annotation_modes_match_the_config_model() -> None:
    assert set(registry.BUILTIN_PROFILES) == set(get_args(LoadBalancing))
    assert registry.DEFAULT_LOAD_BALANCING == DEFAULT_LOAD_BALANCING == "default"


def test_every_plugin_type_is_listed_in_the_config_reference() -> None:
    listed = PluginSpec.__doc__ or ""
    assert [name for name in registry.plugin_types() if f"`{name}`" not in listed] == []


@pytest.mark.parametrize(
    ("mode", "filters", "scorers", "picker"),
    [
        ("round-robin", [], [], "RoundRobinPicker"),
        ("random", [], [], "RandomPicker"),
        ("least-request", [], [], "LeastRequestPicker"),
        ("default", ["SaturationFilter"],
         [("queue-scorer", 2.0), ("kv-cache-utilization-scorer", 2.0),
          ("prefix-cache-scorer", 3.0), ("lora-affinity-scorer", 1.0),
          ("prefill-load-scorer", 1.0)], "MaxScorePicker"),
        ("predicted-latency", ["SaturationFilter"],
         [("predicted-latency-scorer", 3.0), ("prefix-cache-scorer", 1.0),
          ("kv-cache-utilization-scorer", 2.0), ("lora-affinity-scorer", 4.0)],
         "MaxScorePicker"),
    ],
)
def test_builtin_profiles(mode: str, filters: list[str], scorers: list[tuple[str, float]],
                          picker: str) -> None:
    profile = registry.build_scheduler(mode).profile
    assert profile.name == mode
    assert [type(f).__name__ for f in profile.filters] == filters
    assert [(ws.name, ws.weight) for ws in profile.scorers] == scorers
    assert type(profile.picker).__name__ == picker


def test_predicted_latency_profile_shares_the_prefix_index_and_records_once() -> None:
    profile = registry.builtin_profile("predicted-latency")
    predictor, prefix = profile.scorers[0].scorer, profile.scorers[1].scorer
    assert isinstance(predictor, PredictedLatencyScorer)
    assert isinstance(prefix, PrefixCacheScorer)
    assert predictor.prefix_index is prefix.prefix_index
    assert profile.predictor is predictor
    sched = Scheduler(profile, lambda endpoints: fleet(0, 0, 0))
    prompt = "p" * 640
    result = sched.schedule(PickRequest("r", "m", prompt=prompt), ENDPOINTS)
    assert result.predicted_ttft == pytest.approx(160 * 1e-4 + 0.02)  # defaults, no cache
    assert result.endpoint is not None
    assert prefix.prefix_index.size(result.endpoint) == 10  # recorded once (10 blocks)
    again = sched.schedule(PickRequest("r2", "m", prompt=prompt), ENDPOINTS)
    assert again.endpoint == result.endpoint  # the cached prefix wins
    assert again.predicted_ttft == pytest.approx(0.02)


def test_default_profile_shares_the_prefix_index_with_the_prefill_load_scorer() -> None:
    profile = registry.builtin_profile("default")
    by_name = {ws.name: ws.scorer for ws in profile.scorers}
    prefill, prefix = by_name["prefill-load-scorer"], by_name["prefix-cache-scorer"]
    assert isinstance(prefill, PrefillLoadScorer)
    assert isinstance(prefix, PrefixCacheScorer)
    assert prefill.prefix_index is prefix.prefix_index


def test_default_profile_prefers_idle_endpoints_then_cached_prefixes() -> None:
    states = fleet(4, 0, 0, now=5.0)
    sched = registry.build_scheduler("default", states=lambda endpoints: states)
    prompt = "q" * 4000
    first = sched.pick(PickRequest("r1", "m", prompt=prompt, now=5.0), ENDPOINTS)
    assert first in ENDPOINTS[1:]  # s0 has a queue
    for i in range(5):
        assert sched.pick(PickRequest(f"r{i}", "m", prompt=prompt, now=5.0), ENDPOINTS) == first


def test_unknown_types_and_modes_name_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown plugin type 'queue' \(known: .*queue-scorer"):
        registry.build_plugin("queue")
    with pytest.raises(ValueError, match=r"unknown load-balancing mode 'fastest'.*least-request"):
        registry.build_scheduler("fastest")
    with pytest.raises(ValueError, match="unknown parameter 'x'"):
        registry.build_plugin("queue-scorer", "q", {"x": 1})


def test_plugin_roles() -> None:
    assert registry.plugin_roles(registry.build_plugin("saturation-filter")) == ("filter",)
    assert registry.plugin_roles(registry.build_plugin("prefix-cache-scorer")) == (
        "scorer", "post-pick")
    assert registry.plugin_roles(registry.build_plugin("max-score-picker")) == ("picker",)
    assert registry.plugin_roles(registry.build_plugin("single-profile-handler")) == ()


def test_assemble_profile_slots_plugins_by_what_they_implement() -> None:
    profile = registry.assemble_profile("p", [
        ("queue", registry.build_plugin("queue-scorer"), None),
        ("sat", SaturationFilter(), 5),
    ])
    assert [(ws.name, ws.weight) for ws in profile.scorers] == [("queue", 1.0)]
    assert isinstance(profile.picker, MaxScorePicker)  # no picker: max-score
    with pytest.raises(ValueError, match=r"profile 'p' has 2 pickers \(a, b\): keep one"):
        registry.assemble_profile("p", [("a", RoundRobinPicker(), None),
                                        ("b", MaxScorePicker(), None)])


def test_profile_from_config_uses_names_weights_and_saturation_defaults() -> None:
    cfg = config(
        plugins=[{"type": "saturation-filter"},
                 {"type": "saturation-filter", "name": "strict",
                  "parameters": {"queueThreshold": 1}},
                 {"type": "queue-scorer", "name": "q"},
                 {"type": "round-robin-picker"}],
        profiles=[[{"pluginRef": "saturation-filter"}, {"pluginRef": "q", "weight": 4},
                   {"pluginRef": "round-robin-picker"}],
                  [{"pluginRef": "strict"}]],
        saturationDetector={"queueDepthThreshold": 9, "kvCacheUtilThreshold": 0.5,
                            "metricsStalenessThreshold": "250ms"},
    )
    profile = registry.profile_from_config(cfg)
    assert profile.name == "p0"
    flt = profile.filters[0]
    assert isinstance(flt, SaturationFilter)
    assert (flt.queue_threshold, flt.kv_threshold, flt.staleness_seconds) == (9, 0.5, 0.25)
    assert [(ws.name, ws.weight) for ws in profile.scorers] == [("q", 4.0)]
    assert isinstance(profile.picker, RoundRobinPicker)
    strict = registry.profile_from_config(cfg, "p1")
    assert isinstance(strict.filters[0], SaturationFilter)
    assert strict.filters[0].queue_threshold == 1  # explicit parameters win
    with pytest.raises(ValueError, match="has no profile 'p9'"):
        registry.profile_from_config(cfg, "p9")


def test_build_scheduler_prefers_the_config_over_the_mode() -> None:
    cfg = config(plugins=[{"type": "round-robin-picker"}],
                 profiles=[[{"pluginRef": "round-robin-picker"}]])
    sched = registry.build_scheduler("default", config=cfg)
    assert [sched.pick(PickRequest("r", "m"), ENDPOINTS) for _ in range(4)] == [
        ENDPOINTS[0], ENDPOINTS[1], ENDPOINTS[2], ENDPOINTS[0]]


def test_third_party_plugin_registers_without_touching_core(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_PLUGINS", dict(registry._PLUGINS))

    class PreferHost:
        """Scores 1 for one host, 0 elsewhere."""

        def __init__(self, host: str) -> None:
            self.host = host

        def score(self, request: PickRequest,
                  candidates: Sequence[EndpointState]) -> list[float]:
            return [1.0 if s.endpoint.host == self.host else 0.0 for s in candidates]

    registry.register_plugin("prefer-host-scorer",
                             lambda name, params: PreferHost(str(params["host"])))
    assert "prefer-host-scorer" in registry.plugin_types()
    with pytest.raises(ValueError, match="already registered"):
        registry.register_plugin("prefer-host-scorer", lambda name, params: PreferHost(""))
    cfg = config(plugins=[{"type": "prefer-host-scorer", "parameters": {"host": "10.0.0.2"}}],
                 profiles=[[{"pluginRef": "prefer-host-scorer", "weight": 2}]])
    sched = registry.build_scheduler(config=cfg)
    result = sched.schedule(PickRequest("r", "m"), ENDPOINTS)
    assert result.endpoint == ENDPOINTS[2]
    assert result.candidates[0].by_scorer == (("prefer-host-scorer", 1.0),)
    assert result.candidates[0].total == 2.0


def test_least_request_mode_builds_a_seeded_scheduler() -> None:
    scheduler = registry.build_scheduler("least-request", params={"seed": 1})
    assert isinstance(scheduler, Scheduler)
    assert scheduler.pick(PickRequest("r", "m"), ENDPOINTS) in ENDPOINTS
