"""Load generation for the overhead benchmark: a raw HTTP/1.1 client, open and closed loops, wrk.

The client is an ``asyncio.Protocol`` with a minimal incremental response parser (Content-Length,
chunked and close-delimited bodies), so that the generator adds a few microseconds per request
instead of the few hundred an HTTP library would; timestamps are ``perf_counter_ns`` taken where
bytes are written and where they arrive.

- ``open_loop``: fixed arrival rate (one request every ``1/rate`` s whatever the answers do), each
  request on an idle keep-alive connection or a new one; latency is measured from the write, and
  how late each write was against its schedule is reported separately as ``send_lag`` so a slow
  generator shows up instead of hiding in the numbers.
- ``closed_loop``: N connections, each sending its next request when the previous answer is in.
- ``run_wrk``: the same closed loop driven by ``wrk`` (C, so not the bottleneck) with a Lua script.

Every loop is bounded by a request count, a duration and a per-request timeout.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

_NS_PER_MS = 1_000_000


@dataclass(frozen=True, slots=True)
class HttpTarget:
    """Where to send requests: a host:port on loopback and the request to repeat."""

    name: str
    host: str
    port: int
    path: str = "/v1/chat/completions"
    headers: tuple[tuple[str, str], ...] = ()

    def request_bytes(self, body: bytes) -> bytes:
        lines = [f"POST {self.path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"


@dataclass(frozen=True, slots=True)
class Sample:
    """One request's outcome; times in nanoseconds, ``ttfb_ns`` = first response-body byte."""

    status: int
    latency_ns: int
    ttfb_ns: int
    send_lag_ns: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and 200 <= self.status < 300


class ProtocolError(Exception):
    """The peer sent bytes that are not a valid HTTP/1.1 response."""


class ResponseParser:
    """Incremental HTTP/1.1 response parser: feed bytes, learn when the body starts and ends."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._state = "head"
        self._remaining = 0
        self.status = 0
        self.keep_alive = True
        self.body = bytearray()
        self.body_started = False
        self.done = False

    def feed(self, data: bytes) -> None:
        self._buffer += data
        if self._state == "head":
            self._parse_head()
        if self._state == "length":
            self._consume_length()
        elif self._state == "chunked":
            self._consume_chunked()
        elif self._state == "eof":
            self._take(len(self._buffer))

    def feed_eof(self) -> None:
        if self._state == "eof":
            self._finish()
        elif not self.done:
            raise ProtocolError(f"connection closed in state {self._state!r}")

    def _parse_head(self) -> None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self._buffer[:end]).decode("latin-1")
        del self._buffer[: end + 4]
        status_line, *header_lines = head.split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise ProtocolError(f"bad status line {status_line!r}")
        self.status = int(parts[1])
        if 100 <= self.status < 200:  # interim response: the real one follows
            self._state = "head"
            self._parse_head()
            return
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        self.keep_alive = parts[0] == "HTTP/1.1" and headers.get("connection") != "close"
        self._choose_framing(headers)

    def _choose_framing(self, headers: dict[str, str]) -> None:
        if self.status in (204, 304):
            self._finish()
        elif "chunked" in headers.get("transfer-encoding", ""):
            self._state = "chunked"
        elif "content-length" in headers:
            self._remaining = int(headers["content-length"])
            self._state = "length"
            if self._remaining == 0:
                self._finish()
        else:
            self._state = "eof"
            self.keep_alive = False

    def _consume_length(self) -> None:
        self._take(min(self._remaining, len(self._buffer)))
        if self._remaining == 0:
            self._finish()

    def _consume_chunked(self) -> None:
        while self._state == "chunked":
            if self._remaining == 0:
                line_end = self._buffer.find(b"\r\n")
                if line_end < 0:
                    return
                size = int(bytes(self._buffer[:line_end]).split(b";")[0], 16)
                if size == 0:
                    self._consume_trailer(line_end + 2)
                    return
                del self._buffer[: line_end + 2]
                self._remaining = size + 2  # the chunk and its CRLF
            taken = self._take(min(self._remaining, len(self._buffer)), chunk_crlf=True)
            if taken == 0:
                return

    def _consume_trailer(self, start: int) -> None:
        rest = self._buffer[start:]
        if rest.startswith(b"\r\n"):
            del self._buffer[: start + 2]
            self._finish()
        elif (end := rest.find(b"\r\n\r\n")) >= 0:
            del self._buffer[: start + end + 4]
            self._finish()

    def _take(self, count: int, chunk_crlf: bool = False) -> int:
        if count <= 0:
            return 0
        data = self._buffer[:count]
        del self._buffer[:count]
        # A chunk's last two bytes are its CRLF, not payload.
        payload_end = min(count, max(0, self._remaining - 2)) if chunk_crlf else count
        if self._state != "eof":
            self._remaining -= count
        if payload_end > 0:
            self.body += data[:payload_end]
            self.body_started = True
        return count

    def _finish(self) -> None:
        self._state = "done"
        self.done = True


class ClientConnection(asyncio.Protocol):
    """A keep-alive connection that carries one request at a time."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._parser = ResponseParser()
        self._done: asyncio.Future[None] | None = None
        self._first_body_ns = 0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._done is not None and not self._done.done():
            try:
                self._parser.feed_eof()
                self._done.set_result(None)
            except ProtocolError as error:
                self._done.set_exception(error)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter_ns()
        if self._done is None or self._done.done():
            return
        try:
            self._parser.feed(data)
        except (ProtocolError, ValueError) as error:
            self._done.set_exception(ProtocolError(str(error)))
            return
        if self._parser.body_started and not self._first_body_ns:
            self._first_body_ns = now
        if self._parser.done:
            self._done.set_result(None)

    async def send(self, request: bytes) -> tuple[ResponseParser, int, int]:
        """Send one request; return the parsed response, its write time and first-body time."""
        if self._transport is None or self.closed:
            raise ConnectionError("connection is closed")
        self._parser = ResponseParser()
        self._first_body_ns = 0
        self._done = asyncio.get_running_loop().create_future()
        sent_ns = time.perf_counter_ns()
        self._transport.write(request)
        await self._done
        if not self._parser.keep_alive:
            self.close()
        return self._parser, sent_ns, self._first_body_ns or time.perf_counter_ns()

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()


