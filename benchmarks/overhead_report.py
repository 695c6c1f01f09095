"""Summaries and report of the overhead benchmark (``overhead.py``).

Takes the runs ``overhead.py`` measured, reduces them to medians of rounds and paired "added"
numbers, states the verdicts on issue 2's floors and the caveats a reader needs, and prints the
tables, writes the raw JSON and the "Gateway overhead (issue 2)" section of the results page.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import machine

if TYPE_CHECKING:
    # Types only: overhead.py imports this module, and runs as ``__main__``.
    from overhead import LatencyRun, Results, Settings, ThroughputRun

SECTION_HEADING = "## Gateway overhead (issue 2)"
# The floors for inferlane.
ADDED_P50_MAX_MS = 1.0
ADDED_P99_MAX_MS = 5.0
LITELLM_RATIO_MIN = 3.0
ADDED_TTFB_P50_MAX_MS = 1.0
console = machine.console


# --- summaries -----------------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    clean = [value for value in values if not math.isnan(value)]
    return statistics.median(clean) if clean else float("nan")


def _paired(runs: Sequence[LatencyRun], name: str, metric: Callable[[LatencyRun], float]) -> float:
    """Median over rounds of ``metric(target) - metric(direct)`` within the same round."""
    direct = {run.round: metric(run) for run in runs if run.target == "direct"}
    return _median(
        [
            metric(run) - direct[run.round]
            for run in runs
            if run.target == name and run.round in direct
        ]
    )


@dataclass(frozen=True, slots=True)
class LatencySummary:
    target: str
    p50: float
    p90: float
    p99: float
    added_p50: float
    added_p90: float
    added_p99: float
    ttfb_p50: float
    added_ttfb_p50: float
    achieved_rps: float
    sent: int
    errors: int
    send_lag_p99: float
    proxy_cpu: float | None


def summarize_latency(runs: Sequence[LatencyRun], name: str) -> LatencySummary:
    mine = [run for run in runs if run.target == name]
    cpu = [run.proxy_cpu for run in mine if run.proxy_cpu is not None]
    return LatencySummary(
        target=name,
        p50=_median([run.p50 for run in mine]),
        p90=_median([run.p90 for run in mine]),
        p99=_median([run.p99 for run in mine]),
        added_p50=_paired(runs, name, lambda run: run.p50),
        added_p90=_paired(runs, name, lambda run: run.p90),
        added_p99=_paired(runs, name, lambda run: run.p99),
        ttfb_p50=_median([run.ttfb_p50 for run in mine]),
        added_ttfb_p50=_paired(runs, name, lambda run: run.ttfb_p50),
        achieved_rps=_median([run.achieved_rps for run in mine]),
        sent=sum(run.sent for run in mine),
        errors=sum(sum(run.errors.values()) for run in mine),
        send_lag_p99=max((run.send_lag_p99 for run in mine), default=float("nan")),
        proxy_cpu=_median(cpu) if cpu else None,
    )


@dataclass(frozen=True, slots=True)
class ThroughputSummary:
    target: str
    rps: float
    rps_min: float
    rps_max: float
    errors: int
    tool: str
    proxy_cpu: float | None
    upstream_cpu: float
    client_cpu: float


def summarize_throughput(runs: Sequence[ThroughputRun], name: str) -> ThroughputSummary:
    mine = [run for run in runs if run.target == name]
    cpu = [run.proxy_cpu for run in mine if run.proxy_cpu is not None]
    return ThroughputSummary(
        target=name,
        rps=_median([run.rps for run in mine]),
        rps_min=min(run.rps for run in mine),
        rps_max=max(run.rps for run in mine),
        errors=sum(run.errors for run in mine),
        tool=mine[0].tool if mine else "",
        proxy_cpu=_median(cpu) if cpu else None,
        upstream_cpu=_median([run.upstream_cpu for run in mine]),
        client_cpu=_median([run.client_cpu for run in mine]),
    )


def throughput_ratio(runs: Sequence[ThroughputRun], numerator: str, denominator: str) -> float:
    """Median over rounds of the per-round ratio of requests/s."""
    by_round = {(run.target, run.round): run.rps for run in runs}
    ratios = [
        by_round[(numerator, r)] / by_round[(denominator, r)]
        for (target, r) in by_round
        if target == numerator and by_round.get((denominator, r))
    ]
    return _median(ratios)


@dataclass(frozen=True, slots=True)
class Summary:
    latency: list[LatencySummary]
    throughput: list[ThroughputSummary]
    streaming: list[LatencySummary]
    ratios: dict[str, float]


def summarize(results: Results, names: Sequence[str]) -> Summary:
    ratios: dict[str, float] = {}
    for numerator, denominator in (
        ("inferlane", "litellm"),
        ("inferlane", "envoy"),
        ("envoy", "litellm"),
    ):
        if numerator in names and denominator in names:
            ratios[f"{numerator}/{denominator}"] = throughput_ratio(
                results.throughput, numerator, denominator
            )
    return Summary(
        latency=[summarize_latency(results.latency, name) for name in names],
        throughput=[summarize_throughput(results.throughput, name) for name in names],
        streaming=[summarize_latency(results.streaming, name) for name in names],
        ratios=ratios,
    )


# --- verdicts on the targets ------------------------------------------------------------


def verdicts(summary: Summary, names: Sequence[str], skipped: dict[str, str]) -> list[str]:
    """Plain statements of each floor for inferlane: met, missed (with numbers) or not measured,
    each with Envoy's figure beside it, the plain-proxy bar on the same machine."""
    if "inferlane" not in names:
        reason = skipped.get("inferlane", "not selected")
        return [f"inferlane was not measured: {reason}. No floor of issue 2 could be checked."]
    latency = _by_target(summary.latency)
    streaming = _by_target(summary.streaming)
    envoy_latency = latency.get("envoy")
    envoy_streaming = streaming.get("envoy")
    lines = [
        _floor(
            "added latency p50",
            latency["inferlane"].added_p50,
            ADDED_P50_MAX_MS,
            "ms",
            None if envoy_latency is None else envoy_latency.added_p50,
        ),
        _floor(
            "added latency p99",
            latency["inferlane"].added_p99,
            ADDED_P99_MAX_MS,
            "ms",
            None if envoy_latency is None else envoy_latency.added_p99,
        ),
        _floor(
            "added TTFB p50 (streaming)",
            streaming["inferlane"].added_ttfb_p50,
            ADDED_TTFB_P50_MAX_MS,
            "ms",
            None if envoy_streaming is None else envoy_streaming.added_ttfb_p50,
        ),
    ]
    if "inferlane/litellm" in summary.ratios:
        ratio = summary.ratios["inferlane/litellm"]
        verdict = "met" if ratio >= LITELLM_RATIO_MIN else "MISSED"
        lines.append(
            f"Throughput vs LiteLLM: {ratio:.2f}x (target >= {LITELLM_RATIO_MIN:g}x) -- {verdict}"
            + (
                f"; vs Envoy {summary.ratios['inferlane/envoy']:.2f}x."
                if "inferlane/envoy" in summary.ratios
                else "."
            )
        )
    failed = latency["inferlane"].errors + streaming["inferlane"].errors
    if failed:
        lines.append(f"inferlane failed {failed} requests in the latency and streaming runs.")
    return lines


