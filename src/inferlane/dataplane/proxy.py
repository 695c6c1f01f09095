"""The inference proxy: one aiohttp handler for the OpenAI and Anthropic POST endpoints.

Request path (each step's decisions come from pure code; this module only does the I/O)::

    read body (≤ limit, 413) ─► parse JSON, take ``model`` (400) ─► Router.route (404/503)
      ─► rate limits (429) ─► start mirror copies (never awaited)
      ─► AttemptPlan: for each attempt (split's choice, then fallbacks):
           pool: admission gate ─► picker ─► model server   |   provider: its dialect
           failed before the first byte? ─► plan says retry / fall back / give up
      ─► relay: SSE chunk by chunk (translated if the dialects differ), or the JSON body
      ─► bookkeeping, metrics, the mirror's comparison

Every accepted request gets exactly one answer: an error before the first byte is an error JSON
in the client's dialect with the right status; an upstream failure after a stream started is
reported as a final in-stream error event (the status line is already gone), and never retried.
A client that disconnects cancels the handler (aiohttp ``handler_cancellation``), which closes
the upstream connection so the model server aborts the generation.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from aiohttp import web
from multidict import CIMultiDict

from inferlane.dataplane.attempt import (
    HOP_BY_HOP,
    Opened,
    RequestContext,
    apply_modifier,
    endpoint_key,
    open_pool,
    open_provider,
)
from inferlane.dataplane.h1client import UpstreamError
from inferlane.dataplane.mirror import MirrorRun, PrimaryRecorder
from inferlane.dataplane.rate_limiting import Charge
from inferlane.dataplane.request import error_response, parse_request, read_body, time_budget
from inferlane.dataplane.sse import SseUsageScanner, Usage, usage_from_body
from inferlane.dataplane.state import GatewayState
from inferlane.errors import (
    BadRequest,
    ContextWindowExceeded,
    DeadlineExceeded,
    NoEndpointAvailable,
    NotFound,
    QueueFull,
    QueueTimeout,
    RequestError,
    RequestShed,
    UpstreamConnectError,
    UpstreamTimeout,
)
from inferlane.providers.exchange import ClientApi
from inferlane.routing.attempts import AttemptPlan, Step, StepKind, fits_context
from inferlane.routing.backends import BackendRef
from inferlane.routing.cooldown import Cooldowns
from inferlane.routing.failures import FailureClass, classify_status, retry_after_from_headers
from inferlane.routing.match import RequestFacts
from inferlane.routing.objectives import OBJECTIVE_HEADER, STANDARD
from inferlane.routing.router import MODEL_HEADER, GatewaySnapshot, Routed

log = logging.getLogger("inferlane.proxy")

DEBUG_HEADER = "x-inferlane-debug"
DEBUG_CANDIDATES = 3  # candidates explained in x-inferlane-scores
BACKEND_HEADER = "x-inferlane-backend"
ATTEMPTS_HEADER = "x-inferlane-attempts"
MAX_ERROR_BODY = 1024 * 1024  # an upstream error body read to classify it
# Provider response headers never relayed: cookies and the provider's own connection details.
_PROVIDER_DROP = HOP_BY_HOP | {"set-cookie", "content-encoding", "server", "alt-svc",
                               "cf-ray", "x-request-id", "request-id"}
# Failures of our own making, by class (None: the answer, not a backend failure).
_OWN_ERRORS: dict[type[RequestError], FailureClass] = {
    UpstreamConnectError: FailureClass.CONNECT, UpstreamTimeout: FailureClass.TIMEOUT,
    RequestShed: FailureClass.RATE_LIMITED, QueueFull: FailureClass.SERVER_ERROR,
    QueueTimeout: FailureClass.SERVER_ERROR, NoEndpointAvailable: FailureClass.SERVER_ERROR,
}


class _ClientGone(Exception):
    """The client disconnected while we were writing a stream to it."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__("client disconnected")
        self.response = response


