"""Flow control through real processes: shedding, strict priority, fairness, TTLs and deadlines.

One module stack: a ``load`` sim fleet whose replicas run two sequences at a time (one replica
behind ``pool-flow``, flow control on by default; one behind ``pool-open``, annotated
``inferlane.dev/flow-control: disabled``), a ``paused`` fleet (one sequence at a time, behind
``pool-pause`` and ``pool-ttl``, whose picker configs count an endpoint saturated as soon as one
request waits), and one gateway.

Overload is real for the shedding tests: many concurrent requests against one replica. For the
ordering tests the pool is held saturated for as long as a test needs by stopping the paused
fleet (SIGSTOP): its metrics go stale, and a stale endpoint counts as saturated, so every
arrival queues; SIGCONT lets the queue drain. What was queued, and in which order it was served,
is read from the gateway's queue gauges and from the order responses complete in (one sequence
at a time upstream). Nothing asserts on durations.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from .conftest import (
    POLL_INTERVAL,
    GatewayProcess,
    SimFleet,
    assert_openai_error,
    gateway_doc,
    metric_value,
    poll_async,
    pool_doc,
    replica_docs,
    route_doc,
    running_stack,
    write_config,
)

pytestmark = pytest.mark.e2e

MODEL_FLOW = "m-flow"  # pool-flow: default profile, flow control on by default
MODEL_FLOW_BATCH = "m-flow-batch"  # an InferenceModel of pool-flow: Sheddable, sent as m-flow
MODEL_OPEN = "m-open"  # pool-open: flow control disabled by annotation
MODEL_PAUSE = "m-pause"  # pool-pause: saturated once one request waits; default TTL (30s)
MODEL_TTL = "m-ttl"  # pool-ttl: like pool-pause, queue TTL 1s
POOL_FLOW = "default/pool-flow"
POOL_OPEN = "default/pool-open"
POOL_PAUSE = "default/pool-pause"
POOL_TTL = "default/pool-ttl"
OBJECTIVE_HEADER = "x-gateway-inference-objective"
FAIRNESS_HEADER = "x-gateway-inference-fairness-id"
DEADLINE_HEADER = "x-inferlane-deadline-ms"
STALE_AFTER = "1"  # seconds: how soon a stopped fleet's endpoints count as saturated
STATE_WAIT = 15.0  # bounded wait for a gauge or a staleness flag to change
REPLY_TIMEOUT = aiohttp.ClientTimeout(total=60)
REJECT_REASONS = ("shed", "displaced", "queue-full", "ttl", "deadline")
PRIORITY_HIGH, PRIORITY_LOW = 5, 1


def objective_doc(name: str, pool: str, priority: int | None = None,
                  annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
        "kind": "InferenceObjective",
        "metadata": {"name": name, "annotations": dict(annotations or {})},
        "spec": {"poolRef": {"name": pool}},
    }
    if priority is not None:
        doc["spec"]["priority"] = priority
    return doc


def one_at_a_time_picker(name: str, flow_control: Mapping[str, Any] | None = None
                         ) -> dict[str, Any]:
    """A picker config whose pool counts as saturated once one request waits upstream."""
    doc: dict[str, Any] = {
        "apiVersion": "inference.networking.x-k8s.io/v1alpha1",
        "kind": "EndpointPickerConfig",
        "metadata": {"name": name},
        "plugins": [{"type": "queue-scorer"}, {"type": "max-score-picker"}],
        "schedulingProfiles": [{"name": "queue", "plugins": [
            {"pluginRef": "queue-scorer"}, {"pluginRef": "max-score-picker"}]}],
        "saturationDetector": {"queueDepthThreshold": 1},
    }
    if flow_control is not None:
        doc["flowControl"] = dict(flow_control)
    return doc


def annotated_pool(name: str, labels: dict[str, str],
                   annotations: Mapping[str, str]) -> dict[str, Any]:
    doc = pool_doc(name, labels)
    doc["metadata"]["annotations"] = dict(annotations)
    return doc


@dataclass(frozen=True, slots=True)
class FlowStack:
    load: SimFleet
    paused: SimFleet
    gateway: GatewayProcess


def flow_stack_config(load: SimFleet, paused: SimFleet) -> list[dict[str, Any]]:
    return [
        gateway_doc(),
        *replica_docs("flow", load.serving(MODEL_FLOW), {"app": "flow"}),
        *replica_docs("open", load.serving(MODEL_OPEN), {"app": "open"}),
        *replica_docs("pause", paused.serving(MODEL_PAUSE), {"app": "pause"}),
        *replica_docs("ttl", paused.serving(MODEL_TTL), {"app": "ttl"}),
        annotated_pool("pool-flow", {"app": "flow"}, {}),
        annotated_pool("pool-open", {"app": "open"}, {"inferlane.dev/flow-control": "disabled"}),
        annotated_pool("pool-pause", {"app": "pause"},
                       {"inferlane.dev/endpoint-picker-config": "one-at-a-time"}),
        annotated_pool("pool-ttl", {"app": "ttl"},
                       {"inferlane.dev/endpoint-picker-config": "short-ttl"}),
        one_at_a_time_picker("one-at-a-time"),
        one_at_a_time_picker("short-ttl", {"defaultRequestTTL": "1s"}),
        objective_doc("critical", "pool-flow", 2),
        objective_doc("interactive", "pool-flow", 0, {"inferlane.dev/ttft-target": "2s"}),
        objective_doc("open-batch", "pool-open", -1),
        objective_doc("high", "pool-pause", PRIORITY_HIGH),
        objective_doc("low", "pool-pause", PRIORITY_LOW),
        objective_doc("hurry", "pool-pause", 0, {"inferlane.dev/deadline": "500ms"}),
        objective_doc("pause-batch", "pool-pause", -1),
        {"apiVersion": "inference.networking.x-k8s.io/v1alpha2", "kind": "InferenceModel",
         "metadata": {"name": "flow-batch"},
         "spec": {"modelName": MODEL_FLOW_BATCH, "criticality": "Sheddable",
                  "poolRef": {"name": "pool-flow"}, "targetModels": [{"name": MODEL_FLOW}]}},
        route_doc("route-flow", [MODEL_FLOW, MODEL_FLOW_BATCH], "pool-flow"),
        route_doc("route-open", [MODEL_OPEN], "pool-open"),
        route_doc("route-pause", [MODEL_PAUSE], "pool-pause"),
        route_doc("route-ttl", [MODEL_TTL], "pool-ttl"),
    ]


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlowStack]:
    log_dir = tmp_path_factory.mktemp("flow-control")
    with running_stack(log_dir) as stack:
        load = stack.sim(replicas=2, models=[MODEL_FLOW, MODEL_OPEN], time_scale=0.25,
                         extra=["--max-num-seqs", "2"])
        paused = stack.sim(replicas=2, models=[MODEL_PAUSE, MODEL_TTL], time_scale=1.0,
                           extra=["--max-num-seqs", "1"])
        config = write_config(log_dir / "gateway.yaml", flow_stack_config(load, paused))
        gateway = stack.gateway(config, ["--stale-after", STALE_AFTER])
        yield FlowStack(load, paused, gateway)


# -- helpers -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: Any  # parsed JSON, or the raw text of a stream

    @property
    def code(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            code = self.body["error"].get("code")
            return str(code) if code is not None else None
        return None


async def chat(session: aiohttp.ClientSession, gateway: GatewayProcess, model: str, *,
               objective: str | None = None, fairness: str | None = None,
               headers: Mapping[str, str] | None = None, max_tokens: int = 4,
               content: str = "hello") -> Reply:
    sent = dict(headers or {})
    if objective is not None:
        sent[OBJECTIVE_HEADER] = objective
    if fairness is not None:
        sent[FAIRNESS_HEADER] = fairness
    body = {"model": model, "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens}
    async with session.post(f"{gateway.api_base}/chat/completions", json=body, headers=sent,
                            timeout=REPLY_TIMEOUT) as response:
        text = await response.text()
        parsed: Any = text
        if response.content_type == "application/json":
            parsed = await response.json()
        return Reply(response.status, {k.lower(): v for k, v in response.headers.items()},
                     parsed)


def assert_retry_after(reply: Reply) -> None:
    value = reply.headers.get("retry-after")
    assert value is not None, reply
    assert value.isdigit(), reply
    assert int(value) >= 1, reply


def rejections(gateway: GatewayProcess, pool: str) -> dict[str, float]:
    text = gateway.metrics()
    return {reason: metric_value(text, "inferlane_flow_rejected_total", pool=pool, reason=reason)
            for reason in REJECT_REASONS}


def queued(gateway: GatewayProcess, pool: str, priority: int | None = None) -> float:
    labels = {"pool": pool} if priority is None else {"pool": pool, "priority": str(priority)}
    return gateway.metric("inferlane_flow_queue_requests", **labels)


async def wait_queued(gateway: GatewayProcess, pool: str, priority: int | None,
                      count: int) -> None:
    await poll_async(lambda: queued(gateway, pool, priority) == count or None,
                     f"{count} queued requests of priority {priority} in {pool}", STATE_WAIT)


def received(fleet: SimFleet, model: str) -> float:
    (replica,) = fleet.serving(model)
    return metric_value(fleet.metrics(replica), "inferlane_sim_requests_received_total")


def stale(gateway: GatewayProcess, fleet: SimFleet) -> list[float]:
    text = gateway.metrics()
    return [metric_value(text, "inferlane_endpoint_stale", endpoint=r.address)
            for r in fleet.replicas]


@contextlib.asynccontextmanager
async def paused(stack: FlowStack) -> AsyncIterator[None]:
    """The paused fleet stopped until the block ends; entered once the gateway counts its
    endpoints stale (so saturated). Always resumed, then waits until they are fresh again."""
    stack.paused.send_signal(signal.SIGSTOP)
    try:
        await poll_async(lambda: stale(stack.gateway, stack.paused) == [1.0, 1.0] or None,
                         "the stopped fleet's endpoints to go stale", STATE_WAIT)
        yield
    finally:
        stack.paused.send_signal(signal.SIGCONT)


async def fresh(stack: FlowStack) -> None:
    await poll_async(lambda: stale(stack.gateway, stack.paused) == [0.0, 0.0] or None,
                     "the resumed fleet's endpoints to be fresh", STATE_WAIT)


async def assert_still_serving(session: aiohttp.ClientSession, stack: FlowStack) -> None:
    for model in (MODEL_FLOW, MODEL_PAUSE, MODEL_TTL, MODEL_OPEN):
        reply = await chat(session, stack.gateway, model)
        assert reply.status == 200, (model, reply)
    for pool in (POOL_FLOW, POOL_PAUSE, POOL_TTL):
        await wait_queued(stack.gateway, pool, None, 0)


# -- shedding under real overload ------------------------------------------------------------

OVERLOAD_EACH = 24  # requests per class: critical, standard, sheddable


async def test_overload_sheds_only_sheddable_requests(flow: FlowStack) -> None:
    gateway = flow.gateway
    before = await asyncio.to_thread(rejections, gateway, POOL_FLOW)
    classes = {"critical": {"model": MODEL_FLOW, "objective": "critical"},
               "standard": {"model": MODEL_FLOW},
               "sheddable": {"model": MODEL_FLOW_BATCH}}  # by InferenceModel criticality
    async with aiohttp.ClientSession() as session:
        async def one(kind: str) -> tuple[str, Reply]:
            spec = classes[kind]
            return kind, await chat(session, gateway, spec["model"],
                                    objective=spec.get("objective"), max_tokens=20)

        kinds = [kind for _ in range(OVERLOAD_EACH) for kind in classes]  # interleaved
        replies = await asyncio.gather(*(one(kind) for kind in kinds))

        outcomes = Counter((kind, reply.status, reply.code) for kind, reply in replies)
        for kind, reply in replies:
            if kind != "sheddable" or reply.status == 200:
                assert reply.status == 200, (kind, reply, outcomes)
                continue
            assert reply.status == 429, (kind, reply, outcomes)
            assert_openai_error(reply.body, code="request_shed")
            assert reply.body["error"]["type"] == "server_overloaded", reply
            assert_retry_after(reply)
        shed = sum(1 for kind, reply in replies if reply.status == 429)
        assert shed >= 1, f"one replica running 2 sequences never saturated: {outcomes}"

        after = await asyncio.to_thread(rejections, gateway, POOL_FLOW)
        delta = {reason: after[reason] - before[reason] for reason in REJECT_REASONS}
        assert delta == {"shed": shed, "displaced": 0, "queue-full": 0, "ttl": 0,
                         "deadline": 0}, outcomes
        await assert_still_serving(session, flow)


async def test_a_pool_with_flow_control_disabled_never_sheds(flow: FlowStack) -> None:
    gateway, load = flow.gateway, flow.load
    (replica,) = load.serving(MODEL_OPEN)
    most_waiting = 0.0
    async with aiohttp.ClientSession() as session:
        tasks = [asyncio.ensure_future(chat(session, gateway, MODEL_OPEN, objective="open-batch",
                                            max_tokens=20))
                 for _ in range(30)]
        for _ in range(2000):  # bounded: sample the replica's queue while the load runs
            if all(task.done() for task in tasks):
                break
            text = await asyncio.to_thread(load.metrics, replica)
            most_waiting = max(most_waiting, metric_value(text, "vllm:num_requests_waiting"))
            await asyncio.sleep(POLL_INTERVAL)
        replies = await asyncio.gather(*tasks)
    assert [r.status for r in replies] == [200] * len(replies), [r for r in replies
                                                                  if r.status != 200]
    # The load went straight to the replica, past the point where pool-flow sheds (5 waiting).
    assert most_waiting >= 5, most_waiting
    text = await asyncio.to_thread(gateway.metrics)
    assert metric_value(text, "inferlane_flow_rejected_total", pool=POOL_OPEN) == 0
    assert 'pool="default/pool-open"' not in "\n".join(
        line for line in text.splitlines() if line.startswith("inferlane_pool_saturation"))


# -- order of dispatch -----------------------------------------------------------------------

HIGH, LOW = 4, 4


async def test_higher_priority_requests_queued_later_are_dispatched_first(
        flow: FlowStack) -> None:
    gateway = flow.gateway
    completed: list[str] = []
    samples: list[tuple[float, float]] = []  # (high queued, low queued) while draining

    async with aiohttp.ClientSession() as session:
        async def one(tag: str, objective: str) -> Reply:
            reply = await chat(session, gateway, MODEL_PAUSE, objective=objective,
                               max_tokens=10)
            completed.append(tag)
            return reply

        tasks: list[asyncio.Future[Reply]] = []
        async with paused(flow):
            for i in range(LOW):  # one at a time, so arrival order is known
                tasks.append(asyncio.ensure_future(one(f"low-{i}", "low")))
                await wait_queued(gateway, POOL_PAUSE, PRIORITY_LOW, i + 1)
            for i in range(HIGH):
                tasks.append(asyncio.ensure_future(one(f"high-{i}", "high")))
                await wait_queued(gateway, POOL_PAUSE, PRIORITY_HIGH, i + 1)
            # Meanwhile a sheddable request meets the saturated pool: refused, not queued.
            shed = await chat(session, gateway, MODEL_PAUSE, objective="pause-batch")
            assert shed.status == 429, shed
            assert_openai_error(shed.body, code="request_shed")
            assert_retry_after(shed)
            assert not any(task.done() for task in tasks), completed

        for _ in range(2000):  # bounded: watch the band gauges while the queue drains
            if all(task.done() for task in tasks):
                break
            text = await asyncio.to_thread(gateway.metrics)
            samples.append(
                (metric_value(text, "inferlane_flow_queue_requests", pool=POOL_PAUSE,
                              priority=str(PRIORITY_HIGH)),
                 metric_value(text, "inferlane_flow_queue_requests", pool=POOL_PAUSE,
                              priority=str(PRIORITY_LOW))))
            await asyncio.sleep(POLL_INTERVAL)
        replies = await asyncio.gather(*tasks)
        await fresh(flow)
        await assert_still_serving(session, flow)

    assert [r.status for r in replies] == [200] * (LOW + HIGH), replies
    # Strict priority: no low request left the queue while a high one waited.
    assert all(low == LOW for high, low in samples if high > 0), samples
    # One sequence at a time upstream, and the gateway lets at most two go at once, so the
    # completion order is the dispatch order up to swaps of neighbours.
    assert all(tag.startswith("high") for tag in completed[:HIGH - 1]), completed
    assert all(tag.startswith("low") for tag in completed[-(LOW - 1):]), completed


HEAVY, LIGHT = 10, 2


async def test_flows_of_one_band_take_turns(flow: FlowStack) -> None:
    gateway = flow.gateway
    completed: list[str] = []

    async with aiohttp.ClientSession() as session:
        async def one(flow_id: str) -> Reply:
            reply = await chat(session, gateway, MODEL_PAUSE, objective="low",
                               fairness=flow_id, max_tokens=10)
            completed.append(flow_id)
            return reply

        tasks: list[asyncio.Future[Reply]] = []
        async with paused(flow):
            # The heavy flow queues ten requests first, then the light flow two.
            for i, flow_id in enumerate(["heavy"] * HEAVY + ["light"] * LIGHT):
                tasks.append(asyncio.ensure_future(one(flow_id)))
                await wait_queued(gateway, POOL_PAUSE, PRIORITY_LOW, i + 1)
        replies = await asyncio.gather(*tasks)
        await fresh(flow)

    assert [r.status for r in replies] == [200] * (HEAVY + LIGHT), replies
    assert Counter(completed) == {"heavy": HEAVY, "light": LIGHT}
    # Round-robin between flows: the light flow's two requests go within the first four
    # dispatches (first come, first served would put them last); neighbours may swap.
    last_light = max(i for i, flow_id in enumerate(completed) if flow_id == "light")
    assert last_light <= 4, completed


# -- time limits and disconnects -----------------------------------------------------------------


async def test_queued_requests_that_run_out_of_time_are_answered_503(flow: FlowStack) -> None:
    gateway = flow.gateway
    before = {pool: await asyncio.to_thread(rejections, gateway, pool)
              for pool in (POOL_PAUSE, POOL_TTL)}
    received_before = {model: await asyncio.to_thread(received, flow.paused, model)
                       for model in (MODEL_PAUSE, MODEL_TTL)}

    async with aiohttp.ClientSession() as session:
        async with paused(flow):
            # The client's budget wins over the objective's: still queued at resume.
            patient = asyncio.ensure_future(chat(session, gateway, MODEL_PAUSE,
                                                 objective="hurry",
                                                 headers={DEADLINE_HEADER: "60000"}))
            ttl, deadline, objective_deadline = await asyncio.gather(
                chat(session, gateway, MODEL_TTL),  # the pool's queue TTL is 1s
                chat(session, gateway, MODEL_PAUSE, headers={DEADLINE_HEADER: "300"}),
                chat(session, gateway, MODEL_PAUSE, objective="hurry"),  # deadline 500ms
            )
            assert not patient.done()
        patient_reply = await patient
        await fresh(flow)

        assert ttl.status == 503, ttl
        assert_openai_error(ttl.body, code="queue_timeout")
        for reply in (deadline, objective_deadline):
            assert reply.status == 503, reply
            assert_openai_error(reply.body, code="deadline_exceeded")
        for reply in (ttl, deadline, objective_deadline):
            assert reply.body["error"]["type"] == "service_unavailable", reply
            assert_retry_after(reply)
        assert patient_reply.status == 200, patient_reply

        after = {pool: await asyncio.to_thread(rejections, gateway, pool)
                 for pool in (POOL_PAUSE, POOL_TTL)}
        assert after[POOL_TTL]["ttl"] - before[POOL_TTL]["ttl"] == 1
        assert after[POOL_PAUSE]["deadline"] - before[POOL_PAUSE]["deadline"] == 2
        # Expired requests never reached the model server; the patient one did.
        assert await asyncio.to_thread(received, flow.paused, MODEL_TTL) \
            == received_before[MODEL_TTL]
        assert await asyncio.to_thread(received, flow.paused, MODEL_PAUSE) \
            == received_before[MODEL_PAUSE] + 1
        await assert_still_serving(session, flow)


@pytest.mark.parametrize("value", ["soon", "0", "-250", "nan", "inf", ""])
async def test_a_malformed_deadline_header_is_a_400(flow: FlowStack, value: str) -> None:
    async with aiohttp.ClientSession() as session:
        reply = await chat(session, flow.gateway, MODEL_FLOW, headers={DEADLINE_HEADER: value})
        assert reply.status == 400, reply
        error = assert_openai_error(reply.body)
        assert error["type"] == "invalid_request_error", error
        assert DEADLINE_HEADER in error["message"], error
        ok = await chat(session, flow.gateway, MODEL_FLOW, headers={DEADLINE_HEADER: "60000"})
        assert ok.status == 200, ok


async def test_a_client_that_leaves_the_queue_does_not_block_it(flow: FlowStack) -> None:
    gateway = flow.gateway
    received_before = await asyncio.to_thread(received, flow.paused, MODEL_PAUSE)

    async with aiohttp.ClientSession() as session, aiohttp.ClientSession() as leaving:
        async with paused(flow):
            first = asyncio.ensure_future(chat(session, gateway, MODEL_PAUSE, objective="low"))
            await wait_queued(gateway, POOL_PAUSE, PRIORITY_LOW, 1)
            gone = asyncio.ensure_future(chat(leaving, gateway, MODEL_PAUSE, objective="high"))
            await wait_queued(gateway, POOL_PAUSE, PRIORITY_HIGH, 1)
            last = asyncio.ensure_future(chat(session, gateway, MODEL_PAUSE, objective="low"))
            await wait_queued(gateway, POOL_PAUSE, PRIORITY_LOW, 2)

            gone.cancel()  # closes its connection while it waits at the head of the queue
            with contextlib.suppress(asyncio.CancelledError):
                await gone
            await leaving.close()
            await wait_queued(gateway, POOL_PAUSE, PRIORITY_HIGH, 0)
            assert await asyncio.to_thread(queued, gateway, POOL_PAUSE, PRIORITY_LOW) == 2
        replies = await asyncio.gather(first, last)
        await fresh(flow)

        assert [r.status for r in replies] == [200, 200], replies
        await wait_queued(gateway, POOL_PAUSE, None, 0)
        # The request whose client left was never sent upstream.
        assert await asyncio.to_thread(received, flow.paused, MODEL_PAUSE) \
            == received_before + 2
        await assert_still_serving(session, flow)


# -- SLO attainment ------------------------------------------------------------------------------


def slo_total(gateway: GatewayProcess, objective: str) -> float:
    return gateway.metric("inferlane_objective_ttft_slo_total", pool=POOL_FLOW,
                          objective=objective)


async def test_an_objective_the_pool_does_not_have_runs_as_the_default_and_is_counted(
        flow: FlowStack) -> None:
    def unknown() -> float:
        return flow.gateway.metric("inferlane_objective_unknown_total", pool=POOL_FLOW)

    before = unknown()
    async with aiohttp.ClientSession() as session:
        reply = await chat(session, flow.gateway, MODEL_FLOW, objective="no-such-objective")
        assert reply.status == 200, reply
        named = await chat(session, flow.gateway, MODEL_FLOW, objective="critical")
        assert named.status == 200, named
    assert unknown() == before + 1


def test_streamed_requests_of_an_objective_with_a_ttft_target_are_counted(
        flow: FlowStack) -> None:
    gateway = flow.gateway
    before = slo_total(gateway, "interactive")
    with gateway.client() as client:
        for i in range(3):
            with client.chat.completions.with_streaming_response.create(
                    model=MODEL_FLOW, messages=[{"role": "user", "content": f"stream {i}"}],
                    max_tokens=4, stream=True,
                    extra_headers={OBJECTIVE_HEADER: "interactive"}) as response:
                assert response.status_code == 200
                assert list(response.parse())
        # Neither a non-streamed request nor an objective without a target counts.
        completion = client.chat.completions.create(
            model=MODEL_FLOW, messages=[{"role": "user", "content": "whole"}], max_tokens=4,
            extra_headers={OBJECTIVE_HEADER: "interactive"})
        assert completion.choices[0].message.content
        with client.chat.completions.with_streaming_response.create(
                model=MODEL_FLOW, messages=[{"role": "user", "content": "critical"}],
                max_tokens=4, stream=True,
                extra_headers={OBJECTIVE_HEADER: "critical"}) as response:
            assert list(response.parse())

    text = gateway.metrics()
    assert metric_value(text, "inferlane_objective_ttft_slo_total", pool=POOL_FLOW,
                        objective="interactive") - before == 3
    assert metric_value(text, "inferlane_objective_ttft_slo_total", objective="critical") == 0
    outcomes = {sample_outcome for sample_outcome in ("met", "missed")
                if metric_value(text, "inferlane_objective_ttft_slo_total", pool=POOL_FLOW,
                                objective="interactive", outcome=sample_outcome) > 0}
    assert outcomes, text
