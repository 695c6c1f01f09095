"""One probe = up to ``1 + retries`` tries, each bounded by the monitor's timeout.

Every prober hands ``run_tries`` a function doing one try; the first passing try wins,
otherwise the last try's result counts. The reason notes the retries ("(on try 2 of 3)",
"(failed 3 tries)") so a flapping endpoint is visible in the report even while it passes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from inferlane.health.monitors import MonitorSpec
from inferlane.health.verdicts import ProbeResult


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try: passed or not, why, and its round trip in seconds (None: nothing answered,
    e.g. the connection failed or the try timed out)."""

    ok: bool
    reason: str
    rtt: float | None


async def run_tries(monitor: MonitorSpec, attempt: Callable[[], Awaitable[Attempt]], *,
                    clock: Callable[[], float] = time.monotonic) -> ProbeResult:
    """Run ``attempt`` until it passes, at most ``1 + monitor.retries`` times, each try within
    ``monitor.timeout`` seconds; ``at`` of the result is ``clock()`` when done."""
    tries = monitor.retries + 1
    number = 0
    while True:
        number += 1
        try:
            async with asyncio.timeout(monitor.timeout):
                result = await attempt()
        except TimeoutError:
            result = Attempt(False, f"timed out after {monitor.timeout:g} s", None)
        if result.ok or number == tries:
            break
    reason = result.reason
    if result.ok and number > 1:
        reason += f" (on try {number} of {tries})"
    elif not result.ok and tries > 1:
        reason += f" (failed {tries} tries)"
    return ProbeResult(ok=result.ok, at=clock(), rtt=result.rtt, reason=reason)
