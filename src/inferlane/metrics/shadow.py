"""Prometheus metrics of shadow traffic (HTTPRoute ``RequestMirror``), per model pair.

Registered on the gateway's registry next to ``GatewayMetrics``. Recording follows
``inferlane.routing.shadow``: status agreement counts every comparison; latency, TTFT, output
tokens and similarity are observed only when both sides answered 2xx, so the two roles' figures
describe the same requests. Model names come from clients: they are truncated and passed
through ``label`` (the gateway's ``BoundedLabel``) to bound cardinality.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram

from inferlane.routing.shadow import (
    DROP_REASONS,
    DropReason,
    Outcome,
    is_sample,
    model_name,
    statuses_agree,
)

# LLM latencies span milliseconds (cached, short) to minutes (long generations).
_LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)
_SIMILARITY_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
_PAIR = ["primary_model", "shadow_model"]


def _identity(value: str) -> str:
    return value


class ShadowMetrics:
    def __init__(self, registry: CollectorRegistry, *,
                 label: Callable[[str], str] | None = None) -> None:
        self._label = label or _identity
        self.requests = Counter(
            "inferlane_shadow_requests",
            "Shadow (mirrored) requests by outcome: mirrored (copy started), compared (both "
            "answers in), dropped_overloaded, dropped_timeout, dropped_error.",
            [*_PAIR, "outcome"],
            registry=registry,
        )
        self.status_agreement = Counter(
            "inferlane_shadow_status_agreement",
            "Compared requests whose primary and shadow statuses agree (both 2xx, or equal).",
            [*_PAIR, "agree"],
            registry=registry,
        )
        self.latency = Histogram(
            "inferlane_shadow_latency_seconds",
            "Dispatch to end of response, per role, of compared requests both sides answered 2xx.",
            [*_PAIR, "role"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.time_to_first_token = Histogram(
            "inferlane_shadow_time_to_first_token_seconds",
            "Dispatch to first content, per role, of compared streams both sides answered 2xx.",
            [*_PAIR, "role"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.output_tokens = Counter(
            "inferlane_shadow_output_tokens",
            "Completion tokens reported by usage, per role, of compared requests both sides "
            "answered 2xx.",
            [*_PAIR, "role"],
            registry=registry,
        )
        self.similarity = Histogram(
            "inferlane_shadow_similarity",
            "Similarity of the primary's and the shadow's answer texts (0 disjoint .. 1 "
            "identical) of compared requests both sides answered 2xx.",
            _PAIR,
            buckets=_SIMILARITY_BUCKETS,
            registry=registry,
        )

    def _pair(self, primary_model: str, shadow_model: str) -> tuple[str, str]:
        return (self._label(model_name(primary_model)), self._label(model_name(shadow_model)))

    def mirrored(self, primary_model: str, shadow_model: str) -> None:
        self.requests.labels(*self._pair(primary_model, shadow_model), "mirrored").inc()

    def dropped(self, primary_model: str, shadow_model: str, reason: DropReason) -> None:
        if reason not in DROP_REASONS:
            raise ValueError(f"ShadowMetrics.dropped: unknown reason {reason!r}; "
                             f"expected one of {', '.join(DROP_REASONS)}")
        self.requests.labels(*self._pair(primary_model, shadow_model), f"dropped_{reason}").inc()

    def compared(self, primary_model: str, shadow_model: str, primary: Outcome,
                 shadow: Outcome, similarity: float) -> None:
        pair = self._pair(primary_model, shadow_model)
        self.requests.labels(*pair, "compared").inc()
        agree = "true" if statuses_agree(primary, shadow) else "false"
        self.status_agreement.labels(*pair, agree).inc()
        if not is_sample(primary, shadow):
            return
        for role, outcome in (("primary", primary), ("shadow", shadow)):
            self.latency.labels(*pair, role).observe(outcome.latency)
            if outcome.ttft is not None:
                self.time_to_first_token.labels(*pair, role).observe(outcome.ttft)
            # A counter only goes up: a bogus negative usage must not raise on the request path.
            if outcome.output_tokens is not None and outcome.output_tokens > 0:
                self.output_tokens.labels(*pair, role).inc(outcome.output_tokens)
        self.similarity.labels(*pair).observe(similarity)
