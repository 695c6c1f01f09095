"""``inferlane health``: ``render`` on hand-written and tracker-built reports, and the command
against a tiny in-test HTTP server on a loopback port."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from rich.console import Console

from inferlane.cli import health
from inferlane.cli.main import main
from inferlane.health.monitors import MonitorSpec, MonitorType, TcpCheck
from inferlane.health.settings import GroupMember, PoolHealthSettings
from inferlane.health.tracker import HealthTracker, WatchedEndpoint, WatchedPool
from inferlane.health.verdicts import Member, ProbeResult

from .conftest import Answer, FakeGateway


def region(name: str, verdict: str, ago: float | None, rtt: float | None, reason: str,
           *, stale: bool = False) -> dict[str, Any]:
    return {"region": name, "verdict": verdict, "lastProbeAgo": ago,
            "ok": None if ago is None else verdict == "healthy", "rtt": rtt, "reason": reason,
            "stale": stale}


def endpoint(address: str, verdict: str, reason: str, members: list[dict[str, Any]],
             **fields: Any) -> dict[str, Any]:
    return {"endpoint": address, "verdict": verdict, "reason": reason, "routable": True,
            "weight": 1.0, "configuredWeight": 1, "draining": False, "ejected": False,
            "ejectedForSeconds": None, "members": members, **fields}


HEALTHY_POOL: dict[str, Any] = {
    "pool": "default/chat", "source": "Monitor default/http-ok", "regions": ["gateway"],
    "critical": False, "panic": False, "routable": 1, "total": 1, "minHealthy": 1,
    "latency": 0.0031, "passive": True,
    "endpoints": [endpoint("10.0.0.1:8000", "healthy", "1 of 1 voting members healthy", [
        {"monitor": "default/http-ok", "type": "http", "role": "voting", "verdict": "healthy",
         "reason": "0 of 1 regions unhealthy", "staleRegions": [],
         "regions": [region("gateway", "healthy", 0.4, 0.0031, "200 OK")]},
    ])],
}

CRITICAL_POOL: dict[str, Any] = {
    "pool": "default/[bold]code[/bold]", "source": "MonitorGroup default/deep",
    "regions": ["gateway", "eu-west"], "critical": True, "panic": True, "routable": 1,
    "total": 3, "minHealthy": 2, "latency": 0.0425, "passive": True,
    "endpoints": [
        endpoint("10.0.1.1:8000", "unhealthy", "critical default/tcp failed", [
            {"monitor": "default/tcp", "type": "tcp", "role": "critical",
             "verdict": "unhealthy", "reason": "1 of 1 regions unhealthy",
             "staleRegions": ["eu-west"],
             "regions": [region("gateway", "unhealthy", 1.2, None, "connection refused"),
                         region("eu-west", "healthy", 95.0, 0.0425, "", stale=True)]},
            {"monitor": "default/infer", "type": "inference", "role": "monitoring-only",
             "verdict": "unknown", "reason": "no fresh region vote", "staleRegions": [],
             "regions": [region("gateway", "unknown", None, None, "not probed yet"),
                         region("eu-west", "unknown", None, None, "not probed yet")]},
        ], routable=False, weight=None, ejected=True, ejectedForSeconds=12.25),
        endpoint("10.0.1.2:8000", "healthy", "0 of 1 voting members unhealthy", [],
                 routable=False, weight=None, draining=True),
        endpoint("10.0.1.3:8000", "healthy", "0 of 1 voting members unhealthy", [],
                 weight=0.35),
    ],
}

PASSIVE_POOL: dict[str, Any] = {
    "pool": "default/embed", "source": "passive only", "regions": ["gateway"],
    "critical": False, "panic": False, "routable": 1, "total": 1, "minHealthy": 1,
    "latency": None, "passive": True,
    "endpoints": [endpoint("10.0.2.1:8000", "unknown", "no monitor", [])],
}

REPORT: dict[str, Any] = {
    "region": "gateway", "generation": 7,
    "regions": {"eu-west": {"lastReportAgo": 95.0, "stale": True},
                "us-east": {"lastReportAgo": 2.5, "stale": False}},
    "pools": [HEALTHY_POOL, CRITICAL_POOL, PASSIVE_POOL],
}


def text_of(report: dict[str, Any]) -> str:
    console = Console(record=True, width=200, color_system=None, file=io.StringIO())
    console.print(health.render(report))
    return console.export_text()


def rows(out: str) -> list[list[str]]:
    """The cells of every body line of the tables (the header lines are drawn with ┃)."""
    return [[cell.strip() for cell in line.split("│")[1:-1]]
            for line in out.splitlines() if line.startswith("│")]


def lines_with(out: str, fragment: str) -> list[str]:
    return [line for line in out.splitlines() if fragment in line]


def test_gateway_line_names_regions_and_stale_agents() -> None:
    first = text_of(REPORT).splitlines()[0]
    assert first == ("gateway region gateway · config generation 7 · agent regions: "
                     "eu-west reported 95 s ago (stale), us-east reported 2.5 s ago")


def test_pool_headers() -> None:
    out = text_of(REPORT)
    assert lines_with(out, "pool default/chat") == [
        "pool default/chat (Monitor default/http-ok) · 1/1 routable, min healthy 1 · "
        "latency 3.1 ms · regions: gateway"]
    # Names are text, never rich markup; stale regions are marked.
    assert lines_with(out, "pool default/[bold]code[/bold]") == [
        "pool default/[bold]code[/bold] (MonitorGroup default/deep) · 1/3 routable, "
        "min healthy 2 · CRITICAL · PANIC · latency 42 ms · regions: gateway, eu-west (stale)"]
    assert lines_with(out, "pool default/embed") == [
        "pool default/embed (passive only) · 1/1 routable, min healthy 1 · latency - · "
        "regions: gateway"]


def test_healthy_pool_rows() -> None:
    table = rows(text_of({"pools": [HEALTHY_POOL]}))
    assert table == [
        ["10.0.0.1:8000", "healthy", "", "", "", "", "", "", "1 of 1 voting members healthy"],
        ["", "", "default/http-ok", "healthy", "", "", "", "", "0 of 1 regions unhealthy"],
        ["", "", "(http, voting)", "", "", "", "", "", ""],
        ["", "", "", "", "gateway", "healthy", "0.4 s ago", "3.1", "200 OK"],
    ]


def test_critical_pool_rows() -> None:
    table = rows(text_of({"pools": [CRITICAL_POOL]}))
    assert table == [
        # The ejected endpoint: its verdict, then what keeps traffic away.
        ["10.0.1.1:8000", "unhealthy", "", "", "", "", "", "", "critical default/tcp failed"],
        ["", "ejected 12 s", "", "", "", "", "", "", ""],
        ["", "", "default/tcp", "unhealthy", "", "", "", "",
         "1 of 1 regions unhealthy; stale: eu-west"],
        ["", "", "(tcp, critical)", "", "", "", "", "", ""],
        ["", "", "", "", "gateway", "unhealthy", "1.2 s ago", "-", "connection refused"],
        ["", "", "", "", "eu-west", "healthy (stale)", "95 s ago", "42", ""],
        # A monitoring-only member never probed yet.
        ["", "", "default/infer", "unknown", "", "", "", "", "no fresh region vote"],
        ["", "", "(inference, monitoring-only)", "", "", "", "", "", ""],
        ["", "", "", "", "gateway", "unknown", "never", "-", "not probed yet"],
        ["", "", "", "", "eu-west", "unknown", "never", "-", "not probed yet"],
        ["10.0.1.2:8000", "healthy", "", "", "", "", "", "",
         "0 of 1 voting members unhealthy"],
        ["", "draining", "", "", "", "", "", "", ""],
        ["10.0.1.3:8000", "healthy", "", "", "", "", "", "",
         "0 of 1 voting members unhealthy"],
        ["", "weight 0.35", "", "", "", "", "", "", ""],
    ]


def test_passive_only_pool_lists_its_endpoints() -> None:
    table = rows(text_of({"pools": [PASSIVE_POOL]}))
    assert table == [["10.0.2.1:8000", "unknown", "", "", "", "", "", "", "no monitor"]]


def spans(report: dict[str, Any]) -> dict[str, set[str]]:
    """Each styled piece of text and its styles, from the rendered segments."""
    console = Console(width=200, color_system="truecolor", force_terminal=True,
                      file=io.StringIO())
    styles: dict[str, set[str]] = {}
    for segment in console.render(health.render(report)):
        if segment.style is not None and segment.text.strip():
            styles.setdefault(segment.text.strip(), set()).add(str(segment.style))
    return styles


def test_verdict_colours() -> None:
    styles = spans(REPORT)
    assert styles["healthy"] == {"green"}
    assert styles["unhealthy"] == {"red"}
    assert styles["unknown"] == {"yellow"}
    assert styles["healthy (stale)"] == {"yellow"}
    assert styles["CRITICAL"] == {"bold red"}


@pytest.mark.parametrize(
    "report",
    [{}, {"pools": []}, {"region": None, "regions": [], "pools": [{}]},
     {"pools": [{"pool": "p", "regions": "x", "latency": True, "critical": "yes",
                 "endpoints": [{"endpoint": 5, "weight": float("nan"), "ejected": True,
                                "members": [{"regions": [1, {"rtt": "fast"}]}, 3]}]}]}],
)
def test_render_tolerates_odd_documents(report: dict[str, Any]) -> None:
    out = text_of(report)
    assert out.startswith("gateway region - · config generation -")


def test_render_a_tracker_report() -> None:
    """The keys ``render`` reads are the ones ``build_report`` writes."""
    monitor = MonitorSpec(key="default/tcp", type=MonitorType.TCP, tcp=TcpCheck())
    settings = PoolHealthSettings(
        pool="default/chat", source="Monitor default/tcp",
        members=(GroupMember(Member("default/tcp"), monitor),), min_healthy=2)
    tracker = HealthTracker()
    tracker.configure([WatchedPool(settings, (
        WatchedEndpoint("10.0.0.1:8000", "10.0.0.1", 8000),
        WatchedEndpoint("10.0.0.2:8000", "10.0.0.2", 8000, weight=0)))], now=0.0)
    for at in (1.0, 2.0):
        tracker.record("default/tcp", "10.0.0.1:8000", "gateway",
                       ProbeResult(ok=False, at=at, reason="connection refused"), now=at)
    table = rows(text_of(tracker.report(now=2.5)))
    assert table[0] == ["10.0.0.1:8000", "unhealthy", "", "", "", "", "", "",
                        "1 of 1 voting members unhealthy"]
    assert ["", "", "default/tcp", "unhealthy", "", "", "", "",
            "1 of 1 regions unhealthy"] in table
    assert ["", "", "", "", "gateway", "unhealthy", "0.5 s ago", "-",
            "connection refused"] in table
    assert ["", "draining", "", "", "", "", "", "", ""] in table
    assert "CRITICAL" in text_of(tracker.report(now=2.5))


# -- the command against a gateway ---------------------------------------------------------------

EMPTY = b'{"region": "gateway", "generation": 0, "regions": {}, "pools": []}'


@pytest.fixture(autouse=True)
def empty_page(gateway: FakeGateway) -> None:
    gateway.answer = Answer(body=EMPTY)


@pytest.fixture(autouse=True)
def wide_plain_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    for variable in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(variable, raising=False)


def test_prints_the_tables(gateway: FakeGateway, capsys: pytest.CaptureFixture[str]) -> None:
    gateway.answer = Answer(body=json.dumps(REPORT).encode())
    assert main(["health", "--gateway", gateway.url + "/"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert gateway.paths == ["/admin/health"]
    assert out == text_of(REPORT)


def test_no_pools(gateway: FakeGateway, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["health", "--gateway", gateway.url]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["no pools are watched yet"]


@pytest.mark.parametrize("body", [json.dumps(REPORT, indent=2).encode(), EMPTY + b"\n"])
def test_json_prints_the_body_as_received(
        gateway: FakeGateway, capsys: pytest.CaptureFixture[str], body: bytes) -> None:
    gateway.answer = Answer(body=body)
    assert main(["health", "--gateway", gateway.url, "--json"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip("\n") == body.decode().rstrip("\n")
    assert json.loads(out) == json.loads(body)
