"""The inference-aware endpoint picker through real processes: affinity, spill-over, staleness.

One module stack serves most tests: a sim fleet whose replicas are split into pools by model
(``default`` profile without annotation, ``round-robin``, ``predicted-latency``, an
EndpointPickerConfig, a pool with one unreadable metrics path) plus a second fleet of replicas
that run one sequence at a time (``--max-num-seqs 1``) so their queues grow. Tests that kill a
process start their own stack.

Which endpoint answered is read from ``x-inferlane-endpoint``; why, from ``x-inferlane-scores``.
Assertions are structural (one endpoint, more than one, never that one, an ordering of cache
hits), never on timing: sequential requests keep every queue empty, so affinity decides alone.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from prometheus_client.parser import text_string_to_metric_families

from .conftest import (
    GatewayProcess,
    SimFleet,
    SimReplica,
    Stack,
    gateway_doc,
    inferlane_command,
    metric_value,
    poll,
    poll_async,
    pool_doc,
    replica_docs,
    rewrite_doc,
    route_doc,
    running_stack,
    write_config,
)

pytestmark = pytest.mark.e2e

MODEL_PREFIX = "m-affinity"  # pool-affinity: 3 replicas, no annotation (the default profile)
MODEL_RR = "m-rr"  # pool-rr: 3 replicas, round-robin
MODEL_LATENCY = "m-latency"  # pool-latency: 2 replicas, predicted-latency
MODEL_CONFIG = "m-config"  # pool-config: 2 replicas, EndpointPickerConfig "custom-picker"
MODEL_STALE = "m-stale"  # pool-stale: 3 replicas, the first with a metrics path that 404s
MODEL_NARROW = "m-narrow"  # pool-narrow: 3 replicas of the second fleet, one sequence at a time
MODEL_EXTRA = "m-extra"  # only routed after the hot reload
FLEET = {MODEL_PREFIX: 3, MODEL_RR: 3, MODEL_LATENCY: 2, MODEL_CONFIG: 2, MODEL_STALE: 3}
NAMESPACE = "default"

DEBUG = {"x-inferlane-debug": "1"}
DEFAULT_SCORERS = ("queue-scorer", "kv-cache-utilization-scorer", "prefix-cache-scorer",
                   "lora-affinity-scorer", "prefill-load-scorer")
PICKER_CONFIG = "custom-picker"
CUSTOM_PROFILE = "sticky-profile"
CUSTOM_SCORERS = ("short-queue", "warm-prefix")
BAD_METRICS_PATH = "/nope"
RELOAD_INTERVAL = "0.2"
RELOAD_WAIT = 15.0  # bounded wait for a reload to be applied
STALE_WAIT = 20.0  # bounded wait for the scraper to see (or lose) an endpoint
PREFIX_CHARS = 3000  # ~47 of the gateway's 64-character blocks
QUESTIONS = tuple(f"Question {i}: what is {i} + {i}?" for i in range(6))


def long_prefix(tag: str, chars: int = PREFIX_CHARS) -> str:
    """A system prompt of about ``chars`` characters that differs from the first block on."""
    words: list[str] = []
    size = 0
    i = 0
    while size < chars:
        word = f"{tag}-{i * 7919 % 10007}"
        words.append(word)
        size += len(word) + 1
        i += 1
    return f"You are assistant {tag}. " + " ".join(words)


def messages(prefix: str, question: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "system", "content": prefix}, {"role": "user", "content": question}]


def ask(client: openai.OpenAI, model: str, prefix: str, question: str, *,
        debug: bool = False, max_tokens: int = 1) -> tuple[str, dict[str, str]]:
    """One chat completion; the endpoint that answered and the response headers."""
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=messages(prefix, question), max_tokens=max_tokens,
        extra_headers=DEBUG if debug else None)
    assert raw.status_code == 200
    raw.parse()
    headers = dict(raw.headers.items())
    return headers["x-inferlane-endpoint"], headers


def unannotated_pool_doc(name: str, labels: dict[str, str]) -> dict[str, Any]:
    """An InferencePool without annotations: the scheduler's ``default`` profile."""
    document = pool_doc(name, labels)
    del document["metadata"]["annotations"]
    return document


