"""One attempt of a request at one backend, up to the moment its response headers are in.

``open_pool`` runs the pool's admission gate and endpoint picker and sends the request to the
chosen model server; ``open_provider`` sends it to a hosted provider in that provider's
dialect. Both return an ``Opened`` (the response head, not yet relayed, so the proxy can still
decide to retry) or raise the ``RequestError`` that describes the failure. ``Opened.finish``
does the attempt's bookkeeping exactly once, however it ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from multidict import MultiMapping

from inferlane.dataplane.admission import FAST_PASS, PoolGate, Ticket
from inferlane.dataplane.h1client import UpstreamResponse
from inferlane.dataplane.sse import Usage
from inferlane.dataplane.state import GatewayState
from inferlane.dataplane.upstream import map_upstream_errors
from inferlane.health.tracker import PoolView
from inferlane.providers.exchange import ClientApi, Translation, pool_exchange, provider_exchange
from inferlane.providers.runtime import ProviderRuntime
from inferlane.routing.backends import BackendRef
from inferlane.routing.objectives import FAIRNESS_HEADER, Objective
from inferlane.routing.prompt import PromptFacts, prompt_facts
from inferlane.routing.router import (
    NO_PROMPT,
    GatewaySnapshot,
    RouteChoice,
    Routed,
    RoutingDecision,
)
from inferlane.routing.rules import HeaderModifier
from inferlane.scheduling.interfaces import Endpoint
from inferlane.scheduling.plugins.scorer.prefix_cache import PREFIX_CACHE_SCORER

# Never forwarded in either direction: connection-scoped (RFC 9110 §7.6.1) or recomputed.
HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
        "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length", "expect",
    }
)
# Set by the gateway itself on the upstream request.
_REPLACED = frozenset({"x-request-id", "x-gateway-model-name", "x-gateway-model-name-rewrite",
                       "x-forwarded-for"})


@dataclass(slots=True)
class RequestContext:
    """What every attempt of one client request shares."""

    api: ClientApi
    document: dict[str, Any]
    body: bytes
    request_id: str
    headers: dict[str, str]  # lower-cased names
    raw_headers: MultiMapping[str]  # as the client sent them
    remote: str | None
    query_string: str
    deadline: float | None  # monotonic; the whole request, every attempt included
    backend_timeout: float | None  # one attempt (route timeouts.backendRequest)
    explain: int = 1
    tried: set[str] = field(default_factory=set)  # endpoint addresses already tried
    endpoint: str = ""  # the endpoint the current attempt was sent to (pools)
    first_choice: RouteChoice | None = None  # the first pool's choice, made for its objective
    _prompt: PromptFacts | None = None

    @property
    def prompt(self) -> PromptFacts:
        """The prompt's text and size, worked out on first use (round-robin pools without
        limits or context windows never need it)."""
        if self._prompt is None:
            self._prompt = prompt_facts(self.document)
        return self._prompt

    @property
    def stream(self) -> bool:
        return self.document.get("stream") is True

    def attempt_timeout(self, *limits: float | None) -> float | None:
        """The shortest of the attempt's limits and the time left for the request."""
        values = [v for v in (self.backend_timeout, *limits) if v is not None]
        if self.deadline is not None:
            values.append(max(self.deadline - time.monotonic(), 0.001))
        return min(values) if values else None


@dataclass(slots=True)
class StreamTiming:
    dispatched: float
    first_chunk: float | None = None
    last_chunk: float | None = None
    # The gateway's prefill view (tracked pools only): our uncached prompt tokens and the
    # endpoint's pending prefill tokens ahead of them at dispatch.
    prefill_tokens: int = 0
    prefill_ahead: int = 0


