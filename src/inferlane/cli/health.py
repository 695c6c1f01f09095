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
import http.client
import json
import math
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

DEFAULT_GATEWAY = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT = 5.0
PATH = "/admin/health"
MAX_BODY = 8 * 1024 * 1024  # hundreds of endpoints x members x regions is well below this

_PROG = "inferlane health"

VERDICT_STYLES = {"healthy": "green", "unhealthy": "red", "unknown": "yellow"}
STALE_STYLE = "yellow"
FLAG_STYLE = "bold red"

COLUMNS = ("endpoint", "endpoint\nverdict", "monitor\n(type, role)", "member\nverdict",
           "region", "region\nverdict", "last probe", "RTT ms", "reason")


class ReportError(Exception):
    """The gateway could not be read; the message is the one line shown to the user."""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gateway", default=DEFAULT_GATEWAY,
                        help=f"gateway base URL (default: {DEFAULT_GATEWAY})")
    parser.add_argument("--json", action="store_true",
                        help="print the gateway's JSON as received instead of tables")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds to wait for the gateway (default: {DEFAULT_TIMEOUT:g})")
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
        Console().print(render(report))
    return 0


def fetch(gateway: str, timeout: float) -> tuple[str, Mapping[str, object]]:
    """The body of ``GET {gateway}/admin/health`` and its document; ReportError on any failure."""
    if not gateway.startswith(("http://", "https://")):
        raise ReportError(f"--gateway must be an http:// or https:// URL, got {gateway!r}")
    if not timeout > 0:
        raise ReportError(f"--timeout must be a positive number of seconds, got {timeout:g}")
    url = gateway.rstrip("/") + PATH
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status: int = response.status
            raw: bytes = response.read(MAX_BODY + 1)
    except urllib.error.HTTPError as error:
        error.close()
        raise ReportError(f"{url} answered {error.code} {_line(error.reason)}; is this an "
                          "inferlane gateway with health checks?") from None
    except urllib.error.URLError as error:
        raise ReportError(f"cannot reach the gateway at {url}: {_line(error.reason)}; is it "
                          "running? (set --gateway)") from None
    except (OSError, http.client.HTTPException) as error:  # read timeout, reset, bad status line
        raise ReportError(f"no answer from {url}: {_line(error)}") from None
    if status != 200:
        raise ReportError(f"{url} answered {status}, expected 200")
    if len(raw) > MAX_BODY:
        raise ReportError(f"{url} answered more than {MAX_BODY} bytes")
    try:
        body = raw.decode()
        data = json.loads(body)
    except ValueError as error:  # UnicodeDecodeError and JSONDecodeError both are
        raise ReportError(f"{url} answered invalid JSON: {_line(error)}") from None
    pools = data.get("pools") if isinstance(data, dict) else None
    if not isinstance(pools, list) or not all(isinstance(pool, dict) for pool in pools):
        raise ReportError(f'{url} answered unexpected JSON: expected {{"pools": [{{...}}, ...]}}')
    return body, data


def _line(detail: object) -> str:
    """An exception or reason as one line: peers' text (a bad status line) may hold newlines."""
    text = " ".join(str(detail).split())
    return text or type(detail).__name__


# -- reading the document defensively ----------------------------------------------------------

def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # JSON integers have no size limit
        return None
    return number if math.isfinite(number) else None


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
    seconds = _number(value)
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
        left = _number(endpoint.get("ejectedForSeconds"))
        cell.append("\nejected" + ("" if left is None else f" {_seconds(left)} s"),
                    style=FLAG_STYLE)
    if endpoint.get("draining") is True:
        cell.append("\ndraining", style=STALE_STYLE)
    weight = _number(endpoint.get("weight"))
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
    latency = _number(pool.get("latency"))
    header.append(" · latency " + ("-" if latency is None else f"{_ms(latency)} ms"))
    header.append(" · regions: ")
    header.append_text(_region_names(pool, seen))
    return header


def pool_table(pool: Mapping[str, object]) -> Table:
    """One row per endpoint, then one per member of it, then one per region the member probes
    from; each row's reason is its own level's. Names are plain text, never rich markup."""
    table = Table(show_edge=True)
    for column in COLUMNS:
        table.add_column(column, justify="right" if column == "RTT ms" else "left")
    blank = Text("")
    for endpoint in _mappings(pool.get("endpoints")):
        table.add_row(Text(_string(endpoint.get("endpoint"))), _endpoint_verdict(endpoint),
                      blank, blank, blank, blank, blank, blank,
                      Text(_string(endpoint.get("reason"), "")))
        for member in _mappings(endpoint.get("members")):
            table.add_row(blank, blank, _monitor(member), _verdict(member.get("verdict")),
                          blank, blank, blank, blank, _member_reason(member))
            for region in _mappings(member.get("regions")):
                rtt = _number(region.get("rtt"))
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
