"""The routing decision: request facts in, (rule, pool, endpoint, upstream model) out.

This is the whole "where does this request go" step, pure and synchronous, so every data plane
(our aiohttp proxy, an Envoy ext_proc server later) asks the same question the same way:

    facts ──► RouteTable.match ──► weighted (or sticky) backendRef + fallbacks = the chain
              (404 if none)        (503 if all zero)
    for a pool of the chain: ──► InferenceModelRewrite, objective (``pool_choice``)
          ──► [data plane: rate limits, flow control] ──► Scheduler (503 if none)

``route`` finds the rule and the chain, ``pool_choice`` prepares one pool attempt, ``pick``
runs the pool's scheduler; ``decide`` does all three for the first backend (a pool).

Randomness comes from an injected ``random.Random`` so tests can pin it.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from inferlane.errors import ModelNotFound, NoEndpointAvailable, NotFound
from inferlane.routing.affinity import (
    AffinityTable,
    SessionAffinity,
    backend_for_token,
    cookie_value,
    hrw_order,
)
from inferlane.routing.backends import BackendRef, sticky_unit
from inferlane.routing.match import RequestFacts, RouteTable, RuleMatch
from inferlane.routing.objectives import OBJECTIVE_HEADER, STANDARD, Objective
from inferlane.routing.prompt import PromptFacts
from inferlane.routing.rate_limits import RateLimitRuntime
from inferlane.routing.rules import CompiledRule
from inferlane.routing.steering import Candidate, Steering, SteeringPolicy, steer
from inferlane.scheduling.framework import PickResult
from inferlane.scheduling.interfaces import Endpoint, PickRequest
from inferlane.scheduling.pool import PoolRuntime

if TYPE_CHECKING:
    from inferlane.health.tracker import WatchedPool
    from inferlane.l4.config import L4Listener
    from inferlane.providers.runtime import ProviderRuntime

MODEL_HEADER = "x-gateway-model-name"
NO_PROMPT = PromptFacts(text="", prompt_tokens=0, max_tokens=None)


@dataclass(frozen=True, slots=True)
class Listener:
    name: str
    port: int
    routes: RouteTable[CompiledRule]
    gateway: str = ""  # "namespace/name" of its Gateway


@dataclass(frozen=True, slots=True)
class GatewaySnapshot:
    """One immutable generation of the runtime config; swapped whole on reload."""

    generation: int
    source: str
    listeners: tuple[Listener, ...]
    pools: Mapping[str, PoolRuntime]
    models: tuple[str, ...]  # what GET /v1/models lists
    max_body_bytes: int = 10 * 1024 * 1024
    rate_limits: tuple[RateLimitRuntime, ...] = ()
    providers: Mapping[str, ProviderRuntime] = field(default_factory=dict)
    l4: tuple[L4Listener, ...] = ()  # TCP/UDP listeners and their routes
    # BackendSets as health watches them, keyed BACKEND_SET_PREFIX + "namespace/name".
    backend_sets: Mapping[str, WatchedPool] = field(default_factory=dict)

    def listener(self, name: str) -> Listener | None:
        for listener in self.listeners:
            if listener.name == name:
                return listener
        return None


@dataclass(frozen=True, slots=True)
class Routed:
    """The rule a request matched and the backends to try, in order."""

    rule: CompiledRule
    requested_model: str
    upstream_path: str
    chain: tuple[BackendRef, ...]  # the split's choice, then the rule's fallbacks
    headers: Mapping[str, str]
    rewrite_unit: float  # the draw for InferenceModelRewrite (sticky when the split is)
    session: str | None = None  # the session key (sessionPersistence header or cookie value)


@dataclass(frozen=True, slots=True)
class RouteChoice:
    """Where a request goes before an endpoint is picked (flow control sits in between)."""

    rule: CompiledRule
    pool: PoolRuntime
    requested_model: str
    upstream_model: str
    upstream_path: str
    objective: Objective
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    rule: CompiledRule
    pool: PoolRuntime
    endpoint: Endpoint
    requested_model: str
    upstream_model: str
    upstream_path: str
    pick: PickResult  # the scheduler's explanation (candidates, scores, predicted TTFT)
    prompt: PromptFacts
    objective: Objective = STANDARD

    @property
    def model_rewritten(self) -> bool:
        return self.upstream_model != self.requested_model


class PoolHealthLookup(Protocol):
    """What routing reads about pools from health (the data plane provides it)."""

    def critical(self, pool: str) -> bool: ...

    def latency(self, pool: str) -> float | None: ...

    def outstanding(self, pool: str) -> int: ...


_SPLIT = Steering(SteeringPolicy.RANDOM)


def _any_critical(rule: CompiledRule, health: PoolHealthLookup) -> bool:
    return any(b.is_pool and health.critical(b.key) for b in rule.backends.items)


def _session_key(affinity: SessionAffinity | None, headers: Mapping[str, str]) -> str | None:
    if affinity is None:
        return None
    if affinity.type == "Header":
        return headers.get(affinity.name) or None
    cookie = headers.get("cookie")
    return cookie_value(cookie, affinity.name) if cookie else None


class Router:
    """Stateless apart from its random source; safe to share across snapshots."""

    __slots__ = ("_random",)

    def __init__(self, rng: random.Random | None = None) -> None:
        self._random = rng or random.Random()

    def decide(
        self,
        snapshot: GatewaySnapshot,
        listener: Listener,
        facts: RequestFacts,
        *,
        model: str,
        request_id: str,
        prompt: PromptFacts = NO_PROMPT,
        now: float = 0.0,
        explain: int = 1,
    ) -> RoutingDecision:
        """Route and pick in one step (``route`` then ``pick``); ``now`` is the caller's
        monotonic clock (for staleness, TTLs)."""
        routed = self.route(snapshot, listener, facts, model=model)
        first = routed.chain[0]
        if not first.is_pool:
            raise NoEndpointAvailable(f"{first.label} is not an InferencePool.")
        choice = self.pool_choice(snapshot, routed, first.key)
        return self.pick(choice, request_id=request_id, prompt=prompt, now=now,
                         explain=explain)

    def route(self, snapshot: GatewaySnapshot, listener: Listener, facts: RequestFacts, *,
              model: str, health: PoolHealthLookup | None = None,
              sessions: Callable[[CompiledRule], AffinityTable | None] | None = None,
              now: float = 0.0) -> Routed:
        """The rule and its chain of backends: the weighted (or steered, or the session's)
        backendRef first. ``health`` says which pools are critical (and their load and
        latency, for steering); ``sessions`` gives a rule's header-session table."""
        hit = listener.routes.match(facts)
        if hit is None:
            if model:
                raise ModelNotFound(
                    f"The model '{model}' does not exist or no route serves it on this gateway.",
                    param="model",
                )
            raise NotFound(f"No route matches {facts.method} {facts.path}.")
        rule_match, rule = hit
        if rule.backends.empty:
            raise NoEndpointAvailable(
                f"HTTPRoute {rule.route} rule {rule.rule_index} has no backend with weight > 0."
            )
        session = _session_key(rule.affinity, facts.headers)
        if rule.steering is None and rule.affinity is None and (
                health is None or not _any_critical(rule, health)):
            # The plain split: one weighted draw, then the rule's fallbacks.
            split, rewrite = self._random.random(), self._random.random()
            primary = rule.backends.choose(split)
            chain = (primary, *(b for b in rule.failure.fallbacks if b != primary))
        else:
            table = sessions(rule) if sessions is not None else None
            chain, rewrite = self._steered(rule, facts, health, session, table, now)
        return Routed(rule=rule, requested_model=model,
                      upstream_path=_upstream_path(rule, rule_match, facts.path), chain=chain,
                      headers=facts.headers, rewrite_unit=rewrite, session=session)

    def _steered(self, rule: CompiledRule, facts: RequestFacts, health: PoolHealthLookup | None,
                 session: str | None, sessions: AffinityTable | None,
                 now: float) -> tuple[tuple[BackendRef, ...], float]:
        """Health, steering and session affinity decide the order of the rule's backends.

        Without a steering policy only the first choice changes (a weighted draw among the
        healthy backends, or the session's backend): the rest of the chain is the rule's
        fallbacks, as for the plain split. With one, every backend of the rule is in the chain
        in the policy's order, healthy ones first, then the fallbacks.
        """
        candidates = [
            Candidate(backend, weight,
                      healthy=not (health is not None and backend.is_pool
                                   and health.critical(backend.key)),
                      outstanding=(health.outstanding(backend.key)
                                   if health is not None and backend.is_pool else 0),
                      latency=(health.latency(backend.key)
                               if health is not None and backend.is_pool else None))
            for backend, weight in rule.backends.weighted()]
        if not any(c.healthy for c in candidates):  # all critical: choose as if all were fine
            candidates = [dataclasses.replace(c, healthy=True) for c in candidates]
        unit = self._random.random()
        steering = rule.steering or _SPLIT
        region = None
        if steering.geo is not None:
            region = steering.geo.client_region(facts.headers, facts.remote)
        order = steer(steering, candidates, unit=unit, client_region=region)
        if rule.steering is None:
            order = order[:1]
        rewrite = self._random.random()
        affinity = rule.affinity
        if affinity is not None and session:
            rewrite = sticky_unit(session, "rewrite")
            healthy = {c.backend for c in candidates if c.healthy}
            pinned: BackendRef | None
            if affinity.type == "Cookie":
                pinned = backend_for_token(session, candidates)
            else:
                pinned = (sessions.lookup(session, now, idle_timeout=affinity.idle_timeout,
                                          absolute_timeout=affinity.absolute_timeout)
                          if sessions is not None else None)
                if pinned is None or pinned not in healthy:
                    placed = hrw_order(session, candidates)
                    pinned = placed[0] if placed else None
            if pinned is not None and pinned in healthy:
                order = (pinned, *(b for b in order if b != pinned))
                if rule.steering is None:
                    order = order[:1]
        chain = (*order, *(b for b in rule.failure.fallbacks if b not in order))
        return chain, rewrite

    def pool_choice(self, snapshot: GatewaySnapshot, routed: Routed,
                    pool_key: str) -> RouteChoice:
        """One attempt at a pool: its model rewrite and the request's objective there."""
        pool = snapshot.pools[pool_key]
        model = routed.requested_model
        upstream_model = pool.rewrites.rewrite(model, routed.rewrite_unit) if model else model
        objective = pool.objectives.resolve(routed.headers.get(OBJECTIVE_HEADER), model)
        return RouteChoice(rule=routed.rule, pool=pool, requested_model=model,
                           upstream_model=upstream_model, upstream_path=routed.upstream_path,
                           objective=objective, headers=routed.headers)

    def draw(self) -> float:
        """A uniform number in [0, 1) from the router's random source (mirror sampling,
        backoff jitter), so tests can pin it."""
        return self._random.random()

    def pick(self, choice: RouteChoice, *, request_id: str, prompt: PromptFacts = NO_PROMPT,
             now: float = 0.0, explain: int = 1,
             endpoints: Sequence[Endpoint] | None = None) -> RoutingDecision:
        """The pool's scheduler picks the endpoint (NoEndpointAvailable when none), among
        ``endpoints`` when given (flow control: those with capacity), else all of the pool's."""
        pool = choice.pool
        pick = pool.scheduler.schedule(
            PickRequest(
                request_id=request_id, model=choice.upstream_model, headers=choice.headers,
                prompt=prompt.text, prompt_tokens=prompt.prompt_tokens,
                max_tokens=prompt.max_tokens, now=now,
            ),
            pool.endpoints if endpoints is None else endpoints,
            explain=explain,
        )
        endpoint = pick.endpoint
        if endpoint is None:
            raise NoEndpointAvailable(
                f"InferencePool {pool.key} has no endpoint available for model "
                f"'{choice.requested_model}'."
            )
        return RoutingDecision(
            rule=choice.rule,
            pool=pool,
            endpoint=endpoint,
            requested_model=choice.requested_model,
            upstream_model=choice.upstream_model,
            upstream_path=choice.upstream_path,
            pick=pick,
            prompt=prompt,
            objective=choice.objective,
        )


def _upstream_path(rule: CompiledRule, rule_match: RuleMatch, path: str) -> str:
    if rule.path_rewrite is None:
        return path
    return rule.path_rewrite.apply(path, rule_match.path_value)
