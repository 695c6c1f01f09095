"""The workload, the gateway configs and the arithmetic of the priority benchmark (issue 4).

No processes here (``priority.py`` owns them), only what a run is made of:

- ``Settings`` (the ramp, the probe, the modes) and the records of a run (``ModeRun``);
- ``plan_ramp``: open-loop Poisson arrivals whose rate steps through multiples of the fleet's
  capacity; each request gets an objective (critical / standard / sheddable by share) and a
  tenant (unequal volumes) independently, and a short chat body;
- ``gateway_config``: the fleet as one pool with the default profile, the three objectives and
  the pool's default objective, with or without ``inferlane.dev/flow-control: disabled``;
- ``send``: one streaming request, its status, error code and timings (client timeouts and
  connection errors are errors of the request's objective, code ``client-timeout`` /
  ``client-error``);
- statistics of a run's outcomes: per load step and objective (``class_stats``), and who got
  a saturated band's throughput (``band_fairness``: max-min fair shares by water-filling,
  Jain's index).
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import yaml

import loadgen
from inferlane.bench.runner import fleet_config
from inferlane.bench.workloads import arrivals, text_of_tokens
from inferlane.scheduling.registry import BUILTIN_PROFILES

OBJECTIVE_HEADER = "x-gateway-inference-objective"
FAIRNESS_HEADER = "x-gateway-inference-fairness-id"
POOL = "fleet"
ON, OFF = "flow-control on", "flow-control off"
_CONTENT = re.compile(rb'"content":\s*"[^"]')
_USAGE = re.compile(rb'"completion_tokens":\s*(\d+)')
_SSE_ERROR = re.compile(rb'"error":\s*\{')


@dataclass(frozen=True, slots=True)
class ObjectiveClass:
    """One class of traffic: the InferenceObjective it names and its share of the requests."""

    name: str
    priority: int
    share: float
    ttft_target_s: float | None = None
    send_header: bool = True  # False: rely on the pool's default objective


OBJECTIVES: tuple[ObjectiveClass, ...] = (
    ObjectiveClass("critical", 2, 0.2, ttft_target_s=1.0),
    ObjectiveClass("standard", 0, 0.5, send_header=False),
    ObjectiveClass("sheddable", -1, 0.3),
)
# tenant-a sends 10x the requests of each other tenant.
TENANTS: Mapping[str, float] = {"tenant-a": 10.0, "tenant-b": 1.0, "tenant-c": 1.0,
                                "tenant-d": 1.0}


@dataclass(frozen=True, slots=True)
class Step:
    load: float  # multiple of the fleet's capacity
    seconds: float


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    at: float  # seconds after the start of the ramp
    step: int  # index into the ramp's steps
    objective: str
    tenant: str
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass(slots=True)
class Outcome:
    """What the client saw; times are seconds after the start of the ramp."""

    planned: PlannedRequest
    sent_at: float
    status: int = 0  # HTTP status; 0 when none arrived
    code: str = ""  # "" on success; else the OpenAI error code or a client-side reason
    first_token_at: float = math.nan
    done_at: float = math.nan
    output_tokens: int = 0

    @property
    def ok(self) -> bool:
        return self.status == 200 and not self.code

    @property
    def ttft(self) -> float:
        return self.first_token_at - self.sent_at

    @property
    def e2e(self) -> float:
        return self.done_at - self.sent_at


# --- what a run is ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mode:
    """One gateway configuration of the comparison."""

    name: str
    flow_control: bool
    queue_depth_threshold: int | None = None  # None: the default profile's detector (5)


@dataclass(frozen=True, slots=True)
class Settings:
    replicas: int = 8
    steps: tuple[Step, ...] = (Step(0.5, 8), Step(1.0, 8), Step(1.5, 8), Step(2.0, 20))
    probe_s: float = 10.0
    probe_concurrency_per_replica: int = 24
    timeout_s: float = 60.0  # per request, client side; a timeout is an error
    fairness_skip_s: float = 3.0  # start of the 2x step left out of the fairness window
    sample_every_s: float = 0.5
    seed: int = 4
    capacity: float | None = None  # None: measure it
    # A third mode, flow control on with an EndpointPickerConfig (the default profile's plugins)
    # whose saturationDetector.queueDepthThreshold is this; None: no third mode.
    tuned_threshold: int | None = 1

    def modes(self) -> list[Mode]:
        modes = [Mode(ON, True), Mode(OFF, False)]
        if self.tuned_threshold is not None:
            modes.append(Mode(f"{ON}, queueDepthThreshold {self.tuned_threshold}", True,
                              self.tuned_threshold))
        return modes


QUICK = Settings(steps=(Step(0.5, 2), Step(1.0, 2), Step(1.5, 2), Step(2.0, 5)),
                 probe_s=6.0, fairness_skip_s=1.5, tuned_threshold=None)


@dataclass(slots=True)
class Sample:
    at: float  # seconds after the start of the ramp
    rss: int  # bytes
    queued: dict[str, float] = field(default_factory=dict)  # priority -> requests
    saturation: float = math.nan
    engine_waiting: list[float] = field(default_factory=list)  # per replica, scraped
    engine_running: list[float] = field(default_factory=list)


@dataclass(slots=True)
class ModeRun:
    mode: str
    outcomes: list[Outcome]
    samples: list[Sample]
    rss_start: int
    rss_end: int
    queued_at_overload_end: dict[str, float]
    metrics_end: dict[str, float]  # selected counters after the drain
    cpu: float  # gateway CPU over ramp + drain, 1.0 = one core
    background_cpu: float
    ramp_s: float
    drain_s: float


# --- the workload ------------------------------------------------------------------------------


def _lognormal(rng: random.Random, median: float, sigma: float, low: int, high: int) -> int:
    return max(low, min(high, round(rng.lognormvariate(math.log(median), sigma))))


def chat_body(rng: random.Random, salt: str, index: int, model: str) -> dict[str, Any]:
    """A short chat turn: ~150-token prompt, ~64-token answer (log-normal, capped), so the fleet
    serves enough requests per second for tail percentiles without a long-output tail."""
    prompt = _lognormal(rng, 150, 0.7, 8, 1000)
    output = _lognormal(rng, 64, 0.5, 8, 200)
    content = f"{salt} q{index}: " + text_of_tokens(rng, prompt)
    return {"model": model, "messages": [{"role": "user", "content": content}],
            "max_tokens": output}


def plan_ramp(steps: Sequence[Step], capacity: float, seed: int, salt: str, model: str,
              objectives: Sequence[ObjectiveClass] = OBJECTIVES,
              tenants: Mapping[str, float] = TENANTS) -> list[PlannedRequest]:
    """Poisson arrivals at ``load x capacity`` per step, back to back; seeded, so both modes
    get the same times, objectives and tenants (only the salt of the prompts differs)."""
    rng = random.Random(seed)
    names = [o.name for o in objectives]
    shares = [o.share for o in objectives]
    by_name = {o.name: o for o in objectives}
    tenant_names = list(tenants)
    tenant_weights = [tenants[name] for name in tenant_names]
    planned: list[PlannedRequest] = []
    offset = 0.0
    for index, step in enumerate(steps):
        for at in arrivals(rng, step.load * capacity, step.seconds):
            name = rng.choices(names, shares)[0]
            tenant = rng.choices(tenant_names, tenant_weights)[0]
            headers = {FAIRNESS_HEADER: tenant}
            if by_name[name].send_header:
                headers[OBJECTIVE_HEADER] = name
            body = chat_body(rng, salt, len(planned), model)
            planned.append(PlannedRequest(offset + at, index, name, tenant, body, headers))
        offset += step.seconds
    return planned


def step_bounds(steps: Sequence[Step]) -> list[tuple[float, float]]:
    """Each step's [start, end) in seconds after the start of the ramp."""
    bounds = []
    start = 0.0
    for step in steps:
        bounds.append((start, start + step.seconds))
        start += step.seconds
    return bounds


