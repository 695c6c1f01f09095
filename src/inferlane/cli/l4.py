"""``inferlane l4 status``: a running gateway's TCP/UDP listeners, backends, flows and counters.

Reads ``GET {gateway}/admin/l4`` (``L4Service.status()``) and prints one table per listener:
its route, algorithm and data plane (user space or eBPF, and why), then a row per backend with
its weight, whether new flows may go there (health, drains), tracked flows and traffic.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from inferlane.cli.admin_page import ReportError, add_gateway_arguments, fetch_page, json_number

PATH = "/admin/l4"
MAX_BODY = 8 * 1024 * 1024
PIPED_WIDTH = 200
_PROG = "inferlane l4"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="l4_command", required=True, metavar="ACTION")
    status = actions.add_parser("status", help="listeners, backends, flows and counters",
                                description="Show a running gateway's TCP/UDP load balancing.")
    add_gateway_arguments(status,
                          json_help="print the gateway's JSON as received instead of tables")
    status.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        body, listeners, _ = fetch_page(args.gateway, PATH, args.timeout, items="listeners",
                                        feature="L4 listeners", max_body=MAX_BODY)
    except ReportError as error:
        print(f"{_PROG}: {error}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(body if body.endswith("\n") else body + "\n")
    else:
        Console(width=None if sys.stdout.isatty() else PIPED_WIDTH).print(render(listeners))
    return 0


def _count(value: object) -> str:
    number = json_number(value)
    return "-" if number is None else f"{number:,.0f}"


def _bytes(value: object) -> str:
    number = json_number(value)
    if number is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if number < 1024 or unit == "GiB":
            return f"{number:,.0f} {unit}" if unit == "B" else f"{number:,.1f} {unit}"
        number /= 1024
    return "-"


def render(listeners: list[Mapping[str, object]]) -> RenderableType:
    """The listeners as tables (pure: a document in, renderables out)."""
    if not listeners:
        return Text("no TCP/UDP listener with a route")
    parts: list[RenderableType] = []
    for listener in listeners:
        note = str(listener.get("note") or "")
        header = Text(
            f"{listener.get('protocol', '?')} listener {listener.get('listener', '?')} "
            f"port {listener.get('port', '?')} -> {listener.get('route', '?')} · "
            f"{listener.get('algorithm', '?')} · data plane {listener.get('dataplane', '?')} · "
            f"{_count(listener.get('flows'))} flows", style="bold")
        if note:
            header.append(f"\n  {note}", style="yellow")
        fast = listener.get("ebpf")
        fast = fast if isinstance(fast, Mapping) else None
        kernel = fast.get("backends") if fast is not None else None
        kernel = kernel if isinstance(kernel, Mapping) else None
        if fast is not None:
            header.append(f"\n  kernel: {_count(fast.get('flows'))} flows, "
                          f"{_count(fast.get('dropped'))} packets dropped (no backend)"
                          + (f"; {fast['error']}" if fast.get("error") else ""))
        columns = ["backend", "weight", "new flows", "flows", "active", "opened", "bytes in",
                   "bytes out", "connect failures"]
        if kernel is not None:
            columns += ["kernel packets in", "kernel packets out", "kernel bytes in",
                        "kernel bytes out"]
        table = Table(show_edge=True)
        for column in columns:
            table.add_column(column, overflow="fold",
                             justify="left" if column in ("backend", "new flows") else "right")
        backends = listener.get("backends")
        for backend in backends if isinstance(backends, list) else []:
            if not isinstance(backend, Mapping):
                continue
            stats = backend.get("stats")
            stats = stats if isinstance(stats, Mapping) else {}
            if backend.get("drained"):
                state = Text("drained", style="yellow")
            elif backend.get("routable"):
                state = Text("yes", style="green")
            else:
                state = Text("no (health)", style="red")
            cells: list[str | Text] = [
                str(backend.get("backend", "?")), _count(backend.get("weight")), state,
                _count(backend.get("flows")), _count(stats.get("active")),
                _count(stats.get("total")), _bytes(stats.get("bytes_in")),
                _bytes(stats.get("bytes_out")), _count(stats.get("connect_failures"))]
            if kernel is not None:
                counters = kernel.get(str(backend.get("backend")))
                counters = counters if isinstance(counters, Mapping) else {}
                cells += [_count(counters.get("packets")), _count(counters.get("reply_packets")),
                          _bytes(counters.get("bytes")), _bytes(counters.get("reply_bytes"))]
            table.add_row(*cells)
        parts += [header, table]
    return Group(*parts)
