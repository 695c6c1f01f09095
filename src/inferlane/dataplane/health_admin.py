"""Health's HTTP endpoints on the gateway listeners.

- ``GET /admin/health``: the report (pool → endpoint → member → region), read by
  ``inferlane health``; open like the other read-only admin pages.
- ``GET /admin/health/plan?region=R``: what a probe agent of region R must probe (monitor specs
  and targets), the config generation and this process's ``instance``.
- ``POST /admin/health/reports``: an agent's results ``{"region", "results": [...]}``; the answer
  carries the generation and ``instance``, so the agent refetches its plan after a reload or a
  restart (generations count from 1 again in a new process).
- ``POST /admin/health/drain``: ``{"pool", "endpoint", "draining": true|false}``.

The last three change what the gateway believes, so they need the admin token
(``Authorization: Bearer <token>``; ``inferlane serve --admin-token-file`` or
``INFERLANE_ADMIN_TOKEN``). Without a configured token they answer 403 and say how to enable them.
The token is compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
import os
import time
from typing import Any

import orjson
from aiohttp import web

from inferlane.dataplane.request import error_response
from inferlane.dataplane.state import GatewayState
from inferlane.errors import BadRequest, Forbidden, NotFound, RequestError, Unauthorized
from inferlane.health.service import ReportError

MAX_ADMIN_BODY = 8 * 1024 * 1024
# Names this gateway process: with the config generation it says which plan is current.
INSTANCE = os.urandom(8).hex()


class HealthAdmin:
    def __init__(self, state: GatewayState, token: str | None) -> None:
        self._state = state
        self._token = token.encode() if token else None

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/admin/health", self.report)
        app.router.add_get("/admin/health/plan", self.plan)
        app.router.add_post("/admin/health/reports", self.reports)
        app.router.add_post("/admin/health/drain", self.drain)

    async def report(self, request: web.Request) -> web.Response:
        return _json(self._state.health.tracker.report(time.monotonic()))

    async def plan(self, request: web.Request) -> web.Response:
        try:
            self._authorize(request)
            region = request.query.get("region", "")
            tracker = self._state.health.tracker
            if not region:
                raise BadRequest("Give the agent's region: ?region=NAME.", param="region")
            if region not in tracker.regions() or region == self._state.health.region:
                raise NotFound(f"No HealthCheckPolicy probes from region {region!r} "
                               "(or it is the gateway's own region).")
            probes = [{"monitor": monitor.to_wire(),
                       "target": {"endpoint": t.endpoint, "host": t.host, "port": t.port,
                                  "model": t.model}}
                      for monitor, t in tracker.probe_plan(region)]
            return _json({"region": region, "instance": INSTANCE,
                          "generation": tracker.generation, "probes": probes})
        except RequestError as error:
            return _error(error, request)

    async def reports(self, request: web.Request) -> web.Response:
        try:
            self._authorize(request)
            body = await _body(request)
            region, results = body.get("region"), body.get("results")
            if not isinstance(region, str) or not isinstance(results, list):
                raise BadRequest('A report is {"region": "...", "results": [...]}.')
            try:
                used = self._state.health.receive(region, results)
            except ReportError as error:
                raise BadRequest(str(error)) from None
            return _json({"instance": INSTANCE,
                          "generation": self._state.health.tracker.generation, "used": used})
        except RequestError as error:
            return _error(error, request)

    async def drain(self, request: web.Request) -> web.Response:
        try:
            self._authorize(request)
            body = await _body(request)
            pool, endpoint = body.get("pool"), body.get("endpoint")
            draining = body.get("draining", True)
            if not (isinstance(pool, str) and isinstance(endpoint, str)
                    and isinstance(draining, bool)):
                raise BadRequest('Drain takes {"pool": "namespace/name", "endpoint": '
                                 '"host:port", "draining": true|false}.')
            health = self._state.health
            try:
                health.emit(health.tracker.drain(pool, endpoint, draining, time.monotonic()))
            except KeyError as error:
                raise NotFound(str(error.args[0])) from None
            return _json({"pool": pool, "endpoint": endpoint, "draining": draining})
        except RequestError as error:
            return _error(error, request)

    def _authorize(self, request: web.Request) -> None:
        if self._token is None:
            raise Forbidden("Admin calls are disabled: start the gateway with "
                            "--admin-token-file or INFERLANE_ADMIN_TOKEN set.")
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                                 self._token):
            raise Unauthorized("Missing or wrong admin token (Authorization: Bearer ...).")


async def _body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_ADMIN_BODY:
        raise BadRequest(f"Admin request bodies are limited to {MAX_ADMIN_BODY} bytes.")
    raw = await request.content.read(MAX_ADMIN_BODY + 1)
    if len(raw) > MAX_ADMIN_BODY:
        raise BadRequest(f"Admin request bodies are limited to {MAX_ADMIN_BODY} bytes.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"The body is not valid JSON: {error}.") from None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    return body


def _json(body: Any) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def _error(error: RequestError, request: web.Request) -> web.Response:
    return error_response(error, request.headers.get("x-request-id") or os.urandom(16).hex())