def _floor(what: str, value: float, limit: float, unit: str, envoy: float | None) -> str:
    verdict = "met" if value <= limit else "MISSED"
    bar = "" if envoy is None else f"; Envoy adds {envoy:+.3f} {unit} here"
    target = f"target <= {limit:g} {unit}"
    return f"{what[0].upper()}{what[1:]}: {value:+.3f} {unit} ({target}) -- {verdict}{bar}."


def _by_target(rows: Sequence[Any]) -> dict[str, Any]:
    return {row.target: row for row in rows}


def caveats(summary: Summary, settings: Settings) -> list[str]:
    """Facts a reader needs to trust or distrust the numbers, derived from the measurements."""
    notes: list[str] = []
    for phase, rows, rate in (
        ("non-streaming", summary.latency, settings.rate),
        ("streaming", summary.streaming, settings.stream_rate),
    ):
        for row in rows:
            if row.target != "direct" and row.achieved_rps < 0.95 * rate:
                notes.append(
                    f"{row.target} could not keep up with {rate:g} {phase} requests/s (it "
                    f"completed {row.achieved_rps:.0f}/s): its {phase} row measures queueing, "
                    "not proxy overhead."
                )
    lateness = ", ".join(f"{row.target} {row.send_lag_p99:.2f} ms" for row in summary.latency)
    notes.append(
        "Load generator: worst per-run p99 lateness of a send against its schedule, by target: "
        f"{lateness} (asyncio timers have ~1 ms resolution, and a saturated target makes the "
        "generator open hundreds of connections); latency is timed from the actual write, so "
        "lateness shifts arrivals but is not counted as latency."
    )
    for throughput in summary.throughput:
        if throughput.target == "direct":
            notes.append(
                f"Throughput without a proxy: {throughput.rps:,.0f} req/s, with "
                f"{throughput.tool} at {throughput.client_cpu:.0%} and the upstream at "
                f"{throughput.upstream_cpu:.0%} of a CPU: the most the load side delivers; "
                "a proxy row far below it measures the proxy."
            )
    busy = [row for row in summary.throughput if row.proxy_cpu is not None]
    if busy:
        notes.append(
            "Proxy CPU during the throughput runs (1.0 = one core): "
            + ", ".join(f"{row.target} {row.proxy_cpu:.2f}" for row in busy)
            + "; a proxy near 1.0 was the bottleneck, not the load side."
        )
    return notes


