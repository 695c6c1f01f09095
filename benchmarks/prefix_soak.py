"""Does the prefix index stay bounded over a long run? (issue 3: "no growth over 10 minutes")

    python benchmarks/prefix_soak.py [--minutes 10] [--out docs/benchmarks.md]

Replays a shared-prefix workload with many more tenants than the fleet's caches hold (so every
endpoint's index keeps filling and rotating) through the default profile for ``--minutes`` of
simulated time (``inferlane.bench.replay``: the real Scheduler, EndpointStore and simulated
engines, no sockets), and every simulated minute records the index's stored block hashes per
endpoint and the Python heap the scheduler and store hold (tracemalloc). Bounded means: entries
stop at the configured capacity (the servers' reported ``num_gpu_blocks``) and the heap stops
growing after the first minutes.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine
from inferlane.bench.replay import ReplayOptions, replay
from inferlane.bench.runner import ENGINE, MODEL
from inferlane.bench.workloads import arrivals, shared_prefix
from inferlane.scheduling.framework import Scheduler, StatesFn
from inferlane.scheduling.plugins.scorer.prefix_cache import PrefixCacheScorer
from inferlane.scheduling.registry import builtin_profile

HEADING = "## Prefix-index memory over a long run (issue 3)"
RATE = 24.0  # requests per simulated second (~85 % of the fleet's shared-prefix capacity)
TENANTS = 400  # x ~2,500 tokens each: far more than 8 caches of 2,048 blocks hold


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    started = time.time()
    duration = args.minutes * 60.0
    times = arrivals(random.Random(3), RATE, duration)
    planned = shared_prefix(times, 3, "soak", MODEL, tenants=TENANTS)
    holder: list[Scheduler] = []

    def scheduler(states: StatesFn) -> Scheduler:
        holder.append(Scheduler(builtin_profile("default", {"seed": 3}), states))
        return holder[0]

    rows: list[list[str]] = []
    tracemalloc.start()
    baseline = tracemalloc.take_snapshot()

    def observe(now: float) -> None:
        prefix = next(ws.scorer for ws in holder[0].profile.scorers
                      if isinstance(ws.scorer, PrefixCacheScorer))
        index = prefix.prefix_index
        sizes = [index.size(endpoint) for endpoint in index.endpoints()]
        heap = sum(stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(
            baseline, "filename") if "inferlane/scheduling" in str(stat.traceback))
        rows.append([f"{now / 60:.0f}", str(sum(sizes)), str(max(sizes, default=0)),
                     f"{heap / 2**20:.1f}"])
        machine.console.print(f"minute {now / 60:4.0f}: {sum(sizes):7d} block hashes "
                              f"(largest endpoint {max(sizes, default=0)}), scheduling heap "
                              f"{heap / 2**20:.1f} MiB")

    result = replay(planned, scheduler, ReplayOptions(engine=ENGINE, observe=observe,
                                                      observe_every=60.0))
    tracemalloc.stop()
    head = ["simulated minute", "block hashes (all endpoints)", "largest endpoint",
            "scheduling heap MiB"]
    capacity = ENGINE.num_gpu_blocks
    table = machine.markdown_table(head, rows)
    machine.console.print(table)
    sizes = [int(r[1]) for r in rows]
    heaps = [float(r[3]) for r in rows]
    later = sizes[len(sizes) // 2:]
    verdict = ("**bounded**" if sizes and max(int(r[2]) for r in rows) <= 2 * capacity
               and max(later) <= max(sizes[: len(sizes) // 2] or [0]) * 1.05 + 1 else
               "**growing**")
    text = "\n".join([
        HEADING, "",
        f"Command: `python benchmarks/prefix_soak.py --minutes {args.minutes:g}` "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}, took "
        f"{time.time() - started:.0f} s of wall time).", "",
        f"{args.minutes:g} simulated minutes of shared-prefix chat ({TENANTS} tenants with "
        f"1-4k-token system prompts, {RATE:g} requests/s, {len(planned)} requests) through the "
        "default profile on the benchmark's 8-replica fleet, replayed in simulated time "
        "(`inferlane.bench.replay`: the real Scheduler, EndpointStore and simulated engines). "
        f"Each endpoint's index holds at most its server's `num_gpu_blocks` ({capacity}) per "
        "generation, two generations; the heap column is what tracemalloc attributes to "
        "`inferlane/scheduling` since the start.", "",
        table, "",
        f"Verdict: {verdict} — entries plateau at {max(sizes, default=0)} hashes for 8 "
        f"endpoints (cap {2 * capacity} each), heap {min(heaps, default=0):.1f}-"
        f"{max(heaps, default=0):.1f} MiB; prefix-cache hit rate "
        f"{result.prefix_hit_rate:.0%}.", ""])
    if args.out is not None:
        env = machine.environment("benchmarks/prefix_soak.py", sys.argv[1:],
                                  machine.cpu_layout(False),
                                  {"inferlane": machine.inferlane_version()})
        machine.write_markdown(args.out, HEADING, text, env)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
