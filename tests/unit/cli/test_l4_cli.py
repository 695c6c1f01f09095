"""``inferlane l4 status``: rendering a gateway's /admin/l4 document, and the command."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rich.console import Console

from inferlane.cli.l4 import render
from inferlane.cli.main import main

from .conftest import Answer, FakeGateway


def stats(active: int, total: int, bytes_in: int, bytes_out: int) -> dict[str, int]:
    return {"active": active, "total": total, "bytes_in": bytes_in, "bytes_out": bytes_out,
            "datagrams_in": 0, "datagrams_out": 0, "connect_failures": 1}


STATUS: dict[str, Any] = {"listeners": [
    {"listener": "default/gw/db", "protocol": "tcp", "port": 5432, "route": "default/db",
     "algorithm": "maglev", "dataplane": "userspace",
     "note": "eBPF fast path not used: it needs the Gateway annotation x", "flows": 3,
     "backends": [
         {"backend": "10.0.1.10:5432", "weight": 2, "routable": True, "drained": False,
          "flows": 2, "stats": stats(2, 7, 4096, 3 * 1024 * 1024)},
         {"backend": "10.0.1.11:5432", "weight": 1, "routable": False, "drained": False,
          "flows": 1, "stats": stats(1, 1, 10, 10)},
         {"backend": "10.0.1.12:5432", "weight": 0, "routable": True, "drained": True,
          "flows": 0, "stats": None}],
     "totals": {}},
    {"listener": "default/gw/dns", "protocol": "udp", "port": 53, "route": "default/dns",
     "algorithm": "maglev", "dataplane": "ebpf", "note": "eBPF fast path for 10.0.0.100:53",
     "flows": 0, "totals": {},
     "backends": [{"backend": "10.0.2.1:53", "weight": 1, "routable": True, "drained": False,
                   "flows": 0, "stats": None}],
     "ebpf": {"vip": "10.0.0.100", "interface": "eth0", "flows": 12, "dropped": 4,
              "backends": {"10.0.2.1:53": {"packets": 120, "bytes": 9000,
                                           "reply_packets": 118, "reply_bytes": 2048}}}},
]}


def text(document: dict[str, Any]) -> str:
    console = Console(record=True, width=220, color_system=None)
    console.print(render(document["listeners"]))
    return console.export_text()


def row(out: str, first: str) -> list[str]:
    (line,) = [line for line in out.splitlines() if line.startswith(f"│ {first}")]
    return [cell.strip() for cell in line.strip("│").split("│")]


def test_user_space_listener_rows() -> None:
    out = text(STATUS)
    assert "tcp listener default/gw/db port 5432 -> default/db · maglev · data plane userspace" \
        in out
    assert "eBPF fast path not used" in out
    assert row(out, "10.0.1.10:5432") == ["10.0.1.10:5432", "2", "yes", "2", "2", "7",
                                          "4.0 KiB", "3.0 MiB", "1"]
    assert row(out, "10.0.1.11:5432")[2] == "no (health)"
    assert row(out, "10.0.1.12:5432")[2:5] == ["drained", "0", "-"]


def test_ebpf_listener_shows_kernel_counters() -> None:
    out = text(STATUS)
    assert "kernel: 12 flows, 4 packets dropped (no backend)" in out
    assert row(out, "10.0.2.1:53")[-4:] == ["120", "118", "8.8 KiB", "2.0 KiB"]


def test_nothing_to_show() -> None:
    assert "no TCP/UDP listener with a route" in text({"listeners": []})


def test_the_command_reads_admin_l4(gateway: FakeGateway,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    gateway.answer = Answer(body=json.dumps(STATUS).encode())
    assert main(["l4", "status", "--gateway", gateway.url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == STATUS
    assert gateway.paths == ["/admin/l4"]
    assert main(["l4", "status", "--gateway", gateway.url]) == 0
    assert "default/gw/dns" in capsys.readouterr().out
