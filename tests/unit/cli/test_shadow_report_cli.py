"""``inferlane shadow-report`` against a tiny in-test HTTP server on a loopback port."""

from __future__ import annotations

import json

import pytest

from inferlane.cli.main import main
from inferlane.routing.shadow import Outcome, ShadowStats

from .conftest import Answer, FakeGateway

EMPTY = b'{"pairs": []}'


@pytest.fixture(autouse=True)
def empty_page(gateway: FakeGateway) -> None:
    gateway.answer = Answer(body=EMPTY)


@pytest.fixture(autouse=True)
def wide_plain_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    for variable in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(variable, raising=False)


def summary_body() -> bytes:
    stats = ShadowStats()
    for _ in range(5):
        stats.mirrored("big", "small")
    stats.dropped("big", "small", "timeout")
    for _ in range(2):
        stats.compared("big", "small",
                       Outcome(200, 1.0, ttft=0.1, output_tokens=100, text="same answer"),
                       Outcome(200, 2.0, ttft=0.25, output_tokens=120, text="same answer"))
    stats.compared("big", "small", Outcome(200, 1.0), Outcome(500, 0.1))
    stats.mirrored("[bold]m[/bold]", "shadow-only")
    return json.dumps({"pairs": stats.summary()}).encode()


def row_lines(out: str, first_cell: str) -> list[list[str]]:
    """The cells of each printed line of the table row whose first cell is ``first_cell``."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines)
                 if line.startswith("│") and line.split("│")[1].strip() == first_cell)
    cells = []
    for line in lines[start:]:
        if not line.startswith("│"):  # the section's rule or the table's bottom edge
            break
        cells.append([cell.strip() for cell in line.split("│")[1:-1]])
    return cells


def test_table_shows_each_pair_and_its_numbers(
        gateway: FakeGateway, capsys: pytest.CaptureFixture[str]) -> None:
    gateway.answer = Answer(body=summary_body())
    assert main(["shadow-report", "--gateway", gateway.url + "/"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert gateway.paths == ["/admin/shadow"]
    assert "Shadow traffic" in out
    # First line: the primary (and the pair's figures); second line: the shadow.
    assert row_lines(out, "big") == [
        ["big", "5", "3", "1", "66.7%", "100.0%", "1000", "", "100", "100", "1.00 / 1.00", "2"],
        ["→ small", "", "", "timeout 1", "", "66.7%", "2000", "2.00x", "250", "120", "", ""],
    ]
    # Model names are text, never rich markup; a pair without comparisons shows dashes.
    assert row_lines(out, "[bold]m[/bold]") == [
        ["[bold]m[/bold]", "1", "0", "0", "-", "-", "-", "", "-", "-", "- / -", "0"],
        ["→ shadow-only", "", "", "", "", "-", "-", "-", "-", "-", "", ""],
    ]


def test_table_tolerates_odd_values(gateway: FakeGateway,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    huge = b"1" + b"0" * 400  # a JSON integer too large for a float
    gateway.answer = Answer(body=b'{"pairs": [{"primary_model": "odd", "mirrored": "lots", '
                                 b'"compared": true, "dropped": [1], "status_agreement": NaN, '
                                 b'"samples": ' + huge + b', "primary": 3, '
                                 b'"shadow": {"latency_p50": 1.0}}]}')
    assert main(["shadow-report", "--gateway", gateway.url]) == 0
    assert row_lines(capsys.readouterr().out, "odd") == [
        ["odd", "-", "-", "0", "-", "-", "-", "", "-", "-", "- / -", "-"],
        ["→ ?", "", "", "", "", "-", "1000", "-", "-", "-", "", ""],
    ]


def test_zero_primary_latency_has_no_ratio(
        gateway: FakeGateway, capsys: pytest.CaptureFixture[str]) -> None:
    gateway.answer = Answer(body=b'{"pairs": [{"primary_model": "p", "shadow_model": "s", '
                                 b'"primary": {"latency_p50": 0.0}, '
                                 b'"shadow": {"latency_p50": 0.5}}]}')
    assert main(["shadow-report", "--gateway", gateway.url]) == 0
    [primary, shadow] = row_lines(capsys.readouterr().out, "p")
    assert (primary[6], shadow[6], shadow[7]) == ("0", "500", "-")


def test_empty_pairs(gateway: FakeGateway, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shadow-report", "--gateway", gateway.url]) == 0
    assert capsys.readouterr().out == "no mirrored requests yet\n"


@pytest.mark.parametrize("body", [summary_body(), b'{"pairs": []}\n'])
def test_json_prints_the_body_as_received(
        gateway: FakeGateway, capsys: pytest.CaptureFixture[str], body: bytes) -> None:
    gateway.answer = Answer(body=body)
    assert main(["shadow-report", "--gateway", gateway.url, "--json"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip("\n") == body.decode().rstrip("\n")
    assert json.loads(out) == json.loads(body)
