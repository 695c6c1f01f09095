"""The pure pieces of ``benchmarks/l4.py``: flow disruption (``l4_disruption``) and the
report's statistics, verdicts and tables (``l4_report``), on made-up runs; no sockets.

``benchmarks/`` is a folder of scripts, not a package: the modules are loaded from their files.
``l4_report`` imports ``machine`` (Markdown tables; rich, no I/O at import), so that one is
loaded too; ``l4`` itself (processes, namespaces) is not needed: runs and settings are
stand-ins with the same fields.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from inferlane.l4.flows import FlowKey

_BENCH = Path(__file__).resolve().parents[3] / "benchmarks"


def _load(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _BENCH / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


_load("machine")
disruption = _load("l4_disruption")
report = _load("l4_report")


# -- flow disruption ----------------------------------------------------------------------------


@pytest.mark.parametrize(("before", "after", "moved"), [
    ([], [], 0.0),
    (["a", "b"], ["a", "b"], 0.0),
    (["a", "b", "c", "d"], ["a", "x", "c", "y"], 0.5),
    (["a", "b"], ["b", "a"], 1.0),
])
def test_moved_fraction(before: list[str], after: list[str], moved: float) -> None:
    assert disruption.moved_fraction(before, after) == moved


def test_moved_fraction_needs_placements_of_the_same_flows() -> None:
    with pytest.raises(ValueError, match="placements of 2 and 1 flows"):
        disruption.moved_fraction(["a", "b"], ["a"])


def test_flows_and_backends_are_seeded_and_distinct() -> None:
    assert disruption.make_flows(50, seed=3) == disruption.make_flows(50, seed=3)
    assert disruption.make_flows(50, seed=3) != disruption.make_flows(50, seed=4)
    keys = [backend.key for backend in disruption.make_backends(300)]
    assert len(set(keys)) == 300


SMALL_TABLE = 2003  # prime: quick table builds, still ~200 slots per backend


@pytest.mark.parametrize(("name", "method", "low", "high"), [
    # The removed backend's ~1/N must move; Maglev adds a little, modulo ~(N-2)/N more.
    ("maglev", disruption.maglev(FlowKey.hash64, SMALL_TABLE), 0.09, 0.13),
    ("modulo", disruption.METHODS["modulo (hash % N)"], 0.85, 0.95),
    ("rendezvous", disruption.METHODS["rendezvous (source-hash)"], 0.08, 0.12),
])
def test_disruption_of_removing_one_of_ten(name: str, method: Any, low: float,
                                           high: float) -> None:
    flows = disruption.make_flows(4000)
    result = disruption.disruption(name, method, flows, disruption.make_backends(10))
    assert (result.method, result.flows, result.backends) == (name, 4000, 10)
    assert result.ideal == pytest.approx(0.1)
    assert low <= result.moved_min <= result.moved_mean <= result.moved_max <= high
    # Whatever the method, the flows of the removed backend moved; "extra" is the rest.
    assert result.extra_mean == pytest.approx(result.moved_mean - 0.1)
    assert result.extra_max >= result.extra_mean >= 0
    if name == "rendezvous":
        assert result.extra_max == 0, "rendezvous moves only the removed backend's flows"


def test_disruption_needs_two_backends() -> None:
    with pytest.raises(ValueError, match="at least two"):
        disruption.disruption("modulo", disruption.METHODS["modulo (hash % N)"],
                              disruption.make_flows(10), disruption.make_backends(1))


# -- statistics ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("values", "fraction", "expected"), [
    ([5.0], 0.99, 5.0),
    ([1.0, 2.0, 3.0, 4.0], 0.5, 2.5),
    ([1.0, 2.0, 3.0, 4.0], 0.0, 1.0),
    ([1.0, 2.0, 3.0, 4.0], 1.0, 4.0),
    (list(map(float, range(101))), 0.99, 99.0),
])
def test_percentile(values: list[float], fraction: float, expected: float) -> None:
    assert report.percentile(values, fraction) == pytest.approx(expected)


def test_percentile_and_median_of_nothing_are_nan() -> None:
    assert math.isnan(report.percentile([], 0.5))
    assert math.isnan(report.median([float("nan")]))


def bulk(target: str, round_: int, connections: int, gbps: float, *,
         proxy_cpu: float | None = None, errors: int = 0) -> SimpleNamespace:
    return SimpleNamespace(target=target, round=round_, connections=connections, gbps=gbps,
                           proxy_cpu=proxy_cpu, cpu_busy={0: 1.0, 1: 0.5}, errors=errors)


def test_ratios_pair_runs_of_the_same_round_and_level() -> None:
    runs = [bulk("veth-direct", 0, 1, 10.0), bulk("veth-ebpf", 0, 1, 9.0),
            bulk("veth-direct", 1, 1, 20.0), bulk("veth-ebpf", 1, 1, 10.0),
            bulk("veth-direct", 2, 1, 10.0), bulk("veth-ebpf", 2, 1, 7.0),
            bulk("veth-ebpf", 3, 1, 100.0),  # no direct run in round 3: not paired
            bulk("veth-direct", 0, 64, 1.0), bulk("veth-ebpf", 0, 64, 1.0)]
    ratio = report.paired(runs, "veth-ebpf", "veth-direct", lambda run: run.connections,
                          lambda run: run.gbps, report._ratio, at=1)
    assert ratio == pytest.approx(0.7)  # median of 0.9, 0.5, 0.7


def settings(**overrides: Any) -> SimpleNamespace:
    values = {"rounds": 2, "bulk_rounds": 2, "concurrency": (1, 64), "bulk_s": 2.0,
              "conn_count_single": 4000, "conn_count_many": 20000, "conn_s": 2.0,
              "rr_count": 5000, "rr_s": 3.0}
    return SimpleNamespace(**{**values, **overrides})


def results(bulk_runs: list[SimpleNamespace]) -> SimpleNamespace:
    latency = [SimpleNamespace(target=target, round=round_, count=100, p50=p50, p99=p50 * 2)
               for round_ in (0, 1)
               for target, p50 in (("lo-direct", 20.0), ("lo-userspace", 150.0),
                                   ("lo-userspace-shared", 40.0))]
    return SimpleNamespace(
        bulk=bulk_runs, conn=[], latency=latency,
        disruption=disruption.measure(2000, 10, methods={
            "maglev": disruption.maglev(FlowKey.hash64, SMALL_TABLE),
            "modulo (hash % N)": disruption.METHODS["modulo (hash % N)"]}))


def summary_of(bulk_runs: list[SimpleNamespace], skipped: dict[str, str]) -> Any:
    measured = sorted({run.target for run in bulk_runs} | {"lo-userspace-shared"})
    return report.summarize(results(bulk_runs), settings(), measured, skipped, (0, 1))


BULK = [run for round_ in (0, 1) for run in (
    bulk("lo-direct", round_, 1, 20.0), bulk("lo-userspace", round_, 1, 0.9, proxy_cpu=1.0),
    bulk("lo-direct", round_, 64, 20.0), bulk("lo-userspace", round_, 64, 3.0, proxy_cpu=0.8),
    bulk("veth-direct", round_, 1, 10.0), bulk("veth-ebpf", round_, 1, 9.0),
    bulk("veth-direct", round_, 64, 10.0), bulk("veth-ebpf", round_, 64, 7.5, errors=1))]


def test_verdicts_say_met_and_missed_with_the_numbers() -> None:
    lines = report.verdicts(summary_of(BULK, {}))
    assert lines[0] == ("eBPF path throughput on veth, 1 connection: 0.90x direct (9.00 vs "
                        "10.00 Gbit/s, medians; target >= 0.8x) -- met.")
    assert lines[1].endswith("0.75x direct (7.50 vs 10.00 Gbit/s, medians; target >= 0.8x) "
                             "-- MISSED.")
    assert lines[2] == ("User-space proxy throughput on loopback with one core, 1 connection: "
                        "0.90 Gbit/s (median; target >= 1 Gbit/s; the proxy used 1.00 of a "
                        "core) -- MISSED.")
    assert lines[3].endswith("-- met.")
    assert lines[4].startswith("Flow disruption (no numeric target; ideal 10%): removing one "
                               "of 10 backends moves")


def test_an_unavailable_ebpf_path_is_reported_with_its_reason() -> None:
    without = [run for run in BULK if run.target != "veth-ebpf"]
    summary = summary_of(without, {"veth-ebpf": "clang is not installed"})
    lines = report.verdicts(summary)
    assert lines[0] == ("eBPF path throughput on veth, 1 connection: not measured -- not "
                        "available: clang is not installed.")
    rows = report.rate_rows(summary.throughput, summary, ".2f")
    ebpf = [row for row in rows if row[0] == "eBPF (veth)"]
    assert [row[1:3] for row in ebpf] == [
        ["1", "not available: clang is not installed"],
        ["64", "not available: clang is not installed"]]


def test_tables_and_added_latency() -> None:
    summary = summary_of(BULK, {})
    rows = report.rate_rows(summary.throughput, summary, ".2f")
    assert rows[0] == ["direct (loopback)", "1", "20.00", "20.00-20.00", "--", "--",
                       "100% / 50%", "0"]
    assert rows[2] == ["user space (loopback)", "1", "0.90", "0.90-0.90", "0.04x", "1.00",
                       "100% / 50%", "0"]
    assert all(row[0] != "user space, proxy on the load's CPU (loopback)" for row in rows)
    latency = {row[0]: row for row in report.latency_rows(summary)}
    assert latency["user space (loopback)"][3:5] == ["+130.0", "+260.0"]
    assert latency["direct (loopback)"][3] == "--"
    notes = report.notes(summary, settings(), {})
    assert any("+130.0 us p50 with the proxy on a CPU of its own, +20.0 us" in line
               for line in notes)
    assert any("eBPF (veth) at 64: 2 failed connections" in line for line in notes)
    assert not any("spread" in line for line in notes)


def test_a_wide_spread_of_rounds_is_noted() -> None:
    runs = [*BULK, bulk("veth-direct", 2, 1, 25.0), bulk("veth-ebpf", 2, 1, 9.5)]
    notes = report.notes(summary_of(runs, {}), settings(), {})
    spread = [line for line in notes if "spread by more than 1.3x" in line]
    assert len(spread) == 1
    assert "direct (veth, via lb) at 1 10.0-25.0 Gbit/s" in spread[0]
    assert "eBPF (veth)" not in spread[0]


def test_markdown_section_has_every_table_and_the_verdicts() -> None:
    env = report.machine.Environment(
        command="python benchmarks/l4.py", date="2026-01-01 00:00 UTC", cpu_model="test CPU",
        cpus=2, memory="4 GiB", kernel="6.1", python="3.11", versions={"inferlane": "0"},
        layout="pinned", duration="1.0 min")
    summary = summary_of(BULK, {"veth-userspace": "--no-veth"})
    text = report.markdown_section(env, settings(), summary, report.verdicts(summary),
                                   ["a note"])
    assert text.startswith(report.SECTION_HEADING + "\n")
    for heading in ("### Throughput", "### Connections/s", "### Added latency",
                    "### Flow disruption", "### Against the issue's targets", "### Notes"):
        assert f"\n{heading}" in text
    assert "user space (veth, in lb) not measured (--no-veth)" in text
    assert "| user space (veth, in lb) | 1 | not available: --no-veth |" in text
    assert "- a note" in text