def picker_config_doc(name: str, profile_refs: list[dict[str, Any]]) -> dict[str, Any]:
    """An EndpointPickerConfig: stale filter, two renamed scorers, max-score picker."""
    return {
        "apiVersion": "inference.networking.x-k8s.io/v1alpha1",
        "kind": "EndpointPickerConfig",
        "metadata": {"name": name},
        "plugins": [
            {"type": "stale-filter"},
            {"type": "queue-scorer", "name": "short-queue"},
            {"type": "prefix-cache-scorer", "name": "warm-prefix",
             "parameters": {"blockSizeTokens": 16}},
            {"type": "max-score-picker"},
        ],
        "schedulingProfiles": [{"name": CUSTOM_PROFILE, "plugins": profile_refs}],
    }


CUSTOM_PROFILE_REFS: list[dict[str, Any]] = [
    {"pluginRef": "stale-filter"},
    {"pluginRef": "short-queue", "weight": 1},
    {"pluginRef": "warm-prefix", "weight": 5},
    {"pluginRef": "max-score-picker"},
]


def stale_flags(metrics_text: str) -> dict[str, float]:
    """``inferlane_endpoint_stale`` by endpoint address (only endpoints the gauge lists)."""
    return {sample.labels["endpoint"]: sample.value
            for family in text_string_to_metric_families(metrics_text)
            for sample in family.samples if sample.name == "inferlane_endpoint_stale"}


def prefix_cache_hits(sim: SimFleet, replicas: list[SimReplica]) -> float:
    return sum(metric_value(sim.metrics(r), "vllm:prefix_cache_hits_total") for r in replicas)


def pool_key(pool: str) -> str:
    return f"{NAMESPACE}/{pool}"


# -- the module stack --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PickerStack:
    sim: SimFleet
    narrow: SimFleet
    gateway: GatewayProcess
    config: Path

    def replicas(self, model: str) -> list[SimReplica]:
        fleet = self.narrow if model == MODEL_NARROW else self.sim
        return fleet.serving(model)

    def addresses(self, model: str) -> set[str]:
        return {r.address for r in self.replicas(model)}

    @property
    def stale_replica(self) -> SimReplica:
        return self.sim.serving(MODEL_STALE)[0]


def picker_stack_config(sim: SimFleet, narrow: SimFleet, *,
                        extra_route: bool = False) -> list[dict[str, Any]]:
    stale_servers = replica_docs("stale", sim.serving(MODEL_STALE), {"app": "stale"})
    stale_servers[0]["spec"]["metricsPath"] = BAD_METRICS_PATH
    config_pool = pool_doc("pool-config", {"app": "config"})
    config_pool["metadata"]["annotations"] = {
        "inferlane.dev/endpoint-picker-config": PICKER_CONFIG}
    documents = [
        gateway_doc(),
        *replica_docs("affinity", sim.serving(MODEL_PREFIX), {"app": "affinity"}),
        *replica_docs("rr", sim.serving(MODEL_RR), {"app": "rr"}),
        *replica_docs("latency", sim.serving(MODEL_LATENCY), {"app": "latency"}),
        *replica_docs("config", sim.serving(MODEL_CONFIG), {"app": "config"}),
        *stale_servers,
        *replica_docs("narrow", narrow.serving(MODEL_NARROW), {"app": "narrow"}),
        unannotated_pool_doc("pool-affinity", {"app": "affinity"}),
        pool_doc("pool-rr", {"app": "rr"}),
        pool_doc("pool-latency", {"app": "latency"}, load_balancing="predicted-latency"),
        config_pool,
        unannotated_pool_doc("pool-stale", {"app": "stale"}),
        unannotated_pool_doc("pool-narrow", {"app": "narrow"}),
        picker_config_doc(PICKER_CONFIG, CUSTOM_PROFILE_REFS),
        route_doc("route-affinity", [MODEL_PREFIX], "pool-affinity"),
        route_doc("route-rr", [MODEL_RR], "pool-rr"),
        route_doc("route-latency", [MODEL_LATENCY], "pool-latency"),
        route_doc("route-config", [MODEL_CONFIG], "pool-config"),
        route_doc("route-stale", [MODEL_STALE], "pool-stale"),
        route_doc("route-narrow", [MODEL_NARROW], "pool-narrow"),
    ]
    if extra_route:  # a new model name for pool-rr, rewritten to the one its replicas serve
        documents += [route_doc("route-extra", [MODEL_EXTRA], "pool-rr"),
                      rewrite_doc("rewrite-extra", "pool-rr", MODEL_EXTRA, {MODEL_RR: 1})]
    return documents


