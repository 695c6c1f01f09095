"""The inference proxy: one aiohttp handler for the OpenAI POST endpoints.

Request path (each step's decisions come from pure code; this module only does the I/O)::

    read body (≤ limit, 413) ─► parse JSON, take ``model`` (400) ─► Router.decide (404/503)
      ─► rewrite body model if a rewrite applied ─► POST to the endpoint (pooled keep-alive)
      ─► relay: SSE chunk by chunk as it arrives, or the JSON body ─► metrics

Every accepted request gets exactly one answer: an error before the first byte is an OpenAI
error JSON with the right status; an upstream failure after a stream started is reported as a
final SSE ``data: {"error": ...}`` event (the status line is already gone). A client that
disconnects cancels the handler (aiohttp ``handler_cancellation``), which closes the upstream
connection so the model server aborts the generation.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from inferlane.dataplane.admission import FAST_PASS, PoolGate, Ticket
from inferlane.dataplane.h1client import UpstreamError, UpstreamResponse
from inferlane.dataplane.rate_limiting import Charge
from inferlane.dataplane.sse import SseUsageScanner, Usage, usage_from_body
from inferlane.dataplane.state import GatewayState
from inferlane.dataplane.upstream import map_upstream_errors
from inferlane.errors import BadRequest, NotFound, PayloadTooLarge, RequestError
from inferlane.routing.match import RequestFacts
from inferlane.routing.objectives import (
    DEADLINE_HEADER,
    FAIRNESS_HEADER,
    OBJECTIVE_HEADER,
    Objective,
    parse_deadline_ms,
)
from inferlane.routing.prompt import prompt_facts
from inferlane.routing.router import MODEL_HEADER, NO_PROMPT, RoutingDecision
from inferlane.routing.rules import HeaderModifier
from inferlane.scheduling.plugins.scorer.prefix_cache import PREFIX_CACHE_SCORER

log = logging.getLogger("inferlane.proxy")

# Never forwarded in either direction: connection-scoped (RFC 9110 §7.6.1) or recomputed.
_HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
        "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length", "expect",
    }
)
_RESPONSE_DROP = _HOP_BY_HOP | {"content-length"}
# Set by the gateway itself on the upstream request.
_REPLACED = frozenset({"x-request-id", "x-gateway-model-name", "x-gateway-model-name-rewrite",
                       "x-forwarded-for"})


DEBUG_HEADER = "x-inferlane-debug"
DEBUG_CANDIDATES = 3  # candidates explained in x-inferlane-scores


@dataclass(slots=True)
class _StreamTiming:
    dispatched: float
    first_chunk: float | None = None
    last_chunk: float | None = None
    # The gateway's prefill view (tracked pools only): our uncached prompt tokens and the
    # endpoint's pending prefill tokens ahead of them at dispatch.
    prefill_tokens: int = 0
    prefill_ahead: int = 0


class _Release:
    """Tells the pool's gate, once, that the admitted request was dispatched (or never will
    be), so the queue can grant the next one."""

    __slots__ = ("_gate", "_ticket")

    def __init__(self, gate: PoolGate | None, ticket: Ticket) -> None:
        self._gate = gate
        self._ticket: Ticket | None = ticket

    def __call__(self) -> None:
        ticket, self._ticket = self._ticket, None
        if ticket is not None and self._gate is not None:
            self._gate.dispatched(ticket)


def _time_budget(headers: dict[str, str], objective: Objective) -> float | None:
    """Seconds the client (``x-inferlane-deadline-ms``) or the objective allows."""
    try:
        budget = parse_deadline_ms(headers.get(DEADLINE_HEADER))
    except ValueError as exc:
        raise BadRequest(f"{exc}.") from None
    return budget if budget is not None else objective.deadline


class _ClientGone(Exception):
    """The client disconnected while we were writing a stream to it."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__("client disconnected")
        self.response = response


MAX_MODEL_NAME = 512


def error_response(error: RequestError, request_id: str) -> web.Response:
    headers = {"x-request-id": request_id, **error.headers}
    return web.Response(
        status=error.status, body=error.to_body(), content_type="application/json",
        headers=headers,
    )


