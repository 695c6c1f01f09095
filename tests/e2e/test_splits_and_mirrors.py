"""Weighted and sticky splits across a pool and a provider, and RequestMirror shadowing.

One stack for the module: one ``inferlane sim`` replica (pool ``pool-sim``), three fake
providers (``arm``: the provider arm of the splits and a primary; ``shadow``: a mirror target
that answers; ``sink``: a mirror target scripted to hang) and one gateway. Every case has its
own model name, so its own route and its own (primary model, shadow model) pair in
``/admin/shadow``.

Shares are checked against binomial bounds of five standard deviations: with the request
counts used here a correct gateway fails them with a probability below one in a million, and a
gateway that ignores the weights or the mirror percent fails them every time. The mirror tests
never measure time: a primary that waited for its hanging shadow would outlast the client's
timeout, which is far below the shadow's (infinite) delay and the mirror timeout.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    GatewayProcess,
    SimFleet,
    gateway_doc,
    inferlane_command,
    metric_value,
    model_server_doc,
    poll,
    pool_doc,
    running_stack,
    write_config,
)
from .provider_harness import FakeProvider, start_fake_provider
from .traffic_harness import (
    PROVIDER_KEY,
    Reply,
    admin_json,
    key_file,
    mirror_filter,
    pool_backend,
    pool_label,
    post_chat,
    provider_backend,
    provider_doc,
    provider_label,
    route,
    route_label,
    traffic_policy,
)

pytestmark = pytest.mark.e2e

BASE = "sm-base"
M_SPLIT = "sm-split"  # pool-sim 80 / arm 20
M_STICKY = "sm-sticky"  # pool-sim 1 / arm 1, sticky on header x-user-id
M_HANG = "sm-mirror-hang"  # pool-sim, mirrored to sink; mirror maxConcurrent 1
M_TIMEOUT = "sm-mirror-timeout"  # arm, mirrored to sink; mirror timeout 1s
M_COMPARE = "sm-compare"  # arm, mirrored to shadow
M_HALF = "sm-half"  # pool-sim, half mirrored to shadow
M_LIMITED = "sm-limited"  # arm, mirrored to shadow; RateLimitPolicy of LIMIT requests/minute
POOL_MODELS = (M_SPLIT, M_STICKY, M_HANG, M_HALF)
SHADOW_MODEL = "sm-shadow-model"  # Provider shadow's modelNameOverride
SINK_MODEL = "sm-sink-model"  # Provider sink's modelNameOverride

SPLIT_REQUESTS = 400
SPLIT_POOL_WEIGHT, SPLIT_PROVIDER_WEIGHT = 80, 20
HALF_REQUESTS = 200
USERS = 30
ROUNDS = 3
LIMIT = 3
CLIENTS = 8  # concurrent client threads for the big batches
CLIENT_TIMEOUT = 10.0  # far below the hanging shadow's delay (forever) and the mirror timeout
SHADOW_TIMEOUT = 30.0  # bound on mirror copies being accounted in /admin/shadow
USER_HEADER = "x-user-id"

POOL = pool_label("pool-sim")
ARM = provider_label("arm")


@dataclass(frozen=True, slots=True)
class SplitStack:
    gateway: GatewayProcess
    arm: FakeProvider
    shadow: FakeProvider
    sink: FakeProvider


def split_config(sim: SimFleet, arm: FakeProvider, shadow: FakeProvider, sink: FakeProvider,
                 credentials: Path) -> list[dict[str, Any]]:
    (replica,) = sim.replicas
    to_shadow = mirror_filter(provider_backend("shadow"))
    to_sink = mirror_filter(provider_backend("sink"))
    return [
        gateway_doc(),
        model_server_doc("sim", replica.address, [BASE, *POOL_MODELS], {"app": "sim"}),
        pool_doc("pool-sim", {"app": "sim"}),
        provider_doc("arm", arm, credentials),
        provider_doc("shadow", shadow, credentials, modelNameOverride=SHADOW_MODEL),
        provider_doc("sink", sink, credentials, modelNameOverride=SINK_MODEL),
        route("r-split", M_SPLIT, [pool_backend("pool-sim", SPLIT_POOL_WEIGHT),
                                   provider_backend("arm", SPLIT_PROVIDER_WEIGHT)]),
        route("r-sticky", M_STICKY, [pool_backend("pool-sim", 1), provider_backend("arm", 1)],
              sessionPersistence={"type": "Header", "sessionName": USER_HEADER}),
        route("r-hang", M_HANG, [pool_backend("pool-sim")], filters=[to_sink]),
        traffic_policy("p-hang", "r-hang", mirror={"maxConcurrent": 1, "timeout": "60s"}),
        route("r-timeout", M_TIMEOUT, [provider_backend("arm")], filters=[to_sink]),
        traffic_policy("p-timeout", "r-timeout", mirror={"timeout": "1s"}),
        route("r-compare", M_COMPARE, [provider_backend("arm")], filters=[to_shadow]),
        route("r-half", M_HALF, [pool_backend("pool-sim")],
              filters=[mirror_filter(provider_backend("shadow"), percent=50)]),
        route("r-limited", M_LIMITED, [provider_backend("arm")], filters=[to_shadow]),
        {"apiVersion": "inferlane.dev/v1alpha1", "kind": "RateLimitPolicy",
         "metadata": {"name": "limited"},
         "spec": {"targetRefs": [{"kind": "HTTPRoute", "name": "r-limited"}],
                  "rateLimit": {"rules": [{"name": "few", "requestsPerMinute": LIMIT}]}}},
    ]


@pytest.fixture(scope="module")
def split_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SplitStack]:
    log_dir = tmp_path_factory.mktemp("splits-and-mirrors")
    loras = [arg for model in POOL_MODELS for arg in ("--lora", model)]
    with running_stack(log_dir) as started, contextlib.ExitStack() as fakes:
        sim = started.sim(replicas=1, models=[BASE], time_scale=0.01, extra=loras)
        arm, shadow, sink = (
            fakes.enter_context(start_fake_provider(log_dir, name=name, api_key=PROVIDER_KEY))
            for name in ("arm", "shadow", "sink"))
        config = write_config(log_dir / "gateway.yaml",
                              split_config(sim, arm, shadow, sink, key_file(log_dir)))
        yield SplitStack(started.gateway(config), arm, shadow, sink)


@pytest.fixture(autouse=True)
def clean_fakes(split_stack: SplitStack) -> None:
    for fake in (split_stack.arm, split_stack.shadow, split_stack.sink):
        fake.clear()


def binomial_bounds(trials: int, share: float, sigmas: float = 5.0) -> tuple[float, float]:
    """The range ``trials * share ± sigmas`` standard deviations of a binomial count."""
    mean = trials * share
    spread = sigmas * math.sqrt(trials * share * (1 - share))
    return mean - spread, mean + spread


def concurrently(count: int, send: Callable[[int], Reply]) -> list[Reply]:
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        return list(pool.map(send, range(count)))


def shadow_pair(gateway: GatewayProcess, primary_model: str, shadow_model: str
                ) -> dict[str, Any] | None:
    pairs = admin_json(gateway, "/admin/shadow")["pairs"]
    found = [p for p in pairs
             if p["primary_model"] == primary_model and p["shadow_model"] == shadow_model]
    assert len(found) <= 1, pairs
    return found[0] if found else None


def settled_pair(gateway: GatewayProcess, primary_model: str, shadow_model: str,
                 ready: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    """Poll ``/admin/shadow`` until the pair's summary satisfies ``ready``."""
    last: list[dict[str, Any] | None] = [None]

    def check() -> dict[str, Any] | None:
        last[0] = pair = shadow_pair(gateway, primary_model, shadow_model)
        return pair if pair is not None and ready(pair) else None

    try:
        return poll(check, what, SHADOW_TIMEOUT)
    except AssertionError as error:
        raise AssertionError(f"{error}; last summary: {last[0]}\n{gateway.describe()}") from None