@pytest.fixture(scope="module")
def picker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PickerStack]:
    log_dir = tmp_path_factory.mktemp("picker")
    with running_stack(log_dir) as stack:
        models = [model for model, count in FLEET.items() for _ in range(count)]
        sim = stack.sim(replicas=len(models), models=models, time_scale=0.05)
        # One sequence at a time: concurrent requests queue up (vllm:num_requests_waiting).
        narrow = stack.sim(replicas=3, models=[MODEL_NARROW], time_scale=0.1,
                           extra=["--max-num-seqs", "1"])
        config = write_config(log_dir / "gateway.yaml", picker_stack_config(sim, narrow))
        gateway = stack.gateway(config, ["--reload-interval", RELOAD_INTERVAL])
        yield PickerStack(sim, narrow, gateway, config)


def fresh_metrics(picker: PickerStack, *models: str) -> None:
    """Wait until the gateway has scraped every endpoint of ``models``."""
    wanted = set().union(*(picker.addresses(model) for model in models))

    def check() -> bool | None:
        flags = stale_flags(picker.gateway.metrics())
        return all(flags.get(address) == 0 for address in wanted) or None

    picker.gateway.wait_until(check, f"fresh metrics of {sorted(wanted)}", STALE_WAIT)


# -- prefix affinity -----------------------------------------------------------------------------


def test_shared_prefix_sticks_to_one_endpoint_and_beats_round_robin_on_cache_hits(
        picker: PickerStack) -> None:
    fresh_metrics(picker, MODEL_PREFIX)
    pools = {MODEL_PREFIX: picker.replicas(MODEL_PREFIX), MODEL_RR: picker.replicas(MODEL_RR)}
    hits_before = {model: prefix_cache_hits(picker.sim, replicas)
                   for model, replicas in pools.items()}
    prefixes = {"alpha": long_prefix("alpha"), "beta": long_prefix("beta")}
    landed: dict[str, dict[str, list[str]]] = {model: {} for model in pools}

    with picker.gateway.client() as client:
        for model in pools:
            for tag, prefix in prefixes.items():
                landed[model][tag] = [ask(client, model, prefix, question)[0]
                                      for question in QUESTIONS]

    hits = {model: prefix_cache_hits(picker.sim, replicas) - hits_before[model]
            for model, replicas in pools.items()}
    # The default profile: every request of a prefix on the endpoint that served the first.
    for tag, endpoints in landed[MODEL_PREFIX].items():
        assert len(set(endpoints)) == 1, (tag, endpoints)
        assert set(endpoints) <= picker.addresses(MODEL_PREFIX)
    # Round-robin spreads the same workload, so each replica pays for the prefix once.
    spread = {endpoint for endpoints in landed[MODEL_RR].values() for endpoint in endpoints}
    assert spread == picker.addresses(MODEL_RR), landed[MODEL_RR]
    assert hits[MODEL_PREFIX] > hits[MODEL_RR] > 0, (hits, landed)