# --- gateway config -----------------------------------------------------------------------------


def gateway_config(addresses: Sequence[str], listen_port: int, models: Sequence[str], *,
                   flow_control: bool, queue_depth_threshold: int | None = None,
                   objectives: Sequence[ObjectiveClass] = OBJECTIVES) -> str:
    """``fleet_config`` with the default profile, plus the objectives and the pool annotations.

    ``queue_depth_threshold``: None keeps the plain default profile (the saturation detector's
    defaults); a number adds an EndpointPickerConfig with the default profile's plugins and
    weights and that ``saturationDetector.queueDepthThreshold``.
    """
    docs = list(yaml.safe_load_all(fleet_config(addresses, models=models,
                                                listen_port=listen_port)))
    pool = next(doc for doc in docs if doc["kind"] == "InferencePool")
    default = next(o.name for o in objectives if not o.send_header)
    annotations = {"inferlane.dev/default-objective": default}
    if not flow_control:
        annotations["inferlane.dev/flow-control"] = "disabled"
    if queue_depth_threshold is not None:
        annotations["inferlane.dev/endpoint-picker-config"] = "default-tuned"
        docs.append(_picker_config("default-tuned", queue_depth_threshold))
    pool["metadata"]["annotations"] = annotations
    for objective in objectives:
        metadata: dict[str, Any] = {"name": objective.name}
        if objective.ttft_target_s is not None:
            metadata["annotations"] = {
                "inferlane.dev/ttft-target": f"{objective.ttft_target_s:g}s"}
        docs.append({"apiVersion": "inference.networking.x-k8s.io/v1alpha2",
                     "kind": "InferenceObjective", "metadata": metadata,
                     "spec": {"priority": objective.priority, "poolRef": {"name": POOL}}})
    return yaml.safe_dump_all(docs, sort_keys=False)