def shadow_metric(gateway: GatewayProcess, name: str, primary_model: str, shadow_model: str,
                  **labels: str) -> float:
    return metric_value(gateway.metrics(), name, primary_model=primary_model,
                        shadow_model=shadow_model, **labels)


# -- splits ------------------------------------------------------------------------------------


def test_weighted_split_sends_each_arm_its_share(split_stack: SplitStack) -> None:
    gateway = split_stack.gateway
    replies = concurrently(SPLIT_REQUESTS, lambda i: post_chat(
        gateway, M_SPLIT, content=f"split {i}", max_tokens=2, timeout=CLIENT_TIMEOUT * 6))

    assert all(reply.status == 200 for reply in replies), \
        [reply.describe() for reply in replies if reply.status != 200][:3]
    served = Counter(reply.backend for reply in replies)
    assert set(served) == {POOL, ARM}
    low, high = binomial_bounds(SPLIT_REQUESTS, SPLIT_POOL_WEIGHT / (SPLIT_POOL_WEIGHT
                                                                    + SPLIT_PROVIDER_WEIGHT))
    assert low <= served[POOL] <= high, served
    assert all(reply.attempts == 1 for reply in replies)
    assert len(split_stack.arm.requests()) == served[ARM]
    metrics = gateway.metrics()
    for arm in (POOL, ARM):
        assert metric_value(metrics, "inferlane_backend_requests_total",
                            route=route_label("r-split"), arm=arm, backend=arm,
                            status="200") == served[arm]