async def test_requests_spill_to_other_endpoints_when_the_prefix_endpoint_is_overloaded(
        picker: PickerStack) -> None:
    await asyncio.to_thread(fresh_metrics, picker, MODEL_NARROW)
    prefix = long_prefix("spill")
    workers, per_worker = 12, 4
    answered: Counter[str] = Counter()
    failures: list[str] = []

    async with picker.gateway.async_client() as client:
        async def one(question: str) -> str:
            raw = await client.chat.completions.with_raw_response.create(
                model=MODEL_NARROW, messages=messages(prefix, question), max_tokens=120)
            completion = raw.parse()
            assert completion.choices[0].message.content
            return raw.headers["x-inferlane-endpoint"]

        warm = await one("warm-up")  # this endpoint now holds the prefix

        async def worker(worker_id: int) -> None:
            for i in range(per_worker):
                try:
                    answered[await one(f"worker {worker_id} question {i}")] += 1
                except (openai.APIError, KeyError) as error:
                    failures.append(f"{type(error).__name__}: {error}")

        await asyncio.gather(*(worker(w) for w in range(workers)))

    assert not failures, failures
    assert sum(answered.values()) == workers * per_worker
    assert set(answered) <= picker.addresses(MODEL_NARROW)
    # One sequence at a time: the warm endpoint's queue passes the saturation threshold (5
    # waiting) under twelve concurrent clients, and the scheduler sends the rest elsewhere.
    assert len(answered) > 1, (warm, answered)


def stream(client: openai.OpenAI, model: str, prefix: str, question: str) -> str:
    """One streamed chat completion, read to the end; the endpoint that answered."""
    with client.chat.completions.with_streaming_response.create(
            model=model, messages=messages(prefix, question), max_tokens=2,
            stream=True) as response:
        assert list(response.parse())
        return response.headers["x-inferlane-endpoint"]


def match_ratio(gateway: GatewayProcess, pool: str) -> tuple[float, float]:
    """``inferlane_prefix_index_match_ratio`` count and sum of ``pool``."""
    text = gateway.metrics()
    return (metric_value(text, "inferlane_prefix_index_match_ratio_count", pool=pool_key(pool)),
            metric_value(text, "inferlane_prefix_index_match_ratio_sum", pool=pool_key(pool)))


def test_prefix_index_match_ratio_records_each_streamed_request(picker: PickerStack) -> None:
    gateway = picker.gateway
    count_before, sum_before = match_ratio(gateway, "pool-affinity")
    prefix = long_prefix("ratio-streamed")
    with gateway.client() as client:
        endpoints = {stream(client, MODEL_PREFIX, prefix, q) for q in QUESTIONS[:4]}

    def observed() -> tuple[float, float] | None:  # once each stream has ended: poll
        count, total = match_ratio(gateway, "pool-affinity")
        return (count - count_before, total - sum_before) if count - count_before >= 4 else None

    count, total = poll(observed, "four prefix match observations", 10.0)
    assert count == 4
    assert len(endpoints) == 1, endpoints
    # The first request found nothing, the three others almost all of their blocks.
    assert 0.5 * count < total < count, (count, total)


def test_prefix_index_match_ratio_records_non_streamed_requests_too(picker: PickerStack) -> None:
    gateway = picker.gateway
    count_before, _ = match_ratio(gateway, "pool-affinity")
    prefix = long_prefix("ratio-plain")
    with gateway.client() as client:
        for question in QUESTIONS[:4]:
            ask(client, MODEL_PREFIX, prefix, question)
        stream(client, MODEL_PREFIX, prefix, "streamed last")

    # The streamed request is observed after its stream ends, the others before they answer:
    # once it shows, all five would have.
    def observed() -> float | None:
        count = match_ratio(gateway, "pool-affinity")[0] - count_before
        return count if count >= 1 else None

    count = poll(observed, "the streamed request's observation", 10.0)
    assert count == 5


# -- staleness ------------------------------------------------------------------------------------


def wait_for_bad_metrics_path(picker: PickerStack) -> None:
    """Until the bad path has failed a scrape and every other endpoint of the pool is fresh."""
    gateway = picker.gateway
    stale = picker.stale_replica.address
    fresh = picker.addresses(MODEL_STALE) - {stale}

    def scraped() -> bool | None:
        text = gateway.metrics()
        flags = stale_flags(text)
        return (flags.get(stale) == 1 and all(flags.get(a) == 0 for a in fresh)
                and metric_value(text, "inferlane_metrics_scrape_errors_total") > 0) or None

    gateway.wait_until(scraped, "the bad metrics path to fail and the others to scrape",
                       STALE_WAIT)


