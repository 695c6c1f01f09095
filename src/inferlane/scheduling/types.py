"""Data the inference-aware scheduler reads: what each endpoint reported and what we know.

Pure data, no I/O. The data layer (``inferlane.endpoints``: scraper + store) writes it; the
scheduling framework (filters → scorers → picker) only reads it. Times are monotonic seconds
passed in by the caller (``PickRequest.now``), never read from a clock here.
"""

from __future__ import annotations

from dataclasses import dataclass

from inferlane.scheduling.interfaces import Endpoint


@dataclass(frozen=True, slots=True)
class ServerMetrics:
    """One successful scrape of a model server's ``/metrics`` (engine-neutral names)."""

    waiting: int = 0  # requests queued in the server (vllm:num_requests_waiting, ...)
    running: int = 0  # requests in the running batch
    kv_usage: float = 0.0  # KV-cache utilisation, 0..1
    block_size: int | None = None  # tokens per KV block (cache_config_info), if reported
    num_blocks: int | None = None  # KV blocks on the GPU, if reported
    max_loras: int | None = None  # LoRA slots (lora_requests_info.max_lora)
    running_loras: frozenset[str] = frozenset()  # adapters loaded and running
    waiting_loras: frozenset[str] = frozenset()  # adapters requested and waiting for a slot
    scraped_at: float = 0.0  # monotonic seconds when the scrape completed


@dataclass(slots=True)
class EndpointState:
    """Everything the scheduler may know about one endpoint; read-only for plugins.

    ``metrics`` is the last good scrape (None before the first one). ``in_flight_*`` and
    ``pending_prefill_tokens`` are the gateway's own view, updated at dispatch, first token and
    completion, so a picker reacts before the next scrape lands. The ``ewma_*`` rates are
    observed from completed requests and feed the predicted-latency scorer.
    """

    endpoint: Endpoint
    metrics: ServerMetrics | None = None
    in_flight_requests: int = 0
    in_flight_tokens: int = 0  # prompt + expected output tokens of requests in flight
    # Uncached prompt tokens of requests in flight with no first token yet: the prefill work
    # the endpoint still has to do for us, which no scrape reports.
    pending_prefill_tokens: int = 0
    # The server's batch size limit as observed: its running count in a scrape that also
    # showed requests waiting (they wait because the batch is full). None until seen.
    batch_limit: int | None = None
    scrape_errors: int = 0  # consecutive failed scrapes
    ewma_prefill_seconds_per_token: float | None = None
    ewma_decode_seconds_per_token: float | None = None

    def is_stale(self, now: float, threshold: float) -> bool:
        return self.metrics is None or now - self.metrics.scraped_at > threshold
