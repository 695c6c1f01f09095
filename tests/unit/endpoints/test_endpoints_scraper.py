"""MetricsScraper over real loopback: simulated vLLM replicas, scripted raw servers, dead ports."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from inferlane.endpoints.scraper import MetricsScraper
from inferlane.endpoints.store import EndpointStore
from inferlane.scheduling.interfaces import Endpoint
from inferlane.sim.engine import EngineConfig
from inferlane.sim.fleet import Fleet, SimOptions, start_fleet

PAGE = (b"vllm:num_requests_waiting 4\nvllm:num_requests_running 2\n"
        b"vllm:kv_cache_usage_perc 0.5\n")


def ok(body: bytes = PAGE) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


ERROR = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
HANG = b""  # read the request, never answer


class ScriptedServer:
    """Answers each request with the next scripted response (the last one repeats)."""

    def __init__(self, *responses: bytes) -> None:
        self.responses = list(responses)
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: list[tuple[asyncio.Task[None], asyncio.StreamWriter]] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._handlers.append((task, writer))
        try:
            while True:
                self.requests.append(await reader.readuntil(b"\r\n\r\n"))
                index = min(len(self.requests), len(self.responses)) - 1
                response = self.responses[index]
                if response is HANG:
                    await reader.read()  # until the client gives up and closes
                    return
                writer.write(response)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint("test/scripted", "127.0.0.1", self.port)

    async def __aenter__(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for _, writer in self._handlers:
            writer.close()
        await asyncio.gather(*(task for task, _ in self._handlers), return_exceptions=True)
        await self._server.wait_closed()


async def eventually(predicate: Callable[[], bool], step: Callable[[], object] | None = None
                     ) -> None:
    """Poll (optionally doing ``await step()`` each time); fail after about ten seconds."""
    for _ in range(2000):
        if step is not None:
            result = step()
            if asyncio.iscoroutine(result):
                await result
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def endpoint_of(fleet: Fleet, index: int = 0) -> Endpoint:
    host, port = fleet.addresses[index].rsplit(":", 1)
    return Endpoint(f"sim/{index}", host, int(port))


@pytest.fixture
async def fleet() -> AsyncIterator[Fleet]:
    # Real-time replicas with two batch slots: long generations keep requests visible.
    options = SimOptions(engine=EngineConfig(max_num_seqs=2), loras=("sql",))
    running = await start_fleet(2, 0, options=options)
    yield running
    await running.stop()


@pytest.fixture
def store() -> EndpointStore:
    return EndpointStore(stale_after=2.0)


@pytest.fixture
async def make_scraper(store: EndpointStore) -> AsyncIterator[Callable[..., MetricsScraper]]:
    made: list[MetricsScraper] = []

    def make(**kwargs: object) -> MetricsScraper:
        scraper = MetricsScraper(store, **kwargs)  # type: ignore[arg-type]
        made.append(scraper)
        return scraper

    yield make
    for scraper in made:
        await scraper.stop()


async def test_scrape_fills_the_store_with_the_simulators_values(
        fleet: Fleet, store: EndpointStore, make_scraper: Callable[..., MetricsScraper]) -> None:
    busy, idle = endpoint_of(fleet, 0), endpoint_of(fleet, 1)
    store.sync([busy, idle])
    scraper = make_scraper()
    await scraper.scrape_once()
    assert store.state(idle).metrics is not None
    assert (store.state(idle).metrics.waiting, store.state(idle).metrics.num_blocks) == (0, 2048)

    async def generate(session: aiohttp.ClientSession, model: str) -> None:
        body = {"model": model, "prompt": "hello " * 50, "max_tokens": 5000, "stream": True}
        async with session.post(f"http://{fleet.addresses[0]}/v1/completions",
                                json=body) as response:
            async for _ in response.content.iter_any():
                pass

    replica = fleet.replicas[0].engine
    async with aiohttp.ClientSession() as session:
        clients = [asyncio.create_task(generate(session, model))
                   for model in ("sql", "sim-model", "sim-model", "sim-model", "sim-model")]
        try:
            await eventually(lambda: replica.num_running == 2 and replica.num_waiting == 3)
            await eventually(lambda: (m := store.state(busy).metrics) is not None
                             and (m.running, m.waiting) == (2, 3), scraper.scrape_once)
        finally:
            for client in clients:
                client.cancel()
            await asyncio.gather(*clients, return_exceptions=True)
    metrics = store.state(busy).metrics
    assert metrics is not None
    assert metrics.kv_usage == replica.kv_cache_usage > 0
    assert metrics.running_loras == frozenset(replica.running_loras) == {"sql"}
    assert (metrics.block_size, metrics.num_blocks, metrics.max_loras) == (16, 2048, 4)
    assert scraper.scrape_errors_total == 0
    assert scraper.scrapes_total >= 4
    assert not store.is_stale(busy, metrics.scraped_at)


async def test_dead_endpoint_counts_errors_and_stays_stale(
        store: EndpointStore, make_scraper: Callable[..., MetricsScraper],
        caplog: pytest.LogCaptureFixture) -> None:
    dead = Endpoint("test/dead", "127.0.0.1", closed_port())
    store.sync([dead])
    scraper = make_scraper(clock=lambda: 100.0)
    caplog.set_level(logging.DEBUG, logger="inferlane.endpoints")
    for _ in range(3):
        await scraper.scrape_once()
    state = store.state(dead)
    assert (state.scrape_errors, state.metrics) == (3, None)
    assert (scraper.scrapes_total, scraper.scrape_errors_total) == (3, 3)
    assert store.is_stale(dead, 100.0)
    levels = [record.levelno for record in caplog.records]
    assert levels == [logging.WARNING, logging.DEBUG, logging.DEBUG]  # one warning, not three
    assert "test/dead" in caplog.records[0].getMessage()


async def test_failing_then_recovering_logs_each_transition_once(
        store: EndpointStore, make_scraper: Callable[..., MetricsScraper],
        caplog: pytest.LogCaptureFixture) -> None:
    async with ScriptedServer(ERROR, ok(b"garbage"), ok(), ok(), ERROR) as server:
        store.sync([server.endpoint])
        scraper = make_scraper()
        caplog.set_level(logging.DEBUG, logger="inferlane.endpoints")
        for _ in range(5):
            await scraper.scrape_once()
        assert server.connections == 1  # keep-alive: every scrape on one connection
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in messages] == [
        logging.WARNING, logging.DEBUG, logging.INFO, logging.WARNING]
    assert "HTTP 500" in messages[0][1]
    assert "no vllm:num_requests_waiting" in messages[1][1]
    assert (scraper.scrapes_total, scraper.scrape_errors_total) == (5, 3)
    assert store.state(server.endpoint).scrape_errors == 1
    assert store.state(server.endpoint).metrics is not None


async def test_a_hanging_endpoint_times_out_without_blocking_the_others(
        fleet: Fleet, store: EndpointStore,
        make_scraper: Callable[..., MetricsScraper]) -> None:
    healthy = endpoint_of(fleet)
    async with ScriptedServer(HANG, ok()) as server:
        store.sync([server.endpoint, healthy])
        scraper = make_scraper(timeout=0.5)
        first_round = asyncio.create_task(scraper.scrape_once())
        await eventually(lambda: store.state(healthy).metrics is not None)
        # The healthy endpoint was scraped while the hanging one is still pending.
        assert store.state(server.endpoint).scrape_errors == 0
        assert not first_round.done()
        # A second round skips the scrape in progress instead of starting another.
        await scraper.scrape_once()
        assert len(server.requests) == 1
        await first_round
        assert store.state(server.endpoint).scrape_errors == 1
        assert scraper.scrape_errors_total == 1
        await scraper.scrape_once()  # a fresh connection, answered this time
        assert store.state(server.endpoint).metrics is not None
        assert server.connections == 2


async def test_metrics_path_override_and_bad_answers(
        fleet: Fleet, store: EndpointStore,
        make_scraper: Callable[..., MetricsScraper]) -> None:
    good, wrong = endpoint_of(fleet, 0), endpoint_of(fleet, 1)
    unknown_engine = Endpoint("sim/tgi", good.host, good.port, engine="tgi")
    store.sync([good, wrong])
    scraper = make_scraper(metrics_paths={wrong.address: "/v1/models"})
    await scraper.scrape_once()
    assert store.state(good).metrics is not None
    assert (store.state(wrong).metrics, store.state(wrong).scrape_errors) == (None, 1)
    store.sync([unknown_engine])
    await scraper.scrape_once()
    assert store.state(unknown_engine).scrape_errors == 1


async def test_ticker_keeps_scraping_follows_sync_and_stops(
        fleet: Fleet, store: EndpointStore,
        make_scraper: Callable[..., MetricsScraper]) -> None:
    first, second = endpoint_of(fleet, 0), endpoint_of(fleet, 1)
    store.sync([first])
    ticks = iter(range(1, 1_000_000))
    scraper = make_scraper(interval=0.01, clock=lambda: float(next(ticks)))
    scraper.start()
    scraper.start()  # idempotent
    assert scraper.running

    def scraped_at(endpoint: Endpoint) -> float:
        metrics = store.state(endpoint).metrics if endpoint in store else None
        return -1.0 if metrics is None else metrics.scraped_at

    await eventually(lambda: scraped_at(first) >= 3)  # scraped again and again
    store.sync([second])
    await eventually(lambda: scraped_at(second) >= 1)
    await scraper.stop()
    assert not scraper.running
    total = scraper.scrapes_total
    await asyncio.sleep(0.05)
    assert scraper.scrapes_total == total
    scraper.start()  # restartable after stop, with a fresh connection pool
    await eventually(lambda: scraper.scrapes_total > total)


async def test_stop_cancels_a_scrape_in_progress(
        store: EndpointStore, make_scraper: Callable[..., MetricsScraper]) -> None:
    async with ScriptedServer(HANG) as server:
        store.sync([server.endpoint])
        scraper = make_scraper(interval=0.01, timeout=30.0)
        scraper.start()
        await eventually(lambda: len(server.requests) == 1)
        await scraper.stop()
        assert (scraper.scrapes_total, store.state(server.endpoint).scrape_errors) == (0, 0)


def test_constructor_defaults_and_validation(store: EndpointStore) -> None:
    assert MetricsScraper(store).timeout == 1.0
    assert MetricsScraper(EndpointStore(stale_after=0.5)).timeout == 0.25
    with pytest.raises(ValueError, match="interval"):
        MetricsScraper(store, interval=0)
    with pytest.raises(ValueError, match="timeout"):
        MetricsScraper(store, timeout=-1)


async def test_stop_before_scrapes_begin_then_restart(
        fleet: Fleet, store: EndpointStore,
        make_scraper: Callable[..., MetricsScraper]) -> None:
    store.sync([endpoint_of(fleet)])
    scraper = make_scraper(interval=0.01)
    scraper.start()
    await asyncio.sleep(0)  # the first tick creates the scrape, which has not run yet
    await scraper.stop()
    assert scraper.scrapes_total == 0
    scraper.start()
    await eventually(lambda: store.state(endpoint_of(fleet)).metrics is not None)