async def read_body(request: web.Request, limit: int) -> bytes:
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"Request body of {length} bytes exceeds the limit of {limit} bytes.")
    if length is not None:
        # Fast path: aiohttp already buffers small bodies; read exactly what was announced.
        try:
            return await request.content.readexactly(length) if length else b""
        except asyncio.IncompleteReadError:
            raise BadRequest(
                f"Request body ended before the announced {length} bytes."
            ) from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_request(body: bytes) -> tuple[dict[str, Any], str]:
    """The JSON document and its ``model``; BadRequest with a precise reason otherwise."""
    if not body:
        raise BadRequest("Request body is empty; expected a JSON object.")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"Request body is not valid JSON: {exc}.") from None
    if not isinstance(document, dict):
        raise BadRequest("Request body must be a JSON object.")
    model = document.get("model")
    if model is None:
        raise BadRequest("Missing required parameter: 'model'.", param="model")
    if not isinstance(model, str) or not model.strip():
        raise BadRequest("Parameter 'model' must be a non-empty string.", param="model")
    if len(model) > MAX_MODEL_NAME or not model.isprintable():
        # The name travels on as a header (X-Gateway-Model-Name) and a metric label.
        raise BadRequest(
            f"Parameter 'model' must be at most {MAX_MODEL_NAME} printable characters.",
            param="model",
        )
    return document, model


