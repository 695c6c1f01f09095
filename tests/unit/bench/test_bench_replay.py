"""Routing quality in simulated time: the built-in profiles on the benchmark's fleet and workloads.

``inferlane.bench.replay`` wires the real schedulers, the real EndpointStore and the simulator's
engines with a discrete-event loop, so these are deterministic (seeded workloads and pickers)
and time nothing on this machine. They guard the tuning of the built-in profiles: a change that
makes ``default`` lose what it wins over round robin fails here, not only in a benchmark run.
"""

from __future__ import annotations

import random

import pytest

from inferlane.bench.replay import ReplayOptions, ReplayResult, replay
from inferlane.bench.runner import ADAPTERS, ENGINE, MODEL
from inferlane.bench.workloads import arrivals, build
from inferlane.scheduling.framework import Scheduler, StatesFn
from inferlane.scheduling.registry import builtin_profile

# Round robin's capacity on this fleet (requests/s), as benchmarks/routing.py measured it.
CAPACITY = {"shared-prefix": 27.8, "sharegpt": 19.8, "lora": 22.4}
SECONDS = 20.0


def run(mode: str, workload: str, load: float, seed: int = 1) -> ReplayResult:
    times = arrivals(random.Random(seed), CAPACITY[workload] * load, SECONDS)
    planned = build(workload, times, seed, f"salt-{seed}", MODEL, ADAPTERS)

    def scheduler(states: StatesFn) -> Scheduler:
        params = None if mode == "round-robin" else {"seed": seed}  # round robin has no dice
        return Scheduler(builtin_profile(mode, params), states)

    return replay(planned, scheduler, ReplayOptions(engine=ENGINE))


def test_replay_is_deterministic_and_answers_every_request() -> None:
    first, second = run("default", "shared-prefix", 0.8), run("default", "shared-prefix", 0.8)
    assert [c.ttft for c in first.completed] == [c.ttft for c in second.completed]
    assert first.picks == second.picks
    assert sum(first.picks) == len(arrivals(random.Random(1), CAPACITY["shared-prefix"] * 0.8,
                                            SECONDS))
    assert len(first.completed) == sum(first.picks) - int(sum(first.picks) * 0.2)


@pytest.mark.parametrize("load", [0.8, 0.95])
def test_default_cuts_shared_prefix_ttft_against_round_robin(load: float) -> None:
    rr, smart = run("round-robin", "shared-prefix", load), run("default", "shared-prefix", load)
    assert smart.ttft(0.9) <= 0.3 * rr.ttft(0.9)
    assert smart.prefix_hit_rate >= 2 * rr.prefix_hit_rate


@pytest.mark.parametrize("load", [0.8, 0.95])
def test_default_does_not_lose_to_round_robin_without_sharing(load: float) -> None:
    # No prefix to exploit: the gateway's prefill view must keep default level with round robin
    # (before prefill-load-scorer it was 1.5x round robin's p90 here).
    rr, smart = run("round-robin", "sharegpt", load), run("default", "sharegpt", load)
    assert smart.ttft(0.9) <= 1.15 * rr.ttft(0.9)
    assert smart.output_tokens_per_second >= 0.97 * rr.output_tokens_per_second


def test_default_keeps_lora_adapters_where_they_are_loaded() -> None:
    rr, smart = run("round-robin", "lora", 0.8), run("default", "lora", 0.8)
    assert smart.ttft(0.9) <= 0.2 * rr.ttft(0.9)
