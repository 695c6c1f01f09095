"""What ``inferlane health`` and ``inferlane shadow-report`` say when the gateway's admin page
cannot be read: one line on stderr naming the URL, exit 1, never a traceback (both commands read
their page with ``cli.admin_page.fetch_page``)."""

from __future__ import annotations

import socket
from types import ModuleType

import pytest

from inferlane.cli import health, shadow_report
from inferlane.cli.main import main

from .conftest import HOST, Answer, FakeGateway

COMMANDS = [pytest.param("health", "/admin/health", "pools", health, id="health"),
            pytest.param("shadow-report", "/admin/shadow", "pairs", shadow_report,
                         id="shadow-report")]


def expect_error(command: str, argv: list[str], capsys: pytest.CaptureFixture[str],
                 message: str) -> None:
    assert main([command, *argv]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"inferlane {command}: ")
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


@pytest.mark.parametrize(("command", "path", "items", "module"), COMMANDS)
def test_unreachable_gateway(capsys: pytest.CaptureFixture[str], command: str, path: str,
                             items: str, module: ModuleType) -> None:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port now: connection refused.
    expect_error(command, ["--gateway", f"http://{HOST}:{port}", "--json"], capsys,
                 f"cannot reach the gateway at http://{HOST}:{port}{path}")


@pytest.mark.parametrize(("command", "path", "items", "module"), COMMANDS)
@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (404, b"{}", "answered 404 Not Found; is this an inferlane gateway with"),
        (500, b"{}", "answered 500"),
        (204, b"", "answered 204, expected 200"),
        (200, b"not json", "answered invalid JSON"),
        (200, b"\xff\xfe", "answered invalid JSON"),
        (200, b"[]", "answered unexpected JSON"),
        (200, b'{"ITEMS": 3}', "answered unexpected JSON"),
        (200, b'{"ITEMS": [1]}', "answered unexpected JSON"),
        (200, b'{"other": []}', "answered unexpected JSON"),
    ],
)
def test_bad_answers(gateway: FakeGateway, capsys: pytest.CaptureFixture[str], command: str,
                     path: str, items: str, module: ModuleType, status: int, body: bytes,
                     message: str) -> None:
    gateway.answer = Answer(status, body.replace(b"ITEMS", items.encode()))
    expect_error(command, ["--gateway", gateway.url], capsys, message)
    assert gateway.paths == [path]


@pytest.mark.parametrize(("command", "path", "items", "module"), COMMANDS)
def test_oversized_answer(gateway: FakeGateway, capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch, command: str, path: str, items: str,
                          module: ModuleType) -> None:
    monkeypatch.setattr(module, "MAX_BODY", 8)
    gateway.answer = Answer(body=b'{"%s": [], "padding": "xxxxxxxx"}' % items.encode())
    expect_error(command, ["--gateway", gateway.url], capsys, "answered more than 8 bytes")


@pytest.mark.parametrize(("command", "path", "items", "module"), COMMANDS)
@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--gateway", "127.0.0.1:8080"], "--gateway must be an http:// or https:// URL"),
     (["--timeout", "0"], "--timeout must be a positive number"),
     (["--timeout", "nan"], "--timeout must be a positive number")],
)
def test_bad_arguments(capsys: pytest.CaptureFixture[str], command: str, path: str, items: str,
                       module: ModuleType, argv: list[str], message: str) -> None:
    expect_error(command, argv, capsys, message)
