"""The gateway's HTTP/1.1 server: one aiohttp site per Gateway listener.

Routes served on every listener:

- ``POST /v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings`` and Anthropic's
  ``/v1/messages`` → ``InferenceProxy``
- ``GET /v1/models`` → the models this gateway routes (from the serving snapshot)
- ``GET /admin/shadow`` (mirror comparisons, read by ``inferlane shadow-report``) and
  ``GET /admin/backends`` (circuit breakers that are open or have recent failures), JSON
- ``/admin/health`` and its agent/drain calls (``dataplane.health_admin``); ``GET /admin/l4``
  (TCP/UDP listeners, backends, flows, counters; read by ``inferlane l4 status``)

TCP and UDP Gateway listeners are served by ``l4.service.L4Service`` beside the HTTP sites.
- ``GET /metrics`` (Prometheus text), ``GET /healthz`` (alive), ``GET /readyz`` (serving)
- anything else → 404/405 in OpenAI's error shape

Listeners are bound at start. A reload swaps routes and pools under the same listeners; a change
to the listener set itself needs a restart and is logged as such.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from inferlane.dataplane.health_admin import HealthAdmin
from inferlane.dataplane.proxy import InferenceProxy
from inferlane.dataplane.request import error_response
from inferlane.dataplane.state import GatewayState
from inferlane.dataplane.upstream import UpstreamOptions, create_pool
from inferlane.endpoints import EndpointStore, MetricsScraper
from inferlane.errors import MethodNotAllowed, NotFound
from inferlane.health.settings import GATEWAY_REGION
from inferlane.l4.service import L4Service
from inferlane.metrics.endpoints import EndpointCollector
from inferlane.metrics.gateway import CONTENT_TYPE, GatewayMetrics
from inferlane.metrics.l4 import L4Collector
from inferlane.routing.router import GatewaySnapshot
from inferlane.scheduling.interfaces import Endpoint

log = logging.getLogger("inferlane.server")

INFERENCE_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/messages")
_GET_PATHS = ("/v1/models", "/metrics", "/healthz", "/readyz", "/admin/shadow",
              "/admin/backends", "/admin/health", "/admin/health/plan", "/admin/l4")
_ADMIN_POST_PATHS = ("/admin/health/reports", "/admin/health/drain")


@dataclass(frozen=True, slots=True)
class ServerOptions:
    host: str = "0.0.0.0"
    port_override: int | None = None  # replaces the first listener's port (``serve --port``)
    access_log: bool = False
    upstream: UpstreamOptions = field(default_factory=UpstreamOptions)
    scrape_interval: float = 0.05  # seconds between model-server metrics scrapes; 0 = off
    region: str = GATEWAY_REGION  # this process's health vantage point
    admin_token: str | None = None  # enables agent reports and drains (never logged)
    probes: bool = True  # run this region's health probes (off: agents and passive only)


def metrics_endpoints(snapshot: GatewaySnapshot) -> list[Endpoint]:
    """Endpoints whose pool's scheduler reads scraped metrics (the others are not scraped)."""
    seen: dict[str, Endpoint] = {}
    for pool in snapshot.pools.values():
        if pool.needs_metrics:
            for endpoint in pool.endpoints:
                seen.setdefault(endpoint.address, endpoint)
    return list(seen.values())