class InferenceProxy:
    """Handles POST /v1/chat/completions, /v1/completions and /v1/embeddings for one listener."""

    def __init__(self, state: GatewayState, listener_name: str) -> None:
        self._state = state
        self._listener_name = listener_name

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        state = self._state
        snapshot = state.snapshot  # this request finishes on this generation, even across reloads
        request_id = request.headers.get("x-request-id") or os.urandom(16).hex()
        listener = snapshot.listener(self._listener_name)
        release: _Release | None = None  # set once admitted: tells the pool's gate we went
        try:
            if listener is None:
                raise NotFound(
                    f"Listener {self._listener_name} has no routes since a config reload removed "
                    "it; it stops listening at the next restart."
                )
            body = await read_body(request, snapshot.max_body_bytes)
            document, model = parse_request(body)
            headers = {name.lower(): value for name, value in request.headers.items()}
            headers[MODEL_HEADER] = model
            facts = RequestFacts(
                method=request.method, path=request.path, host=request.host,
                headers=headers, query=request.query,
            )
            debug = headers.get(DEBUG_HEADER) == "1"
            choice = state.router.route(snapshot, listener, facts, model=model)
            named = headers.get(OBJECTIVE_HEADER)
            if named and named != choice.objective.name:
                state.metrics.child(state.metrics.unknown_objectives, choice.pool.key).inc()
            budget = _time_budget(headers, choice.objective)
            deadline = time.monotonic() + budget if budget is not None else None
            charges: list[Charge] = []
            if snapshot.rate_limits and state.rate_limits is not None:
                charges = await state.rate_limits.admit(
                    snapshot.rate_limits, headers, model, listener.gateway, choice.rule.route)
            gate = state.gates.get(choice.pool.key) if choice.pool.flow is not None else None
            ticket = FAST_PASS
            if gate is not None:
                ticket = await gate.admit(choice.objective, headers.get(FAIRNESS_HEADER, ""),
                                          len(body), deadline)
            release = _Release(gate, ticket)
            picking = time.perf_counter()
            # The prompt's text and size feed the scheduler's and the store's estimates (and a
            # token budget's fallback charge); a round-robin or random pool reads neither.
            prompt = (prompt_facts(document) if choice.pool.needs_metrics or charges
                      else NO_PROMPT)
            decision = state.router.pick(
                choice, request_id=request_id, prompt=prompt,
                now=time.monotonic(), explain=DEBUG_CANDIDATES if debug else 1,
                endpoints=ticket.endpoints,
            )
            metrics = state.metrics
            metrics.child(metrics.picker_duration, decision.pool.key).observe(
                time.perf_counter() - picking
            )
            if log.isEnabledFor(logging.DEBUG):
                log.debug("request %s -> %s (%s)", request_id, decision.endpoint.address,
                          decision.pick.explain())
            if decision.model_rewritten:
                document["model"] = decision.upstream_model
                body = orjson.dumps(document)
            return await self._forward(request, decision, body, request_id, started, debug,
                                       release, deadline, charges)
        except RequestError as error:
            # Unrouted: the model name is unchecked client input, so it stays out of labels.
            state.metrics.child(state.metrics.requests, "", "", "", "", "", str(error.status)).inc()
            return error_response(error, request_id)
        finally:
            if release is not None:
                release()

    async def _forward(
        self,
        request: web.Request,
        decision: RoutingDecision,
        body: bytes,
        request_id: str,
        started: float,
        debug: bool,
        release: _Release,
        deadline: float | None,
        charges: list[Charge],
    ) -> web.StreamResponse:
        state = self._state
        metrics = state.metrics
        endpoint = decision.endpoint
        pool = decision.pool.key
        # The gateway's own load view (between scrapes) for pools whose scheduler reads it.
        tracked = decision.pool.needs_metrics
        expected_tokens = decision.prompt.expected_tokens
        timing = _StreamTiming(dispatched=time.monotonic())
        if tracked:
            timing.prefill_tokens = decision.prompt.uncached_tokens(
                decision.pick.chosen_score(PREFIX_CACHE_SCORER))
            timing.prefill_ahead = state.endpoints.on_dispatch(
                endpoint, expected_tokens, prefill_tokens=timing.prefill_tokens)
        release()  # dispatched: the pool's queue may grant the next request
        timeout = decision.rule.upstream_timeout
        if deadline is not None:  # the time budget left bounds the upstream request
            remaining = max(deadline - time.monotonic(), 0.001)
            timeout = remaining if timeout is None else min(timeout, remaining)
        target = decision.upstream_path
        if request.query_string:
            target = f"{target}?{request.query_string}"
        usage = Usage()
        status = 0
        in_flight = metrics.child(metrics.in_flight, pool)
        in_flight.inc()
        try:
            with map_upstream_errors(endpoint.address, pool, timeout=timeout):
                upstream = await state.upstream.request(
                    "POST", endpoint.host, endpoint.port, target,
                    _upstream_headers(request, decision, request_id), body, budget=timeout,
                )
                async with upstream:
                    status = upstream.status
                    response_headers = _response_headers(upstream, decision, request_id, debug)
                    content_type = upstream.header("content-type") or ""
                    if content_type.startswith("text/event-stream"):
                        scanner = SseUsageScanner()
                        try:
                            return await self._relay_stream(
                                request, upstream, response_headers, scanner, decision, started,
                                timing,
                            )
                        finally:
                            usage = scanner.usage
                    payload = await upstream.read()
            if status == 200:
                usage = usage_from_body(payload)
            return web.Response(status=status, body=payload, headers=response_headers)
        except RequestError as error:
            status = error.status
            log.warning("request %s to %s failed: %s", request_id, endpoint.address, error.message)
            return error_response(error, request_id)
        except _ClientGone as gone:
            status = 499  # nginx's "client closed request"; only ever seen in metrics
            metrics.child(metrics.client_disconnects, pool).inc()
            return gone.response
        except asyncio.CancelledError:
            status = 499
            metrics.child(metrics.client_disconnects, pool).inc()
            raise
        finally:
            in_flight.dec()
            if tracked:
                self._learn(decision, expected_tokens, usage, timing)
            _record(state, decision, status, usage, started)
            state.pool_completed(pool)
            if charges and state.rate_limits is not None:
                # Without a usage report (a stream that did not ask for it) the prompt
                # estimate is all there is to charge.
                tokens = (usage.prompt_tokens + usage.completion_tokens if usage.seen
                          else decision.prompt.prompt_tokens)
                state.rate_limits.charge_soon(charges, tokens)

    def _learn(self, decision: RoutingDecision, expected_tokens: int, usage: Usage,
               timing: _StreamTiming) -> None:
        """Feed what this request showed back into the endpoint's state (sans-IO store)."""
        store = self._state.endpoints
        endpoint = decision.endpoint
        first, last = timing.first_chunk, timing.last_chunk
        # No first token seen (not streamed, or failed before it): release the prefill here.
        pending = timing.prefill_tokens if first is None else 0
        if first is not None and last is not None and usage.seen:
            store.on_complete(endpoint, expected_tokens, output_tokens=usage.completion_tokens,
                              decode_seconds=last - first, pending_prefill_tokens=pending)
        else:
            store.on_complete(endpoint, expected_tokens, pending_prefill_tokens=pending)
        metrics = self._state.metrics
        match = decision.pick.chosen_score(PREFIX_CACHE_SCORER)
        if match is not None:
            metrics.child(metrics.prefix_match_ratio, decision.pool.key).observe(match)
        if first is None:
            return  # not streamed: no time to first token to compare
        predicted = decision.pick.predicted_ttft
        if predicted is not None and predicted > 0:
            metrics.child(metrics.ttft_prediction_ratio, decision.pool.key).observe(
                (first - timing.dispatched) / predicted
            )

    async def _relay_stream(
        self,
        request: web.Request,
        upstream: UpstreamResponse,
        headers: CIMultiDict[str],
        scanner: SseUsageScanner,
        decision: RoutingDecision,
        started: float,
        timing: _StreamTiming,
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=upstream.status, headers=headers)
        try:
            await response.prepare(request)
        except ConnectionResetError as exc:
            raise _ClientGone(response) from exc
        first = True
        try:
            async for chunk in upstream.iter_chunks():
                timing.last_chunk = time.monotonic()
                if first:
                    first = False
                    timing.first_chunk = timing.last_chunk
                    if decision.pool.needs_metrics:
                        self._state.endpoints.on_first_token(
                            decision.endpoint, uncached_prompt_tokens=timing.prefill_tokens,
                            seconds=timing.first_chunk - timing.dispatched,
                            prefill_tokens_ahead=timing.prefill_ahead)
                    metrics = self._state.metrics
                    ttft = time.perf_counter() - started
                    metrics.child(
                        metrics.time_to_first_token, decision.rule.label,
                        metrics.model_label(decision.requested_model), decision.pool.key,
                    ).observe(ttft)
                    target = decision.objective.ttft_target
                    if target is not None:
                        metrics.child(metrics.slo_requests, decision.pool.key,
                                      decision.objective.name,
                                      "met" if ttft <= target else "missed").inc()
                scanner.feed(chunk)
                try:
                    await response.write(chunk)
                except ConnectionResetError as exc:
                    raise _ClientGone(response) from exc  # our client went away
        except UpstreamError as exc:
            # Headers are gone: the only honest answer left is a final SSE error event.
            log.warning("stream from %s broke off: %s", decision.endpoint.address, exc)
            error = {
                "message": f"The model server at endpoint {decision.endpoint.address} of "
                f"InferencePool {decision.pool.key} broke off the stream ({exc}).",
                "type": "upstream_error",
                "param": None,
                "code": "upstream_stream_interrupted",
            }
            try:
                await response.write(b"data: " + orjson.dumps({"error": error}) + b"\n\n")
            except ConnectionResetError as gone:
                raise _ClientGone(response) from gone
        try:
            await response.write_eof()
        except ConnectionResetError as exc:
            raise _ClientGone(response) from exc
        return response


