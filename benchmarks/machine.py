"""Measuring the machine a benchmark runs on, shared by every benchmark in this folder.

Nothing here knows what is being benchmarked:

- CPU placement: ``cpu_layout`` splits the CPUs between the load side (client, upstream) and the
  proxy under test, for ``taskset``;
- CPU metering: ``cpu_meter`` (per process, from /proc), ``machine_snapshot`` and
  ``background_cpu`` (how much CPU processes the benchmark did not start used), ``wait_quiet`` and
  ``measure_quietly`` (run on an idle machine, repeat a run disturbed by other load);
- the environment a report states: CPU model, memory, kernel, versions, commit;
- Markdown plumbing: tables, and ``write_markdown``, which replaces one ``## ...`` section of a
  results page (``docs/benchmarks.md``) and keeps the others.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import math
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from rich.console import Console
from rich.table import Table

BENCH_DIR = Path(__file__).resolve().parent
# A run during which processes not started here used more CPU than this is repeated.
BUSY_BACKGROUND_CPU = 0.2
# Before a run, wait until the whole machine uses less than this.
QUIET_CPU = 0.1
# Wide enough for the tables when the output is a file or a pipe.
console = Console(width=None if sys.stdout.isatty() else 140)
T = TypeVar("T")


# --- CPU placement -------------------------------------------------------------------------------


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


def cpu_layout(pin: bool) -> CpuLayout:
    """The first CPU for the load side, the rest for the proxies; no pinning when ``pin`` is
    false, with fewer than 2 CPUs or without taskset."""
    available = sorted(os.sched_getaffinity(0))
    if not pin or len(available) < 2 or shutil.which("taskset") is None:
        return CpuLayout((), ())
    return CpuLayout((available[0],), tuple(available[1:]))


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


# --- running on a quiet machine ------------------------------------------------------------------


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


def measure_quietly(
    pids: Sequence[int], noisy_retries: int, measure: Callable[[], T]
) -> tuple[T, float, int]:
    """Run ``measure`` on an idle machine; while processes this benchmark did not start (all
    but this process, its children and ``pids``) use more than BUSY_BACKGROUND_CPU during it,
    run it again (up to ``noisy_retries`` times) and keep the attempt with the least background
    load. The criterion never looks at the result.
    Returns the kept run, its background load and how many attempts were discarded."""
    attempts: list[tuple[float, int, T]] = []
    for attempt in range(noisy_retries + 1):
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


# --- environment ---------------------------------------------------------------------------------


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
            cwd=BENCH_DIR.parent, check=False,
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


def environment(
    script: str, argv: Sequence[str], layout: CpuLayout, versions: dict[str, str]
) -> Environment:
    """The machine and software a run of ``python script argv...`` measures, as of now."""
    return Environment(
        command=shlex.join(["python", script, *argv]),
        date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        cpu_model=cpu_model(),
        cpus=os.cpu_count() or 0,
        memory=memory_total(),
        kernel=platform.release(),
        python=platform.python_version(),
        versions=versions,
        layout=layout.describe(),
    )


def machine_notes(env: Environment) -> str:
    """The caveat at the top of the results page, common to every benchmark on it."""
    return (
        f"All numbers on this page come from one small shared virtual machine ({env.cpu_model}, "
        f"{env.cpus} CPUs, {env.memory} RAM): load generator, proxy and upstream share the same "
        "cores, and raw requests/s move by tens of percent between passes. Compare rows measured "
        "in the same run, which is why every benchmark runs its targets side by side in "
        "alternating rounds; do not compare numbers across runs or machines."
    )


# --- Markdown ------------------------------------------------------------------------------------


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


def write_markdown(path: Path, heading: str, section: str, env: Environment) -> None:
    """Replace (or append) the section of ``path`` that starts with ``heading`` (a ``## ...``
    line) by ``section``, keeping the others; create the file with its header if needed."""
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{machine_notes(env)}\n"
    start = text.find(heading)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(heading))
        tail = text[end + 1 :] if end >= 0 else ""
        text = text[:start] + section + ("\n" + tail if tail else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n")
