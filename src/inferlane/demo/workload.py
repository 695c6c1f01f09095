"""The demo's mixed workload and what it observed.

A bounded, closed-loop load: ``concurrency`` workers send requests for ``duration`` seconds (and
at most ``max_requests``), drawn from a fixed mix of chat (streaming and not), completions and
embeddings across the demo's models, some sharing a long system prompt so prefix caches matter.
Each result records what a user would look at: status, time to first token, latency, which
endpoint answered, and which model upstream actually served (canary rewrites show up here).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import aiohttp
import orjson

SYSTEM_PROMPT = (
    "You are a concise assistant for an infrastructure team. Answer in plain words, cite the "
    "config field you rely on, and never invent a metric name. " * 4
)
QUESTIONS = (
    "How do I roll out a new model version to ten percent of traffic?",
    "Why is time to first token high when the KV cache is nearly full?",
    "Explain prefix caching in two sentences.",
    "What does an InferencePool select?",
    "Write a haiku about load balancers.",
    "Which replica should get a request with a long shared prompt?",
)


@dataclass(frozen=True, slots=True)
class Kind:
    label: str
    model: str
    path: str
    stream: bool
    weight: int


MIX = (
    Kind("chat-stream", "llama-3-8b", "/v1/chat/completions", True, 35),
    Kind("chat-canary", "llama-3-8b-canary", "/v1/chat/completions", False, 20),
    Kind("chat-stream", "qwen-2-7b", "/v1/chat/completions", True, 25),
    Kind("completion", "qwen-2-7b", "/v1/completions", False, 12),
    Kind("embedding", "llama-3-8b", "/v1/embeddings", False, 8),
)


@dataclass(frozen=True, slots=True)
class Result:
    kind: str
    model: str
    served_model: str
    status: int
    endpoint: str
    ttft: float | None
    latency: float
    output_tokens: int
    error: str = ""


def _body(kind: Kind, rng: random.Random) -> bytes:
    question = rng.choice(QUESTIONS)
    max_tokens = rng.randint(16, 96)
    if kind.path == "/v1/embeddings":
        return orjson.dumps({"model": kind.model, "input": question})
    if kind.path == "/v1/completions":
        return orjson.dumps({"model": kind.model, "prompt": SYSTEM_PROMPT + question,
                             "max_tokens": max_tokens, "stream": kind.stream})
    body: dict[str, object] = {
        "model": kind.model,
        "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                     {"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "stream": kind.stream,
    }
    if kind.stream:
        body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


async def _one(session: aiohttp.ClientSession, base_url: str, kind: Kind,
               rng: random.Random) -> Result:
    started = time.perf_counter()
    ttft: float | None = None
    served, tokens, error = kind.model, 0, ""
    try:
        async with session.post(base_url + kind.path, data=_body(kind, rng),
                                headers={"content-type": "application/json"}) as response:
            endpoint = response.headers.get("x-inferlane-endpoint", "-")
            if kind.stream and response.status == 200:
                async for line in response.content:
                    if ttft is None and line.startswith(b"data:"):
                        ttft = time.perf_counter() - started
                    if line.startswith(b"data: {"):
                        event = orjson.loads(line[6:])
                        served = event.get("model", served)
                        usage = event.get("usage")
                        if isinstance(usage, dict):
                            tokens = int(usage.get("completion_tokens", 0))
            else:
                payload = orjson.loads(await response.read())
                if response.status == 200:
                    served = payload.get("model", served)
                    tokens = int((payload.get("usage") or {}).get("completion_tokens", 0))
                else:
                    error = str(payload.get("error", {}).get("message", ""))
            status = response.status
    except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
        status, endpoint, error = 0, "-", f"{exc.__class__.__name__}: {exc}"
    return Result(kind.label, kind.model, served, status, endpoint, ttft,
                  time.perf_counter() - started, tokens, error)


async def run_workload(
    base_url: str,
    *,
    duration: float,
    concurrency: int = 8,
    max_requests: int = 5000,
    seed: int = 7,
) -> list[Result]:
    rng = random.Random(seed)
    kinds = list(MIX)
    weights = [kind.weight for kind in kinds]
    results: list[Result] = []
    deadline = time.monotonic() + duration
    timeout = aiohttp.ClientTimeout(total=60)

    async with aiohttp.ClientSession(timeout=timeout) as session:
        async def worker() -> None:
            while time.monotonic() < deadline and len(results) < max_requests:
                kind = rng.choices(kinds, weights)[0]
                results.append(await _one(session, base_url, kind, rng))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results
