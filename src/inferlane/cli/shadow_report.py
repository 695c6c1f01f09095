"""``inferlane shadow-report``: how each shadow (mirror) backend compares with its primary.

Reads ``GET {gateway}/admin/shadow`` (``{"pairs": ShadowStats.summary()}``) and prints one table
row per (primary model, shadow model) pair, or the JSON as received with ``--json``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping

from rich.console import Console
from rich.table import Table
from rich.text import Text

from inferlane.cli.admin_page import (
    ReportError,
    add_gateway_arguments,
    fetch_page,
    json_number,
)

PATH = "/admin/shadow"
MAX_BODY = 8 * 1024 * 1024  # a summary of 200 pairs is a few hundred kB at most

_PROG = "inferlane shadow-report"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_gateway_arguments(parser,
                          json_help="print the gateway's JSON as received instead of a table")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        body, pairs = fetch(args.gateway, args.timeout)
    except ReportError as error:
        print(f"{_PROG}: {error}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(body if body.endswith("\n") else body + "\n")
    elif not pairs:
        print("no mirrored requests yet")
    else:
        Console().print(table(pairs))
    return 0


def fetch(gateway: str, timeout: float) -> tuple[str, list[Mapping[str, object]]]:
    """The body of ``GET {gateway}/admin/shadow`` and its pairs; ReportError on any failure."""
    body, pairs, _ = fetch_page(gateway, PATH, timeout, items="pairs",
                                feature="shadowing support", max_body=MAX_BODY)
    return body, pairs





def _format(value: object, render: Callable[[float], str]) -> str:
    number = json_number(value)
    return "-" if number is None else render(number)


def _count(value: float) -> str:
    return f"{value:.0f}"


def _percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def _ms(value: float) -> str:
    return f"{value * 1000:.0f}"


def _two(value: float) -> str:
    return f"{value:.2f}"


def _side(pair: Mapping[str, object], role: str) -> Mapping[str, object]:
    side = pair.get(role)
    return side if isinstance(side, dict) else {}


def _sides(pair: Mapping[str, object], field: str, render: Callable[[float], str]) -> str:
    """The primary's figure on the first line, the shadow's on the second."""
    primary, shadow = _side(pair, "primary"), _side(pair, "shadow")
    return f"{_format(primary.get(field), render)}\n{_format(shadow.get(field), render)}"


def _ratio(pair: Mapping[str, object]) -> str:
    primary = json_number(_side(pair, "primary").get("latency_p50"))
    shadow = json_number(_side(pair, "shadow").get("latency_p50"))
    if primary is None or shadow is None or primary <= 0:
        return "\n-"
    return f"\n{shadow / primary:.2f}x"  # on the shadow's line


def _dropped(value: object) -> str:
    """The total, then one line per reason that dropped any."""
    reasons = value if isinstance(value, dict) else {}
    counts = {str(reason): number for reason, n in reasons.items() if (number := json_number(n))}
    lines = [_count(sum(counts.values()))]
    lines += [f"{reason} {_count(n)}" for reason, n in sorted(counts.items())]
    return "\n".join(lines)


COLUMNS = ("primary\n→ shadow", "mirrored", "compared", "dropped", "agree", "ok", "p50 ms",
           "ratio", "TTFT ms", "tokens", "similarity\nmean / p50", "samples")
CAPTION = ("Each pair: primary's figures on the first line, shadow's on the second. ok: share "
           "answered 2xx; agree: statuses agree (both 2xx or equal); p50 ms: latency; ratio: "
           "shadow / primary p50; tokens: mean output tokens. Latency, TTFT, tokens and "
           "similarity cover the recent samples (both sides 2xx).")


def table(pairs: list[Mapping[str, object]]) -> Table:
    """Two lines per pair; model names are shown as plain text (never as rich markup)."""
    result = Table(title="Shadow traffic", caption=CAPTION, caption_justify="left")
    for column in COLUMNS:
        result.add_column(column, justify="left" if column == COLUMNS[0] else "right")
    for pair in pairs:
        models = f"{pair.get('primary_model', '?')}\n→ {pair.get('shadow_model', '?')}"
        similarity = (f"{_format(pair.get('similarity_mean'), _two)} / "
                      f"{_format(pair.get('similarity_p50'), _two)}")
        cells = (
            models,
            _format(pair.get("mirrored"), _count),
            _format(pair.get("compared"), _count),
            _dropped(pair.get("dropped")),
            _format(pair.get("status_agreement"), _percent),
            _sides(pair, "success_rate", _percent),
            _sides(pair, "latency_p50", _ms),
            _ratio(pair),
            _sides(pair, "ttft_p50", _ms),
            _sides(pair, "output_tokens_mean", _count),
            similarity,
            _format(pair.get("samples"), _count),
        )
        result.add_row(*(Text(cell) for cell in cells), end_section=True)
    return result
