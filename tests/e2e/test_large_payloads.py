"""Big bodies both ways arrive whole: large requests, large responses, a stream to a slow reader.

The upstream hop writes large request bodies separately and applies backpressure to large
responses (it stops reading the model server while too much waits for the client); these tests
push past those thresholds and check that nothing is lost, stalled or reordered.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import pytest

from .conftest import (
    GatewayProcess,
    gateway_doc,
    pool_doc,
    replica_docs,
    route_doc,
    running_stack,
    write_config,
)

pytestmark = pytest.mark.e2e

MODEL = "m-big"
DIMENSIONS = 4096


@dataclass(frozen=True, slots=True)
class BigStack:
    gateway: GatewayProcess


@pytest.fixture(scope="module")
def big_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigStack]:
    log_dir = tmp_path_factory.mktemp("large")
    with running_stack(log_dir) as stack:
        sim = stack.sim(replicas=1, models=[MODEL], time_scale=0.01,
                        extra=["--embedding-dimensions", str(DIMENSIONS)])
        config = write_config(log_dir / "gateway.yaml", [
            gateway_doc(),
            *replica_docs("big", sim.replicas, {"app": "big"}),
            pool_doc("pool-big", {"app": "big"}),
            route_doc("route-big", [MODEL], "pool-big"),
        ])
        yield BigStack(stack.gateway(config, ["--max-body-bytes", str(1 << 20)]))


def test_large_request_body_is_forwarded_whole(big_stack: BigStack) -> None:
    with big_stack.gateway.client() as client:
        # ``user`` is carried to the model server but costs no prompt tokens.
        completion = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=3,
            user="u" * 300_000)

    assert completion.choices[0].message.content
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3


def test_large_response_body_arrives_whole(big_stack: BigStack) -> None:
    inputs = [f"text number {i}" for i in range(8)]  # ~8 x 4096 floats: several hundred KB
    with big_stack.gateway.client() as client:
        result = client.embeddings.create(model=MODEL, input=inputs)

    assert [item.index for item in result.data] == list(range(len(inputs)))
    assert {len(item.embedding) for item in result.data} == {DIMENSIONS}


async def test_large_stream_to_a_slow_reader_arrives_whole(big_stack: BigStack) -> None:
    choices, tokens = 3, 1500  # ~200 bytes per token event: about 1 MB in all
    body = {"model": MODEL, "messages": [{"role": "user", "content": "write a lot"}],
            "n": choices, "max_tokens": tokens, "stream": True}
    received = bytearray()
    async with aiohttp.ClientSession() as session, session.post(
            f"{big_stack.gateway.api_base}/chat/completions", json=body) as response:
        assert response.status == 200
        received += await response.content.readany()
        # Stall so buffers fill up and the gateway has to hold the model server back.
        await asyncio.sleep(1.0)
        for _ in range(100_000):  # bounded: far more reads than a 1 MB body needs
            piece = await asyncio.wait_for(response.content.read(16384), timeout=60)
            if not piece:
                break
            received += piece

    events = [block.removeprefix(b"data: ") for block in bytes(received).split(b"\n\n") if block]
    assert events[-1] == b"[DONE]"
    per_choice: Counter[int] = Counter()
    finish: dict[int, str] = {}
    for event in events[:-1]:
        chunk = json.loads(event)
        assert "error" not in chunk, chunk
        for choice in chunk["choices"]:
            if choice["delta"].get("content"):
                per_choice[choice["index"]] += 1
            if choice["finish_reason"] is not None:
                finish[choice["index"]] = choice["finish_reason"]
    assert per_choice == dict.fromkeys(range(choices), tokens)
    assert finish == dict.fromkeys(range(choices), "length")
