"""``TcpProber``: ``tcp`` monitors with asyncio streams.

One connection per try: connect; send ``send`` when set; read until ``expect`` arrives when set
(at most ``BODY_LIMIT`` bytes); then close. A try cut short (timeout, error) aborts the
connection instead of waiting for a polite close.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from inferlane.health.monitors import MonitorSpec, MonitorType, ProbeTarget, TcpCheck
from inferlane.health.probes.checks import BODY_LIMIT, Outcome, describe_os_error, tcp_outcome
from inferlane.health.probes.tries import Attempt, run_tries
from inferlane.health.verdicts import ProbeResult


class TcpProber:
    """Probes ``tcp`` monitors; keeps no state between probes."""

    async def probe(self, monitor: MonitorSpec, target: ProbeTarget) -> ProbeResult:
        check = monitor.tcp
        if check is None or monitor.type is not MonitorType.TCP:
            raise ValueError(f"monitor {monitor.key} is a {monitor.type} monitor, not tcp")
        return await run_tries(monitor, lambda: _try(target.host, target.port, check))

    async def close(self) -> None:
        """Nothing to release; here so every prober closes alike."""


async def _try(host: str, port: int, check: TcpCheck) -> Attempt:
    started = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as error:
        return Attempt(False, describe_os_error(error), None)
    try:
        outcome = await _converse(reader, writer, check)
    except OSError as error:
        writer.transport.abort()
        return Attempt(False, describe_os_error(error), time.monotonic() - started)
    except BaseException:  # cancelled, e.g. by the try's timeout: drop the connection now
        writer.transport.abort()
        raise
    rtt = time.monotonic() - started
    writer.close()
    with contextlib.suppress(OSError):  # the peer may reset once it has answered
        await writer.wait_closed()
    return Attempt(outcome.ok, outcome.reason, rtt)


async def _converse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    check: TcpCheck) -> Outcome:
    if check.send:
        writer.write(check.send)
        await writer.drain()
    received = bytearray()
    closed = False
    if check.expect:
        while check.expect not in received and len(received) < BODY_LIMIT:
            chunk = await reader.read(BODY_LIMIT - len(received))
            if not chunk:
                closed = True
                break
            received += chunk
    return tcp_outcome(check, bytes(received), closed=closed)
