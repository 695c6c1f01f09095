"""Does flow control protect critical traffic and keep tenants fair under overload? (issue 4)

    python benchmarks/priority.py [--quick] [--out docs/benchmarks.md]

One run starts a simulated fleet (one ``inferlane sim`` process, 8 replicas, the engine knobs of
``routing.py``) and then, one after the other on that fleet:

1. capacity: ``inferlane serve`` with ``round-robin`` and a closed loop of this benchmark's short
   chat requests with more requests in flight than the fleet has batch slots (``routing.py``'s
   ``closed_loop``); completed requests per second over the second half is the capacity C;
2. for each mode, a fresh ``inferlane serve`` (default profile, three InferenceObjectives:
   ``critical`` priority 2 with ``inferlane.dev/ttft-target: 1s``, ``standard`` priority 0 and
   the pool's default objective, ``sheddable`` priority -1): ``flow-control on``, then
   ``flow-control off`` (the same config plus ``inferlane.dev/flow-control: disabled`` on the
   pool: plain pass-through), then (full run only, ``--tuned-threshold``) flow control on with
   an EndpointPickerConfig of the default profile's plugins and a lower
   ``saturationDetector.queueDepthThreshold``. Open-loop Poisson arrivals ramp through 0.5, 1,
   1.5 and 2 x C (2 x C held longest); 20 % critical, 50 % standard (no objective header),
   30 % sheddable; four tenants (``x-gateway-inference-fairness-id``), tenant-a sending 10x
   each other one. Every request streams; a sampler reads the gateway's RSS
   (``/proc/<pid>/status``), its queue gauges (``/metrics``) and the replicas' waiting queues
   while it runs. Then the fleet goes idle before the next mode.

The workload, configs and statistics are in ``priority_workload.py``, verdicts and Markdown in
``priority_report.py``; ``machine.py`` writes the section. Times are wall seconds (time scale
1: simulated = wall).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))

# benchmarks/ is a folder of scripts, not a package.
import machine
import peers
import priority_report as report
import priority_workload as pw
import routing
import routing_peers
from priority_workload import QUICK, Mode, ModeRun, Sample, Settings

MODEL = routing.MODEL
MODELS = (routing.MODEL, *routing.ADAPTERS)
console = machine.console


# --- gateway process ----------------------------------------------------------------------------


def start_gateway(log_dir: Path, fleet: routing_peers.SimFleet, mode: Mode) -> peers.Launch:
    executable = peers.inferlane_executable()
    if executable is None:
        raise peers.PeerError("no `inferlane` executable found")
    port = peers.free_port()
    slug = "".join(c if c.isalnum() else "-" for c in mode.name)
    path = log_dir / f"inferlane-{slug}.yaml"
    path.write_text(pw.gateway_config(
        [f"127.0.0.1:{p}" for p in fleet.ports], port, MODELS, flow_control=mode.flow_control,
        queue_depth_threshold=mode.queue_depth_threshold))
    argv = [str(executable), "serve", "--config", str(path), "--port", str(port),
            "--host", "127.0.0.1"]
    launch = peers.Launch(mode.name, peers.start_process(f"inferlane-{slug}", argv, log_dir),
                          port, headers={pw.OBJECTIVE_HEADER: "critical"})
    routing_peers.ready(launch, MODEL)
    return launch


def rss_bytes(pid: int) -> int:
    """VmRSS of ``pid`` in bytes (0 when the process is gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def gateway_metrics(session: aiohttp.ClientSession, port: int
                          ) -> list[tuple[str, dict[str, str], float]]:
    """(sample name, labels, value) of the inferlane_* series of the gateway's /metrics."""
    async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    return [(s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text)
            if family.name.startswith("inferlane_") for s in family.samples]


async def engine_queues(session: aiohttp.ClientSession, fleet: routing_peers.SimFleet
                        ) -> tuple[list[float], list[float]]:
    """Each replica's ``vllm:num_requests_waiting`` and ``..._running``."""
    waiting, running = [], []
    for url in fleet.urls:
        async with session.get(f"{url}/metrics") as response:
            text = await response.text()
        values = {"vllm:num_requests_waiting": math.nan, "vllm:num_requests_running": math.nan}
        for line in text.splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in values:
                values[name] = float(line.rsplit(" ", 1)[1])
        waiting.append(values["vllm:num_requests_waiting"])
        running.append(values["vllm:num_requests_running"])
    return waiting, running


def _queued(series: Sequence[tuple[str, dict[str, str], float]]) -> dict[str, float]:
    return {labels["priority"]: value for name, labels, value in series
            if name == "inferlane_flow_queue_requests"}


def _end_counters(series: Sequence[tuple[str, dict[str, str], float]]) -> dict[str, float]:
    """Flow rejections by priority/reason and TTFT-SLO outcomes by objective, flattened."""
    out: dict[str, float] = {}
    for name, labels, value in series:
        if name == "inferlane_flow_rejected_total":
            key = f"rejected p{labels['priority']} {labels['reason']}"
        elif name == "inferlane_objective_ttft_slo_total":
            key = f"slo {labels['objective']} {labels['outcome']}"
        else:
            continue
        out[key] = out.get(key, 0.0) + value
    return out


# --- one mode -----------------------------------------------------------------------------------


async def run_mode(launch: peers.Launch, fleet: routing_peers.SimFleet,
                   planned: Sequence[pw.PlannedRequest], settings: Settings) -> ModeRun:
    """The whole ramp through one gateway, then its drain; samples while it runs."""
    url = f"http://127.0.0.1:{launch.port}/v1/chat/completions"
    pid = launch.process.pid
    ramp_s = sum(step.seconds for step in settings.steps)
    samples: list[Sample] = []
    overload_end: dict[str, float] = {}
    stop = asyncio.Event()
    ours = [fleet.process.pid, pid]

    async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=4000), auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None)) as session, \
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as admin:
        rss_start = rss_bytes(pid)
        snapshot = machine.machine_snapshot(ours)
        cpu_before = machine.process_cpu_seconds(pid)
        origin = time.perf_counter()

        async def sampler() -> None:
            # Bounded by the ramp, the drain (each request <= timeout_s) and a margin.
            limit = origin + ramp_s + settings.timeout_s + 30
            while not stop.is_set() and time.perf_counter() < limit:
                sample = Sample(time.perf_counter() - origin, rss_bytes(pid))
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    series = await gateway_metrics(admin, launch.port)
                    sample.queued = _queued(series)
                    sample.saturation = next((v for n, _, v in series
                                              if n == "inferlane_pool_saturation"), math.nan)
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    sample.engine_waiting, sample.engine_running = await engine_queues(
                        admin, fleet)
                samples.append(sample)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), settings.sample_every_s)

        async def at_overload_end() -> None:
            await asyncio.sleep(max(0.0, origin + ramp_s - time.perf_counter()))
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                overload_end.update(_queued(await gateway_metrics(admin, launch.port)))

        background = [asyncio.create_task(sampler()), asyncio.create_task(at_overload_end())]
        tasks: list[asyncio.Task[pw.Outcome]] = []
        for item in planned:
            delay = origin + item.at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(pw.send(session, url, item, origin,
                                                     settings.timeout_s)))
        outcomes = list(await asyncio.gather(*tasks))
        drained_at = time.perf_counter()
        cpu = (machine.process_cpu_seconds(pid) - cpu_before) / (drained_at - origin)
        background_cpu = machine.background_cpu(snapshot, machine.machine_snapshot(ours))
        await routing.wait_idle(fleet)
        await asyncio.sleep(1.0)  # the gateway's last scrape and gauge updates
        stop.set()
        await asyncio.gather(*background)
        series = await gateway_metrics(admin, launch.port)
        samples.append(Sample(time.perf_counter() - origin, rss_bytes(pid), _queued(series)))
    return ModeRun(launch.name, outcomes, samples, rss_start, samples[-1].rss, overload_end,
                   _end_counters(series), cpu, background_cpu, ramp_s,
                   drained_at - origin - ramp_s)


