"""The inference proxy: one aiohttp handler for the OpenAI and Anthropic POST endpoints.

Request path (each step's decisions come from pure code; this module only does the I/O)::

    read body (≤ limit, 413) ─► parse JSON, take ``model`` (400) ─► Router.route (404/503)
      ─► rate limits (429) ─► start mirror copies (never awaited)
      ─► AttemptPlan: for each attempt (split's choice, then fallbacks):
           pool: admission gate ─► picker ─► model server   |   provider: its dialect
           failed before the first byte? ─► plan says retry / fall back / give up
      ─► relay.py: SSE chunk by chunk (translated if the dialects differ), or the JSON body;
         bookkeeping, metrics, the mirror's comparison

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

from aiohttp import web
from multidict import CIMultiDict

from inferlane.dataplane.attempt import Opened, RequestContext, open_pool, open_provider, usable
from inferlane.dataplane.h1client import UpstreamError
from inferlane.dataplane.mirror import MirrorRun, PrimaryRecorder
from inferlane.dataplane.rate_limiting import Charge
from inferlane.dataplane.relay import ATTEMPTS_HEADER, BACKEND_HEADER, Relay
from inferlane.dataplane.request import error_response, parse_request, read_body, time_budget
from inferlane.dataplane.resilience import RuleResilience
from inferlane.dataplane.sse import Usage
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
from inferlane.providers.runtime import ProviderRuntime
from inferlane.routing.affinity import AffinityTable
from inferlane.routing.attempts import AttemptPlan, Step, StepKind, fits_context
from inferlane.routing.backends import BackendRef
from inferlane.routing.failures import (
    PASSIVE_FAILURES,
    FailureClass,
    classify_status,
    retry_after_from_headers,
)
from inferlane.routing.match import RequestFacts
from inferlane.routing.objectives import OBJECTIVE_HEADER, STANDARD
from inferlane.routing.router import MODEL_HEADER, GatewaySnapshot, Routed
from inferlane.routing.rules import CompiledRule

log = logging.getLogger("inferlane.proxy")

DEBUG_HEADER = "x-inferlane-debug"
DEBUG_CANDIDATES = 3  # candidates explained in x-inferlane-scores
MAX_ERROR_BODY = 1024 * 1024  # an upstream error body read to classify it
# Failures of our own making, by class (others are classified by their status).
_OWN_ERRORS: dict[type[RequestError], FailureClass] = {
    UpstreamConnectError: FailureClass.CONNECT, UpstreamTimeout: FailureClass.TIMEOUT,
    RequestShed: FailureClass.RATE_LIMITED, QueueFull: FailureClass.SERVER_ERROR,
    QueueTimeout: FailureClass.SERVER_ERROR,
}


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
        self._relay = Relay(state)

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
                                 headers=headers, query=request.query, remote=request.remote)
            routed = state.router.route(snapshot, listener, facts, model=model,
                                        health=state.signals, sessions=self._sessions,
                                        now=time.monotonic())
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
            resilience = state.resilience.for_rule(rule)
            plan, backend = self._plan(snapshot, routed, ctx, resilience)
            arm = routed.chain[0]
            recorder = PrimaryRecorder(mirror)
            previous: _Failed | None = None  # the last failure, answered if nothing else works
            previous_backend = backend
            while True:
                ctx.endpoint = ""
                outcome: Opened | tuple[_Failed, str]
                try:
                    if backend.is_pool:
                        outcome = await open_pool(state, snapshot, routed, backend, ctx)
                    else:
                        outcome = await open_provider(state, snapshot, backend, ctx)
                except asyncio.CancelledError:  # the client left before any answer
                    self._abandoned(routed, arm, backend, started, ctx)
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
                    try:
                        failed = (None if status < 400 or status in (401, 403, 404)
                                  else await self._check(outcome))
                    except asyncio.CancelledError:  # the client left while we read the error
                        self._abandoned(routed, arm, backend, started, ctx)
                        recorder.done(499, Usage())
                        raise
                    if failed is None:
                        if outcome.decision is not None:  # the pool endpoint answered
                            state.health.record_request(backend.key, ctx.endpoint, ok=True)
                        plan.succeeded(outcome.breaker_key, time.monotonic())
                        if routed.session and resilience.sessions is not None:
                            resilience.sessions.remember(routed.session, backend,
                                                         time.monotonic())
                        self._note_transitions(plan)
                        return await self._relay.answer(request, outcome, ctx, routed, arm,
                                                        plan.attempts, started, charges,
                                                        recorder)
                    key = outcome.breaker_key
                else:
                    failed, key = outcome
                previous, previous_backend = failed, backend
                traffic.attempt_errors.labels(backend.label, str(failed.failure)).inc()
                if failed.endpoint and failed.failure is not FailureClass.RATE_LIMITED:
                    state.health.record_request(backend.key, failed.endpoint,
                                                ok=failed.failure not in PASSIVE_FAILURES)
                if failed.failure is FailureClass.CONNECT and failed.endpoint:
                    # Nothing listens there: its last scrape no longer describes it.
                    state.endpoints.forget_metrics(failed.endpoint)
                now = time.monotonic()
                step = plan.failed(failed.failure, status=failed.status, breaker_key=key, now=now,
                                   retry_after=failed.retry_after,
                                   unit=state.router.draw(),
                                   same_possible=self._untried(snapshot, backend, ctx, now))
                self._note_skips(plan, rule.label)
                self._note_transitions(plan)
                if step.kind is not StepKind.GIVE_UP and ctx.deadline is not None \
                        and now + step.delay >= ctx.deadline:
                    step = Step(StepKind.GIVE_UP, reason="no time left for another attempt")
                if step.kind is StepKind.GIVE_UP:
                    traffic.gave_up.labels(rule.label, step.reason).inc()
                    log.info("request %s: answering %s's %d after %d attempt(s): %s",
                             ctx.request_id, backend.label, failed.status, plan.attempts,
                             step.reason)
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
                            self._abandoned(routed, arm, backend, started, ctx)
                            recorder.done(499, Usage())
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

    def _sessions(self, rule: CompiledRule) -> AffinityTable | None:
        return self._state.resilience.for_rule(rule).sessions

    def _plan(self, snapshot: GatewaySnapshot, routed: Routed, ctx: RequestContext,
              resilience: RuleResilience) -> tuple[AttemptPlan, BackendRef]:
        """The request's attempt plan and its first backend (ContextWindowExceeded when no
        backend's context window fits the request)."""
        rule = routed.rule
        windows = {b: w for b in routed.chain
                   if (w := self._context_window(snapshot, b)) is not None}
        fits = (fits_context(ctx.prompt.prompt_tokens, ctx.prompt.max_tokens, windows)
                if windows else _fits_any)
        # A lone backend is tried however unhealthy it is: only chains need the check.
        available = (self._pool_available(snapshot) if len(routed.chain) > 1 else _pool_up)
        plan = AttemptPlan(routed.chain, rule.failure, budget=resilience.budget,
                           cooldowns=resilience.cooldowns, fits=fits, pool_available=available)
        backend = plan.first(time.monotonic())
        cooling = [skip.backend for skip in plan.skipped
                   if skip.reason in ("cooldown", "unhealthy")]
        self._note_skips(plan, rule.label)
        if backend is None:
            if not cooling:
                raise _too_long(ctx, windows)
            backend = cooling[0]  # every backend is down or cooling: better than a 503
            plan.force(backend)
        return plan, backend

    @staticmethod
    def _own_failure(error: RequestError, backend: BackendRef,
                     ctx: RequestContext) -> tuple[_Failed, str]:
        """A RequestError before any response head, as a ``_Failed`` and its breaker key."""
        failure = _OWN_ERRORS.get(type(error))
        if failure is None:
            failure = classify_status(error.status)
        log.warning("request %s to %s failed: %s", ctx.request_id, backend.label, error.message)
        # A pool's endpoints report to the pool's health (the caller does), not to a breaker.
        key = "" if backend.is_pool else backend.label
        return _Failed(failure, error.status, error=error, endpoint=ctx.endpoint), key

    async def _check(self, opened: Opened) -> _Failed:
        """An error status the plan may retry, its body read (to classify it) and kept."""
        upstream = opened.upstream
        status = upstream.status
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in upstream.iter_chunks():  # bounded: an error body is small
                chunks.append(chunk)
                size += len(chunk)
                if size >= MAX_ERROR_BODY:
                    break  # the rest is dropped with the connection
        except UpstreamError:
            pass  # what arrived is all there is to classify
        finally:
            opened.finish(Usage())  # also when the client leaves meanwhile
        payload = b"".join(chunks)[:MAX_ERROR_BODY]
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
        self._relay.count(routed, arm, backend, failed.status, started, ctx.api,
                          self._provider(backend))
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

    def _abandoned(self, routed: Routed, arm: BackendRef, backend: BackendRef, started: float,
                   ctx: RequestContext) -> None:
        metrics = self._state.metrics
        metrics.child(metrics.client_disconnects, backend.key if backend.is_pool else "").inc()
        self._relay.count(routed, arm, backend, 499, started, ctx.api, self._provider(backend))

    def _provider(self, backend: BackendRef) -> ProviderRuntime | None:
        """The provider a backend names (None for a pool), for metric labels."""
        return None if backend.is_pool else self._state.snapshot.providers.get(backend.key)

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

    def _untried(self, snapshot: GatewaySnapshot, backend: BackendRef, ctx: RequestContext,
                 now: float) -> bool:
        """Whether another attempt at ``backend`` could go somewhere new and sensible: a pool
        endpoint this request has not tried that health lets new requests use."""
        if not backend.is_pool:
            return True
        pool = snapshot.pools.get(backend.key)
        if pool is None:
            return False
        view = self._state.health.tracker.view(pool.key, now)
        return bool(usable(pool.endpoints, ctx.tried, view, _always))

    def _pool_available(self, snapshot: GatewaySnapshot) -> Callable[[BackendRef, float], bool]:
        """A pool is worth an attempt unless health lets no endpoint take new requests (then
        the chain moves on without spending an attempt, and a timeout, on a pool known to be
        down)."""
        tracker = self._state.health.tracker

        def available(backend: BackendRef, now: float) -> bool:
            pool = snapshot.pools.get(backend.key)
            if pool is None or not pool.endpoints:
                return True  # nothing known: the attempt says what is wrong
            view = tracker.view(pool.key, now)
            return view is None or bool(view.weights)

        return available

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


def _always() -> float:
    return 0.0  # a draw that keeps every ramping endpoint (only counting candidates)


def _too_long(ctx: RequestContext, windows: dict[BackendRef, int]) -> BadRequest:
    needed = ctx.prompt.prompt_tokens + (ctx.prompt.max_tokens or 0)
    known = ", ".join(f"{b.label}: {w}" for b, w in windows.items())
    return ContextWindowExceeded(
        f"The request needs about {needed} tokens (prompt estimate plus max_tokens), more than "
        f"the context window of every backend of this route ({known}).", param="messages")
