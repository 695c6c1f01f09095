"""Gateway-added latency and throughput: inferlane, LiteLLM proxy and Envoy side by side (issue 2).

    python benchmarks/overhead.py [--quick] [--out docs/benchmarks.md]

One run starts a fast upstream (``fast_upstream.py``) and, in front of it, each target: inferlane
(when ``inferlane serve`` works here), LiteLLM proxy (one worker) and Envoy (one worker thread),
plus ``direct`` (no proxy, the baseline). It then measures, in several short rounds with the
targets' order rotated every round (the machine is small and noisy, so numbers are medians of
rounds and every "added" number is paired with the direct run of the same round):

1. latency -- open loop at a fixed arrival rate (default 200 requests/s), non-streaming;
   p50/p90/p99 and the added latency ``target - direct`` per percentile;
2. throughput -- closed loop with a fixed number of connections (wrk when installed), requests/s,
   and the ratios inferlane/LiteLLM and inferlane/Envoy;
3. streaming -- open loop at a moderate rate, time to the first response-body byte (TTFB).

It prints tables, writes raw results and process logs under ``benchmarks/results/``, and with
``--out`` replaces the "Gateway overhead (issue 2)" section of that Markdown file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import importlib.metadata
import json
import math
import os
import platform
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import orjson
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

# benchmarks/ is a folder of scripts, not a package.
import loadgen
import peers

RESULTS_DIR = peers.BENCH_DIR / "results"
SECTION_HEADING = "## Gateway overhead (issue 2)"
TARGET_ORDER = ("direct", "inferlane", "litellm", "envoy")
PEER_TARGETS = ("litellm", "envoy")
CHAT = {"model": peers.MODEL, "messages": [{"role": "user", "content": "Say hello."}]}
BODY = orjson.dumps({**CHAT, "max_tokens": 16})
STREAM_BODY = orjson.dumps({**CHAT, "max_tokens": 16, "stream": True})
# The floors for inferlane.
ADDED_P50_MAX_MS = 1.0
ADDED_P99_MAX_MS = 5.0
LITELLM_RATIO_MIN = 3.0
ADDED_TTFB_P50_MAX_MS = 1.0
# A run during which processes not started here used more CPU than this is repeated.
BUSY_BACKGROUND_CPU = 0.2
# Before a run, wait until the whole machine uses less than this.
QUIET_CPU = 0.1
# Wide enough for the tables when the output is a file or a pipe.
console = Console(width=None if sys.stdout.isatty() else 140)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Settings:
    rounds: int = 5
    rate: float = 200.0
    latency_s: float = 5.0
    connections: int = 64
    throughput_s: float = 4.0
    stream_rounds: int = 3
    stream_rate: float = 25.0
    stream_s: float = 4.0
    warmup_s: float = 1.0
    timeout_s: float = 10.0
    noisy_retries: int = 1


QUICK = Settings(
    rounds=2, latency_s=2.0, throughput_s=2.0, stream_rounds=1, stream_s=2.0, warmup_s=0.5
)


@dataclass(frozen=True, slots=True)
class CpuLayout:
    """Which CPUs the load side (client + upstream) and the proxy under test may use."""

    client: tuple[int, ...]
    proxy: tuple[int, ...]

    def describe(self) -> str:
        if not self.client:
            return "no pinning (all processes free to use all CPUs)"
        return (
            f"load generator, wrk and upstream pinned to CPU {_cpus(self.client)}; "
            f"the proxy under test (and the idle ones) to CPU {_cpus(self.proxy)} with taskset"
        )


def _cpus(cpus: Sequence[int]) -> str:
    return ",".join(map(str, cpus))


# --- results -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LatencyRun:
    """One open-loop run of one target in one round; times in milliseconds."""

    target: str
    round: int
    sent: int
    ok: int
    p50: float
    p90: float
    p99: float
    ttfb_p50: float
    achieved_rps: float
    send_lag_p99: float
    peak_connections: int
    proxy_cpu: float | None
    client_cpu: float
    errors: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ThroughputRun:
    target: str
    round: int
    tool: str
    connections: int
    rps: float
    errors: int
    error_detail: str
    proxy_cpu: float | None
    upstream_cpu: float
    client_cpu: float


@dataclass(slots=True)
class Results:
    latency: list[LatencyRun] = field(default_factory=list)
    throughput: list[ThroughputRun] = field(default_factory=list)
    streaming: list[LatencyRun] = field(default_factory=list)
    # CPU used by processes this benchmark did not start, per run: "phase target round" -> CPUs.
    background: dict[str, float] = field(default_factory=dict)
    # Runs repeated because of background load: "phase target round" -> discarded attempts.
    repeated: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunContext:
    """Everything a measurement needs to know about the started targets."""

    targets: dict[str, loadgen.HttpTarget]
    launches: dict[str, peers.Launch]
    upstream: peers.Launch
    layout: CpuLayout
    settings: Settings


# --- CPU accounting ------------------------------------------------------------------------------


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (all its threads) from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def cpu_meter(pids: Sequence[int | None]) -> Iterator[list[float | None]]:
    """Yield a list that, on exit, holds each pid's CPU use as a fraction of one core, then
    this process's and its waited-for children's (wrk) use last."""
    own_start = _own_cpu_seconds()
    starts = [process_cpu_seconds(pid) if pid else None for pid in pids]
    wall_start = time.perf_counter()
    shares: list[float | None] = []
    yield shares
    wall = max(time.perf_counter() - wall_start, 1e-9)
    for pid, start in zip(pids, starts, strict=True):
        shares.append(
            None if pid is None or start is None else (process_cpu_seconds(pid) - start) / wall
        )
    shares.append((_own_cpu_seconds() - own_start) / wall)


def _own_cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclass(frozen=True, slots=True)
class MachineSnapshot:
    """Machine-wide busy and stolen CPU seconds, and the CPU seconds of this benchmark's
    processes, at one instant: two of them tell how much else was running."""

    at: float
    busy_s: float
    steal_s: float
    ours_s: float


def machine_snapshot(pids: Sequence[int]) -> MachineSnapshot:
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # irq/softirq time is left out: loopback traffic of our own sockets is accounted there.
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = (fields + [0] * 8)[:8]
    tick = os.sysconf("SC_CLK_TCK")
    ours = _own_cpu_seconds() + sum(
        seconds for seconds in map(process_cpu_seconds, pids) if not math.isnan(seconds)
    )
    return MachineSnapshot(
        time.monotonic(), (user + nice + system) / tick, steal / tick, ours
    )


def background_cpu(start: MachineSnapshot, end: MachineSnapshot) -> float:
    """CPUs used between two snapshots by processes this benchmark did not start."""
    wall = max(end.at - start.at, 1e-9)
    return max(0.0, (end.busy_s - start.busy_s) - (end.ours_s - start.ours_s)) / wall


def background_note(
    start: MachineSnapshot,
    end: MachineSnapshot,
    per_run: dict[str, float],
    repeated: dict[str, int],
) -> str:
    steal = (end.steal_s - start.steal_s) / max(end.at - start.at, 1e-9)
    busy = sorted((cpu, run) for run, cpu in per_run.items() if cpu > BUSY_BACKGROUND_CPU)
    worst = ", ".join(f"{run} ({cpu:.2f})" for cpu, run in reversed(busy[-5:]))
    text = (
        f"Background: processes not started by this benchmark used "
        f"{background_cpu(start, end):.2f} CPU on average during the measurements and the "
        f"hypervisor stole {steal:.2f} CPU (1.0 = one core). {len(busy)} of {len(per_run)} kept "
        f"runs had more than {BUSY_BACKGROUND_CPU:g} CPU of background load"
        + (f", the worst: {worst}." if busy else ".")
    )
    if repeated:
        text += (
            f" {len(repeated)} runs were repeated ({sum(repeated.values())} attempts discarded) "
            "because of such load; of a run's attempts, the one with the least background load "
            "was kept."
        )
    return text


# --- measurements --------------------------------------------------------------------------------


def run_async(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a project dependency on Linux
        return asyncio.run(factory())
    result: T = uvloop.run(factory())
    return result


def rotated(names: Sequence[str], round_index: int) -> list[str]:
    """Each round starts with a different target, so no target always runs first or last."""
    shift = round_index % len(names)
    return [*names[shift:], *names[:shift]]


def _proxy_pid(context: RunContext, name: str) -> int | None:
    return None if name == "direct" else context.launches[name].process.pid


def summarize_open_loop(
    name: str, round_index: int, result: loadgen.OpenLoopResult, shares: list[float | None]
) -> LatencyRun:
    ok = [sample for sample in result.samples if sample.ok]
    latency = sorted(sample.latency_ns / 1e6 for sample in ok)
    ttfb = sorted(sample.ttfb_ns / 1e6 for sample in ok)
    lag = sorted(max(0, sample.send_lag_ns) / 1e6 for sample in result.samples)
    errors: dict[str, int] = {}
    for sample in result.samples:
        if not sample.ok:
            key = sample.error or f"HTTP {sample.status}"
            errors[key] = errors.get(key, 0) + 1
    return LatencyRun(
        target=name,
        round=round_index,
        sent=len(result.samples),
        ok=len(ok),
        p50=loadgen.percentile(latency, 0.50),
        p90=loadgen.percentile(latency, 0.90),
        p99=loadgen.percentile(latency, 0.99),
        ttfb_p50=loadgen.percentile(ttfb, 0.50),
        achieved_rps=result.achieved_rps,
        send_lag_p99=loadgen.percentile(lag, 0.99),
        peak_connections=result.max_connections,
        proxy_cpu=shares[0],
        client_cpu=shares[-1] or 0.0,
        errors=errors,
    )


def measure_open_loop(
    context: RunContext, name: str, round_index: int, body: bytes, rate: float, seconds: float
) -> LatencyRun:
    target = context.targets[name]
    timeout_s = context.settings.timeout_s
    with cpu_meter([_proxy_pid(context, name)]) as shares:
        result = run_async(
            lambda: loadgen.open_loop(target, body, rate, seconds, timeout_s=timeout_s)
        )
    return summarize_open_loop(name, round_index, result, shares)


def measure_throughput(context: RunContext, name: str, round_index: int) -> ThroughputRun:
    settings = context.settings
    target = context.targets[name]
    pids = [_proxy_pid(context, name), context.upstream.process.pid]
    with cpu_meter(pids) as shares:
        if loadgen.wrk_path():
            result = loadgen.run_wrk(
                target,
                BODY,
                settings.connections,
                settings.throughput_s,
                cpus=context.layout.client,
            )
        else:
            result = run_async(
                lambda: loadgen.closed_loop(
                    target, BODY, settings.connections, settings.throughput_s
                )
            )
    return ThroughputRun(
        target=name,
        round=round_index,
        tool=result.tool,
        connections=settings.connections,
        rps=result.rps,
        errors=result.errors,
        error_detail=result.error_detail,
        proxy_cpu=shares[0],
        upstream_cpu=shares[1] or 0.0,
        client_cpu=shares[-1] or 0.0,
    )


def check_target(target: loadgen.HttpTarget, timeout_s: float) -> str | None:
    """Why ``target`` does not answer like an OpenAI server (None when it does)."""
    status, body = run_async(lambda: loadgen.fetch_once(target, BODY, timeout_s))
    if status != 200:
        return f"non-streaming answer HTTP {status}: {body[:200]!r}"
    try:
        content = orjson.loads(body)["choices"][0]["message"]["content"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return f"non-streaming answer is not a chat completion: {body[:200]!r}"
    if not content:
        return "non-streaming answer has empty content"
    status, body = run_async(lambda: loadgen.fetch_once(target, STREAM_BODY, timeout_s))
    if status != 200 or b"data:" not in body or b"[DONE]" not in body:
        return f"streaming answer HTTP {status} is not an SSE stream: {body[:200]!r}"
    return None


def warm_up(context: RunContext, names: Sequence[str]) -> None:
    """Both load shapes once per target, so lazy imports and connection pools are settled."""
    settings = context.settings
    warm = replace(settings, throughput_s=settings.warmup_s)
    for name in names:
        wait_quiet()
        run = measure_open_loop(context, name, -1, BODY, settings.rate, settings.warmup_s)
        wait_quiet()
        closed = measure_throughput(replace(context, settings=warm), name, -1)
        console.print(
            f"  warm-up {name}: open loop {run.ok}/{run.sent} ok, p50 {run.p50:.3f} ms; "
            f"closed loop {closed.rps:,.0f} req/s, errors {closed.errors}"
        )


def wait_quiet(limit_s: float = 5.0, window_s: float = 0.2) -> None:
    """Wait until the machine is idle, at most ``limit_s``: a proxy may still drain a backlog
    or flush logs after its run (the proxies share a CPU), and other work may be running."""
    deadline = time.monotonic() + limit_s
    busy = 0.0
    while time.monotonic() < deadline:
        start = machine_snapshot(())
        time.sleep(window_s)
        end = machine_snapshot(())
        busy = (end.busy_s - start.busy_s) / max(end.at - start.at, 1e-9)
        if busy < QUIET_CPU:
            return
    console.print(f"  [yellow]the machine is still using {busy:.2f} CPU after {limit_s:g} s[/]")


def measure_quietly(context: RunContext, measure: Callable[[], T]) -> tuple[T, float, int]:
    """Run ``measure`` on an idle machine; while processes this benchmark did not start use
    more than BUSY_BACKGROUND_CPU during it, run it again (up to ``noisy_retries`` times) and
    keep the attempt with the least background load. The criterion never looks at the result.
    Returns the kept run, its background load and how many attempts were discarded."""
    pids = [launch.process.pid for launch in context.launches.values()]
    attempts: list[tuple[float, int, T]] = []
    for attempt in range(context.settings.noisy_retries + 1):
        wait_quiet()
        before = machine_snapshot(pids)
        run = measure()
        load = background_cpu(before, machine_snapshot(pids))
        attempts.append((load, attempt, run))
        if load <= BUSY_BACKGROUND_CPU:
            break
        console.print(f"  [yellow]background load {load:.2f} CPU during the run[/]")
    load, _, run = min(attempts, key=lambda item: (item[0], item[1]))
    return run, load, len(attempts) - 1


def _progress(phase: str, round_index: int, rounds: int, text: str) -> None:
    console.print(f"  [{phase} {round_index + 1}/{rounds}] {text}")


def _run_line(run: LatencyRun) -> str:
    errors = f", errors {sum(run.errors.values())}" if run.errors else ""
    return (
        f"{run.target}: p50 {run.p50:.3f} p90 {run.p90:.3f} p99 {run.p99:.3f} ms, "
        f"TTFB p50 {run.ttfb_p50:.3f} ms, {run.ok}/{run.sent} ok, {run.achieved_rps:.0f} rps"
        f"{errors}"
    )


def _in_rounds(
    context: RunContext,
    names: Sequence[str],
    rounds: int,
    phase: str,
    measure: Callable[[str, int], T],
    describe: Callable[[T], str],
    background: dict[str, float],
    repeated: dict[str, int],
) -> list[T]:
    """Run ``measure(target, round)`` for every target in every round, order rotated; note
    each run's background CPU load in ``background`` and discarded noisy runs in ``repeated``."""
    runs: list[T] = []
    for round_index in range(rounds):
        for name in rotated(names, round_index):
            run, load, discarded = measure_quietly(
                context, functools.partial(measure, name, round_index)
            )
            key = f"{phase} {name} r{round_index + 1}"
            background[key] = load
            if discarded:
                repeated[key] = discarded
            runs.append(run)
            noisy = f" [yellow](background {load:.2f} CPU)[/]" if load > BUSY_BACKGROUND_CPU else ""
            _progress(phase, round_index, rounds, describe(run) + noisy)
    return runs