@dataclass(slots=True)
class _Failed:
    """A failed attempt's answer, kept in case it is the last one."""

    failure: FailureClass
    status: int
    error: RequestError | None = None  # ours; else the upstream's body below
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    retry_after: float | None = None
    endpoint: str = ""  # the pool endpoint that answered it, if any


class InferenceProxy:
    """Handles the inference POST endpoints of one listener."""

    def __init__(self, state: GatewayState, listener_name: str) -> None:
        self._state = state
        self._listener_name = listener_name

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        state = self._state
        snapshot = state.snapshot  # this request finishes on this generation, even across reloads
        request_id = request.headers.get("x-request-id") or os.urandom(16).hex()
        api = ClientApi(request.path) if request.path in _APIS else ClientApi.CHAT
        try:
            listener = snapshot.listener(self._listener_name)
            if listener is None:
                raise NotFound(
                    f"Listener {self._listener_name} has no routes since a config reload removed "
                    "it; it stops listening at the next restart."
                )
            body = await read_body(request, snapshot.max_body_bytes)
            document, model = parse_request(body)
            headers = {name.lower(): value for name, value in request.headers.items()}
            headers[MODEL_HEADER] = model
            facts = RequestFacts(method=request.method, path=request.path, host=request.host,
                                 headers=headers, query=request.query)
            routed = state.router.route(snapshot, listener, facts, model=model)
            first = routed.chain[0]
            named = headers.get(OBJECTIVE_HEADER)
            objective = STANDARD
            first_choice = None
            if first.is_pool:
                first_choice = state.router.pool_choice(snapshot, routed, first.key)
                objective = first_choice.objective
                if named and named != objective.name:
                    state.metrics.child(state.metrics.unknown_objectives, first.key).inc()
            budget = time_budget(headers, objective)
            rule = routed.rule
            limits = [b for b in (budget, rule.request_timeout) if b is not None]
            charges: list[Charge] = []
            if snapshot.rate_limits and state.rate_limits is not None:
                charges = await state.rate_limits.admit(
                    snapshot.rate_limits, headers, model, listener.gateway, rule.route)
            ctx = RequestContext(
                api=api, document=document, body=body, request_id=request_id, headers=headers,
                raw_headers=request.headers, remote=request.remote,
                query_string=request.query_string,
                deadline=time.monotonic() + min(limits) if limits else None,
                backend_timeout=rule.backend_timeout,
                explain=DEBUG_CANDIDATES if headers.get(DEBUG_HEADER) == "1" else 1,
                first_choice=first_choice)
            mirror = MirrorRun.start(state, snapshot, routed, ctx)
            # The attempt loop (inline: every await level costs each resume of the upstream
            # read), then the relay of the answer that ended it.
            traffic = state.metrics.traffic
            rule = routed.rule
            resilience = state.resilience.for_rule(rule)
            windows = {b: w for b in routed.chain
                       if (w := self._context_window(snapshot, b)) is not None}
            fits = (fits_context(ctx.prompt.prompt_tokens, ctx.prompt.max_tokens, windows)
                    if windows else _fits_any)
            cooldowns = resilience.cooldowns
            # A lone backend is tried however it cools down: only chains need the check.
            available = (_pool_available(snapshot, cooldowns)
                         if len(routed.chain) > 1 and cooldowns is not None else _pool_up)
            plan = AttemptPlan(routed.chain, rule.failure, budget=resilience.budget,
                               cooldowns=cooldowns, fits=fits, pool_available=available)
            backend = plan.first(time.monotonic())
            cooling = [skip.backend for skip in plan.skipped if skip.reason == "cooldown"]
            self._note_skips(plan, rule.label)
            if backend is None:
                if not cooling:
                    raise _too_long(ctx, windows)
                backend = cooling[0]  # every backend is cooling down: better than a 503
                plan.force(backend)
                ctx.cooling_allowed = True
            arm = routed.chain[0]
            recorder = PrimaryRecorder(mirror)
            previous: _Failed | None = None  # the last failure, answered if nothing else works
            previous_backend = backend
            while True:
                # Cooling endpoints are better than none when nothing else is left.
                ctx.cooling_allowed = ctx.cooling_allowed or plan.last
                ctx.endpoint = ""
                outcome: Opened | tuple[_Failed, str]
                try:
                    if backend.is_pool:
                        outcome = await open_pool(state, snapshot, routed, backend, ctx, cooldowns)
                    else:
                        outcome = await open_provider(state, snapshot, backend, ctx)
                except asyncio.CancelledError:  # the client left before any answer
                    self._abandoned(routed, arm, backend, started)
                    recorder.done(499, Usage())
                    raise
                except (BadRequest, NoEndpointAvailable) as error:
                    # Nothing was sent: a fallback whose dialect cannot carry the request, or a
                    # pool with no endpoint its picker will use (e.g. all stale): the next one.
                    # A 400 from the first choice is the answer itself.
                    unsupported = isinstance(error, BadRequest)
                    if unsupported and previous is None:
                        raise
                    step = plan.unusable("unsupported-request" if unsupported else "no-endpoint",
                                         time.monotonic())
                    self._note_skips(plan, rule.label)
                    log.info("request %s: %s cannot take it (%s)", ctx.request_id, backend.label,
                             error.message)
                    if step.kind is StepKind.GIVE_UP:
                        traffic.gave_up.labels(rule.label, step.reason).inc()
                        if previous is None:
                            raise
                        recorder.done(previous.status, Usage())
                        return self._failure_answer(previous, ctx, previous_backend, plan, routed,
                                                    arm, started, charges)
                    assert step.backend is not None
                    backend = step.backend
                    continue
                except DeadlineExceeded:
                    raise  # its time ran out queued: no other backend changes that
                except RequestError as error:
                    outcome = self._own_failure(error, backend, ctx)
                if isinstance(outcome, Opened):
                    status = outcome.upstream.status
                    # Auth and not-found errors are the answer (a retry would hide a misconfig).
                    failed = (None if status < 400 or status in (401, 403, 404)
                              else await self._check(outcome))
                    if failed is None:
                        plan.succeeded(outcome.breaker_key, time.monotonic())
                        self._note_transitions(plan)
                        return await self._answer(request, outcome, ctx, routed, arm, plan,
                                                  started, charges, recorder)
                    key = outcome.breaker_key
                else:
                    failed, key = outcome
                previous, previous_backend = failed, backend
                traffic.attempt_errors.labels(backend.label, str(failed.failure)).inc()
                now = time.monotonic()
                step = plan.failed(failed.failure, status=failed.status, breaker_key=key, now=now,
                                   retry_after=failed.retry_after,
                                   unit=state.router.draw(),
                                   same_possible=self._untried(snapshot, backend, ctx,
                                                               resilience.cooldowns, now))
                self._note_skips(plan, rule.label)
                self._note_transitions(plan)
                if step.kind is not StepKind.GIVE_UP and ctx.deadline is not None \
                        and now + step.delay >= ctx.deadline:
                    step = Step(StepKind.GIVE_UP, reason="no time left for another attempt")
                if step.kind is StepKind.GIVE_UP:
                    traffic.gave_up.labels(rule.label, step.reason).inc()
                    recorder.done(failed.status, Usage())
                    return self._failure_answer(failed, ctx, backend, plan, routed, arm, started,
                                                charges)
                assert step.backend is not None
                if step.kind is StepKind.RETRY:
                    traffic.retries.labels(rule.label, backend.label, step.reason).inc()
                    if step.delay > 0:
                        try:
                            await asyncio.sleep(step.delay)
                        except asyncio.CancelledError:
                            self._abandoned(routed, arm, backend, started)
                            raise
                else:
                    traffic.fallbacks.labels(rule.label, backend.label, step.backend.label,
                                             step.reason).inc()
                    log.info("request %s: %s failed (%s), falling back to %s", ctx.request_id,
                             backend.label, step.reason, step.backend.label)
                backend = step.backend
        except RequestError as error:
            # Unrouted: the model name is unchecked client input, so it stays out of labels.
            state.metrics.child(state.metrics.requests, "", "", "", "", "", str(error.status)).inc()
            return error_response(error, request_id, api)

    @staticmethod
    def _own_failure(error: RequestError, backend: BackendRef,
                     ctx: RequestContext) -> tuple[_Failed, str]:
        """A RequestError before any response head, as a ``_Failed`` and its breaker key."""
        failure = _OWN_ERRORS.get(type(error))
        if failure is None:
            failure = classify_status(error.status)
        log.warning("request %s to %s failed: %s", ctx.request_id, backend.label, error.message)
        # It failed at a pool's endpoint: that endpoint's breaker; else the backend's.
        key = f"{backend.key}@{ctx.endpoint}" if ctx.endpoint else backend.label
        return _Failed(failure, error.status, error=error, endpoint=ctx.endpoint), key

    async def _check(self, opened: Opened) -> _Failed:
        """An error status the plan may retry, its body read (to classify it) and kept."""
        upstream = opened.upstream
        status = upstream.status
        try:
            payload = await upstream.read()
        except UpstreamError:
            payload = b""
        opened.finish(Usage())
        payload = payload[:MAX_ERROR_BODY]
        failure = classify_status(status, payload)
        if opened.translation is not None:
            payload = opened.translation.error(status, payload)
        retry_after = retry_after_from_headers(upstream.headers, now_epoch=time.time())
        kept = tuple((n, v) for n, v in upstream.headers
                     if n.lower() in ("content-type", "retry-after", "retry-after-ms"))
        log.warning("%s answered %d (%s)", opened.where, status, failure)
        endpoint = opened.decision.endpoint.address if opened.decision is not None else ""
        return _Failed(failure, status, body=payload, headers=kept, retry_after=retry_after,
                       endpoint=endpoint)

    def _failure_answer(self, failed: _Failed, ctx: RequestContext, backend: BackendRef,
                        plan: AttemptPlan, routed: Routed, arm: BackendRef, started: float,
                        charges: list[Charge]) -> web.Response:
        extra = {BACKEND_HEADER: backend.label, ATTEMPTS_HEADER: str(plan.attempts)}
        if failed.endpoint:
            extra["x-inferlane-endpoint"] = failed.endpoint
        self._count(routed, arm, backend, failed.status, started)
        if charges and self._state.rate_limits is not None:
            self._state.rate_limits.charge_soon(charges, ctx.prompt.prompt_tokens)
        if failed.error is not None:
            response = error_response(failed.error, ctx.request_id, ctx.api)
            response.headers.update(extra)
            return response
        headers = CIMultiDict(failed.headers)
        headers.update(extra)
        headers["x-request-id"] = ctx.request_id
        headers.setdefault("content-type", "application/json")
        return web.Response(status=failed.status, body=failed.body, headers=headers)

    async def _answer(self, request: web.Request, opened: Opened, ctx: RequestContext,
                      routed: Routed, arm: BackendRef, plan: AttemptPlan, started: float,
                      charges: list[Charge], recorder: PrimaryRecorder) -> web.StreamResponse:
        state = self._state
        upstream = opened.upstream
        status = upstream.status
        headers = self._response_headers(opened, ctx, plan)
        usage = Usage()
        try:
            if (upstream.header("content-type") or "").startswith("text/event-stream"):
                return await self._relay_stream(request, opened, headers, ctx, routed, started,
                                                usage, recorder)
            payload = await upstream.read()
            translation = opened.translation
            if translation is not None:
                payload = translation.body(payload) if status < 400 else \
                    translation.error(status, payload)
                if translation.usage_seen:
                    usage.prompt_tokens = translation.prompt_tokens
                    usage.completion_tokens = translation.completion_tokens
                    usage.seen = True
            elif status == 200:
                usage = usage_from_body(payload)
            recorder.body(payload)
            return web.Response(status=status, body=payload, headers=headers)
        except RequestError as error:
            status = error.status
            log.warning("request %s to %s failed: %s", ctx.request_id, opened.where,
                        error.message)
            return error_response(error, ctx.request_id, ctx.api)
        except _ClientGone as gone:
            status = 499  # nginx's "client closed request"; only ever seen in metrics
            self._client_gone(opened)
            return gone.response
        except asyncio.CancelledError:
            status = 499
            self._client_gone(opened)
            raise
        finally:
            opened.finish(usage)
            recorder.done(status, usage)
            self._count(routed, arm, opened.backend, status, started, opened, usage)
            if charges and state.rate_limits is not None:
                # Without a usage report (a stream that did not ask for it) the prompt
                # estimate is all there is to charge.
                tokens = (usage.prompt_tokens + usage.completion_tokens if usage.seen
                          else ctx.prompt.prompt_tokens)
                state.rate_limits.charge_soon(charges, tokens)

    def _abandoned(self, routed: Routed, arm: BackendRef, backend: BackendRef,
                   started: float) -> None:
        metrics = self._state.metrics
        metrics.child(metrics.client_disconnects, backend.key if backend.is_pool else "").inc()
        self._count(routed, arm, backend, 499, started)

    def _client_gone(self, opened: Opened) -> None:
        metrics = self._state.metrics
        pool = opened.decision.pool.key if opened.decision is not None else ""
        metrics.child(metrics.client_disconnects, pool).inc()

    def _response_headers(self, opened: Opened, ctx: RequestContext,
                          plan: AttemptPlan) -> CIMultiDict[str]:
        drop = HOP_BY_HOP if opened.provider is None else _PROVIDER_DROP
        headers = [(name, value) for name, value in opened.upstream.headers
                   if name.lower() not in drop and name.lower() != "content-length"]
        headers.append(("x-request-id", ctx.request_id))
        headers.append((BACKEND_HEADER, opened.backend.label))
        headers.append((ATTEMPTS_HEADER, str(plan.attempts)))
        decision = opened.decision
        if decision is not None:
            headers.append(("x-inferlane-endpoint", decision.endpoint.address))
            if ctx.explain > 1:
                headers.append(("x-inferlane-scores", decision.pick.explain()))
        modifier = (decision.rule if decision is not None else None)
        rule_modifier = modifier.response_headers if modifier is not None else None
        if rule_modifier is not None:
            headers = apply_modifier(rule_modifier, headers)
        return CIMultiDict(headers)

    async def _relay_stream(self, request: web.Request, opened: Opened,
                            headers: CIMultiDict[str], ctx: RequestContext, routed: Routed,
                            started: float, usage: Usage,
                            recorder: PrimaryRecorder) -> web.StreamResponse:
        upstream = opened.upstream
        translation = opened.translation
        scanner = SseUsageScanner() if translation is None else None
        timing = opened.timing
        decision = opened.decision
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
                    self._first_token(opened, routed, started)
                    recorder.first_token(timing.first_chunk - timing.dispatched)
                if scanner is not None:
                    scanner.feed(chunk)
                out = chunk if translation is None else translation.stream(chunk)
                if out:
                    recorder.stream(out)
                    await _write(response, out)
            if translation is not None:
                await _write(response, translation.finish())
        except (UpstreamError, RequestError) as exc:
            # Headers are gone: the only honest answer left is a final in-stream error.
            log.warning("stream from %s broke off: %s", opened.where, exc)
            if translation is not None:
                frame = translation.broken(str(exc))
            elif ctx.api is ClientApi.MESSAGES:
                frame = b"event: error\ndata: " + orjson.dumps({"type": "error", "error": {
                    "type": "api_error",
                    "message": f"The backend {opened.where} broke off the stream ({exc})."}}) \
                    + b"\n\n"
            else:
                pool = f" of InferencePool {decision.pool.key}" if decision else ""
                address = decision.endpoint.address if decision else opened.where
                frame = b"data: " + orjson.dumps({"error": {
                    "message": f"The model server at endpoint {address}{pool} broke off the "
                               f"stream ({exc}).",
                    "type": "upstream_error", "param": None,
                    "code": "upstream_stream_interrupted"}}) + b"\n\n"
            await _write(response, frame)
        finally:
            if scanner is not None and scanner.usage.seen:
                usage.prompt_tokens = scanner.usage.prompt_tokens
                usage.completion_tokens = scanner.usage.completion_tokens
                usage.seen = True
            elif translation is not None and translation.usage_seen:
                usage.prompt_tokens = translation.prompt_tokens
                usage.completion_tokens = translation.completion_tokens
                usage.seen = True
        try:
            await response.write_eof()
        except ConnectionResetError as exc:
            raise _ClientGone(response) from exc
        return response

    def _first_token(self, opened: Opened, routed: Routed, started: float) -> None:
        state = self._state
        metrics = state.metrics
        timing = opened.timing
        decision = opened.decision
        assert timing.first_chunk is not None
        ttft = time.perf_counter() - started
        model = metrics.model_label(routed.requested_model)
        metrics.child(metrics.traffic.time_to_first_token, _OPERATIONS[self._api(opened)],
                      _provider_name(opened), model, opened.backend.label).observe(ttft)
        if decision is None:
            return
        if decision.pool.needs_metrics:
            state.endpoints.on_first_token(
                decision.endpoint, uncached_prompt_tokens=timing.prefill_tokens,
                seconds=timing.first_chunk - timing.dispatched,
                prefill_tokens_ahead=timing.prefill_ahead)
        metrics.child(metrics.time_to_first_token, decision.rule.label, model,
                      decision.pool.key).observe(ttft)
        target = decision.objective.ttft_target
        if target is not None:
            metrics.child(metrics.slo_requests, decision.pool.key, decision.objective.name,
                          "met" if ttft <= target else "missed").inc()

    def _count(self, routed: Routed, arm: BackendRef, backend: BackendRef, status: int,
               started: float, opened: Opened | None = None, usage: Usage | None = None) -> None:
        metrics = self._state.metrics
        traffic = metrics.traffic
        route = routed.rule.label
        model = metrics.model_label(routed.requested_model)
        elapsed = time.perf_counter() - started
        metrics.child(traffic.backend_requests, route, model, arm.label, backend.label,
                      str(status)).inc()
        decision = opened.decision if opened is not None else None
        pool = decision.pool.key if decision is not None else ""
        endpoint = decision.endpoint.address if decision is not None else backend.label
        target = decision.upstream_model if decision is not None else model
        metrics.child(metrics.requests, route, model, metrics.model_label(target), pool,
                      endpoint, str(status)).inc()
        metrics.child(metrics.request_duration, route, model, pool).observe(elapsed)
        provider = _provider_name(opened)
        operation = _OPERATIONS[self._api(opened)]
        metrics.child(traffic.operation_duration, operation, provider, model,
                      backend.label).observe(elapsed)
        if usage is not None and usage.seen:
            if pool:
                metrics.child(metrics.input_tokens, model, pool).inc(usage.prompt_tokens)
                metrics.child(metrics.output_tokens, model, pool).inc(usage.completion_tokens)
            for kind, tokens in (("input", usage.prompt_tokens),
                                 ("output", usage.completion_tokens)):
                metrics.child(traffic.token_usage, operation, provider, model, kind,
                              backend.label).observe(tokens)

    @staticmethod
    def _api(opened: Opened | None) -> ClientApi:
        return opened.api if opened is not None else ClientApi.CHAT

    def _note_skips(self, plan: AttemptPlan, route: str) -> None:
        for skip in plan.skipped:
            self._state.metrics.traffic.skipped.labels(route, skip.backend.label,
                                                       skip.reason).inc()
        plan.skipped.clear()

    def _note_transitions(self, plan: AttemptPlan) -> None:
        traffic = self._state.metrics.traffic
        for transition in plan.transitions:
            state = str(transition.state)
            traffic.cooldown_transitions.labels(transition.key, state).inc()
            traffic.cooling.labels(transition.key).set(1 if state == "open" else 0)
            log.warning("backend %s: circuit %s (%s)", transition.key, state, transition.reason)
        plan.transitions.clear()

    @staticmethod
    def _untried(snapshot: GatewaySnapshot, backend: BackendRef, ctx: RequestContext,
                 cooldowns: Cooldowns | None, now: float) -> bool:
        """Whether another attempt at ``backend`` could go somewhere new and sensible: a pool
        endpoint this request has not tried whose breaker is not open."""
        if not backend.is_pool:
            return True
        pool = snapshot.pools.get(backend.key)
        return pool is not None and any(
            e.address not in ctx.tried
            and (cooldowns is None or cooldowns.available(endpoint_key(pool.key, e), now))
            for e in pool.endpoints)

    def _context_window(self, snapshot: GatewaySnapshot, backend: BackendRef) -> int | None:
        if backend.is_pool:
            pool = snapshot.pools.get(backend.key)
            return pool.context_window if pool is not None else None
        provider = snapshot.providers.get(backend.key)
        return provider.context_window if provider is not None else None


