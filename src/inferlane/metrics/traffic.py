"""Metrics of traffic across backends: per backend and split arm, errors by class, retries,
fallbacks, cooldowns, and the OpenTelemetry GenAI metrics (Prometheus spelling).

Backends are named by their label (``pool/ns/name`` or ``provider/ns/name``); the arm of a
split is the backend the split chose. GenAI names follow the semantic conventions
(``gen_ai.client.token.usage`` → ``gen_ai_client_token_usage``, attribute dots → underscores).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)
_LATENCY_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
                    40.96, 81.92)


class TrafficMetrics:
    def __init__(self, registry: CollectorRegistry, model_label: Callable[[str], str]) -> None:
        self.model_label = model_label
        r = registry
        self.backend_requests = Counter(
            "inferlane_backend_requests",
            "Client requests answered, by route, requested model, the split's arm and the backend "
            "that finally served it (after fallbacks), and status.",
            ["route", "model", "arm", "backend", "status"], registry=r)
        self.attempt_errors = Counter(
            "inferlane_backend_errors",
            "Failed attempts by backend and failure class (connect-failure, timeout, 5xx, 429, "
            "context-window-exceeded, 4xx).",
            ["backend", "class"], registry=r)
        self.retries = Counter(
            "inferlane_retries",
            "Extra attempts on the same backend, by backend and the failure that caused them.",
            ["route", "backend", "reason"], registry=r)
        self.fallbacks = Counter(
            "inferlane_fallbacks",
            "Moves to the next backend of a fallback chain (reason: the failure class).",
            ["route", "from_backend", "to_backend", "reason"], registry=r)
        self.skipped = Counter(
            "inferlane_backend_skipped",
            "Backends of a chain passed over before any attempt (cooldown, "
            "context-window-exceeded).",
            ["route", "backend", "reason"], registry=r)
        self.gave_up = Counter(
            "inferlane_retries_exhausted",
            "Requests answered with the last failure: nothing left to try, budget spent, or "
            "the failure is not retried.",
            ["route", "reason"], registry=r)
        self.cooldown_transitions = Counter(
            "inferlane_backend_cooldowns",
            "Circuit-breaker transitions of a provider or pool endpoint (state: open, "
            "half-open, closed).",
            ["backend", "state"], registry=r)
        self.cooling = Gauge(
            "inferlane_backend_cooling_down",
            "1 while a provider or pool endpoint is skipped by its circuit breaker.",
            ["backend"], registry=r)
        self.token_usage = Histogram(
            "gen_ai_client_token_usage",
            "OpenTelemetry GenAI: tokens per request by operation, provider, model and type.",
            ["gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model",
             "gen_ai_token_type", "inferlane_backend"],
            buckets=_TOKEN_BUCKETS, registry=r)
        self.operation_duration = Histogram(
            "gen_ai_server_request_duration_seconds",
            "OpenTelemetry GenAI: request duration at the gateway by operation, provider, model.",
            ["gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model",
             "inferlane_backend"],
            buckets=_LATENCY_BUCKETS, registry=r)
        self.time_to_first_token = Histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "OpenTelemetry GenAI: time to the first streamed chunk by operation, provider, model.",
            ["gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model",
             "inferlane_backend"],
            buckets=_LATENCY_BUCKETS, registry=r)
