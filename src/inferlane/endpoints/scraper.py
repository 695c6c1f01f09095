"""``MetricsScraper``: the I/O edge that keeps an ``EndpointStore`` fed with live metrics.

One asyncio task ticks every ``interval`` (50 ms by default) and starts a scrape of every endpoint
in the store that is not still being scraped from an earlier tick, so a slow or hanging server
costs one pending scrape, never a pile of them, and never delays the others. Scrapes run
concurrently under a semaphore, each bounded by ``timeout`` end to end (connect, headers, body),
over a dedicated keep-alive pool of the gateway's lean HTTP/1.1 client: a scrape of a healthy
server is one request on an open connection.

A failed scrape (refused, timed out, non-200, unparsable) counts in the store as a scrape error;
the state keeps its last good metrics, which turn stale after ``stale_after`` and the scheduler
treats them so. Failures log at debug level, plus one warning when an endpoint goes from healthy
to failing and one info line when it recovers, so a dead server does not flood the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping

from inferlane.dataplane.h1client import UpstreamError, UpstreamPool
from inferlane.endpoints.parse import is_engine, parse_metrics
from inferlane.endpoints.store import EndpointStore
from inferlane.errors import MetricsParseError
from inferlane.scheduling.interfaces import Endpoint
from inferlane.scheduling.types import ServerMetrics

log = logging.getLogger("inferlane.endpoints")

DEFAULT_METRICS_PATH = "/metrics"
_HEADERS = (("Accept", "text/plain;version=0.0.4"), ("User-Agent", "inferlane-scraper"))


class _ScrapeFailed(Exception):
    """A scrape got an answer we cannot use (non-200, unknown engine)."""


class MetricsScraper:
    """Scrapes every endpoint of ``store`` every ``interval`` seconds; see the module docstring.

    ``metrics_paths`` maps ``Endpoint.address`` to a path other than ``/metrics``.
    ``scrapes_total`` counts finished scrapes (good or not), ``scrape_errors_total`` the failed.
    """

    def __init__(self, store: EndpointStore, *, interval: float = 0.05,
                 timeout: float | None = None, clock: Callable[[], float] = time.monotonic,
                 metrics_paths: Mapping[str, str] | None = None,
                 max_concurrency: int = 64) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval}")
        if timeout is None:
            timeout = min(1.0, store.stale_after / 2)
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.store = store
        self.interval = interval
        self.timeout = timeout
        self.metrics_paths: Mapping[str, str] = dict(metrics_paths or {})
        self.scrapes_total = 0
        self.scrape_errors_total = 0
        self._clock = clock
        self._semaphore = asyncio.Semaphore(max_concurrency)  # binds to a loop on first use
        self._pool = self._new_pool()
        self._running: dict[str, asyncio.Task[None]] = {}  # address -> its scrape in progress
        self._failing: set[str] = set()
        self._ticker: asyncio.Task[None] | None = None

    def _new_pool(self) -> UpstreamPool:
        # One idle connection per endpoint is all a scraper needs.
        return UpstreamPool(connect_timeout=self.timeout, read_timeout=self.timeout,
                            max_idle_per_host=1)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start ticking on the running loop (idempotent)."""
        if self._ticker is not None and not self._ticker.done():
            return
        if self._pool.closed:
            self._pool = self._new_pool()
        self._ticker = asyncio.get_running_loop().create_task(self._tick_forever(),
                                                              name="metrics-scraper")

    async def stop(self) -> None:
        """Stop ticking, cancel scrapes in progress and close the connections."""
        ticker, self._ticker = self._ticker, None
        tasks = list(self._running.values())
        if ticker is not None:
            tasks.append(ticker)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._running.clear()  # a task cancelled before its first step never ran its finally
        await self._pool.close()

    @property
    def running(self) -> bool:
        return self._ticker is not None and not self._ticker.done()

    async def scrape_once(self) -> None:
        """Scrape every endpoint not already being scraped, and wait for those scrapes."""
        started = self._start_round()
        if started:
            await asyncio.wait(started)

    # -- one round ----------------------------------------------------------------------------

    async def _tick_forever(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            self._start_round()
            due += self.interval
            now = loop.time()
            if due < now:  # fell behind (a blocked loop): skip ticks rather than burst
                due = now + self.interval
            await asyncio.sleep(due - now)

    def _start_round(self) -> list[asyncio.Task[None]]:
        loop = asyncio.get_running_loop()
        running = self._running
        started: list[asyncio.Task[None]] = []
        endpoints = self.store.endpoints()
        if self._failing:  # forget endpoints a reload removed
            self._failing &= {endpoint.address for endpoint in endpoints}
        for endpoint in endpoints:
            address = endpoint.address
            previous = running.get(address)
            if previous is not None and not previous.done():
                continue  # still at it since an earlier tick
            task = loop.create_task(self._scrape(endpoint, address))
            running[address] = task
            started.append(task)
        return started

    async def _scrape(self, endpoint: Endpoint, address: str) -> None:
        try:
            async with self._semaphore:
                metrics = await self._fetch(endpoint, address)
        except (UpstreamError, MetricsParseError, _ScrapeFailed) as exc:
            self._failed(endpoint, address, exc)
        except Exception as exc:  # a bug here must cost one scrape, not the scraper
            log.exception("unexpected error scraping %s", address)
            self._failed(endpoint, address, exc)
        else:
            self.scrapes_total += 1
            self.store.record_scrape(endpoint, metrics)
            if address in self._failing:
                self._failing.discard(address)
                log.info("metrics of %s (%s) are being scraped again", address, endpoint.name)
        finally:
            if self._running.get(address) is asyncio.current_task():
                del self._running[address]

    async def _fetch(self, endpoint: Endpoint, address: str) -> ServerMetrics:
        engine = endpoint.engine
        if not is_engine(engine):
            raise _ScrapeFailed(f"unknown engine {engine!r}")
        path = self.metrics_paths.get(address, DEFAULT_METRICS_PATH)
        response = await self._pool.request("GET", endpoint.host, endpoint.port, path, _HEADERS,
                                            b"", budget=self.timeout)
        async with response:
            if response.status != 200:
                raise _ScrapeFailed(f"GET {path} answered HTTP {response.status}")
            body = await response.read()
        return parse_metrics(body, engine, self._clock())

    def _failed(self, endpoint: Endpoint, address: str, exc: Exception) -> None:
        self.scrapes_total += 1
        self.scrape_errors_total += 1
        self.store.record_scrape_error(endpoint)
        path = self.metrics_paths.get(address, DEFAULT_METRICS_PATH)
        if address in self._failing:
            log.debug("scraping http://%s%s failed: %s", address, path, exc)
            return
        self._failing.add(address)
        log.warning("scraping metrics of %s (%s) from http://%s%s failed: %s; its metrics turn "
                    "stale after %gs", endpoint.name, endpoint.engine, address, path, exc,
                    self.store.stale_after)
