"""The OpenAI API through the gateway, driven by the official ``openai`` SDK.

Proves chat, completions (each plain and streamed), embeddings and ``/v1/models`` work end to end
against simulated vLLM replicas; that streams arrive as many chunks with the usage chunk last;
that the answering endpoint is named in ``x-inferlane-endpoint``; how ``x-request-id`` is
handled; and that the gateway's Prometheus metrics count what happened.
"""

from __future__ import annotations

import aiohttp
import pytest
from openai.types.chat import ChatCompletionMessageParam

from .conftest import (
    ADAPTER_A,
    MODEL_A,
    MODEL_B,
    ROUTED_MODELS,
    SharedStack,
    assert_openai_error,
    metric_value,
)

pytestmark = pytest.mark.e2e

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Say something about load balancing."}]


def addresses(stack: SharedStack) -> set[str]:
    return {r.address for r in stack.pool_a}


def test_chat_completion_returns_content_usage_and_endpoint(shared_stack: SharedStack) -> None:
    with shared_stack.gateway.client() as client:
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL_A, messages=MESSAGES, max_tokens=8)
        completion = raw.parse()

    assert raw.status_code == 200
    assert raw.headers["x-inferlane-endpoint"] in addresses(shared_stack)
    assert completion.object == "chat.completion"
    assert completion.model == MODEL_A
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert len(choice.message.content.split()) == 8  # the sim writes one word per token
    assert choice.finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 8
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 8


def test_chat_completion_streams_several_chunks_and_final_usage(
        shared_stack: SharedStack) -> None:
    with shared_stack.gateway.client() as client:
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL_A, messages=MESSAGES, max_tokens=12, stream=True,
            stream_options={"include_usage": True})
        assert raw.headers["x-inferlane-endpoint"] in addresses(shared_stack)
        assert raw.headers["content-type"].startswith("text/event-stream")
        with raw.parse() as stream:
            chunks = list(stream)

    content = [c.choices[0].delta.content for c in chunks if c.choices and
               c.choices[0].delta.content]
    assert len(content) >= 2, f"expected a real stream, got {len(chunks)} chunk(s)"
    assert len(content) == 12  # one chunk per token, nothing lost or merged
    assert "".join(content).strip()
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length"
    assert all(reason is None for reason in finishes[:-1])
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens == 12
    assert usage_chunk.usage.prompt_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])


def test_completion_returns_text_and_usage(shared_stack: SharedStack) -> None:
    with shared_stack.gateway.client() as client:
        raw = client.completions.with_raw_response.create(
            model=MODEL_B, prompt="Once upon a time", max_tokens=6)
        completion = raw.parse()

    assert raw.headers["x-inferlane-endpoint"] == shared_stack.pool_b[0].address
    assert completion.object == "text_completion"
    assert completion.model == MODEL_B
    assert len(completion.choices[0].text.split()) == 6
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 6


def test_completion_streams_several_chunks_and_final_usage(shared_stack: SharedStack) -> None:
    with shared_stack.gateway.client() as client, client.completions.create(
            model=MODEL_B, prompt="Once upon a time", max_tokens=10, stream=True,
            stream_options={"include_usage": True}) as stream:
        chunks = list(stream)

    texts = [c.choices[0].text for c in chunks if c.choices and c.choices[0].text]
    assert len(texts) >= 2, f"expected a real stream, got {len(chunks)} chunk(s)"
    assert len(texts) == 10
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 10


def test_embeddings_return_one_vector_per_input(shared_stack: SharedStack) -> None:
    with shared_stack.gateway.client() as client:
        raw = client.embeddings.with_raw_response.create(
            model=MODEL_A, input=["first text", "a second, longer text"])
        result = raw.parse()

    assert raw.headers["x-inferlane-endpoint"] in addresses(shared_stack)
    assert [item.index for item in result.data] == [0, 1]
    lengths = {len(item.embedding) for item in result.data}
    assert len(lengths) == 1
    assert lengths.pop() > 0
    assert result.data[0].embedding != result.data[1].embedding
    assert result.usage.prompt_tokens > 0


