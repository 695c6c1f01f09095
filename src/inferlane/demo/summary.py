"""Render the demo's results as a few readable tables (rich)."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from inferlane.demo.workload import Result


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def _ms(values: Sequence[float], q: float) -> str:
    return f"{percentile(values, q) * 1000:.0f}" if values else "-"


def render(results: Sequence[Result], duration: float, console: Console) -> None:
    ok = [r for r in results if r.status == 200]
    failed = [r for r in results if r.status != 200]
    rate = len(results) / duration if duration > 0 else 0.0
    console.print(
        f"\n[bold]inferlane demo[/bold]: {len(results)} requests in {duration:.1f}s "
        f"({rate:.1f}/s), {len(ok)} ok, {len(failed)} failed"
    )

    by_kind: dict[tuple[str, str], list[Result]] = defaultdict(list)
    for result in results:
        by_kind[(result.model, result.kind)].append(result)
    table = Table(title="Requests by model (latencies in ms)")
    for column in ("model", "kind", "requests", "errors", "TTFT p50", "TTFT p90", "TTFT p99",
                   "latency p50", "latency p99", "tokens out"):
        table.add_column(column, justify="left" if column in ("model", "kind") else "right")
    for (model, kind), group in sorted(by_kind.items()):
        good = [r for r in group if r.status == 200]
        ttfts = [r.ttft for r in good if r.ttft is not None]
        latencies = [r.latency for r in good]
        table.add_row(
            model, kind, str(len(group)), str(len(group) - len(good)),
            _ms(ttfts, 50), _ms(ttfts, 90), _ms(ttfts, 99),
            _ms(latencies, 50), _ms(latencies, 99), str(sum(r.output_tokens for r in good)),
        )
    console.print(table)

    endpoints = Counter(r.endpoint for r in ok)
    table = Table(title="Which endpoint answered")
    table.add_column("endpoint")
    table.add_column("requests", justify="right")
    table.add_column("share", justify="right")
    for endpoint, count in sorted(endpoints.items()):
        table.add_row(endpoint, str(count), f"{count / max(1, len(ok)):.0%}")
    console.print(table)

    canary = [r for r in ok if r.model.endswith("-canary")]
    if canary:
        served = Counter(r.served_model for r in canary)
        split = ", ".join(f"{model} {n / len(canary):.0%}" for model, n in served.most_common())
        console.print(f"Canary rewrite of [bold]{canary[0].model}[/bold]: {split} "
                      f"(configured 90/10 by InferenceModelRewrite)")
    if ok:
        mean = statistics.fmean(r.latency for r in ok) * 1000
        console.print(f"Mean latency {mean:.0f} ms over {len(ok)} successful requests.")
    for result in failed[:5]:
        console.print(f"[red]failed[/red] {result.model} {result.kind}: status {result.status} "
                      f"{result.error}")