def _throughput_line(run: ThroughputRun) -> str:
    return f"{run.target}: {run.rps:,.0f} req/s ({run.tool}), errors {run.errors}"


def measure_all(context: RunContext, names: Sequence[str]) -> Results:
    settings = context.settings
    results = Results()
    console.rule(f"latency: open loop at {settings.rate:g} req/s, non-streaming")
    results.latency = _in_rounds(
        context,
        names,
        settings.rounds,
        "latency",
        lambda name, r: measure_open_loop(
            context, name, r, BODY, settings.rate, settings.latency_s
        ),
        _run_line,
        results.background,
        results.repeated,
    )
    console.rule(f"throughput: closed loop, {settings.connections} connections")
    results.throughput = _in_rounds(
        context,
        names,
        settings.rounds,
        "throughput",
        lambda name, r: measure_throughput(context, name, r),
        _throughput_line,
        results.background,
        results.repeated,
    )
    console.rule(f"streaming: open loop at {settings.stream_rate:g} req/s, time to first byte")
    results.streaming = _in_rounds(
        context,
        names,
        settings.stream_rounds,
        "streaming",
        lambda name, r: measure_open_loop(
            context, name, r, STREAM_BODY, settings.stream_rate, settings.stream_s
        ),
        _run_line,
        results.background,
        results.repeated,
    )
    return results


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


