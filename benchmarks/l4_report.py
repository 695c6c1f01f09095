"""Summaries and report of the L4 benchmark (``l4.py``, issue 7).

Reduces the runs to medians over rounds, pairs every path with the direct path of its own
topology in the same round (ratios, added latency), states the verdicts on issue 7's targets
and the caveats a reader needs, prints the tables, and writes the raw JSON and the
"L4 load balancing (issue 7)" section of the results page. Pure except for ``report`` and
``save_raw``.
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
    # Types only: l4.py imports this module, and runs as ``__main__``.
    from l4 import BulkRun, ConnRun, LatencyRun, Results, Settings
    from l4_disruption import Disruption

SECTION_HEADING = "## L4 load balancing (issue 7)"
# Issue 7's targets.
EBPF_RATIO_MIN = 0.8  # eBPF throughput / direct throughput, on veth
USERSPACE_GBPS_MIN = 1.0  # user-space proxy on loopback, one core
SPREAD = 1.3  # a path's fastest throughput round / its slowest, beyond which a note says so

TARGET_ORDER = ("lo-direct", "lo-userspace", "lo-userspace-shared", "veth-direct", "veth-ebpf",
                "veth-userspace")
LABELS = {
    "lo-direct": "direct (loopback)",
    "lo-userspace": "user space (loopback)",
    "lo-userspace-shared": "user space, proxy on the load's CPU (loopback)",
    "veth-direct": "direct (veth, via lb)",
    "veth-ebpf": "eBPF (veth)",
    "veth-userspace": "user space (veth, in lb)",
}
BASELINE = {"lo-userspace": "lo-direct", "lo-userspace-shared": "lo-direct",
            "veth-ebpf": "veth-direct", "veth-userspace": "veth-direct"}
LATENCY_ONLY = frozenset({"lo-userspace-shared"})
console = machine.console


# --- statistics ----------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Linear interpolation between closest ranks of an ascending sequence; NaN when empty."""
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    clean = [value for value in values if not math.isnan(value)]
    return statistics.median(clean) if clean else float("nan")


def paired(runs: Sequence[Any], target: str, baseline: str, level: Callable[[Any], int],
           metric: Callable[[Any], float], combine: Callable[[float, float], float],
           at: int | None = None) -> float:
    """Median over rounds of ``combine(metric(target run), metric(baseline run))``, the two
    runs taken from the same round (and the same ``level``: connections, concurrency)."""
    base = {(run.round, level(run)): metric(run) for run in runs if run.target == baseline}
    values = [combine(metric(run), base[(run.round, level(run))]) for run in runs
              if run.target == target and (at is None or level(run) == at)
              and (run.round, level(run)) in base]
    return median(values)


def _ratio(value: float, base: float) -> float:
    return value / base if base > 0 else float("nan")


def _difference(value: float, base: float) -> float:
    return value - base


# --- summaries -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RateSummary:
    """Gbit/s or connections/s of one path at one level (connections or concurrency)."""

    target: str
    level: int
    value: float  # median over rounds
    low: float
    high: float
    ratio: float  # median of per-round value / baseline's value; NaN for a baseline
    proxy_cpu: float | None  # the inferlane process (1.0 = one core)
    load_busy: float  # the load CPU's busy fraction (/proc/stat, softirq included)
    other_busy: float  # the other CPU's
    errors: int
    rounds: int


@dataclass(frozen=True, slots=True)
class LatencySummary:
    target: str
    p50: float  # microseconds, median over rounds
    p99: float
    added_p50: float  # median over rounds of (target - baseline), NaN for a baseline
    added_p99: float
    count: int  # round trips measured, all rounds


@dataclass(frozen=True, slots=True)
class Summary:
    throughput: list[RateSummary]
    connections: list[RateSummary]
    latency: list[LatencySummary]
    disruption: list[Disruption]
    measured: list[str]
    skipped: dict[str, str]
    levels: tuple[int, ...]
    pinned: bool


