"""L4 load balancing (issue 7): the user-space proxy and the eBPF fast path against direct.

    python benchmarks/l4.py [--quick] [--out docs/benchmarks.md]

Paths, each measured side by side with its own "direct" baseline in the same rounds:

- loopback: ``direct`` (client -> sink on 127.0.0.1) and ``user space`` (client ->
  ``inferlane serve`` with a TCP listener and a TCPRoute -> sink); the proxy is pinned to a CPU
  of its own, the "1 core" of the issue's target. For the latency runs only, a second
  inferlane on the load's CPU shows how much of the added latency is the proxy's work and how
  much the VM's cross-CPU wake-ups.
- veth (``l4_netns.VethLab``: client ns -> lb ns -> backend ns): ``direct`` (lb only routes),
  ``eBPF`` (a VIP balanced by ``inferlane.l4.ebpf.EbpfDataPlane`` on lb's client-facing veth,
  attached only for the eBPF runs), ``user space`` (inferlane inside lb).

Measurements (every loop bounded by a count and by time, ``l4_load.py``):

1. throughput: bulk TCP to a sink over 1 and 64 connections, Gbit/s delivered;
2. connections/s: connect, 64-byte request, 64-byte reply, close, 1 and 64 in flight;
3. added latency: 64-byte round trips on one connection, p50/p99 minus direct's of the round;
4. flow disruption (pure, ``l4_disruption.py``): 100k flows over 10 backends, one removed;
   maglev vs the modulo ("round-robin") hash, rendezvous for reference.

Every path has a backend port of its own (direct, eBPF, user space), so two paths never share
a client->backend 4-tuple: a fresh SYN meeting the backend's TIME_WAIT of another path's
connection (other timestamps, other sequence numbers) would stall on a retransmit, and an
eBPF reply entry of an ended VIP flow would rewrite a direct connection's replies.

Targets' order is rotated each round; numbers are medians over rounds, ratios and added
latency are paired within a round. ``l4_report.py`` makes the tables, verdicts and the
"L4 load balancing (issue 7)" section; raw JSON and logs go to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from inferlane.errors import InferlaneError

sys.path.insert(0, str(Path(__file__).resolve().parent))

# benchmarks/ is a folder of scripts, not a package.
import l4_disruption
import l4_report
import l4_targets
import machine
import peers
from l4_targets import AgentError, Setup, Target

RESULTS_DIR = peers.BENCH_DIR / "results"
console = machine.console


@dataclass(frozen=True, slots=True)
class Settings:
    rounds: int = 3  # connections/s and latency
    bulk_rounds: int = 5  # throughput: single-stream runs vary most, so more, shorter ones
    concurrency: tuple[int, ...] = (1, 64)
    bulk_s: float = 1.5
    bulk_max_bytes: int = 16 * 2**30  # per run, over all connections
    conn_s: float = 2.0
    conn_count_single: int = 4000  # short connections per run at concurrency 1
    conn_count_many: int = 20000  # ... at the higher concurrency
    rr_count: int = 5000
    rr_s: float = 3.0
    flows: int = 100_000
    backends: int = 10
    noisy_retries: int = 1
    quiet_s: float = 2.0  # longest wait for an idle machine before a run

    def conn_count(self, concurrency: int) -> int:
        return self.conn_count_single if concurrency == 1 else self.conn_count_many


QUICK = Settings(rounds=1, bulk_rounds=1, bulk_s=0.5, conn_s=0.5, conn_count_single=500,
                 conn_count_many=3000, rr_count=500, rr_s=1.0, flows=20_000, noisy_retries=0,
                 quiet_s=1.0)


# --- results -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BulkRun:
    target: str
    round: int
    connections: int
    bytes: int
    seconds: float
    gbps: float
    errors: int
    error_detail: list[str]
    proxy_cpu: float | None  # the inferlane process, 1.0 = one core
    cpu_busy: dict[int, float]  # per CPU, from /proc/stat (softirq included)


@dataclass(frozen=True, slots=True)
class ConnRun:
    target: str
    round: int
    concurrency: int
    completed: int
    seconds: float
    rate: float
    errors: int
    error_detail: dict[str, int]
    proxy_cpu: float | None
    cpu_busy: dict[int, float]


@dataclass(frozen=True, slots=True)
class LatencyRun:
    target: str
    round: int
    count: int
    p50: float  # microseconds
    p90: float
    p99: float
    mean: float


@dataclass(slots=True)
class Results:
    bulk: list[BulkRun] = field(default_factory=list)
    conn: list[ConnRun] = field(default_factory=list)
    latency: list[LatencyRun] = field(default_factory=list)
    disruption: list[l4_disruption.Disruption] = field(default_factory=list)
    background: dict[str, float] = field(default_factory=dict)
    repeated: dict[str, int] = field(default_factory=dict)
    ebpf: dict[str, int] = field(default_factory=dict)  # what the TC program counted, summed


# --- measuring -----------------------------------------------------------------------------------


def cpu_ticks() -> dict[int, tuple[int, int]]:
    """Per CPU: (busy, all) ticks from /proc/stat; busy counts irq and softirq (the kernel's
    packet processing, where the eBPF program runs), not steal."""
    ticks = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        user, nice, system, idle, iowait, irq, softirq, steal = (
            [int(value) for value in values] + [0] * 8)[:8]
        busy = user + nice + system + irq + softirq
        ticks[int(name[3:])] = (busy, busy + idle + iowait + steal)
    return ticks


def busy_between(start: dict[int, tuple[int, int]],
                 end: dict[int, tuple[int, int]]) -> dict[int, float]:
    return {cpu: (end[cpu][0] - start[cpu][0]) / max(1, end[cpu][1] - start[cpu][1])
            for cpu in start if cpu in end}


def rotated(names: Sequence[str], round_index: int) -> list[str]:
    shift = round_index % len(names) if names else 0
    return [*names[shift:], *names[:shift]]


@dataclass(frozen=True, slots=True)
class Metered:
    answer: dict[str, Any]
    proxy_cpu: float | None
    cpu_busy: dict[int, float]


def measured(target: Target, command: dict[str, Any], timeout_s: float) -> Metered:
    pids = [target.proxy.pid if target.proxy is not None else None]
    ticks = cpu_ticks()
    with machine.cpu_meter(pids) as shares:
        answer = target.agent.ask({**command, "host": target.host, "port": target.port},
                                  timeout_s)
    return Metered(answer, shares[0], busy_between(ticks, cpu_ticks()))


def quietly(settings: Settings, pids: Sequence[int], run: Callable[[], Any]) -> tuple[Any, float,
                                                                                       int]:
    """``machine.measure_quietly`` with a shorter wait for an idle machine: run, and repeat a
    run during which other processes used more than BUSY_BACKGROUND_CPU (up to
    ``noisy_retries`` times); keep the attempt with the least background load."""
    attempts = []
    for attempt in range(settings.noisy_retries + 1):
        machine.wait_quiet(settings.quiet_s)
        before = machine.machine_snapshot(pids)
        result = run()
        load = machine.background_cpu(before, machine.machine_snapshot(pids))
        attempts.append((load, attempt, result))
        if load <= machine.BUSY_BACKGROUND_CPU:
            break
        console.print(f"  [yellow]background load {load:.2f} CPU during the run[/]")
    load, _, result = min(attempts, key=lambda item: (item[0], item[1]))
    return result, load, len(attempts) - 1


def bulk_run(target: Target, settings: Settings, round_index: int,
             connections: int) -> BulkRun:
    metered = measured(target, {"op": "bulk", "connections": connections,
                                "seconds": settings.bulk_s,
                                "max_bytes": settings.bulk_max_bytes},
                       settings.bulk_s + 6 * l4_targets.IO_TIMEOUT)
    answer = metered.answer
    seconds = max(float(answer["seconds"]), 1e-9)
    return BulkRun(target.name, round_index, connections, int(answer["bytes"]), seconds,
                   answer["bytes"] * 8 / seconds / 1e9, int(answer["errors"]),
                   list(answer["error_detail"]), metered.proxy_cpu, metered.cpu_busy)


def conn_run(target: Target, settings: Settings, round_index: int, concurrency: int) -> ConnRun:
    metered = measured(target, {"op": "conn", "concurrency": concurrency,
                                "count": settings.conn_count(concurrency),
                                "seconds": settings.conn_s},
                       settings.conn_s + 3 * l4_targets.IO_TIMEOUT)
    answer = metered.answer
    seconds = max(float(answer["seconds"]), 1e-9)
    return ConnRun(target.name, round_index, concurrency, int(answer["completed"]), seconds,
                   answer["completed"] / seconds, int(answer["errors"]),
                   dict(answer["error_detail"]), metered.proxy_cpu, metered.cpu_busy)


def latency_run(target: Target, settings: Settings, round_index: int) -> LatencyRun:
    metered = measured(target, {"op": "rr", "count": settings.rr_count,
                                "seconds": settings.rr_s},
                       settings.rr_s + 3 * l4_targets.IO_TIMEOUT)
    times = sorted(float(value) for value in metered.answer["rtt_us"])
    return LatencyRun(target.name, round_index, len(times),
                      l4_report.percentile(times, 0.50), l4_report.percentile(times, 0.90),
                      l4_report.percentile(times, 0.99),
                      sum(times) / len(times) if times else float("nan"))


def in_rounds(setup: Setup, settings: Settings, results: Results, phase: str, label: str,
              rounds: int, measure: Callable[[Target, int], Any],
              describe: Callable[[Any], str]) -> list[Any]:
    names = [name for name in l4_report.TARGET_ORDER
             if name in setup.targets and phase in setup.targets[name].phases]
    runs = []
    for round_index in range(rounds):
        for name in rotated(names, round_index):
            target = setup.targets[name]
            try:
                with target.session():
                    run, load, discarded = quietly(
                        settings, setup.pids, lambda t=target, r=round_index: measure(t, r))
            except (AgentError, InferlaneError) as error:  # InferlaneError: eBPF attach/detach
                console.print(f"  [red]{label} {name} r{round_index + 1} failed:[/] {error}")
                setup.facts.append(f"{label}, {name}, round {round_index + 1}: the run failed "
                                   f"and is missing ({str(error).splitlines()[0]}).")
                continue
            key = f"{label} {name} r{round_index + 1}"
            results.background[key] = load
            if discarded:
                results.repeated[key] = discarded
            runs.append(run)
            console.print(f"  [{label} {round_index + 1}/{rounds}] {name}: "
                          f"{describe(run)}")
    return runs


def measure_all(setup: Setup, settings: Settings, results: Results) -> None:
    for connections in settings.concurrency:
        label = f"bulk c={connections}"
        console.rule(f"throughput: bulk TCP, {connections} connection(s), "
                     f"{settings.bulk_s:g} s per run")
        results.bulk += in_rounds(
            setup, settings, results, "bulk", label, settings.bulk_rounds,
            lambda target, r, c=connections: bulk_run(target, settings, r, c),
            lambda run: f"{run.gbps:.2f} Gbit/s, errors {run.errors}")
    for concurrency in settings.concurrency:
        label = f"conn c={concurrency}"
        console.rule(f"connections/s: {concurrency} in flight, up to "
                     f"{settings.conn_count(concurrency)} or {settings.conn_s:g} s")
        results.conn += in_rounds(
            setup, settings, results, "conn", label, settings.rounds,
            lambda target, r, c=concurrency: conn_run(target, settings, r, c),
            lambda run: f"{run.rate:,.0f}/s ({run.completed} done, errors {run.errors})")
    console.rule(f"latency: {settings.rr_count} round trips of 64 bytes on one connection")
    results.latency = in_rounds(
        setup, settings, results, "rr", "rr", settings.rounds,
        lambda target, r: latency_run(target, settings, r),
        lambda run: f"p50 {run.p50:.1f} us, p99 {run.p99:.1f} us ({run.count} round trips)")
    console.rule(f"flow disruption: {settings.flows:,} flows over {settings.backends} backends, "
                 "one removed")
    results.disruption = l4_disruption.measure(settings.flows, settings.backends)
    for item in results.disruption:
        console.print(f"  {item.method}: {item.moved_mean:.2%} of flows moved")


# --- command line --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="L4 load balancing: user space and eBPF vs "
                                                 "direct, and flow disruption (issue 7).")
    parser.add_argument("--quick", action="store_true", help="short smoke run (~1 minute)")
    parser.add_argument("--out", type=Path, help="Markdown file whose L4 section to replace")
    parser.add_argument("--rounds", type=int, help="rounds of connections/s and latency runs")
    parser.add_argument("--bulk-rounds", type=int, help="rounds of throughput runs")
    parser.add_argument("--bulk-seconds", type=float, help="seconds per throughput run")
    parser.add_argument("--no-veth", action="store_true",
                        help="loopback only: no namespaces, no eBPF")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    settings = QUICK if args.quick else Settings()
    if args.rounds is not None:
        settings = replace(settings, rounds=args.rounds)
    if args.bulk_rounds is not None:
        settings = replace(settings, bulk_rounds=args.bulk_rounds)
    if args.bulk_seconds is not None:
        settings = replace(settings, bulk_s=args.bulk_seconds)
    if settings.rounds < 1 or settings.bulk_rounds < 1 or settings.bulk_s <= 0:
        raise SystemExit("--rounds and --bulk-rounds must be >= 1, --bulk-seconds > 0")
    return settings


def collect_versions() -> dict[str, str]:
    versions = {"inferlane": machine.inferlane_version()}
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        versions["uvloop"] = importlib.metadata.version("uvloop")
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        first = subprocess.run(["clang", "--version"], capture_output=True, text=True,
                               timeout=10, check=False).stdout.splitlines()
        if first:
            versions["clang"] = first[0].split(" version ")[-1].split()[0]
    return versions


def placement(layout: machine.CpuLayout) -> str:
    if not layout.client:
        return "no pinning (all processes free to use all CPUs)"
    return (f"load agents and sinks pinned to CPU {','.join(map(str, layout.client))}; each "
            f"user-space proxy to CPU {','.join(map(str, layout.proxy))} (one core to itself; "
            "the latency-only 'shared CPU' proxy to the load's CPU); the eBPF program runs in "
            "the kernel wherever the packets are processed (the sender's CPU)")


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(arguments)
    settings = settings_from(args)
    run_dir = RESULTS_DIR / dt.datetime.now().strftime("l4-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    layout = machine.cpu_layout(not args.no_pin)
    if layout.client:
        os.sched_setaffinity(0, layout.client)
    env = machine.environment("benchmarks/l4.py", arguments, layout, collect_versions())
    env = replace(env, layout=placement(layout))
    console.print(f"CPU placement: {env.layout}; logs in {run_dir}")
    started = time.monotonic()
    results = Results()
    with contextlib.ExitStack() as stack:
        setup = Setup({}, {}, [], [])
        l4_targets.setup_loopback(layout, run_dir, stack, setup)
        if args.no_veth:
            setup.skipped.update(dict.fromkeys(("veth-direct", "veth-ebpf", "veth-userspace"),
                                               "--no-veth"))
        else:
            l4_targets.setup_veth(layout, run_dir, stack, setup, results.ebpf)
        for name, reason in setup.skipped.items():
            console.print(f"[yellow]{name} skipped:[/] {reason}")
        before = machine.machine_snapshot(setup.pids)
        measure_all(setup, settings, results)
        background = machine.background_note(before, machine.machine_snapshot(setup.pids),
                                             results.background, results.repeated)
        exited = [f"{target.proxy.name} exited with {target.proxy.popen.returncode} during "
                  f"the run (log {target.proxy.log_path})."
                  for target in setup.targets.values()
                  if target.proxy is not None and not target.proxy.alive()]
    env = replace(env, duration=f"{(time.monotonic() - started) / 60:.1f} min")
    cpus = (layout.client[0], layout.proxy[0]) if layout.client else (None, None)
    summary = l4_report.summarize(results, settings, list(setup.targets), setup.skipped, cpus)
    incidents = [*exited, *setup.facts, background]
    raw = l4_report.save_raw(run_dir, env, settings, results, summary)
    l4_report.report(env, settings, summary, incidents, results.ebpf, args.out)
    console.print(f"raw results: {raw}")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt as interrupt:
        console.print(f"interrupted ({interrupt}); every started process was stopped")
        raise SystemExit(130) from None
