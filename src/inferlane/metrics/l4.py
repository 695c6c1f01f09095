"""Prometheus view of the L4 listeners, read at scrape time from their counters (no hot-path
cost): connections/sessions, bytes and datagrams per backend, flows, drops.

Collected from ``L4Service.status()`` on each ``GET /metrics``; label values are config names
(listener ``gateway/name``, backend ``host:port``, drop reasons).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class L4Collector(Collector):
    def __init__(self, status: Callable[..., dict[str, Any]]) -> None:
        self._status = status

    def describe(self) -> list[Metric]:
        return []  # collect() needs a running gateway; skip describe-time calls

    def collect(self) -> Iterator[Metric]:
        labels = ["listener", "backend"]
        active = GaugeMetricFamily(
            "inferlane_l4_active", "Open TCP connections / UDP sessions per backend.",
            labels=labels)
        opened = CounterMetricFamily(
            "inferlane_l4_opened", "TCP connections / UDP sessions ever sent to the backend.",
            labels=labels)
        octets = CounterMetricFamily(
            "inferlane_l4_bytes", "Bytes relayed; direction in = client to backend.",
            labels=[*labels, "direction"])
        datagrams = CounterMetricFamily(
            "inferlane_l4_datagrams", "UDP datagrams relayed; direction in = client to backend.",
            labels=[*labels, "direction"])
        failures = CounterMetricFamily(
            "inferlane_l4_connect_failures", "TCP connects to the backend refused or timed out.",
            labels=labels)
        flows = GaugeMetricFamily(
            "inferlane_l4_flows", "Flows tracked (they stay on their backend).",
            labels=["listener"])
        dropped = CounterMetricFamily(
            "inferlane_l4_dropped", "UDP datagrams dropped, by reason.",
            labels=["listener", "reason"])
        rejected = CounterMetricFamily(
            "inferlane_l4_rejected", "TCP connections closed because no backend took them.",
            labels=["listener"])
        fast_packets = CounterMetricFamily(
            "inferlane_l4_ebpf_packets", "Packets the eBPF fast path forwarded; direction in = "
            "client to backend.", labels=[*labels, "direction"])
        fast_bytes = CounterMetricFamily(
            "inferlane_l4_ebpf_bytes", "L3 bytes the eBPF fast path forwarded.",
            labels=[*labels, "direction"])
        fast_dropped = CounterMetricFamily(
            "inferlane_l4_ebpf_dropped", "Packets to the VIP dropped: no backend in the table.",
            labels=["listener"])
        for listener in self._status(count_flows=False)["listeners"]:
            name = listener["listener"]
            fast = listener.get("ebpf")
            if fast is not None and "backends" in fast:
                fast_dropped.add_metric([name], fast["dropped"])
                for backend, c in fast["backends"].items():
                    fast_packets.add_metric([name, backend, "in"], c["packets"])
                    fast_packets.add_metric([name, backend, "out"], c["reply_packets"])
                    fast_bytes.add_metric([name, backend, "in"], c["bytes"])
                    fast_bytes.add_metric([name, backend, "out"], c["reply_bytes"])
            flows.add_metric([name], listener["flows"])
            totals = listener["totals"]
            rejected.add_metric([name], totals.get("rejected", 0))
            for reason, count in totals.get("dropped", {}).items():
                dropped.add_metric([name, reason], count)
            for backend in listener["backends"]:
                stats = backend["stats"]
                if stats is None:
                    continue
                key = [name, backend["backend"]]
                active.add_metric(key, stats["active"])
                opened.add_metric(key, stats["total"])
                failures.add_metric(key, stats["connect_failures"])
                octets.add_metric([*key, "in"], stats["bytes_in"])
                octets.add_metric([*key, "out"], stats["bytes_out"])
                datagrams.add_metric([*key, "in"], stats["datagrams_in"])
                datagrams.add_metric([*key, "out"], stats["datagrams_out"])
        yield from (active, opened, octets, datagrams, failures, flows, dropped, rejected,
                    fast_packets, fast_bytes, fast_dropped)