# --- output --------------------------------------------------------------------------------------


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def _added(value: float, name: str) -> str:
    return "--" if name == "direct" else ("n/a" if math.isnan(value) else f"{value:+.3f}")


def latency_rows(rows: Sequence[LatencySummary], streaming: bool) -> list[list[str]]:
    out = []
    for row in rows:
        if streaming:
            out.append(
                [
                    row.target,
                    _ms(row.ttfb_p50),
                    _added(row.added_ttfb_p50, row.target),
                    _ms(row.p50),
                    f"{row.errors}/{row.sent}",
                ]
            )
        else:
            out.append(
                [
                    row.target,
                    _ms(row.p50),
                    _ms(row.p90),
                    _ms(row.p99),
                    _added(row.added_p50, row.target),
                    _added(row.added_p90, row.target),
                    _added(row.added_p99, row.target),
                    f"{row.achieved_rps:.0f}",
                    f"{row.errors}/{row.sent}",
                ]
            )
    return out


LATENCY_HEAD = [
    "target",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "added p50",
    "added p90",
    "added p99",
    "completed/s",
    "errors/sent",
]
STREAM_HEAD = ["target", "TTFB p50 ms", "added TTFB p50", "full stream p50 ms", "errors/sent"]
THROUGHPUT_HEAD = ["target", "req/s (median)", "min-max of rounds", "proxy CPU", "errors"]


def throughput_rows(rows: Sequence[ThroughputSummary]) -> list[list[str]]:
    return [
        [
            row.target,
            f"{row.rps:,.0f}",
            f"{row.rps_min:,.0f}-{row.rps_max:,.0f}",
            "--" if row.proxy_cpu is None else f"{row.proxy_cpu:.2f}",
            str(row.errors),
        ]
        for row in rows
    ]


# --- Markdown and raw results -------------------------------------------------------------------