async def connect(target: HttpTarget) -> ClientConnection:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(ClientConnection, target.host, target.port)
    return protocol


@dataclass(slots=True)
class ConnectionPool:
    """Idle keep-alive connections to one target, opened on demand up to a limit."""

    target: HttpTarget
    limit: int
    idle: list[ClientConnection] = field(default_factory=list)
    opened: int = 0
    in_use: int = 0
    peak_in_use: int = 0

    async def prefill(self, count: int) -> None:
        for _ in range(min(count, self.limit)):
            self.idle.append(await connect(self.target))
            self.opened += 1

    async def acquire(self) -> ClientConnection:
        while self.idle:
            connection = self.idle.pop()
            if not connection.closed:
                return self._lend(connection)
        if self.opened - len(self.idle) >= self.limit:
            raise ConnectionError(f"client connection limit {self.limit} reached")
        self.opened += 1
        try:
            connection = await connect(self.target)
        except OSError:
            self.opened -= 1
            raise
        return self._lend(connection)

    def _lend(self, connection: ClientConnection) -> ClientConnection:
        self.in_use += 1
        self.peak_in_use = max(self.peak_in_use, self.in_use)
        return connection

    def release(self, connection: ClientConnection, reusable: bool) -> None:
        self.in_use -= 1
        if reusable and not connection.closed:
            self.idle.append(connection)
        else:
            connection.close()
            self.opened -= 1

    def close(self) -> None:
        for connection in self.idle:
            connection.close()
        self.idle.clear()


async def _timed_request(
    pool: ConnectionPool, request: bytes, scheduled_ns: int, timeout_s: float
) -> Sample:
    try:
        connection = await pool.acquire()
    except OSError as error:
        return Sample(0, 0, 0, time.perf_counter_ns() - scheduled_ns, f"connect: {error}")
    reusable = False
    try:
        async with asyncio.timeout(timeout_s):
            parser, sent_ns, first_body_ns = await connection.send(request)
        done_ns = time.perf_counter_ns()
        reusable = True
        problem = None if 200 <= parser.status < 300 else f"HTTP {parser.status}"
        return Sample(
            parser.status,
            done_ns - sent_ns,
            first_body_ns - sent_ns,
            sent_ns - scheduled_ns,
            problem,
        )
    except TimeoutError:
        return Sample(0, 0, 0, 0, f"timeout after {timeout_s:g} s")
    except (OSError, ProtocolError) as error:
        return Sample(0, 0, 0, 0, f"{type(error).__name__}: {error}")
    finally:
        pool.release(connection, reusable)


@dataclass(frozen=True, slots=True)
class OpenLoopResult:
    samples: list[Sample]
    duration_s: float
    max_connections: int

    @property
    def achieved_rps(self) -> float:
        ok = sum(1 for sample in self.samples if sample.ok)
        return ok / self.duration_s if self.duration_s > 0 else 0.0


async def open_loop(
    target: HttpTarget,
    body: bytes,
    rate: float,
    duration_s: float,
    *,
    timeout_s: float = 10.0,
    max_connections: int = 1024,
    prefill: int = 8,
) -> OpenLoopResult:
    """Send ``rate`` requests/s for ``duration_s`` on a fixed schedule, whatever the answers do."""
    request = target.request_bytes(body)
    pool = ConnectionPool(target, max_connections)
    await pool.prefill(prefill)
    loop = asyncio.get_running_loop()
    count = max(1, int(rate * duration_s))
    interval_ns = int(1e9 / rate)
    tasks: list[asyncio.Task[Sample]] = []
    start_ns = time.perf_counter_ns() + 20 * _NS_PER_MS
    try:
        for index in range(count):
            scheduled_ns = start_ns + index * interval_ns
            delay_ns = scheduled_ns - time.perf_counter_ns()
            if delay_ns > 0:
                await asyncio.sleep(delay_ns / 1e9)
            tasks.append(loop.create_task(_timed_request(pool, request, scheduled_ns, timeout_s)))
        samples = list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        pool.close()
    # Until the last answer: a target slower than the offered rate shows its real completion rate.
    elapsed = (time.perf_counter_ns() - start_ns) / 1e9
    return OpenLoopResult(samples, elapsed, pool.peak_in_use)


