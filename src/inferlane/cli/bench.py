"""``inferlane bench``: which load-balancing mode serves this workload best? (a table, no setup)

Runs each mode against a fresh simulated fleet with the same seeded Poisson workload and prints
TTFT, end-to-end latency, output tokens/s and the fleet's prefix-cache hit rate side by side.
For the rigorous comparison with peer routers, see ``benchmarks/routing.py``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from inferlane.bench.runner import ModeResult, run_mode
from inferlane.bench.workloads import WORKLOADS
from inferlane.cli.runtime import run as run_async
from inferlane.demo.summary import percentile
from inferlane.scheduling.registry import BUILTIN_PROFILES

DEFAULT_MODES = "round-robin,least-request,default,predicted-latency"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workload", choices=WORKLOADS, default="shared-prefix",
                        help="request mix (default: shared-prefix: many tenants with long "
                             "shared system prompts, multi-turn)")
    parser.add_argument("--modes", default=DEFAULT_MODES,
                        help=f"comma-separated load-balancing modes (default: {DEFAULT_MODES})")
    parser.add_argument("--replicas", type=int, default=8, help="simulated replicas (default 8)")
    parser.add_argument("--rate", type=float, default=19.0,
                        help="requests per second, Poisson (default 19: about 80%% of what 8 "
                             "replicas serve on shared-prefix under round robin)")
    parser.add_argument("--duration", type=float, default=30.0,
                        help="seconds of arrivals per mode (default 30)")
    parser.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    unknown = [mode for mode in modes if mode not in BUILTIN_PROFILES]
    if unknown or not modes:
        known = ", ".join(sorted(BUILTIN_PROFILES))
        print(f"inferlane bench: unknown mode(s) {', '.join(unknown) or '(none)'}; known: {known}")
        return 2
    if args.replicas < 1 or args.rate <= 0 or args.duration <= 0:
        print("inferlane bench: --replicas, --rate and --duration must be positive")
        return 2
    return run_async(_bench(args, modes))


async def _bench(args: argparse.Namespace, modes: Sequence[str]) -> int:
    console = Console()
    console.print(f"[bold]inferlane bench[/bold]: {args.workload} workload, {args.replicas} "
                  f"simulated replicas, {args.rate:g} req/s for {args.duration:g}s per mode")
    results: list[ModeResult] = []
    columns = (TextColumn("{task.description:>18}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        for mode in modes:
            task = progress.add_task(mode, total=None)

            def advance(count: int, task_id: TaskID = task) -> None:
                progress.advance(task_id, count)

            result = await run_mode(mode, workload=args.workload, replicas=args.replicas,
                                    rate=args.rate, duration=args.duration, seed=args.seed,
                                    progress=advance)
            progress.update(task, total=result.sent, completed=len(result.outcomes))
            results.append(result)
    console.print(_table(results))
    return 0 if all(o.ok for r in results for o in r.outcomes) else 1


def _ms(values: Sequence[float], q: float) -> str:
    return f"{percentile(values, q) * 1000:.0f}" if values else "-"


def _table(results: Sequence[ModeResult]) -> Table:
    table = Table(title="Latencies in ms (streamed chat completions)")
    for column in ("mode", "requests", "errors", "TTFT p50", "TTFT p90", "TTFT p99",
                   "e2e p50", "e2e p99", "out tok/s", "prefix hits"):
        table.add_column(column, justify="left" if column == "mode" else "right")
    for result in results:
        ok = [o for o in result.outcomes if o.ok]
        ttfts = [o.ttft for o in ok if o.ttft is not None]
        latencies = [o.latency for o in ok]
        tokens = sum(o.output_tokens for o in ok)
        rate = tokens / result.seconds if result.seconds > 0 else 0.0
        table.add_row(result.mode, str(result.sent), str(result.sent - len(ok)),
                      _ms(ttfts, 50), _ms(ttfts, 90), _ms(ttfts, 99),
                      _ms(latencies, 50), _ms(latencies, 99), f"{rate:.0f}",
                      f"{result.prefix_hit_rate:.0%}")
    return table