def test_endpoint_whose_metrics_path_404s_is_reported_stale(picker: PickerStack) -> None:
    stale = picker.stale_replica
    wait_for_bad_metrics_path(picker)

    # The server behind the bad metrics path is alive and serves completions itself.
    with openai.OpenAI(base_url=f"{stale.url}/v1", api_key="unused", max_retries=0,
                       timeout=30.0) as direct:
        assert direct.chat.completions.create(
            model=MODEL_STALE, messages=messages("direct", "hello"), max_tokens=1).choices
    assert stale_flags(picker.gateway.metrics())[stale.address] == 1


def test_endpoint_whose_metrics_path_404s_is_never_picked(picker: PickerStack) -> None:
    stale = picker.stale_replica
    fresh = picker.addresses(MODEL_STALE) - {stale.address}
    wait_for_bad_metrics_path(picker)

    with picker.gateway.client() as client:
        answered = Counter(
            ask(client, MODEL_STALE, long_prefix(f"stale-{i}") if i % 2 else f"short {i}",
                f"question {i}")[0]
            for i in range(24))  # were it picked at random: (2/3)**24 to miss it

    assert set(answered) <= fresh, answered


def two_fleet_stack(stack: Stack, tmp_path: Path, model: str,
                    extra: list[str]) -> tuple[SimFleet, SimFleet, GatewayProcess]:
    """Two one-replica sim processes behind one default-profile pool, both scraped."""
    first = stack.sim(models=[model])
    second = stack.sim(models=[model])
    config = write_config(tmp_path / "gateway.yaml", [
        gateway_doc(),
        *replica_docs("first", first.replicas, {"app": "two"}),
        *replica_docs("second", second.replicas, {"app": "two"}),
        unannotated_pool_doc("pool-two", {"app": "two"}),
        route_doc("route-two", [model], "pool-two"),
    ])
    gateway = stack.gateway(config, extra)
    addresses = {first.replicas[0].address, second.replicas[0].address}
    gateway.wait_until(
        lambda: all(stale_flags(gateway.metrics()).get(a) == 0 for a in addresses) or None,
        "both fleets scraped", STALE_WAIT)
    return first, second, gateway


def kill(fleet: SimFleet) -> None:
    fleet.send_signal(signal.SIGKILL)
    fleet.wait_exit(timeout=10.0)


def kill_and_wait_stale(gateway: GatewayProcess, victim: SimFleet) -> None:
    kill(victim)
    address = victim.replicas[0].address
    gateway.wait_until(lambda: stale_flags(gateway.metrics()).get(address) == 1 or None,
                       f"{address} to turn stale after its sim was killed", STALE_WAIT)


def test_killed_fleet_becomes_stale(stack: Stack, tmp_path: Path) -> None:
    first, second, gateway = two_fleet_stack(stack, tmp_path, "m-kill", [])

    kill_and_wait_stale(gateway, second)

    assert stale_flags(gateway.metrics()).get(first.replicas[0].address) == 0


def test_killed_fleet_is_not_picked_once_stale(stack: Stack, tmp_path: Path) -> None:
    model = "m-kill-avoid"
    first, second, gateway = two_fleet_stack(stack, tmp_path, model, [])
    kill_and_wait_stale(gateway, second)

    with gateway.client() as client:
        answered = {ask(client, model, f"after the kill {i}", "hello")[0] for i in range(12)}

    assert answered == {first.replicas[0].address}


