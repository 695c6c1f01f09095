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

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from inferlane.errors import ModelNotFound, NoEndpointAvailable, NotFound
from inferlane.routing.backends import BackendRef, sticky_unit
from inferlane.routing.match import RequestFacts, RouteTable, RuleMatch
from inferlane.routing.objectives import OBJECTIVE_HEADER, STANDARD, Objective
from inferlane.routing.prompt import PromptFacts
from inferlane.routing.rate_limits import RateLimitRuntime
from inferlane.routing.rules import CompiledRule
from inferlane.scheduling.framework import PickResult
from inferlane.scheduling.interfaces import Endpoint, PickRequest
from inferlane.scheduling.pool import PoolRuntime

if TYPE_CHECKING:
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
              model: str) -> Routed:
        """The rule and its chain of backends: the weighted (or sticky) backendRef first."""
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
        sticky = facts.headers.get(rule.sticky_header) if rule.sticky_header else None
        if sticky:
            split, rewrite = sticky_unit(sticky, "split"), sticky_unit(sticky, "rewrite")
        else:
            split, rewrite = self._random.random(), self._random.random()
        primary = rule.backends.choose(split)
        chain = (primary, *(b for b in rule.failure.fallbacks if b != primary))
        return Routed(rule=rule, requested_model=model,
                      upstream_path=_upstream_path(rule, rule_match, facts.path), chain=chain,
                      headers=facts.headers, rewrite_unit=rewrite)

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