def _picker_config(name: str, queue_depth_threshold: int) -> dict[str, Any]:
    recipe = BUILTIN_PROFILES["default"]
    return {
        "apiVersion": "inference.networking.x-k8s.io/v1alpha1",
        "kind": "EndpointPickerConfig",
        "metadata": {"name": name},
        "plugins": [{"type": plugin} for plugin, _ in recipe],
        "schedulingProfiles": [{"name": "default", "plugins": [
            {"pluginRef": plugin, **({"weight": int(weight)} if weight is not None else {})}
            for plugin, weight in recipe]}],
        "saturationDetector": {"queueDepthThreshold": queue_depth_threshold},
    }


# --- one request --------------------------------------------------------------------------------


def _error_code(body: bytes, status: int) -> str:
    try:
        error = orjson.loads(body).get("error") or {}
        return str(error.get("code") or error.get("type") or f"http-{status}")
    except (orjson.JSONDecodeError, AttributeError):
        return f"http-{status}"


async def send(session: aiohttp.ClientSession, url: str, planned: PlannedRequest,
               origin: float, timeout_s: float) -> Outcome:
    """Stream one chat completion; ``origin`` is the perf_counter value of the ramp's start."""
    payload = orjson.dumps({**planned.body, "stream": True,
                            "stream_options": {"include_usage": True}})
    outcome = Outcome(planned, time.perf_counter() - origin)
    chunks = 0
    tail = b""
    usage: int | None = None
    try:
        async with asyncio.timeout(timeout_s):
            async with session.post(url, data=payload, headers={
                    "Content-Type": "application/json", **planned.headers}) as response:
                outcome.status = response.status
                if response.status != 200:
                    outcome.code = _error_code(await response.read(), response.status)
                    outcome.done_at = time.perf_counter() - origin
                    return outcome
                async for data in response.content.iter_any():
                    window = tail + data
                    found = len(_CONTENT.findall(window)) - len(_CONTENT.findall(tail))
                    if found and chunks == 0:
                        outcome.first_token_at = time.perf_counter() - origin
                    chunks += found
                    if (match := _USAGE.search(window)) is not None:
                        usage = int(match.group(1))
                    if _SSE_ERROR.search(window) is not None:
                        outcome.code = "stream-error-event"
                    tail = window[-64:]
    except TimeoutError:
        outcome.code = "client-timeout"
    except (aiohttp.ClientError, OSError) as error:
        outcome.code = f"client-error ({type(error).__name__})"
    outcome.done_at = time.perf_counter() - origin
    outcome.output_tokens = usage if usage is not None else chunks
    if not outcome.code and (chunks == 0 or b"[DONE]" not in tail):
        outcome.code = "stream-incomplete"
    return outcome