def markdown_section(
    env: machine.Environment,
    settings: Settings,
    summary: Summary,
    names: Sequence[str],
    skipped: dict[str, str],
    notes: Sequence[str],
    verdict_lines: Sequence[str],
) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in env.versions.items())
    ratios = "; ".join(f"{key} = {value:.2f}x" for key, value in summary.ratios.items()) or "n/a"
    parts = [
        SECTION_HEADING,
        "",
        "Generated by `benchmarks/overhead.py` (see `benchmarks/README.md`); numbers are not "
        "edited by hand.",
        "",
        f"- Command: `{env.command}`",
        f"- Date: {env.date} (start; the run took {env.duration})",
        f"- Machine: {env.cpu_model}, {env.cpus} CPUs, {env.memory} RAM, Linux {env.kernel}, "
        f"Python {env.python}",
        f"- Versions: {versions}",
        f"- CPU placement: {env.layout}",
        f"- Targets: {', '.join(names)}"
        + "".join(f"; {name} skipped ({reason})" for name, reason in skipped.items()),
        f"- Rounds: {settings.rounds} (latency, throughput), {settings.stream_rounds} "
        "(streaming), targets' order rotated each round; every number is the median over "
        "rounds, and every *added* number is the median over rounds of (target - direct) "
        "within the same round.",
        "",
        f"### Latency, non-streaming, open loop at {settings.rate:g} requests/s "
        f"({settings.latency_s:g} s per run)",
        "",
        machine.markdown_table(LATENCY_HEAD, latency_rows(summary.latency, streaming=False)),
        "",
        f"### Throughput, one worker, closed loop with {settings.connections} connections "
        f"({settings.throughput_s:g} s per run, {summary.throughput[0].tool})",
        "",
        machine.markdown_table(THROUGHPUT_HEAD, throughput_rows(summary.throughput)),
        "",
        f"Ratios (median of per-round ratios): {ratios}.",
        "",
        f"### Streaming, time to first body byte, open loop at {settings.stream_rate:g} "
        f"requests/s ({settings.stream_s:g} s per run; 8 SSE chunks 2 ms apart)",
        "",
        machine.markdown_table(STREAM_HEAD, latency_rows(summary.streaming, streaming=True)),
        "",
        "### Against the issue's targets",
        "",
        *[f"- {line}" for line in verdict_lines],
        "",
        "### Notes",
        "",
        *[f"- {line}" for line in notes],
        "",
    ]
    return "\n".join(parts)


def save_raw(
    run_dir: Path,
    env: machine.Environment,
    settings: Settings,
    results: Results,
    summary: Summary,
    skipped: dict[str, str],
) -> Path:
    path = run_dir / "results.json"
    payload = {
        "environment": asdict(env),
        "settings": asdict(settings),
        "skipped": skipped,
        "summary": asdict(summary),
        "runs": asdict(results),
    }
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def report(
    env: machine.Environment,
    settings: Settings,
    summary: Summary,
    names: Sequence[str],
    skipped: dict[str, str],
    incidents: Sequence[str],
    out: Path | None,
) -> None:
    machine.print_table(
        f"Latency at {settings.rate:g} req/s, open loop (ms; medians of rounds)",
        LATENCY_HEAD,
        latency_rows(summary.latency, streaming=False),
    )
    machine.print_table(
        f"Throughput, closed loop, {settings.connections} connections",
        THROUGHPUT_HEAD,
        throughput_rows(summary.throughput),
    )
    console.print(
        "Ratios: " + ("; ".join(f"{k} = {v:.2f}x" for k, v in summary.ratios.items()) or "n/a")
    )
    machine.print_table(
        f"Streaming TTFB at {settings.stream_rate:g} req/s (ms)",
        STREAM_HEAD,
        latency_rows(summary.streaming, streaming=True),
    )
    verdict_lines = verdicts(summary, names, skipped)
    notes = [*incidents, *caveats(summary, settings)]
    for line in [*verdict_lines, *notes]:
        console.print(f"- {line}")
    if out is not None:
        section = markdown_section(env, settings, summary, names, skipped, notes, verdict_lines)
        machine.write_markdown(out, SECTION_HEADING, section, env)
        console.print(f"wrote the '{SECTION_HEADING[3:]}' section of {out}")