def test_models_endpoint_lists_every_routed_model(shared_stack: SharedStack) -> None:
    with shared_stack.gateway.client() as client:
        models = client.models.list()

    ids = [model.id for model in models.data]
    assert set(ids) == ROUTED_MODELS
    assert len(ids) == len(ROUTED_MODELS)
    assert ADAPTER_A not in ids  # only a rewrite target, not a model clients can ask for


def test_request_id_is_generated_when_absent(shared_stack: SharedStack) -> None:
    with shared_stack.gateway.client() as client:
        first = client.chat.completions.with_raw_response.create(
            model=MODEL_A, messages=MESSAGES, max_tokens=1)
        second = client.chat.completions.with_raw_response.create(
            model=MODEL_A, messages=MESSAGES, max_tokens=1, stream=True)
        with second.parse() as stream:
            list(stream)

    ids = [first.headers.get("x-request-id"), second.headers.get("x-request-id")]
    assert all(ids), ids
    assert ids[0] != ids[1]


def test_request_id_is_echoed_when_sent(shared_stack: SharedStack) -> None:
    with shared_stack.gateway.client() as client:
        plain = client.chat.completions.with_raw_response.create(
            model=MODEL_A, messages=MESSAGES, max_tokens=1,
            extra_headers={"x-request-id": "e2e-plain-42"})
        streamed = client.chat.completions.with_raw_response.create(
            model=MODEL_A, messages=MESSAGES, max_tokens=1, stream=True,
            extra_headers={"x-request-id": "e2e-stream-43"})
        with streamed.parse() as stream:
            list(stream)

    assert plain.headers["x-request-id"] == "e2e-plain-42"
    assert streamed.headers["x-request-id"] == "e2e-stream-43"


async def test_request_id_is_echoed_on_gateway_errors(shared_stack: SharedStack) -> None:
    url = f"{shared_stack.gateway.api_base}/chat/completions"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=b"{not json",
                                headers={"x-request-id": "e2e-bad-44"}) as response:
            assert response.status == 400
            assert response.headers["x-request-id"] == "e2e-bad-44"
        async with session.post(url, data=b"{not json") as response:
            assert response.status == 400
            assert response.headers.get("x-request-id")


async def test_request_id_is_generated_on_unknown_path_and_wrong_method(
        shared_stack: SharedStack) -> None:
    base = shared_stack.gateway.base_url
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/v1/nothing-here") as response:
            assert response.status == 404
            assert_openai_error(await response.json(), code="not_found")
            assert response.headers.get("x-request-id")
        async with session.get(f"{base}/v1/chat/completions") as response:
            assert response.status == 405
            assert response.headers.get("x-request-id")


def test_metrics_count_requests_tokens_and_first_tokens(shared_stack: SharedStack) -> None:
    gateway = shared_stack.gateway
    labels = {"model": MODEL_B, "pool": "default/pool-b"}

    def snapshot() -> tuple[float, ...]:
        text = gateway.metrics()
        return (
            metric_value(text, "inferlane_requests_total", status="200", **labels),
            metric_value(text, "inferlane_output_tokens_total", **labels),
            metric_value(text, "inferlane_time_to_first_token_seconds_count", **labels),
            metric_value(text, "inferlane_request_duration_seconds_count", **labels),
            metric_value(text, "inferlane_requests_in_flight", pool="default/pool-b"),
        )

    before = snapshot()
    with gateway.client() as client:
        for _ in range(3):
            client.completions.create(model=MODEL_B, prompt="count me", max_tokens=5)
        with client.completions.create(model=MODEL_B, prompt="count me too", max_tokens=7,
                                       stream=True,
                                       stream_options={"include_usage": True}) as stream:
            list(stream)
    after = snapshot()

    requests, tokens, first_tokens, durations, in_flight = (
        a - b for a, b in zip(after, before, strict=True))
    assert requests == 4
    assert tokens == 3 * 5 + 7
    assert first_tokens == 1  # only the stream has a first token
    assert durations == 4
    assert after[-1] == 0
    assert in_flight == 0
