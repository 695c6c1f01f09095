"""``inferlane health``: a running gateway's health verdicts as a terminal table.

Reads ``GET {gateway}/admin/health`` (built by ``inferlane.health.report.build_report``) and
prints one section per pool: a header line (routable endpoints, critical/panic, latency, probe
regions), then a table whose rows go endpoint → monitor (member) → probe region, each level with
its own verdict and reason. ``--json`` prints the document as received instead.

``render`` is pure (a report in, rich renderables out) and never trusts the document's shapes:
a missing or odd value shows as ``-`` rather than failing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from inferlane.cli.admin_page import (
    ReportError,
    add_gateway_arguments,
    fetch_page,
    json_number,
)

PATH = "/admin/health"
MAX_BODY = 8 * 1024 * 1024  # hundreds of endpoints x members x regions is well below this

_PROG = "inferlane health"
PIPED_WIDTH = 200

VERDICT_STYLES = {"healthy": "green", "unhealthy": "red", "unknown": "yellow"}
STALE_STYLE = "yellow"
FLAG_STYLE = "bold red"

COLUMNS = ("endpoint", "endpoint\nverdict", "monitor\n(type, role)", "member\nverdict",
           "region", "region\nverdict", "last probe", "RTT ms", "reason")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_gateway_arguments(parser,
                          json_help="print the gateway's JSON as received instead of tables")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        body, report = fetch(args.gateway, args.timeout)
    except ReportError as error:
        print(f"{_PROG}: {error}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(body if body.endswith("\n") else body + "\n")
    else:
        # Piped (grep, less, CI logs): wide enough that addresses and reasons stay whole.
        Console(width=None if sys.stdout.isatty() else PIPED_WIDTH).print(render(report))
    return 0


def fetch(gateway: str, timeout: float) -> tuple[str, Mapping[str, object]]:
    """The body of ``GET {gateway}/admin/health`` and its document; ReportError on any failure."""
    body, _, data = fetch_page(gateway, PATH, timeout, items="pools", feature="health checks",
                               max_body=MAX_BODY)
    return body, data



# -- reading the document defensively ----------------------------------------------------------



def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, dict) else {}


def _mappings(value: object) -> list[Mapping[str, object]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _strings(value: object) -> list[str]:
    return [_string(item) for item in value] if isinstance(value, list) else []


def _string(value: object, missing: str = "-") -> str:
    if value is None or value == "":
        return missing
    return value if isinstance(value, str) else str(value)


# -- formatting -------------------------------------------------------------------------------

def _seconds(value: float) -> str:
    """``0.4``, ``12``: a tenth of a second matters only for the recent past."""
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def _ms(value: float) -> str:
    """Seconds as milliseconds, with a decimal below 10 ms (loopback probes take < 1 ms)."""
    ms = value * 1000
    return f"{ms:.1f}" if ms < 10 else f"{ms:.0f}"


def _ago(value: object) -> str:
    seconds = json_number(value)
    return "never" if seconds is None else f"{_seconds(seconds)} s ago"


def _verdict(value: object, *, stale: bool = False) -> Text:
    verdict = _string(value)
    if stale:
        return Text(f"{verdict} (stale)", style=STALE_STYLE)
    return Text(verdict, style=VERDICT_STYLES.get(verdict, ""))


def _endpoint_verdict(endpoint: Mapping[str, object]) -> Text:
    """The verdict, then what else limits the endpoint's traffic, one line each."""
    cell = _verdict(endpoint.get("verdict"))
    if endpoint.get("ejected") is True:
        left = json_number(endpoint.get("ejectedForSeconds"))
        cell.append("\nejected" + ("" if left is None else f" {_seconds(left)} s"),
                    style=FLAG_STYLE)
    if endpoint.get("draining") is True:
        cell.append("\ndraining", style=STALE_STYLE)
    weight = json_number(endpoint.get("weight"))
    if weight is not None and f"{weight:.2f}" != "1.00":
        cell.append(f"\nweight {weight:.2f}")
    return cell


def _monitor(member: Mapping[str, object]) -> Text:
    return Text(f"{_string(member.get('monitor'))}\n"
                f"({_string(member.get('type'))}, {_string(member.get('role'))})")


