"""Replay a workload through a real Scheduler and simulated engines in simulated time.

No sockets, no event loop, no wall clock: the same sans-IO pieces the gateway and the simulator
use (``scheduling`` profiles, the ``EndpointStore`` with its in-flight view and learned rates,
the simulator's ``Engine``) are wired by a discrete-event loop. Scrapes land every
``scrape_interval`` simulated seconds, so the picker sees metrics exactly as stale as it would
behind a real scraper, and the gateway's own dispatch/first-token/completion hooks run where the
proxy calls them.

What it is for: comparing profiles and tuning scorers reproducibly (same seed, same result) in
seconds, and asserting routing quality in tests without timing anything on the machine.
``benchmarks/routing.py`` remains the end-to-end measurement over real processes and peers.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from inferlane.bench.workloads import Planned
from inferlane.endpoints import EndpointStore
from inferlane.flowcontrol import SaturationConfig, SaturationDetector
from inferlane.routing.prompt import prompt_facts
from inferlane.scheduling.framework import Scheduler, StatesFn
from inferlane.scheduling.interfaces import Endpoint, PickRequest
from inferlane.scheduling.plugins.scorer.prefix_cache import PREFIX_CACHE_SCORER
from inferlane.scheduling.types import ServerMetrics
from inferlane.sim.engine import Engine, EngineConfig, EngineRequest, FinishReason, StepResult
from inferlane.sim.prefix_cache import block_hashes
from inferlane.sim.tokens import Prompt, render_chat

SchedulerFactory = Callable[[StatesFn], Scheduler]


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    replicas: int = 8
    engine: EngineConfig = field(default_factory=EngineConfig)
    model: str = "sim-model"
    scrape_interval: float = 0.05
    warmup_fraction: float = 0.2  # first arrivals sent but left out of the statistics
    # Called with the simulated time every ``observe_every`` seconds (soak measurements).
    observe: Callable[[float], None] | None = None
    observe_every: float = 60.0
    # Like a pool with flow control: pick among the endpoints below saturation (all when none
    # is; requests are not queued here).
    saturation: SaturationConfig | None = None


@dataclass(frozen=True, slots=True)
class Completed:
    """One request's outcome in simulated seconds."""

    sent_at: float
    ttft: float
    latency: float
    output_tokens: int
    replica: int


@dataclass(slots=True)
class ReplayResult:
    completed: list[Completed]
    prefix_hit_rate: float
    picks: list[int]  # requests per replica (all of them, warm-up included)
    makespan: float

    def ttft(self, quantile: float) -> float:
        return _quantile([c.ttft for c in self.completed], quantile)

    def latency(self, quantile: float) -> float:
        return _quantile([c.latency for c in self.completed], quantile)

    @property
    def output_tokens_per_second(self) -> float:
        if not self.completed:
            return 0.0
        start = min(c.sent_at for c in self.completed)
        end = max(c.sent_at + c.latency for c in self.completed)
        tokens = sum(c.output_tokens for c in self.completed)
        return tokens / (end - start) if end > start else 0.0


def _quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(slots=True)
class _InFlight:
    index: int
    replica: int
    sent_at: float
    expected_tokens: int
    uncached_tokens: int
    prefill_ahead: int
    first_token_at: float | None = None
    output_tokens: int = 0


class _Replica:
    __slots__ = ("endpoint", "engine", "step")

    def __init__(self, endpoint: Endpoint, engine: Engine) -> None:
        self.endpoint = endpoint
        self.engine = engine
        self.step: StepResult | None = None  # the step in progress


_ARRIVE, _STEP_END, _SCRAPE, _OBSERVE = 0, 1, 2, 3


