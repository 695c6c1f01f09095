"""Routing through real processes: model → HTTPRoute → InferencePool → endpoint, and rewrites.

The endpoint that answered is read from ``x-inferlane-endpoint`` and cross-checked with the
``model`` the simulated replica reports (it echoes the name it was asked for).
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from openai.types.chat import ChatCompletionMessageParam

from .conftest import (
    ADAPTER_A,
    CANARY_A,
    CANARY_WEIGHTS,
    MODEL_A,
    MODEL_B,
    SharedStack,
    metric_value,
)

pytestmark = pytest.mark.e2e

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "route me"}]


def test_each_model_is_served_by_its_own_pool(shared_stack: SharedStack) -> None:
    answered: dict[str, set[str]] = {MODEL_A: set(), MODEL_B: set()}
    with shared_stack.gateway.client() as client:
        for model in [MODEL_A, MODEL_B] * 4:
            raw = client.chat.completions.with_raw_response.create(
                model=model, messages=MESSAGES, max_tokens=1)
            assert raw.parse().model == model
            answered[model].add(raw.headers["x-inferlane-endpoint"])

    assert answered[MODEL_A] <= {r.address for r in shared_stack.pool_a}
    assert answered[MODEL_B] == {shared_stack.pool_b[0].address}


def test_round_robin_spreads_over_every_endpoint_of_the_pool(shared_stack: SharedStack) -> None:
    pool = [r.address for r in shared_stack.pool_a]
    rounds = 3
    with shared_stack.gateway.client() as client:
        answered = Counter(
            client.chat.completions.with_raw_response.create(
                model=MODEL_A, messages=MESSAGES, max_tokens=1,
            ).headers["x-inferlane-endpoint"]
            for _ in range(rounds * len(pool))
        )

    # Sequential requests on a round-robin pool: each endpoint exactly once per round.
    assert answered == dict.fromkeys(pool, rounds)


async def test_canary_model_is_rewritten_by_weight(shared_stack: SharedStack) -> None:
    total = 200
    concurrency = 8
    gateway = shared_stack.gateway
    labels = {"model": CANARY_A, "status": "200"}
    metrics_before = await asyncio.to_thread(gateway.metrics)
    upstream_models: Counter[str] = Counter()
    endpoints: set[str] = set()

    async with gateway.async_client() as client:
        async def worker(count: int) -> None:
            for _ in range(count):
                raw = await client.chat.completions.with_raw_response.create(
                    model=CANARY_A, messages=MESSAGES, max_tokens=1)
                upstream_models[raw.parse().model] += 1
                endpoints.add(raw.headers["x-inferlane-endpoint"])

        await asyncio.gather(*(worker(total // concurrency) for _ in range(concurrency)))

    assert sum(upstream_models.values()) == total
    assert set(upstream_models) <= set(CANARY_WEIGHTS), upstream_models
    assert endpoints <= {r.address for r in shared_stack.pool_a}
    # Expected 50 of 200 on the adapter (weight 1 of 4); the bounds are ~5 standard deviations.
    expected = total * CANARY_WEIGHTS[ADAPTER_A] / sum(CANARY_WEIGHTS.values())
    assert expected * 0.4 <= upstream_models[ADAPTER_A] <= expected * 1.6, upstream_models
    # The gateway's own accounting agrees with what the clients saw.
    metrics_after = await asyncio.to_thread(gateway.metrics)
    for target in CANARY_WEIGHTS:
        counted = (metric_value(metrics_after, "inferlane_requests_total", target_model=target,
                                **labels)
                   - metric_value(metrics_before, "inferlane_requests_total",
                                  target_model=target, **labels))
        assert counted == upstream_models[target], (target, counted, upstream_models)