def _rates(runs: Sequence[BulkRun] | Sequence[ConnRun], names: Sequence[str],
           levels: Sequence[int], level: Callable[[Any], int], value: Callable[[Any], float],
           cpus: tuple[int | None, int | None]) -> list[RateSummary]:
    rows = []
    for name in names:
        for at in levels:
            mine = [run for run in runs if run.target == name and level(run) == at]
            if not mine:
                continue
            values = [value(run) for run in mine]
            cpu = [run.proxy_cpu for run in mine if run.proxy_cpu is not None]
            baseline = BASELINE.get(name)
            rows.append(RateSummary(
                target=name, level=at, value=median(values), low=min(values), high=max(values),
                ratio=float("nan") if baseline is None else paired(
                    runs, name, baseline, level, value, _ratio, at),
                proxy_cpu=median(cpu) if cpu else None,
                load_busy=_busy(mine, cpus[0]), other_busy=_busy(mine, cpus[1]),
                errors=sum(run.errors for run in mine), rounds=len(mine)))
    return rows


def _busy(runs: Sequence[BulkRun | ConnRun], cpu: int | None) -> float:
    if cpu is None:
        return float("nan")
    return median([run.cpu_busy.get(cpu, float("nan")) for run in runs])


def summarize_latency(runs: Sequence[LatencyRun], names: Sequence[str]) -> list[LatencySummary]:
    rows = []
    for name in names:
        mine = [run for run in runs if run.target == name]
        if not mine:
            continue
        baseline = BASELINE.get(name)

        def added(metric: Callable[[Any], float], name: str = name,
                  baseline: str | None = baseline) -> float:
            if baseline is None:
                return float("nan")
            return paired(runs, name, baseline, lambda run: 0, metric, _difference)

        rows.append(LatencySummary(
            target=name, p50=median([run.p50 for run in mine]),
            p99=median([run.p99 for run in mine]), added_p50=added(lambda run: run.p50),
            added_p99=added(lambda run: run.p99), count=sum(run.count for run in mine)))
    return rows


def summarize(results: Results, settings: Settings, measured: Sequence[str],
              skipped: dict[str, str], cpus: tuple[int | None, int | None]) -> Summary:
    names = [name for name in TARGET_ORDER if name in measured]
    return Summary(
        throughput=_rates(results.bulk, names, settings.concurrency,
                          lambda run: run.connections, lambda run: run.gbps, cpus),
        connections=_rates(results.conn, names, settings.concurrency,
                           lambda run: run.concurrency, lambda run: run.rate, cpus),
        latency=summarize_latency(results.latency, names),
        disruption=list(results.disruption),
        measured=names,
        skipped=dict(skipped),
        levels=tuple(settings.concurrency),
        pinned=cpus[0] is not None,
    )


def _find(rows: Sequence[Any], target: str, level: int | None = None) -> Any:
    for row in rows:
        if row.target == target and (level is None or row.level == level):
            return row
    return None


# --- verdicts and notes --------------------------------------------------------------------------