def test_sticky_split_keeps_each_user_on_one_arm(split_stack: SplitStack) -> None:
    users = [f"user-{n}" for n in range(USERS)]
    arms: dict[str, set[str | None]] = {user: set() for user in users}
    for round_number in range(ROUNDS):
        for user in users:
            reply = post_chat(split_stack.gateway, M_STICKY, content=f"{user} round {round_number}",
                              max_tokens=2, headers={USER_HEADER: user})
            assert reply.status == 200, reply.describe()
            arms[user].add(reply.backend)

    assert all(len(seen) == 1 for seen in arms.values()), arms
    used = Counter(next(iter(seen)) for seen in arms.values())
    assert set(used) == {POOL, ARM}, used  # a split, not everyone on one arm
    assert len(split_stack.arm.requests()) == ROUNDS * used[ARM]


# -- mirrors -----------------------------------------------------------------------------------


def test_hanging_shadow_never_delays_the_primary_and_excess_copies_are_dropped(
        split_stack: SplitStack) -> None:
    gateway = split_stack.gateway
    requests = 4
    split_stack.sink.script(*[{"hang": True}] * requests)

    # The first copy hangs in the sink (mirror timeout 60 s) and holds the only mirror slot.
    replies = [post_chat(gateway, M_HANG, content=f"hang {i}", max_tokens=2,
                         timeout=CLIENT_TIMEOUT) for i in range(requests)]

    for reply in replies:
        assert reply.status == 200, reply.describe()
        assert reply.backend == POOL
    pair = settled_pair(gateway, M_HANG, SINK_MODEL,
                        lambda p: p["dropped"]["overloaded"] == requests - 1,
                        "the copies beyond maxConcurrent to be dropped")
    assert pair["mirrored"] == requests
    assert pair["dropped"] == {"overloaded": requests - 1, "timeout": 0, "error": 0}
    assert pair["compared"] == 0  # the one copy in flight is still hanging
    assert len(split_stack.sink.requests()) == 1
    assert shadow_metric(gateway, "inferlane_shadow_requests_total", M_HANG, SINK_MODEL,
                         outcome="dropped_overloaded") == requests - 1