class GatewayServer:
    """The listeners, the upstream pool and the metrics scraper of one gateway process.

    ``store`` must be the EndpointStore the snapshot's schedulers read (``build_snapshot(...,
    states=store.states)``).
    """

    def __init__(self, snapshot: GatewaySnapshot, options: ServerOptions | None = None, *,
                 store: EndpointStore | None = None) -> None:
        self._options = options or ServerOptions()
        self._initial = snapshot
        # Not `store or ...`: an empty store is falsy (it has __len__) but must still be used.
        self._store = store if store is not None else EndpointStore()
        self._scraper: MetricsScraper | None = None
        self._runners: list[web.AppRunner] = []
        self._ports: dict[str, int] = {}
        self._state: GatewayState | None = None
        self._l4: L4Service | None = None
        self._loaded_at = int(time.time())

    @property
    def state(self) -> GatewayState:
        if self._state is None:
            raise RuntimeError("GatewayServer.start() has not run")
        return self._state

    @property
    def metrics(self) -> GatewayMetrics:
        return self.state.metrics

    @property
    def ports(self) -> dict[str, int]:
        """Bound port per listener name (differs from config when it said 0 or was overridden)."""
        return dict(self._ports)

    async def start(self) -> None:
        self._state = GatewayState(
            snapshot=self._initial,
            upstream=create_pool(self._options.upstream),
            upstream_options=self._options.upstream,
            endpoints=self._store,
            region=self._options.region,
        )
        self._state.swap(self._initial)
        if self._options.probes:
            await self._state.health.start()
        self._state.metrics.registry.register(
            EndpointCollector(self._store, lambda: self._scraper, time.monotonic)
        )
        scraped = metrics_endpoints(self._initial)
        self._store.sync(scraped)
        if self._options.scrape_interval > 0:
            self._scraper = MetricsScraper(
                self._store, interval=self._options.scrape_interval,
                metrics_paths={e.address: e.metrics_path for e in scraped},
            )
            self._scraper.start()
        try:
            for index, listener in enumerate(self._initial.listeners):
                port = listener.port
                if index == 0 and self._options.port_override is not None:
                    port = self._options.port_override
                runner = web.AppRunner(
                    self._build_app(listener.name),
                    handler_cancellation=True,
                    access_log=log if self._options.access_log else None,
                )
                await runner.setup()
                self._runners.append(runner)
                site = web.TCPSite(runner, self._options.host, port, reuse_address=True)
                await site.start()
                self._ports[listener.name] = _bound_port(runner, port)
                log.info(
                    "listener %s serving on http://%s:%d",
                    listener.name, self._options.host, self._ports[listener.name],
                )
            self._l4 = L4Service(self._state.health.tracker, host=self._options.host)
            self._state.metrics.registry.register(L4Collector(self._l4.status))
            await self._l4.apply(self._initial.l4, self._initial.backend_sets)
        except BaseException:
            await self.stop()
            raise
        self._state.ready = True

    async def stop(self) -> None:
        if self._l4 is not None:
            await self._l4.close()
            self._l4 = None
        if self._state is not None:
            self._state.ready = False
        if self._scraper is not None:
            await self._scraper.stop()
            self._scraper = None
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        if self._state is not None:
            await self._state.close()
        if self._state is not None and not self._state.upstream.closed:
            await self._state.upstream.close()

    def apply(self, snapshot: GatewaySnapshot) -> None:
        """Serve ``snapshot`` from now on; requests already running keep their own."""
        current = self.state.snapshot
        before = {(lst.name, lst.port) for lst in current.listeners}
        after = {(lst.name, lst.port) for lst in snapshot.listeners}
        if before != after:
            log.warning(
                "config generation %d changes Gateway listeners; routes and pools are applied "
                "now, listener changes take effect after a restart",
                snapshot.generation,
            )
        scraped = metrics_endpoints(snapshot)
        self._store.sync(scraped)
        if self._scraper is not None:
            self._scraper.metrics_paths = {e.address: e.metrics_path for e in scraped}
        self.state.swap(snapshot)
        if self._l4 is not None:
            self.state.spawn(self._l4.apply(snapshot.l4, snapshot.backend_sets))
        self._loaded_at = int(time.time())

    def _build_app(self, listener_name: str) -> web.Application:
        app = web.Application(handler_args={"max_field_size": 65536})
        proxy = InferenceProxy(self.state, listener_name)
        for path in INFERENCE_PATHS:
            app.router.add_post(path, proxy.handle)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/admin/shadow", self._shadow)
        app.router.add_get("/admin/backends", self._backends)
        app.router.add_get("/admin/l4", self._l4_status)
        HealthAdmin(self.state, self._options.admin_token).add_routes(app)
        app.router.add_route("*", "/{tail:.*}", self._fallback)
        return app

    async def _models(self, request: web.Request) -> web.Response:
        data = [
            {"id": model, "object": "model", "created": self._loaded_at, "owned_by": "inferlane"}
            for model in self.state.snapshot.models
        ]
        return web.Response(
            body=orjson.dumps({"object": "list", "data": data}), content_type="application/json"
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        for gate in self.state.gates.values():
            gate.publish_saturation()  # the gauge as of now, also when no request passed lately
        response = web.Response(body=self.metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    async def _shadow(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps({"pairs": self.state.shadow.summary()}),
                            content_type="application/json")

    async def _backends(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        body = {"monotonic_now": now, "rules": self.state.resilience.snapshot(now)}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def _l4_status(self, request: web.Request) -> web.Response:
        status = self._l4.status() if self._l4 is not None else {"listeners": []}
        return web.Response(body=orjson.dumps(status), content_type="application/json")

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        snapshot = self.state.snapshot
        if not self.state.ready:
            return web.json_response({"status": "starting"}, status=503)
        return web.json_response({"status": "ready", "configGeneration": snapshot.generation})

    async def _fallback(self, request: web.Request) -> web.Response:
        request_id = request.headers.get("x-request-id") or os.urandom(16).hex()
        if request.path in INFERENCE_PATHS or request.path in _GET_PATHS \
                or request.path in _ADMIN_POST_PATHS:
            allowed = "GET" if request.path in _GET_PATHS else "POST"
            error = MethodNotAllowed(
                f"Method {request.method} is not allowed on {request.path}; use {allowed}.",
                headers={"Allow": allowed},
            )
            return error_response(error, request_id)
        return error_response(
            NotFound(f"Unknown path {request.path}. This gateway serves the OpenAI API under /v1."),
            request_id,
        )


def _bound_port(runner: web.AppRunner, requested: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return requested