def _upstream_headers(
    request: web.Request, decision: RoutingDecision, request_id: str
) -> list[tuple[str, str]]:
    headers = [(name, value) for name, value in request.headers.items()
               if name.lower() not in _HOP_BY_HOP and name.lower() not in _REPLACED]
    headers.append(("x-request-id", request_id))
    headers.append(("X-Gateway-Model-Name", decision.requested_model))
    if decision.model_rewritten:
        headers.append(("x-gateway-model-name-rewrite", decision.upstream_model))
    if decision.rule.host_rewrite is not None:
        headers.append(("Host", decision.rule.host_rewrite))
    if request.remote:
        previous = request.headers.get("x-forwarded-for")
        forwarded = f"{previous}, {request.remote}" if previous else request.remote
        headers.append(("x-forwarded-for", forwarded))
    modifier = decision.rule.request_headers
    return headers if modifier is None else _apply(modifier, headers)


def _response_headers(
    upstream: UpstreamResponse, decision: RoutingDecision, request_id: str, debug: bool
) -> CIMultiDict[str]:
    headers = [(name, value) for name, value in upstream.headers
               if name.lower() not in _RESPONSE_DROP]
    headers.append(("x-request-id", request_id))
    headers.append(("x-inferlane-endpoint", decision.endpoint.address))
    if debug:
        headers.append(("x-inferlane-scores", decision.pick.explain()))
    modifier = decision.rule.response_headers
    if modifier is not None:
        headers = _apply(modifier, headers)
    return CIMultiDict(headers)


def _apply(modifier: HeaderModifier, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Gateway API header modifier semantics: remove, then set (replace), then add."""
    drop = set(modifier.remove) | {name for name, _ in modifier.set}
    kept = [(name, value) for name, value in headers if name.lower() not in drop]
    return kept + list(modifier.set) + list(modifier.add)


def _record(
    state: GatewayState, decision: RoutingDecision, status: int, usage: Usage, started: float
) -> None:
    metrics = state.metrics
    route = decision.rule.label
    model = metrics.model_label(decision.requested_model)
    pool = decision.pool.key
    metrics.child(
        metrics.requests, route, model, metrics.model_label(decision.upstream_model), pool,
        decision.endpoint.address, str(status),
    ).inc()
    metrics.child(metrics.request_duration, route, model, pool).observe(
        time.perf_counter() - started
    )
    if usage.seen:
        metrics.child(metrics.input_tokens, model, pool).inc(usage.prompt_tokens)
        metrics.child(metrics.output_tokens, model, pool).inc(usage.completion_tokens)
