"""``inferlane shadow-report`` against a tiny in-test HTTP server on a loopback port."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from inferlane.cli import shadow_report
from inferlane.cli.main import main
from inferlane.routing.shadow import Outcome, ShadowStats

HOST = "127.0.0.1"


@dataclass
class Answer:
    status: int = 200
    body: bytes = b'{"pairs": []}'


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        answer = self.server.answer
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    def log_message(self, format: str, *args: object) -> None:  # keep stderr for the CLI
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__((HOST, 0), _Handler)
        self.answer = Answer()
        self.paths: list[str] = []


@pytest.fixture
def gateway() -> Iterator[_Server]:
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def url(server: _Server) -> str:
    return f"http://{HOST}:{server.server_address[1]}"


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
        gateway: _Server, capsys: pytest.CaptureFixture[str]) -> None:
    gateway.answer = Answer(body=summary_body())
    assert main(["shadow-report", "--gateway", url(gateway) + "/"]) == 0
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


def test_table_tolerates_odd_values(gateway: _Server, capsys: pytest.CaptureFixture[str]) -> None:
    huge = b"1" + b"0" * 400  # a JSON integer too large for a float
    gateway.answer = Answer(body=b'{"pairs": [{"primary_model": "odd", "mirrored": "lots", '
                                 b'"compared": true, "dropped": [1], "status_agreement": NaN, '
                                 b'"samples": ' + huge + b', "primary": 3, '
                                 b'"shadow": {"latency_p50": 1.0}}]}')
    assert main(["shadow-report", "--gateway", url(gateway)]) == 0
    assert row_lines(capsys.readouterr().out, "odd") == [
        ["odd", "-", "-", "0", "-", "-", "-", "", "-", "-", "- / -", "-"],
        ["→ ?", "", "", "", "", "-", "1000", "-", "-", "-", "", ""],
    ]


def test_zero_primary_latency_has_no_ratio(
        gateway: _Server, capsys: pytest.CaptureFixture[str]) -> None:
    gateway.answer = Answer(body=b'{"pairs": [{"primary_model": "p", "shadow_model": "s", '
                                 b'"primary": {"latency_p50": 0.0}, '
                                 b'"shadow": {"latency_p50": 0.5}}]}')
    assert main(["shadow-report", "--gateway", url(gateway)]) == 0
    [primary, shadow] = row_lines(capsys.readouterr().out, "p")
    assert (primary[6], shadow[6], shadow[7]) == ("0", "500", "-")


def test_empty_pairs(gateway: _Server, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shadow-report", "--gateway", url(gateway)]) == 0
    assert capsys.readouterr().out == "no mirrored requests yet\n"


@pytest.mark.parametrize("body", [summary_body(), b'{"pairs": []}\n'])
def test_json_prints_the_body_as_received(
        gateway: _Server, capsys: pytest.CaptureFixture[str], body: bytes) -> None:
    gateway.answer = Answer(body=body)
    assert main(["shadow-report", "--gateway", url(gateway), "--json"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip("\n") == body.decode().rstrip("\n")
    assert json.loads(out) == json.loads(body)


def expect_error(argv: list[str], capsys: pytest.CaptureFixture[str], message: str) -> None:
    assert main(["shadow-report", *argv]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("inferlane shadow-report: ")
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_unreachable_gateway(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port now: connection refused.
    expect_error(["--gateway", f"http://{HOST}:{port}", "--json"], capsys,
                 f"cannot reach the gateway at http://{HOST}:{port}/admin/shadow")


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (Answer(404, b"{}"), "answered 404 Not Found"),
        (Answer(500, b"{}"), "answered 500"),
        (Answer(204, b""), "answered 204, expected 200"),
        (Answer(200, b"not json"), "answered invalid JSON"),
        (Answer(200, b"\xff\xfe"), "answered invalid JSON"),
        (Answer(200, b"[]"), "answered unexpected JSON"),
        (Answer(200, b'{"pairs": 3}'), "answered unexpected JSON"),
        (Answer(200, b'{"pairs": [1]}'), "answered unexpected JSON"),
    ],
)
def test_bad_answers(gateway: _Server, capsys: pytest.CaptureFixture[str], answer: Answer,
                     message: str) -> None:
    gateway.answer = answer
    expect_error(["--gateway", url(gateway)], capsys, message)


def test_oversized_answer(gateway: _Server, capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shadow_report, "MAX_BODY", 8)
    gateway.answer = Answer(body=b'{"pairs": [], "padding": "xxxxxxxx"}')
    expect_error(["--gateway", url(gateway)], capsys, "answered more than 8 bytes")


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--gateway", "127.0.0.1:8080"], "--gateway must be an http:// or https:// URL"),
     (["--timeout", "0"], "--timeout must be a positive number"),
     (["--timeout", "nan"], "--timeout must be a positive number")],
)
def test_bad_arguments(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    expect_error(argv, capsys, message)


def raw_server(handle: Callable[[socket.socket, threading.Event], None]) -> Iterator[str]:
    """A listener whose accepted connections get ``handle``d (broken HTTP on purpose)."""
    listener = socket.create_server((HOST, 0))
    listener.settimeout(0.05)  # so the loop sees ``stop``
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                handle(connection, stop)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


@pytest.fixture
def silent_gateway() -> Iterator[str]:
    def hold(connection: socket.socket, stop: threading.Event) -> None:
        connection.recv(65536)
        stop.wait(timeout=10)  # never answers within the client's timeout

    yield from raw_server(hold)


@pytest.fixture
def garbage_gateway() -> Iterator[str]:
    def garbage(connection: socket.socket, stop: threading.Event) -> None:
        connection.recv(65536)
        connection.sendall(b"HELLO THERE\r\n\r\n")

    yield from raw_server(garbage)


def test_gateway_that_never_answers(silent_gateway: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(["--gateway", silent_gateway, "--timeout", "0.2"], capsys,
                 f"no answer from {silent_gateway}/admin/shadow: timed out")


def test_gateway_that_answers_garbage(garbage_gateway: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(["--gateway", garbage_gateway], capsys,
                 f"no answer from {garbage_gateway}/admin/shadow")
