"""parse_metrics: tables of pages per engine, expectations computed by hand, and malformed input.

The pages live in ``pages/``. ``vllm_sim.prom`` is a capture of our simulator under load (nine
requests running, two LoRA adapters); the SGLang and TensorRT-LLM pages follow what those servers
expose (prometheus_client text, their label sets, histograms between the gauges).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from inferlane.endpoints.parse import MetricsParseError, is_engine, parse_metrics
from inferlane.scheduling.types import ServerMetrics
from inferlane.sim.engine import Engine, EngineConfig
from inferlane.sim.metrics import MetricsRenderer


def load_page(name: str) -> bytes:
    return (Path(__file__).parent / "pages" / name).read_bytes()


VLLM_SIM = load_page("vllm_sim.prom")

# Two served models (base + adapter) and three LoRA label sets of different ages.
VLLM_TWO_MODELS = load_page("vllm_two_models.prom")

# An older vLLM (v0): only the deprecated gpu_cache_usage_perc, no engine label, no LoRA.
VLLM_V0 = load_page("vllm_v0.prom")

# SGLang (--enable-metrics): the scheduler's label set, two data-parallel ranks, cache shape
# as cache_config_info labels.
SGLANG = load_page("sglang.prom")

# Newer SGLang: the cache shape as two gauges instead of info labels.
SGLANG_GAUGES = load_page("sglang_gauges.prom")

# trtllm-serve (PyTorch backend): flat gauges labelled model_name/engine_type; the cache shape
# is two gauges' values.
TRTLLM = load_page("trtllm.prom")


@pytest.mark.parametrize(("page", "engine", "expected"), [
    pytest.param(VLLM_SIM, "vllm", ServerMetrics(
        waiting=0, running=9, kv_usage=0.0146484375, block_size=16, num_blocks=2048,
        max_loras=4, running_loras=frozenset({"sql", "chat"}), scraped_at=5.0),
        id="vllm-simulator-capture"),
    pytest.param(VLLM_TWO_MODELS, "vllm", ServerMetrics(
        waiting=4, running=9, kv_usage=0.5, block_size=32, num_blocks=8192, max_loras=2,
        running_loras=frozenset({"sql", "math"}), waiting_loras=frozenset({"chat"}),
        scraped_at=5.0), id="vllm-two-models-newest-lora-set"),
    pytest.param(VLLM_V0, "vllm", ServerMetrics(
        waiting=12, running=0, kv_usage=0.9875, block_size=16, num_blocks=None,
        scraped_at=5.0), id="vllm-v0-deprecated-kv-name"),
    pytest.param(SGLANG, "sglang", ServerMetrics(
        waiting=2830, running=312, kv_usage=0.31, block_size=1, num_blocks=161721,
        scraped_at=5.0), id="sglang-two-dp-ranks"),
    pytest.param(SGLANG_GAUGES, "sglang", ServerMetrics(
        waiting=0, running=3, kv_usage=0.015, block_size=64, num_blocks=5053,
        scraped_at=5.0), id="sglang-cache-shape-gauges"),
    pytest.param(TRTLLM, "trtllm", ServerMetrics(
        waiting=5, running=24, kv_usage=0.72, block_size=32, num_blocks=62762,
        scraped_at=5.0), id="trtllm-serve"),
])
def test_engine_pages(page: bytes, engine: str, expected: ServerMetrics) -> None:
    assert is_engine(engine)
    assert parse_metrics(page, engine, 5.0) == expected


def test_simulator_page_round_trips() -> None:
    config = EngineConfig(block_size=16, num_gpu_blocks=1024, max_loras=3)
    renderer = MetricsRenderer("sim-model", config, lora_enabled=True)
    page = renderer.render(Engine(config), 1_700_000_000.0)
    assert parse_metrics(page, "vllm", 2.5) == ServerMetrics(
        waiting=0, running=0, kv_usage=0.0, block_size=16, num_blocks=1024, max_loras=3,
        scraped_at=2.5)


def vllm_page(waiting: bytes = b"1", extra: bytes = b"") -> bytes:
    return (b"vllm:num_requests_waiting " + waiting + b"\n"
            b"vllm:num_requests_running 2\n"
            b"vllm:kv_cache_usage_perc 0.5\n" + extra)


@pytest.mark.parametrize(("line", "expected"), [
    (b'vllm:num_requests_running{model_name="x"} 7', 7),
    (b'vllm:num_requests_running{model_name="x"} 7 1700000000000', 7),  # a timestamp
    (b'vllm:num_requests_running{model_name="x"} 7.0 1.7e9', 7),  # OpenMetrics timestamp
    (b'vllm:num_requests_running{model_name="x"} 7e0', 7),
    (b'vllm:num_requests_running{model_name="x"} 2.5E+1', 25),
    (b'vllm:num_requests_running{model_name="x"} -3', 0),  # clamped
    (b'vllm:num_requests_running{model_name="a}b,c=\\"d\\""} 7', 7),  # } , and \" in a value
    (b'vllm:num_requests_running{model_name="a\\\\"} 7', 7),  # an escaped backslash ends it
    (b'vllm:num_requests_running{model_name="x",} 7', 7),  # trailing comma
    (b'vllm:num_requests_running {model_name="x"} 7', 7),  # blank before the labels
    (b'vllm:num_requests_running 7\r', 7),  # CRLF line ending
    (b'vllm:num_requests_running\t7', 7),
])
def test_sample_line_forms(line: bytes, expected: int) -> None:
    page = (b"vllm:num_requests_waiting 0\n" + line + b"\n"
            b"vllm:kv_cache_usage_perc 0.5\n")
    assert parse_metrics(page, "vllm", 0.0).running == expected


@pytest.mark.parametrize(("value", "expected"), [
    (b"0.25", 0.25), (b"1.02", 1.0), (b"-0.1", 0.0), (b"2.5e-1", 0.25),
])
def test_kv_usage_is_clamped_to_a_fraction(value: bytes, expected: float) -> None:
    page = vllm_page().replace(b"0.5", value)
    assert parse_metrics(page, "vllm", 0.0).kv_usage == expected


def test_kv_usage_prefers_the_current_name() -> None:
    page = vllm_page(extra=b"vllm:gpu_cache_usage_perc 0.9\n")
    assert parse_metrics(page, "vllm", 0.0).kv_usage == 0.5


@pytest.mark.parametrize(("labels", "expected"), [
    (b'running_lora_adapters="a, b,,c",waiting_lora_adapters="d"', ({"a", "b", "c"}, {"d"})),
    (b'running_lora_adapters="",waiting_lora_adapters=""', (set(), set())),
    (b'waiting_lora_adapters="q\\"x"', (set(), {'q"x'})),
])
def test_lora_adapter_lists(labels: bytes, expected: tuple[set[str], set[str]]) -> None:
    page = vllm_page(extra=b'vllm:lora_requests_info{max_lora="4",' + labels + b"} 10\n")
    metrics = parse_metrics(page, "vllm", 0.0)
    assert (set(metrics.running_loras), set(metrics.waiting_loras)) == expected
    assert metrics.max_loras == 4


def test_lora_newest_set_wins_and_nan_never_does() -> None:
    extra = (b'vllm:lora_requests_info{max_lora="4",running_lora_adapters="old"} 5\n'
             b'vllm:lora_requests_info{max_lora="4",running_lora_adapters="nan"} NaN\n'
             b'vllm:lora_requests_info{max_lora="4",running_lora_adapters="new"} 6\n'
             b'vllm:lora_requests_info{max_lora="4",running_lora_adapters="older"} 4\n')
    metrics = parse_metrics(vllm_page(extra=extra), "vllm", 0.0)
    assert metrics.running_loras == frozenset({"new"})


@pytest.mark.parametrize("info", [
    b'vllm:cache_config_info{block_size="None",num_gpu_blocks="0"} 1',
    b'vllm:cache_config_info{cache_dtype="auto"} 1',
    b"vllm:cache_config_info 1",
])
def test_unknown_cache_shape_is_none(info: bytes) -> None:
    metrics = parse_metrics(vllm_page(extra=info + b"\n"), "vllm", 0.0)
    assert (metrics.block_size, metrics.num_blocks) == (None, None)


@pytest.mark.parametrize(("value", "expected"), [(b"NaN", None), (b"+Inf", None),
                                                 (b"0", None), (b"128", 128)])
def test_trtllm_block_gauge_values(value: bytes, expected: int | None) -> None:
    page = TRTLLM.replace(
        b'trtllm_kv_cache_tokens_per_block{model_name="Qwen/Qwen3-0.6B",engine_type="pytorch"}'
        b" 32.0", b"trtllm_kv_cache_tokens_per_block " + value)
    assert parse_metrics(page, "trtllm", 0.0).block_size == expected


def test_first_line_and_no_trailing_newline() -> None:
    page = b"vllm:num_requests_waiting 3\nvllm:num_requests_running 1\nvllm:kv_cache_usage_perc 0"
    assert parse_metrics(page, "vllm", 0.0).waiting == 3


@pytest.mark.parametrize(("page", "fragment"), [
    (b"", "no vllm:num_requests_waiting, vllm:num_requests_running, vllm:kv_cache_usage_perc"),
    (b"<html>502 Bad Gateway</html>", "is the endpoint a vllm server"),
    (SGLANG, "no vllm:num_requests_waiting"),  # the wrong engine
    (b"vllm:num_requests_running 1\nvllm:kv_cache_usage_perc 0\n", "no vllm:num_requests_waiting"),
    (vllm_page(b"many"), "not a number"),
    (vllm_page(b"NaN"), "not a finite number"),
    (vllm_page(b"+Inf"), "not a finite number"),
    (vllm_page(b"1 2 3"), "expected a value"),
    (vllm_page(b"1 later"), "not a number"),
    (vllm_page().replace(b"waiting ", b'waiting{model_name="x} '), "malformed label set"),
    (vllm_page().replace(b"waiting ", b'waiting{model_name="x" '), "malformed label set"),
    (vllm_page().replace(b"waiting ", b"waiting{} ").replace(b"1\n", b"\n", 1), "expected a value"),
    (vllm_page(extra=b'vllm:lora_requests_info{max_lora=4} 1\n'), "malformed label set"),
    (vllm_page(extra=b'vllm:lora_requests_info{a="1"b="2"} 1\n'), "malformed label set"),
    (vllm_page(extra=b'vllm:lora_requests_info{a="\xff"} 1\n'), "not UTF-8"),
    (vllm_page().replace(b"0.5", b"NaN"), "KV-cache usage nan is not a finite number"),
])
def test_malformed_pages(page: bytes, fragment: str) -> None:
    with pytest.raises(MetricsParseError) as caught:
        parse_metrics(page, "vllm", 0.0)
    assert fragment in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_unknown_engine() -> None:
    assert not is_engine("tgi")
    with pytest.raises(MetricsParseError, match="unknown engine 'tgi'"):
        parse_metrics(vllm_page(), "tgi", 0.0)  # type: ignore[arg-type]


def test_a_longer_family_name_before_ours_is_skipped() -> None:
    page = (b"vllm:num_requests_running_total 50\n"
            b"vllm:num_requests_running_by_model{model_name=\"x\"} 40\n" + vllm_page())
    assert parse_metrics(page, "vllm", 0.0).running == 2


def test_trtllm_without_cache_shape_gauges() -> None:
    page = (b"trtllm_num_requests_waiting 1\ntrtllm_num_requests_running 2\n"
            b"trtllm_kv_cache_utilization 0.1\n")
    assert parse_metrics(page, "trtllm", 0.0) == ServerMetrics(waiting=1, running=2,
                                                                kv_usage=0.1)


def test_escaped_label_values_are_unescaped() -> None:
    extra = b'vllm:lora_requests_info{running_lora_adapters="a\\\\b,c\\nd", } 1\n'
    metrics = parse_metrics(vllm_page(extra=extra), "vllm", 0.0)
    assert metrics.running_loras == frozenset({"a\\b", "c\nd"})
