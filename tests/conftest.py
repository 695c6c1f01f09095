"""Fixtures shared by every test folder: real external services over loopback.

- ``RedisServer``: one ``redis-server`` subprocess on a free 127.0.0.1 port, no persistence,
  its files in a temporary folder; started and waited for (bounded PING poll), stopped by PID.
- ``redis_server``: one such server for the whole session, as its URL. Tests share it, so each
  one uses its own keys (e.g. a per-test key prefix).
- ``start_redis``: starts servers of a test's own (to stop, restart, break); all stopped after it.

Without ``redis-server`` on PATH the tests that need it are skipped; ``make test`` installs the
Debian package first (target ``system-deps``).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REDIS_HOST = "127.0.0.1"
REDIS_START_TIMEOUT = 10.0  # seconds until PING answers; generous for a loaded 2-core machine
REDIS_STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
REDIS_START_ATTEMPTS = 5  # another process may take the free port before redis binds it


def free_tcp_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((REDIS_HOST, 0))
        return int(sock.getsockname()[1])


def redis_answers_ping(port: int) -> bool:
    """True when a Redis server on ``port`` answers PING with PONG."""
    try:
        with socket.create_connection((REDIS_HOST, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def redis_server_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (Debian package redis-server); "
                    "make test installs it")
    return binary


class RedisServer:
    """A ``redis-server`` we start and stop; ``start`` again reuses the same port."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.binary = redis_server_binary()
        self.directory = directory
        self.port = port or 0
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{REDIS_HOST}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return None if self._popen is None else self._popen.pid

    def start(self) -> None:
        """Start and wait for PING; picks a free port unless one is set (and then keeps it)."""
        fixed = self.port != 0
        for attempt in range(1 if fixed else REDIS_START_ATTEMPTS):
            if not fixed:
                self.port = free_tcp_port()
            self._spawn()
            if self._wait_ready():
                return
            self.stop()
            if attempt == REDIS_START_ATTEMPTS - 1 or fixed:
                break
        raise AssertionError(f"redis-server did not answer PING on port {self.port}:\n"
                             f"{self.log_tail()}")

    def _spawn(self) -> None:
        argv = [self.binary, "--port", str(self.port), "--bind", REDIS_HOST, "--save", "",
                "--appendonly", "no", "--dir", str(self.directory), "--logfile",
                str(self.log_path)]
        self._popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _wait_ready(self) -> bool:
        assert self._popen is not None
        deadline = time.monotonic() + REDIS_START_TIMEOUT
        while time.monotonic() < deadline:
            if self._popen.poll() is not None:
                return False  # exited: most likely the port was taken
            if redis_answers_ping(self.port):
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL after a timeout; waits for the exit."""
        popen, self._popen = self._popen, None
        if popen is None:
            return
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                popen.terminate()
            try:
                popen.wait(timeout=REDIS_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    popen.kill()
                popen.wait(timeout=REDIS_STOP_TIMEOUT)


@contextlib.contextmanager
def running_redis(directory: Path, port: int | None = None) -> Iterator[RedisServer]:
    server = RedisServer(directory, port)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of one redis-server for the whole session (``redis://127.0.0.1:PORT/0``)."""
    redis_server_binary()
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
def start_redis(tmp_path: Path) -> Iterator[Callable[[], RedisServer]]:
    """Starts a redis-server of this test's own per call; every one is stopped afterwards."""
    redis_server_binary()
    servers: list[RedisServer] = []

    def start() -> RedisServer:
        directory = tmp_path / f"redis-{len(servers)}"
        directory.mkdir()
        server = RedisServer(directory)
        servers.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in reversed(servers):
            server.stop()
