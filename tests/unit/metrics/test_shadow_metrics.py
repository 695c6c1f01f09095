"""Shadow traffic Prometheus metrics, read back through the registry."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from inferlane.metrics.labels import OTHER, BoundedLabel
from inferlane.metrics.shadow import ShadowMetrics
from inferlane.routing.shadow import MAX_MODEL_NAME, Outcome

PAIR = {"primary_model": "big", "shadow_model": "small"}


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_mirrored_and_dropped_count_by_outcome() -> None:
    registry = CollectorRegistry()
    metrics = ShadowMetrics(registry)
    metrics.mirrored("big", "small")
    metrics.mirrored("big", "small")
    metrics.dropped("big", "small", "overloaded")
    metrics.dropped("big", "small", "timeout")
    metrics.dropped("big", "small", "timeout")
    metrics.dropped("big", "small", "error")
    total = "inferlane_shadow_requests_total"
    assert value(registry, total, **PAIR, outcome="mirrored") == 2
    assert value(registry, total, **PAIR, outcome="dropped_overloaded") == 1
    assert value(registry, total, **PAIR, outcome="dropped_timeout") == 2
    assert value(registry, total, **PAIR, outcome="dropped_error") == 1
    assert value(registry, total, **PAIR, outcome="compared") is None


def test_dropped_rejects_unknown_reason() -> None:
    metrics = ShadowMetrics(CollectorRegistry())
    with pytest.raises(ValueError, match="unknown reason 'sampled-out'"):
        metrics.dropped("big", "small", "sampled-out")  # type: ignore[arg-type]


def test_compared_sample_observes_both_roles() -> None:
    registry = CollectorRegistry()
    metrics = ShadowMetrics(registry)
    metrics.compared("big", "small",
                     Outcome(200, 0.2, ttft=0.05, output_tokens=10),
                     Outcome(200, 1.5, ttft=None, output_tokens=None), similarity=0.85)
    metrics.compared("big", "small",
                     Outcome(200, 0.3, ttft=0.07, output_tokens=0),
                     Outcome(201, 2.0, ttft=0.4, output_tokens=30), similarity=0.15)
    assert value(registry, "inferlane_shadow_requests_total", **PAIR, outcome="compared") == 2
    assert value(registry, "inferlane_shadow_status_agreement_total", **PAIR, agree="true") == 2
    latency = "inferlane_shadow_latency_seconds"
    assert value(registry, f"{latency}_count", **PAIR, role="primary") == 2
    assert value(registry, f"{latency}_sum", **PAIR, role="primary") == pytest.approx(0.5)
    assert value(registry, f"{latency}_sum", **PAIR, role="shadow") == pytest.approx(3.5)
    assert value(registry, f"{latency}_bucket", **PAIR, role="shadow", le="1.0") == 0
    assert value(registry, f"{latency}_bucket", **PAIR, role="shadow", le="2.5") == 2
    assert value(registry, f"{latency}_bucket", **PAIR, role="shadow", le="300.0") == 2
    ttft = "inferlane_shadow_time_to_first_token_seconds"
    assert value(registry, f"{ttft}_count", **PAIR, role="primary") == 2
    assert value(registry, f"{ttft}_count", **PAIR, role="shadow") == 1
    tokens = "inferlane_shadow_output_tokens_total"
    assert value(registry, tokens, **PAIR, role="primary") == 10
    assert value(registry, tokens, **PAIR, role="shadow") == 30
    similarity = "inferlane_shadow_similarity"
    assert value(registry, f"{similarity}_count", **PAIR) == 2
    assert value(registry, f"{similarity}_sum", **PAIR) == pytest.approx(1.0)
    assert value(registry, f"{similarity}_bucket", **PAIR, le="0.1") == 0
    assert value(registry, f"{similarity}_bucket", **PAIR, le="0.2") == 1
    assert value(registry, f"{similarity}_bucket", **PAIR, le="0.9") == 2
    assert value(registry, f"{similarity}_bucket", **PAIR, le="1.0") == 2


@pytest.mark.parametrize(("primary", "shadow", "agree"),
                         [(200, 500, "false"), (503, 503, "true"), (0, 200, "false")])
def test_compared_non_sample_counts_agreement_only(primary: int, shadow: int, agree: str) -> None:
    registry = CollectorRegistry()
    metrics = ShadowMetrics(registry)
    metrics.compared("big", "small", Outcome(primary, 1.0, ttft=0.1, output_tokens=5),
                     Outcome(shadow, 1.0, ttft=0.1, output_tokens=5), similarity=0.5)
    assert value(registry, "inferlane_shadow_requests_total", **PAIR, outcome="compared") == 1
    assert value(registry, "inferlane_shadow_status_agreement_total", **PAIR, agree=agree) == 1
    assert value(registry, "inferlane_shadow_latency_seconds_count", **PAIR,
                 role="primary") is None
    assert value(registry, "inferlane_shadow_output_tokens_total", **PAIR, role="shadow") is None
    assert value(registry, "inferlane_shadow_similarity_count", **PAIR) is None


def test_negative_token_usage_is_ignored() -> None:
    registry = CollectorRegistry()
    ShadowMetrics(registry).compared("big", "small", Outcome(200, 1.0, output_tokens=-3),
                                     Outcome(200, 1.0, output_tokens=4), similarity=1.0)
    tokens = "inferlane_shadow_output_tokens_total"
    assert value(registry, tokens, **PAIR, role="primary") is None
    assert value(registry, tokens, **PAIR, role="shadow") == 4


def test_model_labels_are_truncated_by_default() -> None:
    registry = CollectorRegistry()
    ShadowMetrics(registry).mirrored("p" * 1000, "s")
    assert value(registry, "inferlane_shadow_requests_total", primary_model="p" * MAX_MODEL_NAME,
                 shadow_model="s", outcome="mirrored") == 1


def test_model_labels_pass_through_the_given_bound() -> None:
    registry = CollectorRegistry()
    metrics = ShadowMetrics(registry, label=BoundedLabel(limit=2))
    metrics.mirrored("a", "s")  # "a" and "s" take the two slots
    metrics.mirrored("b", "s")
    metrics.mirrored("c", "t")
    total = "inferlane_shadow_requests_total"
    assert value(registry, total, primary_model="a", shadow_model="s", outcome="mirrored") == 1
    assert value(registry, total, primary_model=OTHER, shadow_model="s", outcome="mirrored") == 1
    assert value(registry, total, primary_model=OTHER, shadow_model=OTHER,
                 outcome="mirrored") == 1
