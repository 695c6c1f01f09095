"""Prometheus text exposition of one replica, with vLLM's metric names and labels.

Rendered by hand rather than with ``prometheus_client``: a gateway scrapes every replica every
~50 ms, each replica needs its own series, and formatting a few dozen lines from plain counters is
far cheaper than walking collector registries. Label strings are built once per replica.

Faithful details a scraper must cope with, as on a real vLLM v1 server:

* series carry ``model_name`` and ``engine`` labels; the info gauges carry no ``model_name``;
* ``vllm:lora_requests_info`` exists only when LoRA is enabled; its value is the time the label set
  was last current, and old label sets stay exposed: the current one has the largest value;
* ``vllm:kv_cache_usage_perc`` (and the deprecated ``vllm:gpu_cache_usage_perc``) is a 0..1
  fraction.
"""

from __future__ import annotations

from collections.abc import Mapping

from inferlane.sim.engine import Engine, EngineConfig
from inferlane.sim.stats import Histogram

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LORA_INFO_HISTORY = 8  # label sets kept for vllm:lora_requests_info


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Mapping[str, str]) -> str:
    return ",".join(f'{k}="{_escape(v)}"' for k, v in pairs.items())


def _header(name: str, kind: str, help_text: str) -> str:
    return f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n"


class MetricsRenderer:
    """Renders one replica's ``/metrics`` page; keeps the LoRA info history between scrapes."""

    def __init__(self, model_name: str, config: EngineConfig, *, lora_enabled: bool,
                 engine_index: int = 0) -> None:
        self._base = _labels({"model_name": model_name, "engine": str(engine_index)})
        self._engine_label = _labels({"engine": str(engine_index)})
        self._max_lora = str(config.max_loras)
        self._lora_enabled = lora_enabled
        self._lora_history: dict[tuple[str, str], float] = {}
        cache_info = _labels({
            "block_size": str(config.block_size),
            "cache_dtype": "auto",
            "enable_prefix_caching": str(config.enable_prefix_caching),
            "engine": str(engine_index),
            "gpu_memory_utilization": "0.9",
            "num_cpu_blocks": "None",
            "num_gpu_blocks": str(config.num_gpu_blocks),
            "num_gpu_blocks_override": str(config.num_gpu_blocks),
            "prefix_caching_hash_algo": "builtin",
        })
        self._cache_info = (
            _header("vllm:cache_config_info", "gauge", "Information of the LLMEngine CacheConfig")
            + f"vllm:cache_config_info{{{cache_info}}} 1.0\n")

    def _gauge(self, out: list[str], name: str, help_text: str, value: float) -> None:
        out.append(_header(name, "gauge", help_text))
        out.append(f"{name}{{{self._base}}} {float(value)!r}\n")

    def _counter(self, out: list[str], name: str, help_text: str, value: int) -> None:
        out.append(_header(name, "counter", help_text))
        out.append(f"{name}{{{self._base}}} {float(value)!r}\n")

    def _histogram(self, out: list[str], name: str, help_text: str, hist: Histogram) -> None:
        out.append(_header(name, "histogram", help_text))
        base = self._base
        for bound, total in zip(hist.buckets, hist.cumulative(), strict=False):
            out.append(f'{name}_bucket{{{base},le="{bound!r}"}} {float(total)!r}\n')
        out.append(f'{name}_bucket{{{base},le="+Inf"}} {float(hist.count)!r}\n')
        out.append(f"{name}_count{{{base}}} {float(hist.count)!r}\n")
        out.append(f"{name}_sum{{{base}}} {hist.sum!r}\n")

    def _lora_info(self, out: list[str], engine: Engine, wall_time: float) -> None:
        key = (",".join(engine.running_loras), ",".join(engine.waiting_loras))
        history = self._lora_history
        history[key] = wall_time  # updating keeps the key's position, as prometheus_client does
        if len(history) > _LORA_INFO_HISTORY:
            del history[min(history, key=history.__getitem__)]
        out.append(_header("vllm:lora_requests_info", "gauge", "Running stats on lora requests."))
        for (running, waiting), stamp in history.items():
            labels = _labels({"max_lora": self._max_lora, "waiting_lora_adapters": waiting,
                              "running_lora_adapters": running})
            out.append(f"vllm:lora_requests_info{{{labels}}} {stamp!r}\n")

    def render(self, engine: Engine, wall_time: float, *, requests_received: int = 0,
               injected_faults: Mapping[str, int] | None = None) -> bytes:
        """The exposition text; ``wall_time`` stamps the LoRA info gauge (Unix seconds)."""
        stats = engine.stats
        out: list[str] = []
        self._gauge(out, "vllm:num_requests_running",
                    "Number of requests in model execution batches.", engine.num_running)
        self._gauge(out, "vllm:num_requests_waiting",
                    "Number of requests waiting to be processed.", engine.num_waiting)
        usage = engine.kv_cache_usage
        self._gauge(out, "vllm:kv_cache_usage_perc",
                    "KV-cache usage. 1 means 100 percent usage.", usage)
        self._gauge(out, "vllm:gpu_cache_usage_perc",
                    "GPU KV-cache usage. 1 means 100 percent usage (deprecated).", usage)
        out.append(self._cache_info)
        if self._lora_enabled:
            self._lora_info(out, engine, wall_time)
        self._counter(out, "vllm:prefix_cache_queries_total",
                      "Prefix cache queries, in terms of number of queried tokens.",
                      stats.prefix_cache_queries)
        self._counter(out, "vllm:prefix_cache_hits_total",
                      "Prefix cache hits, in terms of number of cached tokens.",
                      stats.prefix_cache_hits)
        self._counter(out, "vllm:num_preemptions_total",
                      "Cumulative number of preemption from the engine.", stats.preemptions)
        self._counter(out, "vllm:prompt_tokens_total",
                      "Number of prefill tokens processed.", stats.prompt_tokens)
        self._counter(out, "vllm:generation_tokens_total",
                      "Number of generation tokens processed.", stats.generation_tokens)
        out.append(_header("vllm:request_success_total", "counter",
                           "Count of successfully processed requests."))
        for reason, count in stats.finished.items():
            out.append(f'vllm:request_success_total{{{self._base},finished_reason="{reason}"}} '
                       f"{float(count)!r}\n")
        self._histogram(out, "vllm:time_to_first_token_seconds",
                        "Histogram of time to first token in seconds.",
                        stats.time_to_first_token)
        self._histogram(out, "vllm:e2e_request_latency_seconds",
                        "Histogram of e2e request latency in seconds.",
                        stats.e2e_request_latency)
        self._histogram(out, "vllm:request_queue_time_seconds",
                        "Histogram of time spent in WAITING phase for request.",
                        stats.queue_time)
        self._counter(out, "inferlane_sim_aborted_requests_total",
                      "Requests aborted because their client went away (simulator only).",
                      stats.aborted_requests)
        self._counter(out, "inferlane_sim_requests_received_total",
                      "Inference requests received, before fault injection (simulator only).",
                      requests_received)
        out.append(_header("inferlane_sim_injected_faults_total", "counter",
                           "Requests hit by an injected fault, by kind (simulator only)."))
        for kind, count in (injected_faults or {}).items():
            out.append(f'inferlane_sim_injected_faults_total{{{self._base},kind="{kind}"}} '
                       f"{float(count)!r}\n")
        return "".join(out).encode()