@dataclass(frozen=True, slots=True)
class ThroughputResult:
    """A closed-loop run: completed requests per second and what went wrong."""

    tool: str
    requests: int
    duration_s: float
    errors: int
    error_detail: str = ""

    @property
    def rps(self) -> float:
        completed = max(0, self.requests - self.errors)
        return completed / self.duration_s if self.duration_s else 0.0


async def closed_loop(
    target: HttpTarget, body: bytes, connections: int, duration_s: float, timeout_s: float = 10.0
) -> ThroughputResult:
    """Python fallback for ``run_wrk``: ``connections`` workers, each one request at a time."""
    request = target.request_bytes(body)
    deadline = time.perf_counter_ns() + int(duration_s * 1e9)
    counts = [0, 0]  # requests, errors

    async def worker() -> None:
        pool = ConnectionPool(target, 1)
        try:
            while time.perf_counter_ns() < deadline:
                sample = await _timed_request(pool, request, time.perf_counter_ns(), timeout_s)
                counts[0] += 1
                counts[1] += 0 if sample.ok else 1
        finally:
            pool.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return ThroughputResult("python", counts[0], time.perf_counter() - started, counts[1])


def wrk_path() -> str | None:
    return shutil.which("wrk")


def wrk_version() -> str:
    path = wrk_path()
    if path is None:
        return "not installed"
    completed = subprocess.run(
        [path, "-v"], capture_output=True, text=True, timeout=10, check=False
    )
    # "wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer"
    first = (completed.stdout or completed.stderr).strip().splitlines()
    return first[0].split(" [")[0].removeprefix("wrk ") if first else "unknown"


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _wrk_script(target: HttpTarget, body: bytes) -> str:
    lines = ['wrk.method = "POST"', f"wrk.body = {_lua_string(body.decode())}"]
    lines.append('wrk.headers["Content-Type"] = "application/json"')
    lines += [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in target.headers]
    return "\n".join(lines) + "\n"


_WRK_REQUESTS = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m)")
_WRK_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_WRK_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def parse_wrk_output(output: str) -> ThroughputResult:
    match = _WRK_REQUESTS.search(output)
    if match is None:
        raise ValueError(f"cannot read wrk output:\n{output}")
    requests = int(match.group(1))
    duration = float(match.group(2)) * _UNIT_SECONDS[match.group(3)]
    non_2xx = int(m.group(1)) if (m := _WRK_NON_2XX.search(output)) else 0
    socket = [int(n) for n in m.groups()] if (m := _WRK_SOCKET.search(output)) else [0, 0, 0, 0]
    detail = ""
    if non_2xx or any(socket):
        detail = f"non-2xx {non_2xx}, socket connect/read/write/timeout {socket}"
    # wrk counts a request with a socket error only when it completed; non-2xx are in `requests`.
    return ThroughputResult("wrk", requests, duration, non_2xx + sum(socket), detail)


def run_wrk(
    target: HttpTarget,
    body: bytes,
    connections: int,
    duration_s: float,
    *,
    cpus: Sequence[int] = (),
    threads: int = 1,
) -> ThroughputResult:
    """Closed loop with wrk; ``cpus`` pins it with taskset."""
    path = wrk_path()
    if path is None:
        raise FileNotFoundError("wrk is not installed (apt-get install -y wrk)")
    with tempfile.TemporaryDirectory(prefix="inferlane-wrk-") as folder:
        script = Path(folder) / "post.lua"
        script.write_text(_wrk_script(target, body))
        argv = [
            path,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration_s))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            target.url,
        ]
        if cpus and shutil.which("taskset"):
            argv = ["taskset", "-c", ",".join(map(str, cpus)), *argv]
        completed = subprocess.run(
            argv, capture_output=True, text=True, timeout=duration_s + 60, check=False
        )
    if completed.returncode != 0:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr.strip()}")
    return parse_wrk_output(completed.stdout)


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Linear-interpolated percentile of already sorted values (``fraction`` in [0, 1])."""
    if not sorted_values:
        return float("nan")
    position = fraction * (len(sorted_values) - 1)
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


async def fetch_once(target: HttpTarget, body: bytes, timeout_s: float = 10.0) -> tuple[int, bytes]:
    """One request on a fresh connection; returns the status and the (de-chunked) body."""
    connection = await connect(target)
    try:
        async with asyncio.timeout(timeout_s):
            parser, _, _ = await connection.send(target.request_bytes(body))
        return parser.status, bytes(parser.body)
    finally:
        connection.close()
