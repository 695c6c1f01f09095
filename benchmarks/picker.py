"""Microbenchmark: how long one endpoint-picking decision takes (issue 3).

Not a test. Times ``Scheduler.pick`` (the router's seam: states → filters → scorers → picker →
post-pick record) and ``Scheduler.schedule`` (the same plus the explanation) with the built-in
``default`` profile (saturation filter; queue, KV-cache, prefix-cache, LoRA-affinity scorers;
max-score picker) and the ``predicted-latency`` profile, for pools of 8 and 1,000 endpoints.

Realistic inputs: endpoint states with varied queues, batches, KV usage, LoRA adapters and fresh
scrapes; prompts of ~2,000 tokens (8,000 characters) made of one of a few shared system prompts
plus a unique conversation, so every decision hashes a new prompt; a prefix index warmed by
earlier picks. The states callable returns a prepared list (the data layer's cost is not ours).

    python benchmarks/picker.py                 # default: 20,000 decisions per row
    python benchmarks/picker.py --iterations 2000

Targets: median <= 50 µs for 8 endpoints, <= 1 ms for 1,000 endpoints.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence

from inferlane.scheduling.framework import Scheduler
from inferlane.scheduling.interfaces import Endpoint, PickRequest
from inferlane.scheduling.registry import build_scheduler
from inferlane.scheduling.types import EndpointState, ServerMetrics

TARGETS_US = {8: 50.0, 1000: 1000.0}
PROMPT_CHARS = 8000  # ~2,000 tokens at ~4 characters per token
SYSTEM_PROMPTS = 8
ADAPTERS = ("sql-lora", "chat-lora", "code-lora")


def make_states(count: int, rng: random.Random, now: float) -> list[EndpointState]:
    states: list[EndpointState] = []
    for i in range(count):
        running_loras = frozenset(rng.sample(ADAPTERS, rng.randint(0, 2)))
        metrics = ServerMetrics(
            waiting=rng.choice((0, 0, 0, 1, 2, 3, 5, 8)),
            running=rng.randint(0, 64),
            kv_usage=rng.uniform(0.05, 0.95),
            block_size=16,
            num_blocks=2048,
            max_loras=4,
            running_loras=running_loras,
            waiting_loras=frozenset(rng.sample(ADAPTERS, rng.randint(0, 1))),
            scraped_at=now - rng.uniform(0.0, 0.1),
        )
        states.append(EndpointState(
            endpoint=Endpoint(f"default/server-{i}", f"10.0.{i // 250}.{i % 250}", 8000),
            metrics=metrics,
            in_flight_requests=rng.randint(0, 70),
            in_flight_tokens=rng.randint(0, 200_000),
            ewma_prefill_seconds_per_token=rng.uniform(5e-5, 2e-4),
            ewma_decode_seconds_per_token=rng.uniform(0.01, 0.03),
        ))
    return states


def make_requests(count: int, rng: random.Random, now: float) -> list[PickRequest]:
    words = [f"w{i}" for i in range(500)]
    systems = [" ".join(rng.choices(words, k=1200))[:4000] for _ in range(SYSTEM_PROMPTS)]
    requests = []
    for i in range(count):
        conversation = " ".join(rng.choices(words, k=1500))
        prompt = (rng.choice(systems) + conversation)[:PROMPT_CHARS]
        model = rng.choice(("base-model", "base-model", "base-model", "sql-lora"))
        requests.append(PickRequest(request_id=f"r{i}", model=model, prompt=prompt,
                                    prompt_tokens=len(prompt) // 4, max_tokens=256, now=now))
    return requests


def measure(call: Callable[[PickRequest], object], requests: Sequence[PickRequest]) -> list[float]:
    timings: list[float] = []
    clock = time.perf_counter_ns
    for request in requests:
        start = clock()
        call(request)
        timings.append((clock() - start) / 1000.0)
    return timings


def run(mode: str, count: int, iterations: int, seed: int) -> tuple[float, float, float, float]:
    rng = random.Random(seed)
    now = 1000.0
    states = make_states(count, rng, now)
    endpoints = tuple(state.endpoint for state in states)
    scheduler: Scheduler = build_scheduler(mode, states=lambda _: states)
    warm = make_requests(2000, rng, now)
    for request in warm:  # fill the prefix index as earlier traffic would have
        scheduler.pick(request, endpoints)
    requests = make_requests(iterations, rng, now)
    gc.collect()
    picks = measure(lambda r: scheduler.pick(r, endpoints), requests)
    explained = measure(lambda r: scheduler.schedule(r, endpoints), requests)
    return (statistics.median(picks), _p99(picks), statistics.median(explained),
            _p99(explained))


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--modes", default="default,predicted-latency,round-robin")
    args = parser.parse_args(argv)
    print(f"Python {sys.version.split()[0]}; {args.iterations} decisions per row; "
          f"prompt {PROMPT_CHARS} chars (~{PROMPT_CHARS // 4} tokens)\n")
    header = (f"{'profile':<18} {'endpoints':>9} {'pick p50 µs':>12} {'pick p99 µs':>12} "
              f"{'schedule p50':>13} {'schedule p99':>13} {'target p50':>11}  verdict")
    print(header)
    print("-" * len(header))
    failed = False
    for mode in args.modes.split(","):
        for count in (8, 1000):
            iterations = args.iterations if count == 8 else max(1, args.iterations // 10)
            p50, p99, s50, s99 = run(mode, count, iterations, args.seed)
            target = TARGETS_US[count]
            ok = p50 <= target
            failed |= not ok and mode == "default"
            print(f"{mode:<18} {count:>9} {p50:>12.1f} {p99:>12.1f} {s50:>13.1f} {s99:>13.1f} "
                  f"{target:>11.0f}  {'ok' if ok else 'MISSED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