def verdicts(summary: Summary) -> list[str]:
    """Each target of the issue: met, MISSED (with the numbers) or not measured (why)."""
    lines = []
    for level in summary.levels:
        row = _find(summary.throughput, "veth-ebpf", level)
        base = _find(summary.throughput, "veth-direct", level)
        what = f"eBPF path throughput on veth, {_connections(level)}"
        if row is None or base is None:
            reason = summary.skipped.get("veth-ebpf") or summary.skipped.get("veth-direct") \
                or "no run completed"
            lines.append(f"{what}: not measured -- not available: {reason}.")
            continue
        verdict = "met" if row.ratio >= EBPF_RATIO_MIN else "MISSED"
        lines.append(f"{what}: {row.ratio:.2f}x direct ({row.value:.2f} vs {base.value:.2f} "
                     f"Gbit/s, medians; target >= {EBPF_RATIO_MIN:g}x) -- {verdict}.")
    for level in summary.levels:
        row = _find(summary.throughput, "lo-userspace", level)
        what = f"User-space proxy throughput on loopback with one core, {_connections(level)}"
        if row is None:
            reason = summary.skipped.get("lo-userspace", "no run completed")
            lines.append(f"{what}: not measured -- not available: {reason}.")
            continue
        verdict = "met" if row.value >= USERSPACE_GBPS_MIN else "MISSED"
        core = "" if summary.pinned else " (NOT pinned: the one-core condition did not hold)"
        cpu = "" if row.proxy_cpu is None else f"; the proxy used {row.proxy_cpu:.2f} of a core"
        lines.append(f"{what}{core}: {row.value:.2f} Gbit/s (median; target >= "
                     f"{USERSPACE_GBPS_MIN:g} Gbit/s{cpu}) -- {verdict}.")
    by_method = {item.method: item for item in summary.disruption}
    maglev, modulo = by_method.get("maglev"), by_method.get("modulo (hash % N)")
    if maglev is not None and modulo is not None:
        lines.append(f"Flow disruption (no numeric target; ideal {maglev.ideal:.0%}): removing one "
                     f"of {maglev.backends} backends moves {maglev.moved_mean:.2%} of flows with "
                     f"maglev and {modulo.moved_mean:.2%} with the modulo (\"round-robin\") "
                     "hash.")
    return lines