@dataclass(slots=True)
class Opened:
    """An attempt whose response headers are in."""

    backend: BackendRef
    upstream: UpstreamResponse
    translation: Translation | None
    breaker_key: str  # the circuit breaker this attempt reports to ("": pools, whose
    # endpoints' passive health is the pool's outlier detection)
    where: str  # "endpoint A of InferencePool P" / "provider P at host:port"
    timing: StreamTiming
    decision: RoutingDecision | None = None  # pools
    provider: ProviderRuntime | None = None
    _state: GatewayState | None = None
    _done: bool = False

    def finish(self, usage: Usage) -> None:
        """Bookkeeping once the attempt is over (relayed, failed or abandoned)."""
        if self._done:
            return
        self._done = True
        self.upstream.close()
        state = self._state
        decision = self.decision
        if state is None or decision is None:
            return
        state.metrics.child(state.metrics.in_flight, decision.pool.key).dec()
        if decision.pool.needs_metrics:
            learn(state, decision, usage, self.timing)
        state.pool_completed(decision.pool.key)


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


def usable(candidates: Sequence[Endpoint], tried: set[str], view: PoolView | None,
           draw: Callable[[], float]) -> tuple[Endpoint, ...]:
    """Endpoints this attempt may use: not tried yet by this request and routable by health
    (``view``: None when health limits nothing). An endpoint ramping up (slow start, a lower
    ModelServer weight) stays a candidate with probability equal to its weight, so its share
    of new requests follows the weight; if the draw leaves none, every routable one is kept."""
    if view is None:
        if not tried:
            return tuple(candidates)  # the usual case: first attempt, every endpoint healthy
        return tuple(e for e in candidates if e.address not in tried)
    weights = view.weights
    routable = [e for e in candidates if e.address not in tried and e.address in weights]
    kept = [e for e in routable if weights[e.address] >= 1.0 or draw() < weights[e.address]]
    return tuple(kept or routable)


async def open_pool(state: GatewayState, snapshot: GatewaySnapshot, routed: Routed,
                    backend: BackendRef, ctx: RequestContext, *,
                    objective: Objective | None = None) -> Opened:
    """Admission, pick and send to one endpoint of the pool ``backend`` (``objective``
    overrides the request's, e.g. sheddable for mirror copies)."""
    choice = ctx.first_choice
    if choice is None or choice.pool.key != backend.key:
        choice = state.router.pool_choice(snapshot, routed, backend.key)
    pool = choice.pool
    gate = state.gates.get(pool.key) if pool.flow is not None else None
    ticket = FAST_PASS
    if gate is not None:
        ticket = await gate.admit(objective or choice.objective,
                                  ctx.headers.get(FAIRNESS_HEADER, ""), len(ctx.body),
                                  ctx.deadline)
    release = _Release(gate, ticket)
    try:
        now = time.monotonic()
        candidates = usable(pool.endpoints if ticket.endpoints is None else ticket.endpoints,
                            ctx.tried, state.health.tracker.view(pool.key, now),
                            state.router.draw)
        picking = time.perf_counter()
        decision = state.router.pick(
            choice, request_id=ctx.request_id,
            prompt=ctx.prompt if pool.needs_metrics else NO_PROMPT, now=now,
            explain=ctx.explain, endpoints=candidates)
        metrics = state.metrics
        metrics.child(metrics.picker_duration, pool.key).observe(time.perf_counter() - picking)
        exchange = pool_exchange(ctx.api, ctx.document, ctx.body, decision.upstream_model,
                                 decision.upstream_path, rewritten=decision.model_rewritten)
        endpoint = decision.endpoint
        ctx.tried.add(endpoint.address)
        ctx.endpoint = endpoint.address
        timing = StreamTiming(dispatched=time.monotonic())
        if pool.needs_metrics:
            timing.prefill_tokens = decision.prompt.uncached_tokens(
                decision.pick.chosen_score(PREFIX_CACHE_SCORER))
            timing.prefill_ahead = state.endpoints.on_dispatch(
                endpoint, decision.prompt.expected_tokens, prefill_tokens=timing.prefill_tokens)
        release()  # dispatched: the pool's queue may grant the next request
        metrics.child(metrics.in_flight, pool.key).inc()
        state.pool_in_flight[pool.key] = state.pool_in_flight.get(pool.key, 0) + 1
        target = exchange.path
        if ctx.query_string and exchange.translation is None:
            target = f"{target}?{ctx.query_string}"
        timeout = ctx.attempt_timeout()
        where = f"endpoint {endpoint.address} of InferencePool {pool.key}"
        try:
            with map_upstream_errors(f"the model server at {where}", timeout=timeout):
                upstream = await state.upstream.request(
                    "POST", endpoint.host, endpoint.port, target,
                    pool_headers(ctx, decision), exchange.body, budget=timeout)
        except BaseException:
            metrics.child(metrics.in_flight, pool.key).dec()
            if pool.needs_metrics:
                learn(state, decision, Usage(), timing)
            state.pool_completed(pool.key)
            raise
        return Opened(backend=backend, upstream=upstream, translation=exchange.translation,
                      breaker_key="", where=where, timing=timing,
                      decision=decision, _state=state)
    finally:
        release()


