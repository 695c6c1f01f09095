"""The hand-rendered /metrics page parses as Prometheus text and uses vLLM's names."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from inferlane.sim.engine import Engine, EngineConfig, EngineRequest
from inferlane.sim.metrics import MetricsRenderer


def samples(text: bytes) -> list[Sample]:
    return [s for family in text_string_to_metric_families(text.decode())
            for s in family.samples]


def value(text: bytes, name: str, **labels: str) -> float:
    matches = [s.value for s in samples(text)
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(matches) == 1, (name, labels, matches)
    return matches[0]


def busy_engine() -> Engine:
    engine = Engine(EngineConfig(max_num_seqs=1, max_loras=2, num_gpu_blocks=100))
    engine.submit(EngineRequest(1, 40, (), 3, lora="a"), 0.0)
    engine.submit(EngineRequest(2, 40, (), 3, lora="b"), 0.0)
    engine.step(0.0)
    return engine


def test_gauges_counters_and_info() -> None:
    engine = busy_engine()
    renderer = MetricsRenderer('m"1', engine.config, lora_enabled=True)
    text = renderer.render(engine, 1000.0, requests_received=2, injected_faults={"error": 1})
    model = {"model_name": 'm"1'}
    assert value(text, "vllm:num_requests_running", **model) == 1
    assert value(text, "vllm:num_requests_waiting", **model) == 1
    assert value(text, "vllm:kv_cache_usage_perc", **model) == 3 / 100
    assert value(text, "vllm:gpu_cache_usage_perc", **model) == 3 / 100
    assert value(text, "vllm:cache_config_info", block_size="16", num_gpu_blocks="100") == 1
    assert value(text, "vllm:lora_requests_info", max_lora="2", running_lora_adapters="a",
                 waiting_lora_adapters="b") == 1000.0
    assert value(text, "vllm:prompt_tokens_total", **model) == 40
    assert value(text, "vllm:generation_tokens_total", **model) == 1
    assert value(text, "vllm:prefix_cache_queries_total", **model) == 40
    assert value(text, "vllm:prefix_cache_hits_total", **model) == 0
    assert value(text, "vllm:time_to_first_token_seconds_count", **model) == 1
    assert value(text, "vllm:request_success_total", finished_reason="stop", **model) == 0
    assert value(text, "inferlane_sim_injected_faults_total", kind="error") == 1
    assert value(text, "inferlane_sim_requests_received_total") == 2


def test_histogram_buckets_are_cumulative() -> None:
    engine = busy_engine()
    text = MetricsRenderer("m", engine.config, lora_enabled=False).render(engine, 0.0)
    buckets = [s for s in samples(text) if s.name == "vllm:time_to_first_token_seconds_bucket"]
    counts = [s.value for s in buckets]
    assert counts == sorted(counts)
    assert buckets[-1].labels["le"] == "+Inf"
    assert counts[-1] == 1


def test_lora_info_keeps_old_label_sets_with_older_stamps() -> None:
    engine = busy_engine()
    renderer = MetricsRenderer("m", engine.config, lora_enabled=True)
    renderer.render(engine, 1.0)
    engine.abort(1, 0.1)
    text = renderer.render(engine, 2.0)
    series = {(s.labels["running_lora_adapters"], s.labels["waiting_lora_adapters"]): s.value
              for s in samples(text) if s.name == "vllm:lora_requests_info"}
    assert series == {("a", "b"): 1.0, ("", "b"): 2.0}
    assert max(series, key=series.__getitem__) == ("", "b")


def test_no_lora_metric_without_adapters() -> None:
    engine = busy_engine()
    text = MetricsRenderer("m", engine.config, lora_enabled=False).render(engine, 0.0)
    assert b"vllm:lora_requests_info" not in text