def _span(values: Sequence[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.0%}" if round(low, 2) == round(high, 2) else f"{low:.0%}-{high:.0%}"


def _connections(level: int) -> str:
    return "1 connection" if level == 1 else f"{level} connections"


def notes(summary: Summary, settings: Settings, ebpf_totals: dict[str, int]) -> list[str]:
    """Facts a reader needs to trust or distrust the numbers, derived from the runs."""
    out: list[str] = []
    busy = [row.load_busy for row in summary.throughput
            if row.target in ("lo-direct", "veth-direct")]
    if busy and summary.pinned:
        out.append("Direct throughput is what one CPU moves: sender and sink (and, on veth, "
                   "lb's forwarding in softirq) share the load CPU, "
                   f"{_span(busy)} busy in the direct runs. A user-space proxy moves part of "
                   "the copying to its own CPU, so it can come out above direct; the eBPF "
                   "program runs in the kernel on the load CPU too, so eBPF vs direct compares "
                   "equal CPU budgets.")
    own = _find(summary.latency, "lo-userspace")
    shared = _find(summary.latency, "lo-userspace-shared")
    if own is not None and shared is not None:
        out.append(f"Added latency of the user-space proxy: {own.added_p50:+.1f} us p50 with the "
                   f"proxy on a CPU of its own, {shared.added_p50:+.1f} us with it on the load's "
                   "CPU. The difference is the cost of crossing CPUs in this VM: a round trip "
                   "through a proxy on the other CPU wakes an idle vCPU four times, through "
                   "the shared-CPU proxy never. So the shared-CPU row is closer to the proxy's "
                   "own work, the other to what a client on another core sees here.")
    busy = [row.load_busy for row in summary.connections
            if row.target in ("lo-direct", "veth-direct")]
    if busy and summary.pinned:
        out.append("Connections/s: the client and the backend are Python (uvloop) on the load "
                   f"CPU, {_span(busy)} busy in the direct runs, so the direct rows show the "
                   "load side's limit, not the kernel's.")
    if ebpf_totals:
        out.append(f"eBPF: attached for each eBPF run only ({ebpf_totals.get('attachments', 0)} "
                   "times, a fresh flow table each; the direct rows ran without the program). "
                   f"The program counted {ebpf_totals.get('packets', 0):,} packets to the "
                   f"backend and {ebpf_totals.get('reply_packets', 0):,} replies (GSO segments "
                   f"counted), and dropped {ebpf_totals.get('dropped', 0):,}.")
    spread = [f"{LABELS[row.target]} at {row.level} {row.low:.1f}-{row.high:.1f} Gbit/s"
              for row in summary.throughput if row.rounds > 1 and row.high > SPREAD * row.low]
    if spread:
        out.append(f"Throughput rounds that spread by more than {SPREAD:g}x: "
                   f"{'; '.join(spread)}. A median of a few such rounds depends on how many "
                   "fast runs it caught, and so does a ratio between two of them: read those "
                   "rows with their ranges.")
    errors = [row for row in [*summary.throughput, *summary.connections] if row.errors]
    for row in errors:
        out.append(f"{LABELS[row.target]} at {row.level}: {row.errors} failed "
                   "connections over its runs.")
    out.append("Each path has a backend port of its own, so no two paths share a "
               "client->backend 4-tuple: a SYN meeting the backend's TIME_WAIT of another "
               "path's connection would stall on a retransmit, and the eBPF program's reply "
               "entry of an ended VIP flow (TCP entries live until LRU eviction) rewrites the "
               "replies of a later direct connection with the same 4-tuple.")
    return out


# --- tables --------------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    if value is None or math.isnan(value):
        return "--"
    return format(value, spec)


THROUGHPUT_HEAD = ["path", "connections", "Gbit/s (median)", "min-max of rounds",
                   "x direct", "proxy CPU", "CPU busy (load / other)", "errors"]
CONN_HEAD = ["path", "in flight", "connections/s (median)", "min-max of rounds", "x direct",
             "proxy CPU", "CPU busy (load / other)", "errors"]
LATENCY_HEAD = ["path", "p50 us", "p99 us", "added p50 us", "added p99 us", "round trips"]
DISRUPTION_HEAD = ["method", "flows moved (mean)", "min-max over the removed backend",
                   "moved beyond the removed backend's flows (mean / max)",
                   "busiest backend vs fair share"]


def rate_rows(rows: Sequence[RateSummary], summary: Summary, spec: str) -> list[list[str]]:
    out = []
    for name in TARGET_ORDER:
        if name in LATENCY_ONLY:
            continue
        for level in summary.levels:
            row = _find(rows, name, level)
            if row is None:
                reason = summary.skipped.get(name)
                if reason is not None:
                    out.append([LABELS[name], str(level), f"not available: {reason}", "", "",
                                "", "", ""])
                continue
            out.append([
                LABELS[name], str(level), _fmt(row.value, spec),
                f"{_fmt(row.low, spec)}-{_fmt(row.high, spec)}",
                "--" if name not in BASELINE else _fmt(row.ratio, ".2f") + "x",
                _fmt(row.proxy_cpu, ".2f"),
                f"{_fmt(row.load_busy, '.0%')} / {_fmt(row.other_busy, '.0%')}",
                str(row.errors)])
    return out


def latency_rows(summary: Summary) -> list[list[str]]:
    out = []
    for name in TARGET_ORDER:
        row = _find(summary.latency, name)
        if row is None:
            reason = summary.skipped.get(name)
            if reason is not None:
                out.append([LABELS[name], f"not available: {reason}", "", "", "", ""])
            continue
        out.append([LABELS[name], _fmt(row.p50, ".1f"), _fmt(row.p99, ".1f"),
                    _fmt(row.added_p50, "+.1f"), _fmt(row.added_p99, "+.1f"), str(row.count)])
    return out


def disruption_rows(items: Sequence[Disruption]) -> list[list[str]]:
    return [[item.method, f"{item.moved_mean:.2%}",
             f"{item.moved_min:.2%}-{item.moved_max:.2%}",
             f"{item.extra_mean:.2%} / {item.extra_max:.2%}", f"{item.imbalance:.3f}x"]
            for item in items]


# --- Markdown and raw results --------------------------------------------------------------------


def markdown_section(env: machine.Environment, settings: Settings, summary: Summary,
                     verdict_lines: Sequence[str], note_lines: Sequence[str]) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in env.versions.items())
    skipped = "".join(f"; {LABELS[name]} not measured ({reason})"
                      for name, reason in summary.skipped.items())
    disruption = summary.disruption[0] if summary.disruption else None
    parts = [
        SECTION_HEADING,
        "",
        "Generated by `benchmarks/l4.py` (see `benchmarks/README.md`); numbers are not edited "
        "by hand.",
        "",
        f"- Command: `{env.command}`",
        f"- Date: {env.date} (start; the run took {env.duration})",
        f"- Machine: {env.cpu_model}, {env.cpus} CPUs, {env.memory} RAM, Linux {env.kernel}, "
        f"Python {env.python}",
        f"- Versions: {versions}",
        f"- CPU placement: {env.layout}",
        f"- Paths: {', '.join(LABELS[name] for name in summary.measured)}{skipped}",
        f"- Rounds: {settings.bulk_rounds} (throughput), {settings.rounds} (connections/s, "
        "latency), paths' order rotated each round; every number is the "
        "median over rounds; \"x direct\" and \"added\" are medians of per-round comparisons "
        "with the direct path of the same topology (loopback, or veth through the lb "
        "namespace).",
        "",
        f"### Throughput: bulk TCP into a sink ({settings.bulk_s:g} s per run)",
        "",
        machine.markdown_table(THROUGHPUT_HEAD,
                               rate_rows(summary.throughput, summary, ".2f")),
        "",
        "### Connections/s: connect, 64-byte request, 64-byte reply, close "
        f"(up to {settings.conn_count_single:,} / {settings.conn_count_many:,} connections or "
        f"{settings.conn_s:g} s per run)",
        "",
        machine.markdown_table(CONN_HEAD, rate_rows(summary.connections, summary, ",.0f")),
        "",
        f"### Added latency: 64-byte round trips on one connection (up to {settings.rr_count:,} "
        f"or {settings.rr_s:g} s per run)",
        "",
        machine.markdown_table(LATENCY_HEAD, latency_rows(summary)),
        "",
    ]
    if disruption is not None:
        parts += [
            f"### Flow disruption: {disruption.flows:,} flows over {disruption.backends} "
            f"backends, each backend removed in turn (ideal: {disruption.ideal:.0%} move)",
            "",
            machine.markdown_table(DISRUPTION_HEAD, disruption_rows(summary.disruption)),
            "",
            "Pure computation (`benchmarks/l4_disruption.py`), no sockets: the fraction of "
            "flows placed on another backend once one is gone. It is what breaks without "
            "connection tracking (a load balancer restart, a second instance, a flow evicted "
            "from a full table); with it, inferlane's data planes keep every flow of the "
            "remaining backends.",
            "",
        ]
    parts += [
        "### Against the issue's targets",
        "",
        *[f"- {line}" for line in verdict_lines],
        "",
        "### Notes",
        "",
        *[f"- {line}" for line in note_lines],
        "",
    ]
    return "\n".join(parts)