async def open_provider(state: GatewayState, snapshot: GatewaySnapshot, backend: BackendRef,
                        ctx: RequestContext) -> Opened:
    """Send the request to the provider ``backend`` in its dialect."""
    provider = snapshot.providers[backend.key]
    exchange = provider_exchange(provider, ctx.api, ctx.document, ctx.body)
    headers = [("Host", provider.host_header), ("Content-Type", "application/json"),
               ("Accept", "text/event-stream" if ctx.stream else "application/json"),
               ("User-Agent", "inferlane"), ("x-request-id", ctx.request_id),
               *exchange.headers]
    beta = ctx.headers.get("anthropic-beta")
    if beta and provider.dialect == "anthropic" and ctx.api is ClientApi.MESSAGES:
        headers.append(("anthropic-beta", beta))  # the client's opt-in to beta features
    timeout = ctx.attempt_timeout(provider.request_timeout)
    where = f"provider {provider.key} at {provider.address}"
    timing = StreamTiming(dispatched=time.monotonic())
    with map_upstream_errors(where, timeout=timeout):
        upstream = await state.upstream.request(
            "POST", provider.host, provider.port, exchange.path, headers, exchange.body,
            budget=timeout, tls=provider.tls, connect_timeout=provider.connect_timeout)
    return Opened(backend=backend, upstream=upstream, translation=exchange.translation,
                  breaker_key=backend.label, where=where, timing=timing, provider=provider)


def pool_headers(ctx: RequestContext, decision: RoutingDecision) -> list[tuple[str, str]]:
    headers = [(name, value) for name, value in ctx.raw_headers.items()
               if name.lower() not in HOP_BY_HOP and name.lower() not in _REPLACED]
    headers.append(("x-request-id", ctx.request_id))
    headers.append(("X-Gateway-Model-Name", decision.requested_model))
    if decision.model_rewritten:
        headers.append(("x-gateway-model-name-rewrite", decision.upstream_model))
    if decision.rule.host_rewrite is not None:
        headers.append(("Host", decision.rule.host_rewrite))
    if ctx.remote:
        previous = ctx.headers.get("x-forwarded-for")
        forwarded = f"{previous}, {ctx.remote}" if previous else ctx.remote
        headers.append(("x-forwarded-for", forwarded))
    modifier = decision.rule.request_headers
    return headers if modifier is None else apply_modifier(modifier, headers)


def apply_modifier(modifier: HeaderModifier,
                   headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Gateway API header modifier semantics: remove, then set (replace), then add."""
    drop = set(modifier.remove) | {name for name, _ in modifier.set}
    kept = [(name, value) for name, value in headers if name.lower() not in drop]
    return kept + list(modifier.set) + list(modifier.add)


def learn(state: GatewayState, decision: RoutingDecision, usage: Usage,
          timing: StreamTiming) -> None:
    """Feed what this request showed back into the endpoint's state (sans-IO store)."""
    store = state.endpoints
    endpoint = decision.endpoint
    expected_tokens = decision.prompt.expected_tokens
    first, last = timing.first_chunk, timing.last_chunk
    # No first token seen (not streamed, or failed before it): release the prefill here.
    pending = timing.prefill_tokens if first is None else 0
    if first is not None and last is not None and usage.seen:
        store.on_complete(endpoint, expected_tokens, output_tokens=usage.completion_tokens,
                          decode_seconds=last - first, pending_prefill_tokens=pending)
    else:
        store.on_complete(endpoint, expected_tokens, pending_prefill_tokens=pending)
    metrics = state.metrics
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
