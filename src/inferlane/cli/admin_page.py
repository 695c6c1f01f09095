"""Reading one of a running gateway's JSON admin pages, for the commands that show them
(``inferlane health``, ``inferlane shadow-report``): every failure is one line for the user."""

from __future__ import annotations

import argparse
import http.client
import json
import math
import urllib.error
import urllib.request
from collections.abc import Mapping

DEFAULT_GATEWAY = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT = 5.0
MAX_BODY = 8 * 1024 * 1024  # the pages are a few hundred kB at most


class ReportError(Exception):
    """The gateway could not be read; the message is the one line shown to the user."""


def add_gateway_arguments(parser: argparse.ArgumentParser, *, json_help: str) -> None:
    parser.add_argument("--gateway", default=DEFAULT_GATEWAY,
                        help=f"gateway base URL (default: {DEFAULT_GATEWAY})")
    parser.add_argument("--json", action="store_true", help=json_help)
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds to wait for the gateway (default: {DEFAULT_TIMEOUT:g})")


def fetch_page(gateway: str, path: str, timeout: float, *, items: str, feature: str,
               max_body: int = MAX_BODY) -> tuple[str, list[Mapping[str, object]],
                                                   Mapping[str, object]]:
    """``GET {gateway}{path}``: its body, the list of objects under key ``items`` and the whole
    document. ReportError on any failure; ``feature`` names what a 404 suggests is missing."""
    if not gateway.startswith(("http://", "https://")):
        raise ReportError(f"--gateway must be an http:// or https:// URL, got {gateway!r}")
    if not timeout > 0:
        raise ReportError(f"--timeout must be a positive number of seconds, got {timeout:g}")
    url = gateway.rstrip("/") + path
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status: int = response.status
            raw: bytes = response.read(max_body + 1)
    except urllib.error.HTTPError as error:
        error.close()
        raise ReportError(f"{url} answered {error.code} {one_line(error.reason)}; is this an "
                          f"inferlane gateway with {feature}?") from None
    except urllib.error.URLError as error:
        raise ReportError(f"cannot reach the gateway at {url}: {one_line(error.reason)}; is it "
                          "running? (set --gateway)") from None
    except (OSError, http.client.HTTPException) as error:  # read timeout, reset, bad status line
        raise ReportError(f"no answer from {url}: {one_line(error)}") from None
    if status != 200:
        raise ReportError(f"{url} answered {status}, expected 200")
    if len(raw) > max_body:
        raise ReportError(f"{url} answered more than {max_body} bytes")
    try:
        body = raw.decode()
        data = json.loads(body)
    except ValueError as error:  # UnicodeDecodeError and JSONDecodeError both are
        raise ReportError(f"{url} answered invalid JSON: {one_line(error)}") from None
    found = data.get(items) if isinstance(data, dict) else None
    if not isinstance(found, list) or not all(isinstance(item, dict) for item in found):
        raise ReportError(f'{url} answered unexpected JSON: expected {{"{items}": [{{...}}, '
                          '...]}')
    return body, found, data


def one_line(detail: object) -> str:
    """An exception or reason as one line: peers' text (a bad status line) may hold newlines."""
    text = " ".join(str(detail).split())
    return text or type(detail).__name__


def json_number(value: object) -> float | None:
    """A finite JSON number, else None (bools, strings, huge integers, NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # JSON integers have no size limit
        return None
    return number if math.isfinite(number) else None