# --- fairness -----------------------------------------------------------------------------------


def fair_shares(demands: Mapping[str, float], capacity: float) -> dict[str, float]:
    """Max-min fair allocation of ``capacity`` (water-filling): a tenant asking for less than an
    equal split gets what it asks for, the rest is split equally among the others."""
    shares: dict[str, float] = {}
    left = capacity
    pending = sorted(demands.items(), key=lambda item: item[1])
    while pending:
        equal = left / len(pending)
        name, demand = pending[0]
        if demand <= equal:
            shares[name] = demand
            left -= demand
            pending.pop(0)
            continue
        for name, _ in pending:
            shares[name] = equal
        break
    return shares


def jain_index(values: Sequence[float]) -> float:
    """(sum x)^2 / (n sum x^2): 1 when all equal, 1/n when one takes everything."""
    squares = sum(value * value for value in values)
    if not values or squares == 0:
        return math.nan
    return sum(values) ** 2 / (len(values) * squares)


# --- statistics ---------------------------------------------------------------------------------


def _percentile(values: Sequence[float], q: float) -> float:
    return loadgen.percentile(sorted(values), q)


@dataclass(slots=True)
class ClassStats:
    """One objective's requests sent during one load step, through one gateway."""

    mode: str
    step: int
    load: float
    objective: str
    sent: int
    ok: int
    errors: dict[str, int]  # "status code" -> count
    ttft: dict[str, float]  # p50/p90/p99 of the successes, seconds
    e2e_p50: float
    attainment: float  # share of sent answered 200 within the TTFT target; nan without target


def class_stats(mode: str, outcomes: Sequence[Outcome], steps: Sequence[Step],
                objectives: Sequence[ObjectiveClass] = OBJECTIVES) -> list[ClassStats]:
    stats = []
    for index, step in enumerate(steps):
        for objective in objectives:
            chosen = [o for o in outcomes
                      if o.planned.step == index and o.planned.objective == objective.name]
            good = [o for o in chosen if o.ok]
            errors = Counter(f"{o.status or '-'} {o.code}" for o in chosen if not o.ok)
            target = objective.ttft_target_s
            attainment = math.nan
            if target is not None and chosen:
                attainment = sum(1 for o in good if o.ttft <= target) / len(chosen)
            ttfts = [o.ttft for o in good]
            stats.append(ClassStats(
                mode, index, step.load, objective.name, len(chosen), len(good),
                dict(errors.most_common()),
                {f"p{q}": _percentile(ttfts, q / 100) for q in (50, 90, 99)},
                _percentile([o.e2e for o in good], 0.5), attainment))
    return stats


@dataclass(slots=True)
class Fairness:
    """Who got one band's throughput in a window (rates in requests per second)."""

    mode: str
    window: tuple[float, float]
    demand: dict[str, float]  # sent in the window
    served: dict[str, float]  # first token in the window, whenever sent
    fair: dict[str, float]  # max-min fair share of the served total
    ratio: dict[str, float]  # served / fair
    jain: float  # over the ratios


def band_fairness(mode: str, outcomes: Sequence[Outcome], window: tuple[float, float],
                  band: str, tenants: Sequence[str] = tuple(TENANTS)) -> Fairness:
    seconds = max(window[1] - window[0], 1e-9)
    in_band = [o for o in outcomes if o.planned.objective == band]
    demand = Counter(o.planned.tenant for o in in_band if window[0] <= o.planned.at < window[1])
    served = Counter(o.planned.tenant for o in in_band
                     if o.ok and window[0] <= o.first_token_at < window[1])
    present = [t for t in tenants if demand[t] > 0]
    fair = fair_shares({t: float(demand[t]) for t in present},
                       float(sum(served[t] for t in present)))
    ratio = {t: served[t] / fair[t] if fair[t] > 0 else math.nan for t in present}
    return Fairness(mode, window, {t: demand[t] / seconds for t in present},
                    {t: served[t] / seconds for t in present},
                    {t: fair[t] / seconds for t in present}, ratio,
                    jain_index([ratio[t] for t in present if not math.isnan(ratio[t])]))
