"""``inferlane bench``: compare load-balancing modes on a simulated fleet, in one process.

A quick, user-facing look at what inference-aware routing buys on *your* workload shape: one
simulated fleet (vLLM-compatible replicas, simulated GPU time), one gateway per mode in turn,
the same seeded open-loop (Poisson) workload for each, and a table of TTFT, end-to-end latency,
output tokens/s, the fleet's prefix-cache hit rate and errors. Each mode runs on a fresh fleet so
no mode inherits another's caches.

Everything shares one event loop, so this is for comparing modes with each other, not for
absolute numbers or peers: ``benchmarks/routing.py`` runs each part in its own process and puts
the peers' routers (sglang-router, vllm-router, LiteLLM) side by side.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aiohttp
import orjson
import yaml

from inferlane.bench.workloads import Planned, arrivals, build
from inferlane.config.build import build_snapshot
from inferlane.config.loader import load_config_text
from inferlane.dataplane.server import GatewayServer, ServerOptions
from inferlane.endpoints import EndpointStore
from inferlane.sim.engine import EngineConfig
from inferlane.sim.fleet import Fleet, SimOptions, start_fleet

MODEL = "sim-model"
ADAPTERS = tuple(f"lora-{i}" for i in range(12))
# A slower simulated GPU than the sim's defaults, so a fleet of 8 saturates at a request rate
# one core can drive (the same knobs as benchmarks/routing.py).
ENGINE = EngineConfig(max_num_seqs=16, num_gpu_blocks=4096, prefix_cache_blocks=2048,
                      decode_base_ms=30.0, decode_per_seq_ms=2.0, prefill_ms_per_token=0.1,
                      max_loras=4, lora_load_ms=50.0)


@dataclass(frozen=True, slots=True)
class Outcome:
    ttft: float | None
    latency: float
    output_tokens: int
    ok: bool


@dataclass(slots=True)
class ModeResult:
    mode: str
    sent: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    prefix_hit_rate: float = 0.0
    seconds: float = 0.0


def fleet_config(addresses: Sequence[str], *, mode: str | None = None,
                 models: Sequence[str] = (), listen_port: int = 1) -> str:
    """One Gateway, a ModelServer per address, one pool (``fleet``) and a catch-all route.

    ``mode`` sets the pool's ``inferlane.dev/load-balancing`` (None: the default profile). Shared
    by ``inferlane bench`` and the benchmarks in ``benchmarks/``.
    """
    pool: dict[str, object] = {"name": "fleet"}
    if mode is not None:
        pool["annotations"] = {"inferlane.dev/load-balancing": mode}
    docs: list[dict[str, object]] = [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
         "metadata": {"name": "bench"},
         "spec": {"gatewayClassName": "inferlane",
                  "listeners": [{"name": "http", "port": listen_port, "protocol": "HTTP"}]}},
        {"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
         "metadata": pool,
         "spec": {"selector": {"matchLabels": {"app": "sim"}}, "targetPorts": [{"number": 8000}]}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
         "metadata": {"name": "all"},
         "spec": {"parentRefs": [{"name": "bench"}],
                  "rules": [{"backendRefs": [{"group": "inference.networking.k8s.io",
                                              "kind": "InferencePool", "name": "fleet"}]}]}},
    ]
    for index, address in enumerate(addresses):
        docs.append({"apiVersion": "inferlane.dev/v1alpha1", "kind": "ModelServer",
                     "metadata": {"name": f"sim-{index}", "labels": {"app": "sim"}},
                     "spec": {"address": address, "models": list(models)}})
    return yaml.safe_dump_all(docs, sort_keys=False)


async def _send(session: aiohttp.ClientSession, url: str, planned: Planned,
                started: float) -> Outcome:
    delay = started + planned.at - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    body = {**planned.body, "stream": True, "stream_options": {"include_usage": True}}
    sent = time.monotonic()
    ttft: float | None = None
    tokens = 0
    try:
        async with session.post(url, data=orjson.dumps(body),
                                headers={"content-type": "application/json"}) as response:
            if response.status != 200:
                await response.read()
                return Outcome(None, time.monotonic() - sent, 0, False)
            async for line in response.content:
                if not line.startswith(b"data: {"):
                    continue
                event = orjson.loads(line[6:])
                choices = event.get("choices") or []
                if ttft is None and choices and (choices[0].get("delta") or {}).get("content"):
                    ttft = time.monotonic() - sent
                usage = event.get("usage")
                if isinstance(usage, dict):
                    tokens = int(usage.get("completion_tokens", 0))
    except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError):
        return Outcome(ttft, time.monotonic() - sent, tokens, False)
    return Outcome(ttft, time.monotonic() - sent, tokens, True)


def _prefix_hit_rate(fleet: Fleet) -> float:
    queries = sum(r.engine.stats.prefix_cache_queries for r in fleet.replicas)
    hits = sum(r.engine.stats.prefix_cache_hits for r in fleet.replicas)
    return hits / queries if queries else 0.0


async def run_mode(mode: str, *, workload: str, replicas: int, rate: float, duration: float,
                   seed: int, progress: Callable[[int], None]) -> ModeResult:
    options = SimOptions(models=(MODEL,), engine=ENGINE, loras=ADAPTERS, seed=seed)
    fleet = await start_fleet(replicas, 0, models=(MODEL,), options=options)
    store = EndpointStore()
    try:
        bundle = load_config_text(fleet_config(fleet.addresses, mode=mode,
                                               models=(MODEL, *ADAPTERS)),
                                  source=f"<bench {mode}>")
        snapshot = build_snapshot(bundle, states=store.states)
        server = GatewayServer(snapshot, ServerOptions(host="127.0.0.1", port_override=0),
                               store=store)
        await server.start()
        try:
            port = next(iter(server.ports.values()))
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            times = arrivals(random.Random(seed), rate, duration)
            plan = build(workload, times, seed, f"run-{seed}", MODEL, ADAPTERS)
            result = ModeResult(mode, sent=len(plan))
            timeout = aiohttp.ClientTimeout(total=max(60.0, duration * 4))
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
                started = time.monotonic()
                tasks = [asyncio.create_task(_send(session, url, p, started)) for p in plan]
                for done in asyncio.as_completed(tasks):
                    result.outcomes.append(await done)
                    progress(1)
                result.seconds = time.monotonic() - started
            result.prefix_hit_rate = _prefix_hit_rate(fleet)
            return result
        finally:
            await server.stop()
    finally:
        await fleet.stop()