def test_scheduler_staleness_follows_stale_after(stack: Stack, tmp_path: Path) -> None:
    model = "m-stale-after"
    first, second, gateway = two_fleet_stack(stack, tmp_path, model, ["--stale-after", "60"])
    survivor, victim = first.replicas[0].address, second.replicas[0].address
    errors_before = gateway.metric("inferlane_metrics_scrape_errors_total")

    kill(second)
    gateway.wait_until(
        lambda: gateway.metric("inferlane_metrics_scrape_errors_total") > errors_before or None,
        "scrapes of the killed fleet to fail", STALE_WAIT)
    time.sleep(3.0)  # past the 2 s default, far below --stale-after 60

    # Failing scrapes alone do not make it stale before 60 s ...
    assert stale_flags(gateway.metrics()).get(victim) == 0
    # ... but a request that meets its refused connection does: its last scrape is dropped, so
    # the scheduler passes over it (instead of sending more requests to a dead server that
    # looked idle) until a scrape answers again.
    refused = False
    eligible: list[str] = []
    with gateway.client(timeout=10.0) as client:
        for i in range(20):
            endpoint, headers = ask(client, model, f"stale-after {i}", "hi", debug=True)
            assert endpoint == survivor  # the dead one may be tried first: then retried here
            if headers["x-inferlane-attempts"] != "1":
                refused = True
                continue
            scores = headers["x-inferlane-scores"]
            eligible.append(scores.split("; ")[1])
            if refused:
                # Flow control already leaves a stale endpoint out of the candidates.
                assert victim not in scores, scores
                break
    assert eligible, "no request went straight to the survivor"
    if refused:
        assert eligible[-1] in ("eligible=1/1", "eligible=1/2"), eligible
        assert stale_flags(gateway.metrics()).get(victim) == 1
    else:  # the picker never chose the dead one: only scrape staleness, which waits for 60 s
        assert set(eligible) == {"eligible=2/2"}, eligible
        assert stale_flags(gateway.metrics()).get(victim) == 0


# -- explanations and EndpointPickerConfig --------------------------------------------------------


def parse_scores(header: str) -> tuple[str, str, list[tuple[str, dict[str, float]]]]:
    """``profile``, ``eligible`` and (address, {total and each scorer}) per candidate."""
    parts = header.split("; ")
    assert parts[0].startswith("profile="), header
    assert parts[1].startswith("eligible="), header
    candidates: list[tuple[str, dict[str, float]]] = []
    for part in parts[2:]:
        if part.startswith("predicted_ttft="):
            continue
        address, *fields = part.split(" ")
        values = dict(field.split("=", 1) for field in fields)
        candidates.append((address, {k: float(v.rstrip("s")) for k, v in values.items()}))
    return parts[0].removeprefix("profile="), parts[1].removeprefix("eligible="), candidates


def test_debug_header_explains_the_pick_chosen_endpoint_first(picker: PickerStack) -> None:
    fresh_metrics(picker, MODEL_PREFIX)
    pool = picker.addresses(MODEL_PREFIX)
    with picker.gateway.client() as client:
        endpoint, headers = ask(client, MODEL_PREFIX, long_prefix("debug"), "why?", debug=True)
        _, plain = ask(client, MODEL_PREFIX, long_prefix("debug"), "no debug")

    profile, eligible, candidates = parse_scores(headers["x-inferlane-scores"])
    assert profile == "default"
    assert re.fullmatch(rf"\d/{len(pool)}", eligible), eligible
    assert candidates[0][0] == endpoint
    assert {address for address, _ in candidates} <= pool
    for _, values in candidates:
        assert set(values) == {"total", *DEFAULT_SCORERS}, values
        assert all(0 <= values[s] <= 1 for s in DEFAULT_SCORERS), values
    assert candidates[0][1]["total"] == max(values["total"] for _, values in candidates)
    assert "x-inferlane-scores" not in plain


def test_debug_header_is_on_streamed_responses_too(picker: PickerStack) -> None:
    with picker.gateway.client() as client, \
            client.chat.completions.with_streaming_response.create(
                model=MODEL_RR, messages=messages("stream", "debug me"), max_tokens=3,
                stream=True, extra_headers=DEBUG) as response:
        chunks = list(response.parse())
        headers = dict(response.headers.items())

    assert chunks
    profile, _, candidates = parse_scores(headers["x-inferlane-scores"])
    assert profile == "round-robin"
    assert candidates[0][0] == headers["x-inferlane-endpoint"]