def replay(planned: Sequence[Planned], scheduler: SchedulerFactory,
           options: ReplayOptions | None = None) -> ReplayResult:
    """Send ``planned`` at its arrival times through ``scheduler`` to simulated replicas."""
    options = options or ReplayOptions()
    config = options.engine
    store = EndpointStore(stale_after=max(2.0, 4 * options.scrape_interval))
    replicas = [_Replica(Endpoint(f"default/sim-{i}", "10.0.0.1", 8000 + i), Engine(config))
                for i in range(options.replicas)]
    endpoints = [r.endpoint for r in replicas]
    store.sync(endpoints)
    picker = scheduler(store.states)
    detector = SaturationDetector(options.saturation) if options.saturation else None
    events: list[tuple[float, int, int, int]] = []  # (time, order, kind, index)
    order = 0

    def push(at: float, kind: int, index: int) -> None:
        nonlocal order
        order += 1
        heapq.heappush(events, (at, order, kind, index))

    for i, item in enumerate(planned):
        push(item.at, _ARRIVE, i)
    last_arrival = planned[-1].at if planned else 0.0
    for i in range(len(replicas)):  # replicas are scraped out of phase, as by a real scraper
        push(options.scrape_interval * i / len(replicas), _SCRAPE, i)
    if options.observe is not None:
        push(options.observe_every, _OBSERVE, 0)
    flights: dict[int, _InFlight] = {}
    completed: list[Completed] = []
    picks = [0] * len(replicas)
    warmup = int(len(planned) * options.warmup_fraction)
    now = 0.0

    def start_step(index: int) -> None:
        replica = replicas[index]
        if replica.step is not None or not replica.engine.has_work:
            return
        result = replica.engine.step(now)
        if not result.idle:
            replica.step = result
            push(result.end, _STEP_END, index)

    while events:
        now, _, kind, index = heapq.heappop(events)
        if kind == _ARRIVE:
            item = planned[index]
            body = item.body
            facts = prompt_facts(body)
            model = str(body.get("model", options.model))
            offered: Sequence[Endpoint] = endpoints
            if detector is not None:
                roomy = detector.with_capacity(store.states(endpoints), now)
                if roomy:
                    offered = [state.endpoint for state in roomy]
            pick = picker.schedule(PickRequest(
                request_id=str(index), model=model, prompt=facts.text,
                prompt_tokens=facts.prompt_tokens, max_tokens=facts.max_tokens, now=now),
                offered, explain=1)
            if pick.endpoint is None:
                continue
            target = endpoints.index(pick.endpoint)
            picks[target] += 1
            # The same estimates the proxy makes at dispatch.
            expected = facts.expected_tokens
            uncached = facts.uncached_tokens(pick.chosen_score(PREFIX_CACHE_SCORER))
            ahead = store.on_dispatch(pick.endpoint, expected, prefill_tokens=uncached)
            prompt = Prompt.from_text(render_chat(body["messages"]))
            lora = model if model != options.model else None
            hashes = block_hashes(lora or options.model, prompt.block_payloads(config.block_size))
            max_tokens = facts.expected_tokens - facts.prompt_tokens  # what the sim generates
            replicas[target].engine.submit(EngineRequest(
                index, prompt.num_tokens, hashes, max_tokens, FinishReason.LENGTH, lora), now)
            flights[index] = _InFlight(index, target, now, expected, uncached, ahead)
            start_step(target)
        elif kind == _STEP_END:
            replica = replicas[index]
            result = replica.step
            assert result is not None
            replica.step = None
            for request_id in result.tokens:
                flight = flights[request_id]
                flight.output_tokens += 1
                if flight.first_token_at is None:
                    flight.first_token_at = now
                    store.on_first_token(replica.endpoint,
                                         uncached_prompt_tokens=flight.uncached_tokens,
                                         seconds=now - flight.sent_at,
                                         prefill_tokens_ahead=flight.prefill_ahead)
            for request_id, _reason in result.finished:
                flight = flights.pop(request_id)
                first = flight.first_token_at if flight.first_token_at is not None else now
                store.on_complete(replica.endpoint, flight.expected_tokens,
                                  output_tokens=flight.output_tokens, decode_seconds=now - first)
                if flight.index >= warmup:
                    completed.append(Completed(flight.sent_at, first - flight.sent_at,
                                               now - flight.sent_at, flight.output_tokens,
                                               flight.replica))
            start_step(index)
        elif kind == _OBSERVE:
            assert options.observe is not None
            options.observe(now)
            if now < last_arrival:  # one more observation after the last arrival
                push(now + options.observe_every, _OBSERVE, 0)
        else:  # _SCRAPE
            engine = replicas[index].engine
            store.record_scrape(replicas[index].endpoint, ServerMetrics(
                waiting=engine.num_waiting, running=engine.num_running,
                kv_usage=engine.kv_cache_usage, block_size=config.block_size,
                num_blocks=config.num_gpu_blocks, max_loras=config.max_loras,
                running_loras=frozenset(engine.running_loras),
                waiting_loras=frozenset(engine.waiting_loras), scraped_at=now))
            if flights or now < last_arrival:
                push(now + options.scrape_interval, _SCRAPE, index)
    queries = sum(r.engine.stats.prefix_cache_queries for r in replicas)
    hits = sum(r.engine.stats.prefix_cache_hits for r in replicas)
    return ReplayResult(completed, hits / queries if queries else 0.0, picks, now)
