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

This module holds the settings, the runs and how they are measured, starting the targets and the
command line; ``overhead_report.py`` turns the runs into summaries, verdicts and the report, and
``machine.py`` (shared with the other benchmarks) meters CPUs and writes Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import importlib.metadata
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

# benchmarks/ is a folder of scripts, not a package.
import loadgen
import machine
import overhead_report
import peers

RESULTS_DIR = peers.BENCH_DIR / "results"
TARGET_ORDER = ("direct", "inferlane", "litellm", "envoy")
PEER_TARGETS = ("litellm", "envoy")
CHAT = {"model": peers.MODEL, "messages": [{"role": "user", "content": "Say hello."}]}
BODY = orjson.dumps({**CHAT, "max_tokens": 16})
STREAM_BODY = orjson.dumps({**CHAT, "max_tokens": 16, "stream": True})
console = machine.console
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
    layout: machine.CpuLayout
    settings: Settings


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
    with machine.cpu_meter([_proxy_pid(context, name)]) as shares:
        result = run_async(
            lambda: loadgen.open_loop(target, body, rate, seconds, timeout_s=timeout_s)
        )
    return summarize_open_loop(name, round_index, result, shares)


def measure_throughput(context: RunContext, name: str, round_index: int) -> ThroughputRun:
    settings = context.settings
    target = context.targets[name]
    pids = [_proxy_pid(context, name), context.upstream.process.pid]
    with machine.cpu_meter(pids) as shares:
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
        machine.wait_quiet()
        run = measure_open_loop(context, name, -1, BODY, settings.rate, settings.warmup_s)
        machine.wait_quiet()
        closed = measure_throughput(replace(context, settings=warm), name, -1)
        console.print(
            f"  warm-up {name}: open loop {run.ok}/{run.sent} ok, p50 {run.p50:.3f} ms; "
            f"closed loop {closed.rps:,.0f} req/s, errors {closed.errors}"
        )


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
            run, load, discarded = machine.measure_quietly(
                [launch.process.pid for launch in context.launches.values()],
                context.settings.noisy_retries,
                functools.partial(measure, name, round_index),
            )
            key = f"{phase} {name} r{round_index + 1}"
            background[key] = load
            if discarded:
                repeated[key] = discarded
            runs.append(run)
            noisy = (
                f" [yellow](background {load:.2f} CPU)[/]"
                if load > machine.BUSY_BACKGROUND_CPU
                else ""
            )
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


# --- setup ---------------------------------------------------------------------------------------


def start_targets(
    wanted: Sequence[str], layout: machine.CpuLayout, run_dir: Path, stack: contextlib.ExitStack
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
    versions = {"inferlane": machine.inferlane_version()}
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
    layout = machine.cpu_layout(not args.no_pin)
    if layout.client:
        os.sched_setaffinity(0, layout.client)
    console.print(f"CPU placement: {layout.describe()}; logs in {run_dir}")
    # Versions and date as of the start: the processes run the code found now.
    env = machine.environment("benchmarks/overhead.py", arguments, layout, collect_versions(wanted))
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        upstream, launches, skipped = start_targets(wanted, layout, run_dir, stack)
        targets = http_targets(launches)
        names = answering_targets(targets, skipped, settings.timeout_s)
        context = RunContext(targets, launches, upstream, layout, settings)
        warm_up(context, names)
        pids = [launch.process.pid for launch in launches.values()]
        before = machine.machine_snapshot(pids)
        results = measure_all(context, names)
        background = machine.background_note(
            before, machine.machine_snapshot(pids), results.background, results.repeated
        )
        incidents = [*exited_during_run(launches), background]
    summary = overhead_report.summarize(results, names)
    env = replace(env, duration=f"{(time.monotonic() - started) / 60:.1f} min")
    raw = overhead_report.save_raw(run_dir, env, settings, results, summary, skipped)
    overhead_report.report(env, settings, summary, names, skipped, incidents, args.out)
    console.print(f"raw results: {raw}")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt as interrupt:
        console.print(f"interrupted ({interrupt}); every started process was stopped")
        raise SystemExit(130) from None