def print_table(title: str, head: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    table = Table(title=title)
    for index, column in enumerate(head):
        table.add_column(column, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def markdown_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(":---" if index == 0 else "---:" for index in range(len(head))) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Environment:
    command: str
    date: str
    cpu_model: str
    cpus: int
    memory: str
    kernel: str
    python: str
    versions: dict[str, str]
    layout: str
    duration: str = ""


def cpu_model() -> str:
    try:
        output = subprocess.run(
            ["lscpu"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return platform.processor() or "unknown"
    for line in output.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def memory_total() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    return "unknown"


def _git(*args: str) -> str:
    """Output of a read-only git command in this repository ('' when git cannot answer)."""
    try:
        completed = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=10,
            cwd=peers.BENCH_DIR.parent, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return completed.stdout.strip() if completed.returncode == 0 else ""


def inferlane_version() -> str:
    """Package version, commit, and whether the measured source differed from that commit."""
    try:
        version = importlib.metadata.version("inferlane")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
    commit = _git("rev-parse", "--short", "HEAD") or "no commit yet"
    changed = _git("status", "--porcelain", "--", "src")
    return f"{version} ({commit}{', with uncommitted changes in src/' if changed else ''})"


def environment(argv: Sequence[str], layout: CpuLayout, versions: dict[str, str]) -> Environment:
    return Environment(
        command=shlex.join(["python", "benchmarks/overhead.py", *argv]),
        date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        cpu_model=cpu_model(),
        cpus=os.cpu_count() or 0,
        memory=memory_total(),
        kernel=platform.release(),
        python=platform.python_version(),
        versions=versions,
        layout=layout.describe(),
    )


def markdown_section(
    env: Environment,
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
        markdown_table(LATENCY_HEAD, latency_rows(summary.latency, streaming=False)),
        "",
        f"### Throughput, one worker, closed loop with {settings.connections} connections "
        f"({settings.throughput_s:g} s per run, {summary.throughput[0].tool})",
        "",
        markdown_table(THROUGHPUT_HEAD, throughput_rows(summary.throughput)),
        "",
        f"Ratios (median of per-round ratios): {ratios}.",
        "",
        f"### Streaming, time to first body byte, open loop at {settings.stream_rate:g} "
        f"requests/s ({settings.stream_s:g} s per run; 8 SSE chunks 2 ms apart)",
        "",
        markdown_table(STREAM_HEAD, latency_rows(summary.streaming, streaming=True)),
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


def machine_notes(env: Environment) -> str:
    return (
        f"All numbers on this page come from one small shared virtual machine ({env.cpu_model}, "
        f"{env.cpus} CPUs, {env.memory} RAM): load generator, proxy and upstream share the same "
        "cores, and raw requests/s move by tens of percent between passes. Compare rows measured "
        "in the same run, which is why every benchmark runs its targets side by side in "
        "alternating rounds; do not compare numbers across runs or machines."
    )


def write_markdown(path: Path, section: str, env: Environment) -> None:
    """Replace (or append) our section of ``path``; create the file with its header if needed."""
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{machine_notes(env)}\n"
    start = text.find(SECTION_HEADING)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(SECTION_HEADING))
        tail = text[end + 1 :] if end >= 0 else ""
        text = text[:start] + section + ("\n" + tail if tail else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n")


# --- setup ---------------------------------------------------------------------------------------


def cpu_layout(pin: bool) -> CpuLayout:
    available = sorted(os.sched_getaffinity(0))
    if not pin or len(available) < 2 or shutil.which("taskset") is None:
        return CpuLayout((), ())
    return CpuLayout((available[0],), tuple(available[1:]))


def start_targets(
    wanted: Sequence[str], layout: CpuLayout, run_dir: Path, stack: contextlib.ExitStack
) -> tuple[peers.Launch, dict[str, peers.Launch], dict[str, str]]:
    """Start the upstream and the wanted proxies; return them and why any were skipped."""
    skipped: dict[str, str] = {}
    upstream = peers.start_fast_upstream(run_dir, layout.client)
    stack.callback(upstream.process.stop)
    launches: dict[str, peers.Launch] = {"direct": upstream}
    closed = peers.ClosedPort()
    stack.callback(closed.close)
    starters: dict[str, Callable[[], peers.Launch]] = {
        "litellm": lambda: peers.start_litellm(run_dir, upstream.port, layout.proxy, closed.port),
        "envoy": lambda: peers.start_envoy(run_dir, upstream.port, layout.proxy),
    }
    if "inferlane" in wanted:
        available, help_text = peers.inferlane_serve_help()
        if available:
            starters["inferlane"] = lambda: peers.start_inferlane(
                run_dir, upstream.port, layout.proxy, help_text
            )
        else:
            skipped["inferlane"] = help_text
    for name in wanted:
        if name not in starters:
            continue
        console.print(f"starting {name} ...")
        try:
            launch = starters[name]()
        except peers.PeerError as error:
            skipped[name] = str(error).splitlines()[0]
            console.print(f"[red]{name} did not start:[/red] {error}")
            continue
        stack.callback(launch.process.stop)
        launches[name] = launch
    return upstream, launches, skipped


def http_targets(launches: dict[str, peers.Launch]) -> dict[str, loadgen.HttpTarget]:
    # Every target gets the same headers (LiteLLM's key), so request sizes are equal.
    headers = (("Authorization", f"Bearer {peers.MASTER_KEY}"),)
    return {
        name: loadgen.HttpTarget(name, "127.0.0.1", launch.port, headers=headers)
        for name, launch in launches.items()
    }


def collect_versions(names: Sequence[str]) -> dict[str, str]:
    versions = {"inferlane": inferlane_version()}
    installed = peers.installed_peer_versions()
    if "litellm" in names:
        versions["litellm"] = installed.get("litellm", "unknown")
    if "envoy" in names:
        versions["envoy"] = peers.envoy_version()
    versions["wrk"] = loadgen.wrk_version()
    for package in ("uvloop", "orjson"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    return versions


# --- command line --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Gateway-added latency and throughput: inferlane vs LiteLLM vs Envoy."
    )
    parser.add_argument("--quick", action="store_true", help="short sanity pass (~1 minute)")
    parser.add_argument("--out", type=Path, help="Markdown file whose overhead section to replace")
    parser.add_argument(
        "--targets",
        default=",".join(TARGET_ORDER),
        help="comma-separated subset of: " + ", ".join(TARGET_ORDER),
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--rounds", type=int, help="rounds of latency and throughput runs")
    parser.add_argument("--rate", type=float, help="open-loop requests/s for the latency runs")
    parser.add_argument("--latency-seconds", type=float, help="seconds per latency run")
    parser.add_argument("--connections", type=int, help="connections for throughput runs")
    parser.add_argument("--throughput-seconds", type=float, help="seconds per throughput run")
    parser.add_argument("--stream-rounds", type=int, help="rounds of streaming runs")
    parser.add_argument("--stream-rate", type=float, help="open-loop requests/s when streaming")
    parser.add_argument("--stream-seconds", type=float, help="seconds per streaming run")
    parser.add_argument(
        "--noisy-retries", type=int, help="times to repeat a run disturbed by other processes"
    )
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    base = QUICK if args.quick else Settings()
    overrides = {
        "rounds": args.rounds,
        "rate": args.rate,
        "latency_s": args.latency_seconds,
        "connections": args.connections,
        "throughput_s": args.throughput_seconds,
        "stream_rounds": args.stream_rounds,
        "stream_rate": args.stream_rate,
        "stream_s": args.stream_seconds,
        "noisy_retries": args.noisy_retries,
    }
    chosen = {key: value for key, value in overrides.items() if value is not None}
    settings = replace(base, **chosen)
    if settings.rounds < 1 or settings.stream_rounds < 1 or settings.rate <= 0:
        raise SystemExit("rounds must be >= 1 and rates > 0")
    return settings


def wanted_targets(spec: str) -> list[str]:
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = sorted(set(names) - set(TARGET_ORDER))
    if unknown:
        raise SystemExit(f"unknown targets {unknown}; choose from {', '.join(TARGET_ORDER)}")
    return [name for name in TARGET_ORDER if name in names or name == "direct"]


def save_raw(
    run_dir: Path,
    env: Environment,
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
    env: Environment,
    settings: Settings,
    summary: Summary,
    names: Sequence[str],
    skipped: dict[str, str],
    incidents: Sequence[str],
    out: Path | None,
) -> None:
    print_table(
        f"Latency at {settings.rate:g} req/s, open loop (ms; medians of rounds)",
        LATENCY_HEAD,
        latency_rows(summary.latency, streaming=False),
    )
    print_table(
        f"Throughput, closed loop, {settings.connections} connections",
        THROUGHPUT_HEAD,
        throughput_rows(summary.throughput),
    )
    console.print(
        "Ratios: " + ("; ".join(f"{k} = {v:.2f}x" for k, v in summary.ratios.items()) or "n/a")
    )
    print_table(
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
        write_markdown(out, section, env)
        console.print(f"wrote the '{SECTION_HEADING[3:]}' section of {out}")


def answering_targets(
    targets: dict[str, loadgen.HttpTarget], skipped: dict[str, str], timeout_s: float
) -> list[str]:
    """The started targets that answer like an OpenAI server; the others go to ``skipped``."""
    names = []
    for name in (name for name in TARGET_ORDER if name in targets):
        problem = check_target(targets[name], timeout_s)
        if problem is None:
            names.append(name)
        else:
            skipped[name] = problem
            console.print(f"[red]{name} excluded:[/red] {problem}")
    if "direct" not in names:
        raise SystemExit("the fast upstream itself does not answer correctly")
    return names


def exited_during_run(launches: dict[str, peers.Launch]) -> list[str]:
    return [
        f"{name} exited with {launch.process.popen.returncode} during the run; its later "
        f"runs failed (log {launch.process.log_path})."
        for name, launch in launches.items()
        if not launch.process.alive()
    ]


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def stop_cleanly_on_signals() -> None:
    """SIGTERM (and SIGINT, which a shell ignores in background jobs) raise KeyboardInterrupt,
    so the ExitStack stops every started process instead of leaving them running."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)


def main(argv: Sequence[str] | None = None) -> int:
    stop_cleanly_on_signals()
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(arguments)
    settings = settings_from(args)
    wanted = wanted_targets(args.targets)
    run_dir = RESULTS_DIR / dt.datetime.now().strftime("overhead-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    if any(name in PEER_TARGETS for name in wanted):
        console.print(f"checking the peers' virtualenv {peers.PEERS_VENV} ...")
        peers.ensure_peers_venv(run_dir)
    layout = cpu_layout(not args.no_pin)
    if layout.client:
        os.sched_setaffinity(0, layout.client)
    console.print(f"CPU placement: {layout.describe()}; logs in {run_dir}")
    # Versions and date as of the start: the processes run the code found now.
    env = environment(arguments, layout, collect_versions(wanted))
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        upstream, launches, skipped = start_targets(wanted, layout, run_dir, stack)
        targets = http_targets(launches)
        names = answering_targets(targets, skipped, settings.timeout_s)
        context = RunContext(targets, launches, upstream, layout, settings)
        warm_up(context, names)
        pids = [launch.process.pid for launch in launches.values()]
        before = machine_snapshot(pids)
        results = measure_all(context, names)
        background = background_note(
            before, machine_snapshot(pids), results.background, results.repeated
        )
        incidents = [*exited_during_run(launches), background]
    summary = summarize(results, names)
    env = replace(env, duration=f"{(time.monotonic() - started) / 60:.1f} min")
    raw = save_raw(run_dir, env, settings, results, summary, skipped)
    report(env, settings, summary, names, skipped, incidents, args.out)
    console.print(f"raw results: {raw}")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt as interrupt:
        console.print(f"interrupted ({interrupt}); every started process was stopped")
        raise SystemExit(130) from None