def save_raw(run_dir: Path, env: machine.Environment, settings: Settings, results: Results,
             summary: Summary) -> Path:
    path = run_dir / "results.json"
    payload = {"environment": asdict(env), "settings": asdict(settings),
               "summary": asdict(summary), "runs": asdict(results)}
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def report(env: machine.Environment, settings: Settings, summary: Summary,
           incidents: Sequence[str], ebpf_totals: dict[str, int], out: Path | None) -> None:
    machine.print_table("Throughput, bulk TCP (Gbit/s, medians of rounds)", THROUGHPUT_HEAD,
                        rate_rows(summary.throughput, summary, ".2f"))
    machine.print_table("Short connections per second (medians of rounds)", CONN_HEAD,
                        rate_rows(summary.connections, summary, ",.0f"))
    machine.print_table("64-byte round trips on one connection (microseconds)", LATENCY_HEAD,
                        latency_rows(summary))
    if summary.disruption:
        machine.print_table("Flows moved when one backend is removed", DISRUPTION_HEAD,
                            disruption_rows(summary.disruption))
    verdict_lines = verdicts(summary)
    note_lines = [*notes(summary, settings, ebpf_totals), *incidents]
    for line in [*verdict_lines, *note_lines]:
        console.print(f"- {line}")
    if out is not None:
        section = markdown_section(env, settings, summary, verdict_lines, note_lines)
        machine.write_markdown(out, SECTION_HEADING, section, env)
        console.print(f"wrote the '{SECTION_HEADING[3:]}' section of {out}")