def dropped_total(pair: dict[str, Any] | None) -> int:
    return 0 if pair is None else sum(pair["dropped"].values())


def test_shadow_slower_than_the_mirror_timeout_is_dropped(split_stack: SplitStack) -> None:
    gateway = split_stack.gateway
    split_stack.sink.script({"hang": True})

    reply = post_chat(gateway, M_TIMEOUT, content="time me out", timeout=CLIENT_TIMEOUT)

    assert reply.status == 200, reply.describe()
    assert reply.backend == ARM
    assert reply.text() == "arm answers: time me out"
    pair = settled_pair(gateway, M_TIMEOUT, SINK_MODEL, lambda p: dropped_total(p) == 1,
                        "the hanging copy to be dropped at the mirror timeout")
    assert pair["mirrored"] == 1
    assert pair["compared"] == 0
    assert pair["dropped"]["overloaded"] == 0
    assert len(split_stack.sink.requests()) == 1
    assert pair["dropped"]["timeout"] == 1
    assert shadow_metric(gateway, "inferlane_shadow_requests_total", M_TIMEOUT, SINK_MODEL,
                         outcome="dropped_timeout") == 1


def test_every_copy_slower_than_the_mirror_timeout_counts_as_timeout(
        split_stack: SplitStack) -> None:
    gateway = split_stack.gateway
    batches, per_batch = 3, 15  # per_batch below the default maxConcurrent (16)
    before = shadow_pair(gateway, M_TIMEOUT, SINK_MODEL)
    for batch in range(batches):
        split_stack.sink.script(*[{"hang": True}] * per_batch)
        replies = concurrently(per_batch, lambda i: post_chat(
            gateway, M_TIMEOUT, content=f"slow {i}", timeout=CLIENT_TIMEOUT))
        assert all(reply.status == 200 for reply in replies)
        expected = dropped_total(before) + (batch + 1) * per_batch

        def batch_dropped(pair: dict[str, Any], expected: int = expected) -> bool:
            return dropped_total(pair) == expected

        # Each batch's copies end before the next batch starts: none is dropped "overloaded".
        settled_pair(gateway, M_TIMEOUT, SINK_MODEL, batch_dropped,
                     f"batch {batch} of hanging copies to be dropped")

    after = shadow_pair(gateway, M_TIMEOUT, SINK_MODEL)
    assert after is not None
    reasons = {reason: count - (before["dropped"][reason] if before else 0)
               for reason, count in after["dropped"].items()}
    assert reasons == {"overloaded": 0, "timeout": batches * per_batch, "error": 0}


def test_mirror_copies_are_not_charged_to_rate_limits(split_stack: SplitStack) -> None:
    gateway = split_stack.gateway
    replies = [post_chat(gateway, M_LIMITED, content=f"limited {i}") for i in range(LIMIT)]

    for reply in replies:
        assert reply.status == 200, reply.describe()
    # Every copy reached the shadow, yet the budget of LIMIT requests was not used up by them.
    settled_pair(gateway, M_LIMITED, SHADOW_MODEL, lambda p: p["compared"] == LIMIT,
                 "every copy to be compared")
    assert len(split_stack.shadow.requests()) == LIMIT
    over = post_chat(gateway, M_LIMITED, content="one too many")
    assert over.status == 429, over.describe()  # the limit itself is enforced
    assert len(split_stack.arm.requests()) == LIMIT


# The fakes answer "<name> answers: <prompt>": "arm answers: compare 0" and "shadow answers:
# compare 0" share 3 of 5 distinct words and 2 of 4 distinct word pairs, a similarity of 5/9.
EXPECTED_SIMILARITY = 5 / 9