def _member_reason(member: Mapping[str, object]) -> Text:
    reason = _string(member.get("reason"), "")
    stale = _strings(member.get("staleRegions"))
    cell = Text(reason)
    if stale:
        cell.append(("; " if reason else "") + "stale: " + ", ".join(stale), style=STALE_STYLE)
    return cell


def _region_names(pool: Mapping[str, object], seen: Mapping[str, object]) -> Text:
    """The pool's probe regions, those whose agent stopped reporting marked stale."""
    names = _strings(pool.get("regions"))
    text = Text()
    for i, name in enumerate(names):
        if i:
            text.append(", ")
        if _mapping(seen.get(name)).get("stale") is True:
            text.append(f"{name} (stale)", style=STALE_STYLE)
        else:
            text.append(name)
    return text if names else Text("-")


def _gateway_line(report: Mapping[str, object]) -> Text:
    line = Text(f"gateway region {_string(report.get('region'))} · "
                f"config generation {_string(report.get('generation'))}")
    agents = _mapping(report.get("regions"))
    for i, (name, seen) in enumerate(agents.items()):
        line.append(" · agent regions: " if i == 0 else ", ")
        info = _mapping(seen)
        reported = f"{name} reported {_ago(info.get('lastReportAgo'))}"
        line.append(reported + (" (stale)" if info.get("stale") is True else ""),
                    style=STALE_STYLE if info.get("stale") is True else "")
    return line


def _pool_header(pool: Mapping[str, object], seen: Mapping[str, object]) -> Text:
    header = Text()
    header.append(f"pool {_string(pool.get('pool'))}", style="bold")
    header.append(f" ({_string(pool.get('source'))}) · {_string(pool.get('routable'))}/"
                  f"{_string(pool.get('total'))} routable, min healthy "
                  f"{_string(pool.get('minHealthy'))}")
    for flag in ("critical", "panic"):
        if pool.get(flag) is True:
            header.append(" · ")
            header.append(flag.upper(), style=FLAG_STYLE)
    latency = json_number(pool.get("latency"))
    header.append(" · latency " + ("-" if latency is None else f"{_ms(latency)} ms"))
    header.append(" · regions: ")
    header.append_text(_region_names(pool, seen))
    return header


def pool_table(pool: Mapping[str, object]) -> Table:
    """One row per endpoint, then one per member of it, then one per region the member probes
    from; each row's reason is its own level's. Names are plain text, never rich markup."""
    table = Table(show_edge=True)
    for column in COLUMNS:
        # Fold, never cut: an address or a monitor name must survive a narrow terminal whole.
        table.add_column(column, justify="right" if column == "RTT ms" else "left",
                         overflow="fold")
    blank = Text("")
    for endpoint in _mappings(pool.get("endpoints")):
        table.add_row(Text(_string(endpoint.get("endpoint"))), _endpoint_verdict(endpoint),
                      blank, blank, blank, blank, blank, blank,
                      Text(_string(endpoint.get("reason"), "")))
        for member in _mappings(endpoint.get("members")):
            table.add_row(blank, blank, _monitor(member), _verdict(member.get("verdict")),
                          blank, blank, blank, blank, _member_reason(member))
            for region in _mappings(member.get("regions")):
                rtt = json_number(region.get("rtt"))
                table.add_row(
                    blank, blank, blank, blank,
                    Text(_string(region.get("region"))),
                    _verdict(region.get("verdict"), stale=region.get("stale") is True),
                    Text(_ago(region.get("lastProbeAgo"))),
                    Text("-" if rtt is None else _ms(rtt)),
                    Text(_string(region.get("reason"), "")),
                )
        table.add_section()
    return table


def render(report: Mapping[str, object]) -> Group:
    """The whole report: a gateway line, then a header line and a table per pool."""
    seen = _mapping(report.get("regions"))
    parts: list[RenderableType] = [_gateway_line(report)]
    pools = _mappings(report.get("pools"))
    if not pools:
        parts.append(Text("no pools are watched yet"))
    for pool in pools:
        parts.append(Text(""))
        parts.append(_pool_header(pool, seen))
        if _mappings(pool.get("endpoints")):
            parts.append(pool_table(pool))
        else:
            parts.append(Text("no endpoints"))
    return Group(*parts)
