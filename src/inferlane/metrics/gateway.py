"""The gateway's Prometheus metrics (served on ``GET /metrics``).

One ``GatewayMetrics`` per gateway instance with its own registry, so several gateways (tests,
the demo) can live in one process without colliding. Names follow Prometheus conventions
(``_total`` counters, ``_seconds`` histograms); labels stay low-cardinality: route, model, pool,
endpoint and status code — never request ids. Tenant-like values (fairness ids, rate-limit
client keys) pass through a ``BoundedLabel``, and client keys are hashed first: an API key never
appears in a label.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics import MetricWrapperBase

from inferlane.metrics.health import HealthMetrics
from inferlane.metrics.labels import BoundedLabel
from inferlane.metrics.shadow import ShadowMetrics
from inferlane.metrics.traffic import TrafficMetrics

CONTENT_TYPE = CONTENT_TYPE_LATEST

# LLM latencies span milliseconds (cached, short) to minutes (long generations).
_LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)


class GatewayMetrics:
    def __init__(self, *, max_models: int = 500, max_flows: int = 200,
                 max_keys: int = 200) -> None:
        # Model names come from clients; route/pool/endpoint names come from config.
        self.model_label = BoundedLabel(max_models)
        self.flow_label = BoundedLabel(max_flows)  # x-gateway-inference-fairness-id values
        self.key_label = BoundedLabel(max_keys)  # hashed rate-limit client keys
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "inferlane_requests",
            "Requests answered, by route, requested model, target model, pool, endpoint, status.",
            ["route", "model", "target_model", "pool", "endpoint", "status"],
            registry=r,
        )
        self.request_duration = Histogram(
            "inferlane_request_duration_seconds",
            "End-to-end request latency at the gateway (first byte in to last byte out).",
            ["route", "model", "pool"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.time_to_first_token = Histogram(
            "inferlane_time_to_first_token_seconds",
            "Streaming requests: time from request arrival to the first content chunk relayed.",
            ["route", "model", "pool"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.input_tokens = Counter(
            "inferlane_input_tokens",
            "Prompt tokens reported by upstream usage.",
            ["model", "pool"],
            registry=r,
        )
        self.output_tokens = Counter(
            "inferlane_output_tokens",
            "Completion tokens reported by upstream usage.",
            ["model", "pool"],
            registry=r,
        )
        self.in_flight = Gauge(
            "inferlane_requests_in_flight",
            "Requests accepted and not yet answered, by pool ('' before routing).",
            ["pool"],
            registry=r,
        )
        self.client_disconnects = Counter(
            "inferlane_client_disconnects",
            "Requests whose client went away before the answer was complete.",
            ["pool"],
            registry=r,
        )
        self.picker_duration = Histogram(
            "inferlane_picker_duration_seconds",
            "Time to route and pick an endpoint for one request (filters, scorers, picker).",
            ["pool"],
            buckets=(1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2),
            registry=r,
        )
        self.ttft_prediction_ratio = Histogram(
            "inferlane_ttft_prediction_ratio",
            "Observed / predicted time to first token of streamed requests whose pool's profile "
            "predicts it (1.0 = exact).",
            ["pool"],
            buckets=(0.25, 0.5, 0.67, 0.8, 0.9, 1.1, 1.25, 1.5, 2.0, 4.0, 8.0),
            registry=r,
        )
        self.prefix_match_ratio = Histogram(
            "inferlane_prefix_index_match_ratio",
            "Share of the prompt's blocks the prefix index expected cached on the chosen endpoint "
            "(pools whose profile scores prefix-cache affinity); mean = hit ratio.",
            ["pool"],
            buckets=(0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0),
            registry=r,
        )
        self.config_reloads = Counter(
            "inferlane_config_reloads",
            "Config reload attempts by result (success, rejected).",
            ["result"],
            registry=r,
        )
        self.config_generation = Gauge(
            "inferlane_config_generation",
            "Generation number of the config snapshot now serving.",
            registry=r,
        )

        # Flow control (per pool; priority is the band).
        self.pool_saturation = Gauge(
            "inferlane_pool_saturation",
            "Pool saturation, 0 idle .. 1 no endpoint has capacity (mean over endpoints of "
            "min(1, max(waiting/queueThreshold, kv/kvThreshold)); stale counts as 1).",
            ["pool"], registry=r,
        )
        self.queue_requests = Gauge(
            "inferlane_flow_queue_requests",
            "Requests waiting in the gateway's queue, by pool and priority band.",
            ["pool", "priority"], registry=r,
        )
        self.queue_flow_requests = Gauge(
            "inferlane_flow_queue_flow_requests",
            "Requests waiting in the gateway's queue, by pool, priority and flow (fairness id).",
            ["pool", "priority", "flow"], registry=r,
        )
        self.queue_wait = Histogram(
            "inferlane_flow_queue_wait_seconds",
            "Time dispatched requests waited in the gateway's queue, by pool, priority and "
            "flow (fairness id).",
            ["pool", "priority", "flow"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.flow_rejections = Counter(
            "inferlane_flow_rejected",
            "Requests answered without dispatch by flow control, by reason (shed, displaced, "
            "queue-full, ttl, deadline).",
            ["pool", "priority", "reason"], registry=r,
        )
        self.rate_limited = Counter(
            "inferlane_rate_limited",
            "Requests rejected by a RateLimitPolicy rule, by rule, limit (requests, tokens) "
            "and hashed client key.",
            ["policy", "rule", "limit", "key"], registry=r,
        )
        self.rate_limit_errors = Counter(
            "inferlane_rate_limit_backend_errors",
            "Rate-limit backend failures (the policy's failureMode decided the request).",
            ["policy"], registry=r,
        )
        self.unknown_objectives = Counter(
            "inferlane_objective_unknown",
            "Requests whose x-gateway-inference-objective names no objective of the pool they "
            "were routed to (they ran under the pool's default objective).",
            ["pool"], registry=r,
        )
        self.slo_requests = Counter(
            "inferlane_objective_ttft_slo",
            "Streamed requests of objectives with a TTFT target, by whether the first token "
            "came within it (met, missed).",
            ["pool", "objective", "outcome"], registry=r,
        )

        self.traffic = TrafficMetrics(r, self.model_label)
        self.shadow = ShadowMetrics(r, label=self.model_label)
        self.health = HealthMetrics(r)
        self._children: dict[tuple[object, ...], Any] = {}

    def child(self, metric: MetricWrapperBase, *labels: str) -> Any:
        """``metric.labels(*labels)``, memoised: the hot path calls this several times a request.

        The cache stays small because every label value is either from config or bounded
        (``model_label``).
        """
        key = (id(metric), *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def render(self) -> bytes:
        return generate_latest(self.registry)