async def measure_capacity(log_dir: Path, fleet: routing_peers.SimFleet,
                           settings: Settings) -> float:
    """routing.py's closed loop through round robin, with this benchmark's requests."""
    launch = routing_peers.start_inferlane(log_dir, fleet, "round-robin", MODELS, (), MODEL)
    try:
        await routing.wait_idle(fleet)
        steps = (pw.Step(1.0, 1.0),)
        planned = pw.plan_ramp(steps, 2000.0, settings.seed + 99, "[probe]", MODEL)
        probe = routing.Settings(replicas=settings.replicas, probe_s=settings.probe_s,
                                 probe_concurrency_per_replica=
                                 settings.probe_concurrency_per_replica,
                                 timeout_s=settings.timeout_s)
        capacity = await routing.closed_loop(launch, planned, probe)  # type: ignore[arg-type]
        await routing.wait_idle(fleet)
        return capacity
    finally:
        launch.process.stop()


# --- main ---------------------------------------------------------------------------------------


async def run_all(log_dir: Path, stack: contextlib.ExitStack, fleet: routing_peers.SimFleet,
                  settings: Settings) -> tuple[float, str, list[ModeRun]]:
    if settings.capacity is not None:
        capacity, note = settings.capacity, "given with --capacity"
    else:
        capacity = await measure_capacity(log_dir, fleet, settings)
        note = (f"measured: `inferlane serve` round-robin, closed loop with "
                f"{settings.probe_concurrency_per_replica} requests in flight per replica, "
                f"completed requests per second over the second half of {settings.probe_s:g} s")
    console.print(f"[bold]capacity[/] {capacity:.1f} req/s; 2x = {2 * capacity:.1f} req/s")
    runs = []
    for mode in settings.modes():
        await routing.wait_idle(fleet)
        machine.wait_quiet()
        planned = pw.plan_ramp(settings.steps, capacity, settings.seed, f"[{mode.name}]",
                               MODEL)
        console.print(f"[bold]{mode.name}[/]: {len(planned)} requests over "
                      f"{sum(s.seconds for s in settings.steps):g} s")
        launch = start_gateway(log_dir, fleet, mode)
        stack.callback(launch.process.stop)
        run = await run_mode(launch, fleet, planned, settings)
        launch.process.stop()
        errors = Counter(o.code for o in run.outcomes if not o.ok)
        console.print(f"  drained {run.drain_s:.1f} s after the ramp; errors "
                      f"{dict(errors) or 0}; background CPU {run.background_cpu:.2f}")
        runs.append(run)
    return capacity, note, runs


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the children like Ctrl-C does


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="one short ramp, on and off only (about 1.5 minutes)")
    parser.add_argument("--out", type=Path, help="replace this benchmark's section of the file")
    parser.add_argument("--capacity", type=float, help="req/s; skip measuring it")
    parser.add_argument("--tuned-threshold", type=int, metavar="N",
                        help="third mode: flow control with saturationDetector."
                             "queueDepthThreshold N (default 1 in the full run, none with "
                             "--quick; 0: no third mode)")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else Settings()
    if args.capacity:
        settings = replace(settings, capacity=args.capacity)
    if args.tuned_threshold is not None:
        settings = replace(settings, tuned_threshold=args.tuned_threshold or None)
    started = time.monotonic()
    log_dir = routing.RESULTS_DIR / f"priority-{time.strftime('%Y%m%d-%H%M%S')}"
    log_dir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _interrupt)
    with contextlib.ExitStack() as stack:
        fleet = routing_peers.start_sim(log_dir, settings.replicas,
                                        [*routing.SIM_ARGS, "--time-scale", "1"])
        stack.callback(fleet.process.stop)
        try:
            capacity, note, runs = asyncio.run(run_all(log_dir, stack, fleet, settings))
        except KeyboardInterrupt:
            console.print("[red]interrupted; stopping every process started here[/]")
            return 130
    env = machine.environment("benchmarks/priority.py", sys.argv[1:] if argv is None else argv,
                              machine.cpu_layout(False),
                              {"inferlane": machine.inferlane_version()})
    env = replace(env, duration=f"{(time.monotonic() - started) / 60:.1f} min")
    stats = [s for run in runs for s in pw.class_stats(run.mode, run.outcomes, settings.steps)]
    start, end = pw.step_bounds(settings.steps)[-1]
    window = (start + settings.fairness_skip_s, end)
    fair = [pw.band_fairness(run.mode, run.outcomes, window, "standard") for run in runs]
    (log_dir / "priority.json").write_bytes(orjson.dumps({
        "settings": asdict(settings), "capacity": capacity,
        "stats": [asdict(s) for s in stats], "fairness": [asdict(f) for f in fair],
        "gateway": [{"mode": r.mode, "rss_start": r.rss_start, "rss_end": r.rss_end,
                     "samples": [asdict(s) for s in r.samples], "cpu": r.cpu,
                     "background_cpu": r.background_cpu, "metrics_end": r.metrics_end}
                    for r in runs],
        "outcomes": [_outcome_row(r.mode, o) for r in runs for o in r.outcomes],
    }, option=orjson.OPT_INDENT_2))
    machine.print_table(f"per step and objective (C = {capacity:.1f} req/s)",
                        report.CLASS_HEAD, report.class_rows(stats))
    machine.print_table("fairness, standard band at 2x", report.FAIR_HEAD,
                        report.fairness_rows(fair))
    machine.print_table("gateway process", report.GATEWAY_HEAD, report.gateway_rows(runs))
    for line in report.verdicts(stats, fair, runs, settings):
        console.print(line)
    console.print(report.slo_line(runs))
    console.print(report.engine_line(runs))
    if args.out:
        section = report.markdown(stats, fair, runs, capacity, note, env, settings)
        machine.write_markdown(args.out, report.HEADING, section, env)
        console.print(f"wrote {args.out}")
    console.print(f"raw results and logs: {log_dir}")
    return 0


def _outcome_row(mode: str, outcome: pw.Outcome) -> dict[str, Any]:
    p = outcome.planned
    return {"mode": mode, "at": p.at, "step": p.step, "objective": p.objective,
            "tenant": p.tenant, "status": outcome.status, "code": outcome.code,
            "sent_at": outcome.sent_at, "first_token_at": outcome.first_token_at,
            "done_at": outcome.done_at, "output_tokens": outcome.output_tokens}


if __name__ == "__main__":
    sys.exit(main())
