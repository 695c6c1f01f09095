"""The probe agent: runs a region's monitors away from the gateway and reports the results.

``inferlane probe --region NAME --gateway URL`` runs this. The agent holds no config of its own:
it fetches its plan (``GET /admin/health/plan?region=NAME``: monitor specs and targets), probes
on the monitors' schedules with the same probers as the gateway, and posts what it saw every
``report_interval`` (``POST /admin/health/reports``), each result with its age so the gateway
can place it on its own clock. A report's answer carries the config generation and the gateway
process's instance id; when either moves (a reload; a restart, which counts generations from 1
again), the agent refetches its plan. Both calls carry the admin token.

A gateway that cannot be reached is retried with backoff while results queue up (bounded: the
oldest are dropped, the gateway judges by the newest). A wrong token, or a region the gateway
does not know at start, never fixes itself: the agent stops with the gateway's message. A
region that a reload removes later pauses the agent, which asks for its plan again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from inferlane.health.loop import ProbeLoop
from inferlane.health.monitors import MonitorSpec, ProbeTarget
from inferlane.health.probes import Probers
from inferlane.health.verdicts import ProbeResult

log = logging.getLogger("inferlane.probe")

MAX_QUEUED = 10_000
MAX_BACKOFF = 10.0

Generation = tuple[str, int]  # (gateway instance id, config generation): which plan is current


class AgentStopped(Exception):
    """The gateway refused the agent for good (token, region); the message says why."""


class RegionRefused(AgentStopped):
    """The gateway does not (or no longer) know this region: fatal at start, but after a
    plan was served it means a reload dropped the region, which a later reload may undo."""


@dataclass(frozen=True, slots=True)
class AgentOptions:
    gateway: str  # base URL, e.g. http://127.0.0.1:8080
    region: str
    token: str
    report_interval: float = 1.0
    request_timeout: float = 5.0


class ProbeAgent:
    def __init__(self, options: AgentOptions) -> None:
        self._options = options
        self._queue: deque[tuple[str, str, ProbeResult]] = deque(maxlen=MAX_QUEUED)
        self._generation: Generation | None = None
        self.reports_sent = 0

    async def run(self) -> None:
        """Probe and report until cancelled (or AgentStopped)."""
        options = self._options
        probers = Probers()
        loop = ProbeLoop(probers.probe, self._queued)
        timeout = aiohttp.ClientTimeout(total=options.request_timeout)
        headers = {"Authorization": f"Bearer {options.token}"}
        backoff = options.report_interval
        planned = False  # a plan was served once: the region existed
        try:
            async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
                while True:
                    try:
                        if self._generation is None:
                            plan, self._generation = await self._plan(session)
                            loop.sync(plan)
                            planned = True
                            log.info("probe agent %s: %d probe(s), config generation %d",
                                     options.region, len(plan), self._generation[1])
                        await asyncio.sleep(options.report_interval)
                        generation = await self._report(session)
                        if generation != self._generation:
                            self._generation = None  # reloaded or restarted: fetch the plan
                        backoff = options.report_interval
                    except RegionRefused as error:
                        if not planned:
                            raise
                        log.warning("probe agent %s: %s; asking again in %.1f s",
                                    options.region, error, MAX_BACKOFF)
                        loop.sync([])
                        self._generation = None
                        await asyncio.sleep(MAX_BACKOFF)
                    except (aiohttp.ClientError, TimeoutError) as error:
                        log.warning("probe agent %s: gateway %s unreachable (%s); retrying in "
                                    "%.1f s", options.region, options.gateway,
                                    type(error).__name__, backoff)
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, MAX_BACKOFF)
        finally:
            await loop.close()
            await probers.close()

    def _queued(self, monitor: MonitorSpec, target: ProbeTarget, result: ProbeResult) -> None:
        self._queue.append((monitor.key, target.endpoint, result))

    async def _plan(self, session: aiohttp.ClientSession
                    ) -> tuple[list[tuple[MonitorSpec, ProbeTarget]], Generation]:
        url = f"{self._options.gateway.rstrip('/')}/admin/health/plan"
        async with session.get(url, params={"region": self._options.region}) as response:
            body = await _answer(response)
        plan = []
        for item in body["probes"]:
            target = item["target"]
            plan.append((MonitorSpec.from_wire(item["monitor"]),
                         ProbeTarget(endpoint=str(target["endpoint"]), host=str(target["host"]),
                                     port=int(target["port"]), model=str(target["model"]))))
        return plan, _generation(body)

    async def _report(self, session: aiohttp.ClientSession) -> Generation:
        batch, self._queue = self._queue, deque(maxlen=MAX_QUEUED)
        try:
            return await self._send(session, batch)
        except BaseException:
            # Unsent: back in front of what queued meanwhile (the oldest drop past the bound).
            self._queue = deque([*batch, *self._queue], maxlen=MAX_QUEUED)
            raise

    async def _send(self, session: aiohttp.ClientSession,
                    batch: deque[tuple[str, str, ProbeResult]]) -> Generation:
        now = time.monotonic()
        results = [{"monitor": monitor, "endpoint": endpoint, "ok": result.ok, "rtt": result.rtt,
                    "reason": result.reason, "age": max(now - result.at, 0.0)}
                   for monitor, endpoint, result in batch]
        url = f"{self._options.gateway.rstrip('/')}/admin/health/reports"
        payload = orjson.dumps({"region": self._options.region, "results": results})
        async with session.post(url, data=payload,
                                headers={"Content-Type": "application/json"}) as response:
            body = await _answer(response)
        self.reports_sent += 1
        return _generation(body)


def _generation(body: dict[str, Any]) -> Generation:
    return str(body.get("instance", "")), int(body["generation"])


async def _answer(response: aiohttp.ClientResponse) -> dict[str, Any]:
    raw = await response.read()
    if response.status in (400, 401, 403, 404):
        try:
            message = orjson.loads(raw)["error"]["message"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            message = raw[:200].decode("utf-8", "replace")
        refused = RegionRefused if response.status in (400, 404) else AgentStopped
        raise refused(f"the gateway refused the agent (HTTP {response.status}): {message}")
    if response.status != 200:
        raise aiohttp.ClientResponseError(response.request_info, (), status=response.status,
                                          message=f"HTTP {response.status}")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        raise aiohttp.ClientPayloadError("the gateway's answer is not a JSON object")
    return body