def test_compared_outcomes_appear_in_admin_shadow_and_shadow_report(
        split_stack: SplitStack) -> None:
    gateway = split_stack.gateway
    requests = 4
    for i in range(requests):
        reply = post_chat(gateway, M_COMPARE, content=f"compare {i}")
        assert reply.status == 200, reply.describe()
        assert reply.text() == f"arm answers: compare {i}"  # the client never sees the shadow

    pair = settled_pair(gateway, M_COMPARE, SHADOW_MODEL, lambda p: p["compared"] == requests,
                        "every copy to be compared")
    assert pair["mirrored"] == requests
    assert pair["dropped"] == {"overloaded": 0, "timeout": 0, "error": 0}
    assert pair["status_agreement"] == 1.0
    assert pair["samples"] == requests
    assert pair["similarity_mean"] == pytest.approx(EXPECTED_SIMILARITY)
    assert pair["similarity_p50"] == pytest.approx(EXPECTED_SIMILARITY)
    assert pair["primary"]["success_rate"] == 1.0
    assert pair["shadow"]["success_rate"] == 1.0
    shadow_bodies = [r["body"] for r in split_stack.shadow.requests()]
    assert [body["model"] for body in shadow_bodies] == [SHADOW_MODEL] * requests
    assert shadow_metric(gateway, "inferlane_shadow_status_agreement_total", M_COMPARE,
                         SHADOW_MODEL, agree="true") == requests
    assert shadow_metric(gateway, "inferlane_shadow_similarity_count", M_COMPARE,
                         SHADOW_MODEL) == requests

    table = shadow_report("--gateway", gateway.base_url)
    rows = [table_cells(line) for line in table.splitlines() if line.startswith("│")]
    index = next((i for i, row in enumerate(rows) if row[0] == M_COMPARE), None)
    assert index is not None, table
    primary_row, shadow_row = rows[index], rows[index + 1]  # a pair takes two lines
    assert shadow_row[0] == f"→ {SHADOW_MODEL}", table
    # mirrored, compared, dropped, agree, ok (primary / shadow)
    assert primary_row[1:6] == [str(requests), str(requests), "0", "100.0%", "100.0%"], table
    assert shadow_row[5] == "100.0%", table
    assert primary_row[10] == f"{EXPECTED_SIMILARITY:.2f} / {EXPECTED_SIMILARITY:.2f}", table
    assert primary_row[11] == str(requests), table  # samples

    reported = json.loads(shadow_report("--gateway", gateway.base_url, "--json"))
    (ours,) = [p for p in reported["pairs"]
               if (p["primary_model"], p["shadow_model"]) == (M_COMPARE, SHADOW_MODEL)]
    assert ours == shadow_pair(gateway, M_COMPARE, SHADOW_MODEL)


def table_cells(line: str) -> list[str]:
    """The cells of one line of a rich table."""
    return [cell.strip() for cell in line.strip().strip("│").split("│")]


def shadow_report(*args: str) -> str:
    """Stdout of ``inferlane shadow-report ARGS`` (wide, so no cell is cut)."""
    result = subprocess.run(inferlane_command("shadow-report", *args), capture_output=True,
                            text=True, timeout=60, check=False,
                            env={**os.environ, "COLUMNS": "220"})
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_mirror_percent_copies_about_that_share(split_stack: SplitStack) -> None:
    gateway = split_stack.gateway
    replies = concurrently(HALF_REQUESTS, lambda i: post_chat(
        gateway, M_HALF, content=f"half {i}", max_tokens=2, timeout=CLIENT_TIMEOUT * 6))

    assert all(reply.status == 200 for reply in replies), \
        [reply.describe() for reply in replies if reply.status != 200][:3]
    pair = settled_pair(gateway, M_HALF, SHADOW_MODEL,
                        lambda p: p["compared"] + sum(p["dropped"].values()) == p["mirrored"],
                        "every copy to be compared")
    low, high = binomial_bounds(HALF_REQUESTS, 0.5)
    assert low <= pair["mirrored"] <= high, pair
    assert pair["dropped"] == {"overloaded": 0, "timeout": 0, "error": 0}
    assert len(split_stack.shadow.requests()) == pair["mirrored"]