def test_pool_uses_its_endpoint_picker_config(picker: PickerStack) -> None:
    fresh_metrics(picker, MODEL_CONFIG)
    prefix = long_prefix("config")
    with picker.gateway.client() as client:
        answers = [ask(client, MODEL_CONFIG, prefix, question, debug=True)
                   for question in QUESTIONS[:4]]

    for endpoint, headers in answers:
        profile, _, candidates = parse_scores(headers["x-inferlane-scores"])
        assert profile == CUSTOM_PROFILE
        assert candidates[0][0] == endpoint
        assert set(candidates[0][1]) == {"total", *CUSTOM_SCORERS}
    # Its prefix scorer (weight 5) keeps the prefix on one endpoint, as the profile says.
    assert len({endpoint for endpoint, _ in answers}) == 1, answers
    later = parse_scores(answers[-1][1]["x-inferlane-scores"])[2][0][1]
    assert later["warm-prefix"] > 0.9, later


def test_validate_rejects_a_profile_referring_to_an_undefined_plugin(tmp_path: Path) -> None:
    pool = pool_doc("pool-m", {"app": "m"})
    pool["metadata"]["annotations"] = {"inferlane.dev/endpoint-picker-config": "broken"}
    refs = [*CUSTOM_PROFILE_REFS[:2], {"pluginRef": "cold-prefix", "weight": 2}]
    config = write_config(tmp_path / "picker.yaml", [
        gateway_doc(),
        *replica_docs("m", [SimReplica(0, "m", "127.0.0.1:18000")], {"app": "m"}),
        pool,
        route_doc("route-m", ["m"], "pool-m"),
        picker_config_doc("broken", refs),
    ])
    text = config.read_text()
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "cold-prefix" in row)

    result = subprocess.run(inferlane_command("validate", str(config)), capture_output=True,
                            text=True, timeout=60.0, check=False)

    assert result.returncode == 1, (result.stdout, result.stderr)
    assert (f"{config}:{line}: EndpointPickerConfig/broken: "
            "schedulingProfiles[0].plugins[2].pluginRef:") in result.stderr, result.stderr
    assert "cold-prefix" in result.stderr


# -- predicted latency ----------------------------------------------------------------------------


async def test_predicted_latency_pool_observes_ttft_predictions_and_picker_durations(
        picker: PickerStack) -> None:
    gateway = picker.gateway
    key = pool_key("pool-latency")
    await asyncio.to_thread(fresh_metrics, picker, MODEL_LATENCY)

    def count(name: str) -> float:
        return gateway.metric(name, pool=key)

    picks = [await asyncio.to_thread(count, "inferlane_picker_duration_seconds_count")]
    async with gateway.async_client() as client:
        for i in range(5):
            stream = await client.chat.completions.create(
                model=MODEL_LATENCY, messages=messages(long_prefix("latency"), f"q{i}"),
                max_tokens=4, stream=True)
            async with stream:
                assert [chunk async for chunk in stream]
            picks.append(await asyncio.to_thread(count, "inferlane_picker_duration_seconds_count"))

    # One pick per request, observed before the request is forwarded.
    assert [b - a for a, b in itertools.pairwise(picks)] == [1.0] * 5, picks
    # Observed after the stream ends, so poll.
    await poll_async(
        lambda: count("inferlane_ttft_prediction_ratio_count") > 0 or None,
        "a TTFT prediction ratio to be observed", 10.0)


# -- hot reload -----------------------------------------------------------------------------------


def test_reload_that_keeps_the_pool_keeps_its_prefix_affinity(picker: PickerStack) -> None:
    gateway = picker.gateway
    fresh_metrics(picker, MODEL_PREFIX)
    prefixes = [long_prefix(f"reload-{i}") for i in range(4)]
    with gateway.client() as client:
        before = {}
        for prefix in prefixes:
            first = ask(client, MODEL_PREFIX, prefix, "first")[0]
            assert ask(client, MODEL_PREFIX, prefix, "second")[0] == first
            before[prefix] = first
        generation = gateway.generation()

        write_config(picker.config,
                     picker_stack_config(picker.sim, picker.narrow, extra_route=True))
        gateway.wait_until(lambda: gateway.generation() > generation or None,
                           "the reload to be applied", RELOAD_WAIT)
        assert ask(client, MODEL_EXTRA, "new route", "hi")[0] in picker.addresses(MODEL_RR)

        after = {prefix: ask(client, MODEL_PREFIX, prefix, "after the reload")[0]
                 for prefix in prefixes}

    assert after == before
