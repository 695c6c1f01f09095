"""A tiny loopback HTTP server standing in for a gateway's admin pages (``inferlane health``,
``inferlane shadow-report``): it answers every GET with ``server.answer`` and records paths."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

HOST = "127.0.0.1"


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"{}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeGateway

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


class FakeGateway(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__((HOST, 0), _Handler)
        self.answer = Answer()
        self.paths: list[str] = []

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}"


@pytest.fixture
def gateway() -> Iterator[FakeGateway]:
    server = FakeGateway()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
