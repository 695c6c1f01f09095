"""Hot reload under load: config rewrites, an invalid file and SIGHUP without one failed request.

Two valid configs route the same model to different pools (replicas 0-1 vs 2-3 of one sim
fleet). While eight clients keep requesting, the file is rewritten back and forth, once to an
invalid file (rejected: the old config keeps serving) and reloaded once by SIGHUP. Each step
waits for the gateway to report the new generation (``/readyz``) and for more requests to
complete before the next, so the load really spans every reload.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest

from .conftest import (
    GatewayProcess,
    SimFleet,
    gateway_doc,
    metric_value,
    poll_async,
    pool_doc,
    replica_docs,
    rewrite_doc,
    route_doc,
    running_stack,
    write_config,
)

pytestmark = pytest.mark.e2e

MODEL = "m-reload"
RELOAD_WAIT = 15.0  # bounded wait for one reload to be applied (poll interval is 0.2s)
INVALID_CONFIG = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: broken}
spec:
  parentRefs: [{name: no-such-gateway}]
  rules: [{backendRefs: [{kind: InferencePool, name: no-such-pool}]}]
"""


@dataclass(frozen=True, slots=True)
class ReloadStack:
    sim: SimFleet
    gateway: GatewayProcess
    config: Path
    endpoints: dict[str, frozenset[str]]  # pool name -> its endpoint addresses

    def write(self, pool: str) -> None:
        write_config(self.config, routed_to(self.sim, pool))


def routed_to(sim: SimFleet, pool: str) -> list[dict[str, Any]]:
    """Both pools exist; the route sends MODEL to ``pool``."""
    return [
        gateway_doc(),
        *replica_docs("left", sim.replicas[:2], {"side": "left"}),
        *replica_docs("right", sim.replicas[2:], {"side": "right"}),
        pool_doc("pool-left", {"side": "left"}),
        pool_doc("pool-right", {"side": "right"}),
        route_doc("route", [MODEL], pool),
    ]


@pytest.fixture(scope="module")
def reload_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReloadStack]:
    log_dir = tmp_path_factory.mktemp("reload")
    with running_stack(log_dir) as stack:
        sim = stack.sim(replicas=4, models=[MODEL], time_scale=0.05)
        config = write_config(log_dir / "gateway.yaml", routed_to(sim, "pool-left"))
        gateway = stack.gateway(config, ["--reload-interval", "0.2"])
        yield ReloadStack(sim, gateway, config, {
            "pool-left": frozenset(r.address for r in sim.replicas[:2]),
            "pool-right": frozenset(r.address for r in sim.replicas[2:]),
        })


@dataclass(slots=True)
class Load:
    """Outcome of the load: every request's status (or error) and answering endpoint."""

    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    endpoints: Counter[str] = field(default_factory=Counter)
    done: int = 0


async def run_load(gateway: GatewayProcess, load: Load, stop: asyncio.Event, *,
                   clients: int, max_requests: int, deadline: float) -> None:
    """``clients`` SDK clients (own connection pools) requesting until ``stop`` or a bound."""
    started = 0

    async def worker(worker_id: int) -> None:
        nonlocal started
        async with gateway.async_client() as client:
            while not stop.is_set() and started < max_requests and time.monotonic() < deadline:
                started += 1
                await one_request(client, worker_id)

    async def one_request(client: openai.AsyncOpenAI, worker_id: int) -> None:
        try:
            raw = await client.chat.completions.with_raw_response.create(
                model=MODEL, messages=[{"role": "user", "content": f"client {worker_id}"}],
                max_tokens=4)
            raw.parse()
            load.statuses[raw.status_code] += 1
            load.endpoints[raw.headers["x-inferlane-endpoint"]] += 1
        except (openai.APIError, KeyError) as error:  # KeyError: no x-inferlane-endpoint
            load.failures.append(f"{type(error).__name__}: {error}")
        load.done += 1

    await asyncio.gather(*(worker(i) for i in range(clients)))


async def generation(gateway: GatewayProcess) -> int:
    return await asyncio.to_thread(gateway.generation)


async def wait_for_generation(gateway: GatewayProcess, wanted: int) -> None:
    await poll_async(lambda: gateway.generation() >= wanted or None,
                     f"config generation {wanted}", RELOAD_WAIT)
    assert await generation(gateway) == wanted, "more reloads than files written"


async def wait_for_progress(load: Load, more: int) -> None:
    target = load.done + more
    await poll_async(lambda: load.done >= target or None, f"{more} more completed requests",
                     RELOAD_WAIT)


