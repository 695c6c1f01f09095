"""Does inference-aware routing beat round robin and the peers' routers? (issue 3)

    python benchmarks/routing.py [--quick] [--out docs/benchmarks.md]

One run starts a simulated fleet (one ``inferlane sim`` process, 8 replicas by default), one
``inferlane serve`` per load-balancing value the gateway accepts (``round-robin``, ``random``,
``least-request``, ``default``, ``predicted-latency``; a value ``inferlane validate`` rejects is
skipped with its reason) and the peers that install and run here (sglang-router cache_aware,
vllm-router cache_aware, LiteLLM least-busy), all in front of the same fleet. Then:

1. capacity: for each workload, a closed loop through inferlane round-robin with more requests in
   flight than the fleet has batch slots; its completed requests per simulated second is the
   fleet's round-robin capacity for that workload;
2. runs: for each workload and each load (50 %, 80 %, 95 % of that capacity), Poisson arrivals of
   streaming chat completions through every target, the targets' order rotated from one load to
   the next; per request TTFT (first content chunk), end-to-end latency, output tokens, errors;
   the fleet's prefix-cache hit rate is the delta of the replicas' ``vllm:prefix_cache_*`` counters.

Latencies and rates are in simulated seconds (wall seconds / ``--time-scale``). Workloads are in
``inferlane.bench.workloads``, processes in ``routing_peers.py``; ``machine.py`` writes the
Markdown section.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

# benchmarks/ is a folder of scripts, not a package.
import loadgen
import machine
import peers
import routing_peers
from inferlane.bench import workloads

RESULTS_DIR = peers.BENCH_DIR / "results"
HEADING = "## Routing (issue 3)"
MODEL = "sim-model"
ADAPTERS = tuple(f"lora-{index}" for index in range(12))
# A slower "GPU" than the simulator's defaults keeps the number of streamed chunks per wall
# second within what one small machine can carry for the client, the router and the fleet.
SIM_ARGS = (
    "--model", MODEL, *(arg for name in ADAPTERS for arg in ("--lora", name)),
    "--max-num-seqs", "16", "--num-gpu-blocks", "4096", "--prefix-cache-blocks", "2048",
    "--decode-base-ms", "30", "--decode-per-seq-ms", "2", "--prefill-ms-per-token", "0.1",
    "--max-loras", "4", "--lora-load-ms", "50", "--seed", "7",
)
_CONTENT = re.compile(rb'"content":\s*"[^"]')
_USAGE = re.compile(rb'"completion_tokens":\s*(\d+)')
console = machine.console


@dataclass(frozen=True, slots=True)
class Settings:
    replicas: int = 8
    time_scale: float = 1.0
    run_s: float = 12.0  # wall seconds of arrivals per run
    # First arrivals of a run left out of the statistics. Long enough that most of the 32
    # shared-prefix tenants make their first, necessarily cold, visit in it: otherwise p90
    # counts cold starts every router pays alike, not routing.
    warmup_fraction: float = 0.3
    probe_s: float = 10.0
    probe_concurrency_per_replica: int = 24
    loads: tuple[float, ...] = (0.5, 0.8, 0.95)
    workloads: tuple[str, ...] = workloads.WORKLOADS
    timeout_s: float = 60.0
    seed: int = 1


QUICK = Settings(run_s=5.0, probe_s=8.0, loads=(0.8,))


@dataclass(slots=True)
class Outcome:
    ok: bool
    ttft_s: float
    e2e_s: float
    output_tokens: int
    sent_at: float
    error: str = ""


@dataclass(slots=True)
class RunResult:
    workload: str
    load: float
    target: str
    rate: float
    sent: int
    measured: int
    errors: int
    ttft: dict[str, float] = field(default_factory=dict)
    e2e: dict[str, float] = field(default_factory=dict)
    output_tps: float = 0.0
    hit_rate: float = float("nan")
    router_cpu: float = float("nan")  # the target's CPU use during the run, 1.0 = one core
    background_cpu: float = float("nan")  # CPU used by processes not started here
    error_sample: str = ""


# --- one streaming request ----------------------------------------------------------------------


async def stream_one(session: aiohttp.ClientSession, url: str, headers: dict[str, str],
                     body: dict[str, Any], timeout_s: float, time_scale: float) -> Outcome:
    payload = orjson.dumps({**body, "stream": True, "stream_options": {"include_usage": True}})
    start = time.perf_counter()
    ttft = float("nan")
    chunks = 0
    usage: int | None = None
    tail = b""
    try:
        async with asyncio.timeout(timeout_s):
            async with session.post(url, data=payload, headers={
                    "Content-Type": "application/json", **headers}) as response:
                if response.status != 200:
                    text = (await response.read())[:200].decode(errors="replace")
                    return Outcome(False, ttft, 0.0, 0, start, f"HTTP {response.status}: {text}")
                async for data in response.content.iter_any():
                    window = tail + data
                    found = len(_CONTENT.findall(window)) - len(_CONTENT.findall(tail))
                    if found and chunks == 0:
                        ttft = (time.perf_counter() - start) / time_scale
                    chunks += found
                    if (match := _USAGE.search(window)) is not None:
                        usage = int(match.group(1))
                    tail = window[-64:]
                done = b"[DONE]" in tail
    except (aiohttp.ClientError, TimeoutError, OSError) as error:
        return Outcome(False, ttft, 0.0, chunks, start, f"{type(error).__name__}: {error}")
    e2e = (time.perf_counter() - start) / time_scale
    tokens = usage if usage is not None else chunks
    if not done or chunks == 0:
        return Outcome(False, ttft, e2e, tokens, start, "stream ended without content/[DONE]")
    return Outcome(True, ttft, e2e, tokens, start)


def _session(connections: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, force_close=False),
        timeout=aiohttp.ClientTimeout(total=None), auto_decompress=False)


async def open_loop(launch: peers.Launch, planned: Sequence[workloads.Planned],
                    settings: Settings) -> list[Outcome]:
    """Send each planned request at its time (simulated s x time scale), all concurrently."""
    url = f"http://127.0.0.1:{launch.port}/v1/chat/completions"
    async with _session(2000) as session:
        loop = asyncio.get_running_loop()
        origin = loop.time() + 0.05
        tasks: list[asyncio.Task[Outcome]] = []
        for item in planned:
            delay = origin + item.at * settings.time_scale - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(stream_one(
                session, url, launch.headers, item.body, settings.timeout_s,
                settings.time_scale)))
        return list(await asyncio.gather(*tasks))


async def closed_loop(launch: peers.Launch, planned: Sequence[workloads.Planned],
                      settings: Settings) -> float:
    """Completed requests per simulated second with a fixed number in flight, second half."""
    url = f"http://127.0.0.1:{launch.port}/v1/chat/completions"
    concurrency = settings.probe_concurrency_per_replica * settings.replicas
    items = iter(planned)
    finished: list[float] = []
    deadline = time.perf_counter() + settings.probe_s

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < deadline:
            item = next(items, None)
            if item is None:
                return
            outcome = await stream_one(session, url, launch.headers, item.body,
                                       settings.timeout_s, 1.0)
            if outcome.ok:
                finished.append(time.perf_counter())

    start = time.perf_counter()
    async with _session(concurrency) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    half = start + settings.probe_s / 2
    counted = sum(1 for at in finished if half <= at <= deadline)
    return counted / (settings.probe_s / 2) * settings.time_scale


# --- the fleet's counters -------------------------------------------------------------------


async def fleet_counters(fleet: routing_peers.SimFleet) -> dict[str, float]:
    totals: dict[str, float] = {}
    names = ("vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total",
             "vllm:num_requests_running", "vllm:num_requests_waiting")
    async with aiohttp.ClientSession() as session:
        for url in fleet.urls:
            async with session.get(f"{url}/metrics") as response:
                text = await response.text()
            for line in text.splitlines():
                for name in names:
                    if line.startswith(name + "{") or line.startswith(name + " "):
                        totals[name] = totals.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


async def wait_idle(fleet: routing_peers.SimFleet, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        counters = await fleet_counters(fleet)
        if counters.get("vllm:num_requests_running", 0) + counters.get(
                "vllm:num_requests_waiting", 0) == 0:
            return
        await asyncio.sleep(0.25)
    console.print(f"  [yellow]fleet still busy after {limit_s:g} s[/]")


# --- one measured run -------------------------------------------------------------------------


def summarize(workload: str, load: float, target: str, rate: float,
              outcomes: Sequence[Outcome], before: dict[str, float], after: dict[str, float],
              settings: Settings) -> RunResult:
    skip = int(len(outcomes) * settings.warmup_fraction)
    kept = outcomes[skip:]
    good = [outcome for outcome in kept if outcome.ok]
    errors = [outcome for outcome in kept if not outcome.ok]
    result = RunResult(workload, load, target, rate, len(outcomes), len(kept), len(errors))
    if errors:
        result.error_sample = errors[0].error[:160]
    if good:
        ttfts = sorted(outcome.ttft_s for outcome in good)
        e2es = sorted(outcome.e2e_s for outcome in good)
        result.ttft = {f"p{q}": loadgen.percentile(ttfts, q / 100) for q in (50, 90, 99)}
        result.e2e = {f"p{q}": loadgen.percentile(e2es, q / 100) for q in (50, 99)}
        first = min(outcome.sent_at for outcome in good)
        last = max(outcome.sent_at + outcome.e2e_s * settings.time_scale for outcome in good)
        span = max(last - first, 1e-9) / settings.time_scale
        result.output_tps = sum(outcome.output_tokens for outcome in good) / span
    queries = after.get("vllm:prefix_cache_queries_total", 0) - before.get(
        "vllm:prefix_cache_queries_total", 0)
    hits = after.get("vllm:prefix_cache_hits_total", 0) - before.get(
        "vllm:prefix_cache_hits_total", 0)
    if queries > 0:
        result.hit_rate = hits / queries
    return result


def plan(workload: str, rate: float, duration_s: float, seed: int, salt: str
         ) -> list[workloads.Planned]:
    import random

    times = workloads.arrivals(random.Random(seed), rate, duration_s)
    return workloads.build(workload, times, seed, salt, MODEL, ADAPTERS)


async def measure_capacity(workload: str, launch: peers.Launch, fleet: routing_peers.SimFleet,
                           settings: Settings, salt: str) -> float:
    await wait_idle(fleet)
    # A generous supply of requests; the closed loop takes them in order.
    planned = plan(workload, 1000.0, 5.0, settings.seed + 99, salt)
    capacity = await closed_loop(launch, planned, settings)
    await wait_idle(fleet)
    return capacity


async def measure(workload: str, load: float, rate: float, launch: peers.Launch,
                  fleet: routing_peers.SimFleet, settings: Settings, salt: str,
                  ours: Sequence[int]) -> RunResult:
    """One open-loop run; ``ours`` are the PIDs started here (for the background load)."""
    await wait_idle(fleet)
    planned = plan(workload, rate, settings.run_s / settings.time_scale, settings.seed, salt)
    before = await fleet_counters(fleet)
    cpu_before, wall_before = machine.process_cpu_seconds(launch.process.pid), time.perf_counter()
    snapshot = machine.machine_snapshot(ours)
    outcomes = await open_loop(launch, planned, settings)
    background = machine.background_cpu(snapshot, machine.machine_snapshot(ours))
    cpu = (machine.process_cpu_seconds(launch.process.pid) - cpu_before) / (
        time.perf_counter() - wall_before)
    after = await fleet_counters(fleet)
    result = summarize(workload, load, launch.name, rate, outcomes, before, after, settings)
    result.router_cpu = cpu
    result.background_cpu = background
    return result


# --- targets -------------------------------------------------------------------------------------


def start_targets(stack: contextlib.ExitStack, log_dir: Path, fleet: routing_peers.SimFleet,
                  names: Sequence[str], cpus: Sequence[int]) -> tuple[list[peers.Launch],
                                                                     dict[str, str]]:
    models = (MODEL, *ADAPTERS)
    launches: list[peers.Launch] = []
    skipped: dict[str, str] = {}
    closed = peers.ClosedPort()
    stack.callback(closed.close)
    for name in names:
        console.print(f"starting {name} ...")
        try:
            if name.startswith("inferlane "):
                policy = name.split(" ", 1)[1]
                reason = routing_peers.validate_policy(log_dir, fleet, policy, models)
                if reason is not None:
                    skipped[name] = f"`inferlane validate` rejects it: {reason}"
                    continue
                launch = routing_peers.start_inferlane(log_dir, fleet, policy, models, cpus,
                                                       MODEL)
            elif name == "sglang-router":
                launch = routing_peers.start_sglang_router(log_dir, fleet, cpus, MODEL)
            elif name == "vllm-router":
                launch = routing_peers.start_vllm_router(log_dir, fleet, cpus, MODEL)
            elif name == "litellm-least-busy":
                launch = routing_peers.start_litellm(log_dir, fleet, models, cpus, closed.port,
                                                     MODEL)
            else:
                raise peers.PeerError(f"unknown target {name}")
        except peers.PeerError as error:
            skipped[name] = str(error).splitlines()[0][:300]
            continue
        stack.callback(launch.process.stop)
        launches.append(launch)
    for name, reason in skipped.items():
        console.print(f"  [yellow]skipped {name}: {reason}[/]")
    return launches, skipped


# --- report ---------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value * 1000:.0f}"


def rows(results: Sequence[RunResult]) -> list[list[str]]:
    return [[
        r.target, f"{r.load:.0%}", f"{r.rate:.1f}", _ms(r.ttft.get("p50")),
        _ms(r.ttft.get("p90")), _ms(r.ttft.get("p99")), _ms(r.e2e.get("p50")),
        _ms(r.e2e.get("p99")), f"{r.output_tps:.0f}",
        "-" if r.hit_rate != r.hit_rate else f"{r.hit_rate:.0%}",
        "-" if r.router_cpu != r.router_cpu else f"{r.router_cpu:.2f}",
        f"{r.errors}/{r.measured}",
    ] for r in results]


HEAD = ("target", "load", "req/s", "TTFT p50 ms", "TTFT p90 ms", "TTFT p99 ms", "e2e p50 ms",
        "e2e p99 ms", "out tok/s", "prefix hits", "router CPU", "errors")


def verdicts(results: Sequence[RunResult]) -> list[str]:
    def find(workload: str, load: float, target: str) -> RunResult | None:
        return next((r for r in results if r.workload == workload and r.load == load
                     and r.target == target), None)

    lines = []
    load = 0.8 if any(r.load == 0.8 for r in results) else max(r.load for r in results)
    base = find("shared-prefix", load, "inferlane round-robin")
    smart = find("shared-prefix", load, "inferlane default")
    if base is None or smart is None or "p90" not in base.ttft or "p90" not in smart.ttft:
        lines.append("Shared-prefix TTFT target: not checked (round-robin or default missing).")
    else:
        ratio = smart.ttft["p90"] / base.ttft["p90"]
        lines.append(
            f"Shared-prefix at {load:.0%} load, TTFT p90 of `default` ≤ 0.3x round robin: "
            f"**{'met' if ratio <= 0.3 else 'missed'}** ({_ms(smart.ttft['p90'])} ms vs "
            f"{_ms(base.ttft['p90'])} ms = {ratio:.2f}x).")
        if base.hit_rate == base.hit_rate and smart.hit_rate == smart.hit_rate:
            lines.append(
                f"  Prefix-cache hit rate: `default` {smart.hit_rate:.0%}, round robin "
                f"{base.hit_rate:.0%}" + (
                    " -- `default` did not concentrate tenants on replicas, so it saved no "
                    "prefill; that is why." if smart.hit_rate < base.hit_rate + 0.15 else "."))
        for peer in routing_peers.PEER_ROUTERS:
            other = find("shared-prefix", load, peer)
            if other is None or "p90" not in other.ttft:
                continue
            better = smart.ttft["p90"] < other.ttft["p90"]
            lines.append(
                f"  vs {peer}: **{'lower' if better else 'not lower'}** "
                f"({_ms(smart.ttft['p90'])} ms vs {_ms(other.ttft['p90'])} ms; its prefix-cache "
                f"hit rate {other.hit_rate:.0%}).")
    for load_b in sorted({r.load for r in results if r.workload == "sharegpt"}):
        rr = find("sharegpt", load_b, "inferlane round-robin")
        df = find("sharegpt", load_b, "inferlane default")
        if rr is None or df is None or rr.output_tps == 0:
            continue
        change = df.output_tps / rr.output_tps - 1
        lines.append(
            f"ShareGPT-like at {load_b:.0%}: output tokens/s of `default` vs round robin "
            f"{df.output_tps:.0f} vs {rr.output_tps:.0f} ({change:+.1%}); "
            f"**{'no loss' if change >= -0.03 else 'loss'}** (±3 % counts as no loss: "
            f"open-loop throughput follows the offered rate).")
    return lines


def markdown(results: Sequence[RunResult], capacities: dict[str, float],
             skipped: dict[str, str], env: machine.Environment, settings: Settings) -> str:
    parts = [HEADING, "", f"Command: `{env.command}` ({env.date}, took {env.duration}).", "",
             "Simulated fleet: one `inferlane sim` process with "
             f"{settings.replicas} replicas, `{' '.join(SIM_ARGS)}`, time scale "
             f"{settings.time_scale:g}. All latencies and rates are in simulated seconds. "
             "Streaming chat completions, Poisson arrivals; TTFT is the first chunk with "
             "content; the first "
             f"{settings.warmup_fraction:.0%} of each run's arrivals are sent but not counted "
             "(long enough for most of the 32 shared-prefix tenants to make their first, "
             "necessarily cold, visit: the percentiles are about routing in steady state, not "
             "cold starts every router pays alike). "
             "Targets run one after the other against the same fleet, order rotated per load; "
             "every prompt carries a per-run salt so no run inherits another's cache.", "",
             "Capacity (round robin, closed loop with "
             f"{settings.probe_concurrency_per_replica} requests in flight per replica, "
             "completed requests per simulated second over the second half of "
             f"{settings.probe_s:g} s): " + ", ".join(
                 f"{name} {value:.1f} req/s" for name, value in capacities.items()) + ".", ""]
    parts += ["Verdicts:", ""] + [
        f"  - {line.strip()}" if line.startswith("  ") else f"- {line}"
        for line in verdicts(results)] + [""]
    for workload in settings.workloads:
        chosen = [r for r in results if r.workload == workload]
        if chosen:
            parts += [f"### {workload}", "", machine.markdown_table(HEAD, rows(chosen)), ""]
    if skipped:
        parts += ["Skipped targets:", ""] + [f"- {k}: {v}" for k, v in skipped.items()] + [""]
    errs = [r for r in results if r.error_sample]
    if errs:
        parts += ["Error samples:", ""] + [
            f"- {r.workload} {r.load:.0%} {r.target}: `{r.error_sample}`" for r in errs] + [""]
    background = [r.background_cpu for r in results if r.background_cpu == r.background_cpu]
    if background:
        parts += [f"Background load (CPU used by processes this benchmark did not start, "
                  f"1.0 = one core): mean {sum(background) / len(background):.2f}, worst run "
                  f"{max(background):.2f}.", ""]
    parts += [f"Versions: {', '.join(f'{k} {v}' for k, v in env.versions.items())}. "
              f"Machine: {env.cpu_model}, {env.cpus} CPUs, {env.memory}, kernel {env.kernel}, "
              f"Python {env.python}; {env.layout}.", ""]
    return "\n".join(parts)


# --- main ---------------------------------------------------------------------------------------


async def run_all(settings: Settings, launches: Sequence[peers.Launch],
                  fleet: routing_peers.SimFleet) -> tuple[list[RunResult], dict[str, float]]:
    baseline = next(launch for launch in launches if launch.name == "inferlane round-robin")
    results: list[RunResult] = []
    capacities: dict[str, float] = {}
    block = 0
    ours = [fleet.process.pid, *(launch.process.pid for launch in launches)]
    for workload in settings.workloads:
        capacity = await measure_capacity(workload, baseline, fleet, settings,
                                          f"[probe {workload}]")
        capacities[workload] = capacity
        console.print(f"[bold]{workload}[/]: round-robin capacity {capacity:.1f} req/s")
        for load in settings.loads:
            order = list(launches[block % len(launches):]) + list(
                launches[:block % len(launches)])
            block += 1
            for launch in order:
                salt = f"[run {workload} {load} {launch.name}]"
                result = await measure(workload, load, capacity * load, launch, fleet,
                                       settings, salt, ours)
                results.append(result)
                console.print(
                    f"  {load:.0%} {launch.name:28} ttft p90 {_ms(result.ttft.get('p90'))} ms, "
                    f"out {result.output_tps:.0f} tok/s, hits {result.hit_rate:.0%}, "
                    f"errors {result.errors}/{result.measured}")
    return results, capacities


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the children like Ctrl-C does


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one load (80 %%), short runs")
    parser.add_argument("--out", type=Path, help="replace the routing section of this file")
    parser.add_argument("--targets", help="comma-separated subset of the targets")
    parser.add_argument("--workloads", help="comma-separated subset of " +
                        ",".join(workloads.WORKLOADS))
    parser.add_argument("--time-scale", type=float)
    parser.add_argument("--run-seconds", type=float)
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else Settings()
    if args.workloads:
        settings = replace(settings, workloads=tuple(args.workloads.split(",")))
    if args.time_scale:
        settings = replace(settings, time_scale=args.time_scale)
    if args.run_seconds:
        settings = replace(settings, run_s=args.run_seconds)
    names = [f"inferlane {policy}" for policy in routing_peers.POLICIES] + list(
        routing_peers.PEER_ROUTERS)
    if args.targets:
        names = [name for name in names if name in args.targets.split(",")
                 or name.removeprefix("inferlane ") in args.targets.split(",")]
    if "inferlane round-robin" not in names:
        names.insert(0, "inferlane round-robin")  # the capacity and the verdicts need it
    started = time.monotonic()
    log_dir = RESULTS_DIR / f"routing-{time.strftime('%Y%m%d-%H%M%S')}"
    log_dir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _interrupt)
    layout = machine.cpu_layout(False)
    with contextlib.ExitStack() as stack:
        versions = routing_peers.ensure_routers(log_dir)
        fleet = routing_peers.start_sim(log_dir, settings.replicas,
                                        [*SIM_ARGS, "--time-scale", str(settings.time_scale)])
        stack.callback(fleet.process.stop)
        launches, skipped = start_targets(stack, log_dir, fleet, names, layout.proxy)
        if not any(launch.name == "inferlane round-robin" for launch in launches):
            console.print("[red]inferlane round-robin did not start; nothing to compare[/]")
            return 1
        try:
            results, capacities = asyncio.run(run_all(settings, launches, fleet))
        except KeyboardInterrupt:
            console.print("[red]interrupted; stopping every process started here[/]")
            return 130
    env = machine.environment("benchmarks/routing.py", sys.argv[1:] if argv is None else argv,
                              layout, {"inferlane": machine.inferlane_version(), **versions})
    env = replace(env, duration=f"{(time.monotonic() - started) / 60:.1f} min")
    for workload in settings.workloads:
        chosen = [r for r in results if r.workload == workload]
        machine.print_table(f"{workload} (capacity {capacities.get(workload, 0):.1f} req/s)",
                            HEAD, rows(chosen))
    for line in verdicts(results):
        console.print(line)
    (log_dir / "routing.json").write_bytes(orjson.dumps(
        {"settings": asdict(settings), "capacities": capacities, "skipped": skipped,
         "results": [asdict(r) for r in results]}, option=orjson.OPT_INDENT_2))
    if args.out:
        machine.write_markdown(args.out, HEADING,
                               markdown(results, capacities, skipped, env, settings),
                               env)
        console.print(f"wrote {args.out}")
    console.print(f"raw results and logs: {log_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