_APIS = frozenset(api.value for api in ClientApi)


def _fits_any(backend: BackendRef) -> bool:
    return True


def _pool_up(backend: BackendRef, now: float) -> bool:
    return True


def _pool_available(snapshot: GatewaySnapshot, cooldowns: Cooldowns | None
                    ) -> Callable[[BackendRef, float], bool]:
    """A pool is worth an attempt unless every endpoint's breaker is open (then the chain
    moves on without spending an attempt, and a timeout, on a pool known to be down)."""
    def available(backend: BackendRef, now: float) -> bool:
        pool = snapshot.pools.get(backend.key)
        if cooldowns is None or cooldowns.quiet or pool is None or not pool.endpoints:
            return True
        return any(cooldowns.available(endpoint_key(pool.key, e), now) for e in pool.endpoints)

    return available
_OPERATIONS = {ClientApi.CHAT: "chat", ClientApi.MESSAGES: "chat",
               ClientApi.COMPLETIONS: "text_completion", ClientApi.EMBEDDINGS: "embeddings"}


def _provider_name(opened: Opened | None) -> str:
    """OpenTelemetry's ``gen_ai.provider.name``: well-known values for providers."""
    if opened is None or opened.provider is None:
        return "inferlane.pool"
    return {"openai": "openai", "azure-openai": "azure.ai.openai", "anthropic": "anthropic"}.get(
        opened.provider.type, "openai-compatible")


def _too_long(ctx: RequestContext, windows: dict[BackendRef, int]) -> BadRequest:
    needed = ctx.prompt.prompt_tokens + (ctx.prompt.max_tokens or 0)
    known = ", ".join(f"{b.label}: {w}" for b, w in windows.items())
    return ContextWindowExceeded(
        f"The request needs about {needed} tokens (prompt estimate plus max_tokens), more than "
        f"the context window of every backend of this route ({known}).", param="messages")


async def _write(response: web.StreamResponse, data: bytes) -> None:
    if not data:
        return
    try:
        await response.write(data)
    except ConnectionResetError as exc:
        raise _ClientGone(response) from exc