async def test_reloads_under_load_fail_no_request(reload_stack: ReloadStack) -> None:
    gateway = reload_stack.gateway
    rejected_before = await asyncio.to_thread(
        gateway.metric, "inferlane_config_reloads_total", result="rejected")
    successes_before = await asyncio.to_thread(
        gateway.metric, "inferlane_config_reloads_total", result="success")
    current = await generation(gateway)
    load = Load()
    stop = asyncio.Event()

    async def rewrite_configs() -> None:
        nonlocal current
        try:
            for pool in ("pool-right", "pool-left", "pool-right"):
                await wait_for_progress(load, 20)
                reload_stack.write(pool)
                current += 1
                await wait_for_generation(gateway, current)
            # An invalid file is rejected and the old config keeps serving.
            await wait_for_progress(load, 20)
            write_config(reload_stack.config, INVALID_CONFIG)
            await poll_async(lambda: gateway.metric("inferlane_config_reloads_total",
                                                    result="rejected") > rejected_before or None,
                             "the invalid config to be rejected", RELOAD_WAIT)
            assert await generation(gateway) == current
            log = gateway.stderr()
            assert "config reload rejected" in log, log[-2000:]
            assert f"{reload_stack.config}:" in log
            assert "HTTPRoute/broken: spec.parentRefs[0]" in log, log[-2000:]
            await wait_for_progress(load, 20)
            reload_stack.write("pool-left")
            current += 1
            await wait_for_generation(gateway, current)
            # SIGHUP reloads the (unchanged) file.
            await wait_for_progress(load, 20)
            gateway.send_signal(signal.SIGHUP)
            current += 1
            await wait_for_generation(gateway, current)
            await wait_for_progress(load, 20)
            reload_stack.write("pool-right")
            current += 1
            await wait_for_generation(gateway, current)
            await wait_for_progress(load, 20)
        finally:
            stop.set()

    await asyncio.gather(
        rewrite_configs(),
        run_load(gateway, load, stop, clients=8, max_requests=3000,
                 deadline=time.monotonic() + 90),
    )

    assert not load.failures, f"{len(load.failures)} failed: {load.failures[:5]}"
    assert set(load.statuses) == {200}, load.statuses
    assert load.done >= 7 * 20
    # Both endpoint sets served during the run.
    assert set(load.endpoints) == set().union(*reload_stack.endpoints.values())

    # The last valid config routes to the right pool, and only there.
    after = Counter[str]()
    async with gateway.async_client() as client:
        for _ in range(8):
            raw = await client.chat.completions.with_raw_response.create(
                model=MODEL, messages=[{"role": "user", "content": "after"}], max_tokens=1)
            after[raw.headers["x-inferlane-endpoint"]] += 1
    assert set(after) == reload_stack.endpoints["pool-right"]

    metrics = await asyncio.to_thread(gateway.metrics)
    successes = metric_value(metrics, "inferlane_config_reloads_total", result="success")
    assert successes - successes_before == 6  # 5 file rewrites + SIGHUP, the invalid one not
    assert metric_value(metrics, "inferlane_config_reloads_total",
                        result="rejected") - rejected_before == 1
    assert metric_value(metrics, "inferlane_config_generation") == current


async def test_stream_started_before_a_reload_finishes_after_it(
        reload_stack: ReloadStack) -> None:
    gateway = reload_stack.gateway
    tokens = 4000
    current = await generation(gateway)
    # Whichever pool serves now, the reload moves the model to the other one.
    async with gateway.async_client() as client:
        raw = await client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": "long story"}],
            max_tokens=tokens, stream=True)
        endpoint = raw.headers["x-inferlane-endpoint"]
        old_pool = next(p for p, eps in reload_stack.endpoints.items() if endpoint in eps)
        new_pool = next(p for p in reload_stack.endpoints if p != old_pool)
        stream = raw.parse()
        content = 0
        finish: list[str | None] = []
        async with stream:
            iterator = stream.__aiter__()
            while content < 3:
                chunk = await iterator.__anext__()
                content += bool(chunk.choices and chunk.choices[0].delta.content)

            reload_stack.write(new_pool)
            await wait_for_generation(gateway, current + 1)
            moved = await client.chat.completions.with_raw_response.create(
                model=MODEL, messages=[{"role": "user", "content": "new"}], max_tokens=1)
            assert moved.headers["x-inferlane-endpoint"] in reload_stack.endpoints[new_pool]

            async for chunk in iterator:
                if chunk.choices:
                    content += bool(chunk.choices[0].delta.content)
                    finish.append(chunk.choices[0].finish_reason)

    assert content == tokens  # every token arrived: the stream was not cut by the reload
    assert finish[-1] == "length"


async def test_models_list_and_routes_follow_a_reload(reload_stack: ReloadStack) -> None:
    gateway = reload_stack.gateway
    extra_model = "m-reload-extra"
    current = await generation(gateway)
    async with gateway.async_client() as client:
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(
                model=extra_model, messages=[{"role": "user", "content": "hi"}], max_tokens=1)

        documents = routed_to(reload_stack.sim, "pool-right")
        # The new model is an alias of MODEL inside pool-left.
        documents += [route_doc("route-extra", [extra_model], "pool-left"),
                      rewrite_doc("extra", "pool-left", extra_model, {MODEL: 1})]
        write_config(reload_stack.config, documents)
        await wait_for_generation(gateway, current + 1)

        listed = {model.id async for model in client.models.list()}
        assert listed == {MODEL, extra_model}
        raw = await client.chat.completions.with_raw_response.create(
            model=extra_model, messages=[{"role": "user", "content": "hi"}], max_tokens=1)
        assert raw.parse().model == MODEL
        assert raw.headers["x-inferlane-endpoint"] in reload_stack.endpoints["pool-left"]

        reload_stack.write("pool-right")
        await wait_for_generation(gateway, current + 2)
        assert {model.id async for model in client.models.list()} == {MODEL}
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(
                model=extra_model, messages=[{"role": "user", "content": "hi"}], max_tokens=1)
