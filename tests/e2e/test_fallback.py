"""Fallback chains, retries, the retry budget and circuit breakers, end to end.

One stack for the module: an ``inferlane sim`` fleet (replica 0 healthy, replica 1 answering
every request with a 500, replica 2 never answering), a second sim process with one replica
that a test kills, two fake providers (``primary`` and ``backup``; a third Provider, ``small``,
is the primary fake with a small context window), and one gateway. Every case has its own model
name, so its own route, TrafficPolicy, retry budget and circuit breakers; the fakes are cleared
before each test, so what they recorded belongs to that test.

What the client sees is the proof: status, ``x-inferlane-backend`` (the backend that answered)
and ``x-inferlane-attempts``; the fakes' request logs show which backend was really tried, and
the gateway's metrics and ``/admin/backends`` show why. Fallbacks on each trigger are checked
with non-streamed requests that must all succeed.
"""

from __future__ import annotations

import contextlib
import json
import signal
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    HOST,
    GatewayProcess,
    SimFleet,
    SimReplica,
    free_port,
    gateway_doc,
    http_get,
    metric_value,
    model_server_doc,
    poll,
    pool_doc,
    running_stack,
    write_config,
)
from .provider_harness import FakeProvider, start_fake_provider
from .traffic_harness import (
    GENEROUS_RETRY,
    PROVIDER_KEY,
    Reply,
    admin_json,
    fallback_to,
    key_file,
    pool_backend,
    pool_label,
    post_chat,
    provider_backend,
    provider_doc,
    provider_label,
    route,
    route_label,
    sse_data,
    traffic_policy,
)

pytestmark = pytest.mark.e2e

BASE = "fb-base"
M_CONNECT = "fb-connect"  # pool-dead (a closed port) → backup
M_TIMEOUT = "fb-timeout"  # pool-hang (never answers; backendRequest 1s) → backup
M_5XX = "fb-5xx"  # pool-err (every request a 500) → backup
M_429 = "fb-429"  # primary → backup on 429
M_CONTEXT = "fb-context"  # primary → backup on context-window-exceeded only
M_PRECHECK = "fb-precheck"  # small (contextWindow 100) → backup
M_PRECHECK_POOL = "fb-precheck-pool"  # pool-small (context-window annotation 2000) → backup
M_RETRY = "fb-retry"  # primary with route retry (attempts 2, codes 500/503) → backup
M_STREAM = "fb-stream"  # primary → backup, streamed
M_BUDGET = "fb-budget"  # primary → backup with a retry budget of 0
M_COOLDOWN = "fb-cooldown"  # primary → backup, breaker: 3 failures open it for 3 s
M_PAIR = "fb-pair"  # pool-pair: sim replica 0 and the victim; no TrafficPolicy
M_PAIR_COLD = "fb-pair-cold"  # the same pool, a route first used after the victim died
M_UNUSABLE = "fb-unusable"  # pool-err → claude (cannot carry logprobs) → backup
POOL_MODELS = (M_CONNECT, M_TIMEOUT, M_5XX, M_PRECHECK_POOL, M_PAIR, M_PAIR_COLD, M_UNUSABLE)

SMALL_WINDOW = 100  # tokens, Provider "small"
POOL_WINDOW = 2000  # tokens, pool-small
COOLDOWN_SECONDS = 3  # long enough that the requests right after the opening see it open
RETRY_AFTER = "3"  # seconds a scripted 429 asks for
REQUESTS_PER_TRIGGER = 3
RECOVERY_TIMEOUT = 30.0  # bound on a cooldown or Retry-After passing and a probe succeeding

PRIMARY = provider_label("primary")
BACKUP = provider_label("backup")
SMALL = provider_label("small")


@dataclass(frozen=True, slots=True)
class FallbackStack:
    gateway: GatewayProcess
    primary: FakeProvider
    backup: FakeProvider
    survivor: SimReplica  # sim replica 0: healthy, in pool-pair and pool-small
    victim: SimFleet  # the other replica of pool-pair, in a process of its own


def fallback_config(sim: SimFleet, victim: SimFleet, dead_address: str,
                    primary: FakeProvider, backup: FakeProvider,
                    credentials: Path) -> list[dict[str, Any]]:
    healthy, failing, hanging = sim.replicas
    (lone,) = victim.replicas
    models = [BASE, *POOL_MODELS]
    every_trigger = {"retry": GENEROUS_RETRY}
    to_backup = fallback_to(provider_backend("backup"))
    return [
        gateway_doc(),
        model_server_doc("healthy", healthy.address, models, {"small": "yes", "pair": "yes"}),
        model_server_doc("victim", lone.address, models, {"pair": "yes"}),
        model_server_doc("failing", failing.address, models, {"err": "yes"}),
        model_server_doc("hanging", hanging.address, models, {"hang": "yes"}),
        model_server_doc("dead", dead_address, models, {"dead": "yes"}),
        pool_doc("pool-dead", {"dead": "yes"}),
        pool_doc("pool-hang", {"hang": "yes"}),
        pool_doc("pool-err", {"err": "yes"}),
        pool_doc("pool-pair", {"pair": "yes"}),
        {**pool_doc("pool-small", {"small": "yes"}),
         "metadata": {"name": "pool-small", "annotations": {
             "inferlane.dev/load-balancing": "round-robin",
             "inferlane.dev/context-window": str(POOL_WINDOW)}}},
        provider_doc("primary", primary, credentials),
        provider_doc("backup", backup, credentials),
        provider_doc("small", primary, credentials, contextWindow=SMALL_WINDOW),
        route("r-connect", M_CONNECT, [pool_backend("pool-dead")]),
        traffic_policy("p-connect", "r-connect", **every_trigger,
                       fallback=fallback_to(provider_backend("backup"), on=["connect-failure"])),
        route("r-timeout", M_TIMEOUT, [pool_backend("pool-hang")],
              timeouts={"backendRequest": "1s"}),
        traffic_policy("p-timeout", "r-timeout", **every_trigger,
                       fallback=fallback_to(provider_backend("backup"), on=["timeout"])),
        route("r-5xx", M_5XX, [pool_backend("pool-err")]),
        traffic_policy("p-5xx", "r-5xx", **every_trigger,
                       fallback=fallback_to(provider_backend("backup"), on=["5xx"])),
        route("r-429", M_429, [provider_backend("primary")]),
        traffic_policy("p-429", "r-429", **every_trigger,
                       fallback=fallback_to(provider_backend("backup"), on=["429"])),
        route("r-context", M_CONTEXT, [provider_backend("primary")]),
        traffic_policy("p-context", "r-context", **every_trigger,
                       fallback=fallback_to(provider_backend("backup"),
                                            on=["context-window-exceeded"])),
        route("r-precheck", M_PRECHECK, [provider_backend("small")]),
        traffic_policy("p-precheck", "r-precheck", **every_trigger, fallback=to_backup),
        route("r-precheck-pool", M_PRECHECK_POOL, [pool_backend("pool-small")]),
        traffic_policy("p-precheck-pool", "r-precheck-pool", **every_trigger,
                       fallback=to_backup),
        route("r-retry", M_RETRY, [provider_backend("primary")],
              retry={"attempts": 2, "codes": [500, 503], "backoff": "50ms"}),
        traffic_policy("p-retry", "r-retry", **every_trigger, fallback=to_backup),
        route("r-stream", M_STREAM, [provider_backend("primary")]),
        traffic_policy("p-stream", "r-stream", **every_trigger, fallback=to_backup),
        route("r-budget", M_BUDGET, [provider_backend("primary")]),
        traffic_policy("p-budget", "r-budget", fallback=to_backup,
                       retry={"budget": {"percent": 0, "minRetries": 0}}),
        route("r-cooldown", M_COOLDOWN, [provider_backend("primary")]),
        traffic_policy("p-cooldown", "r-cooldown", **every_trigger, fallback=to_backup,
                       cooldown={"consecutiveFailures": 3, "minRequests": 3, "window": "60s",
                                 "duration": f"{COOLDOWN_SECONDS}s",
                                 "maxDuration": f"{2 * COOLDOWN_SECONDS}s"}),
        {**provider_doc("claude", backup, credentials),
         "spec": {"type": "anthropic", "baseURL": backup.url,
                  "credentials": {"fromFile": str(credentials)}}},
        route("r-unusable", M_UNUSABLE, [pool_backend("pool-err")]),
        traffic_policy("p-unusable", "r-unusable", **every_trigger, fallback=fallback_to(
            provider_backend("claude"), provider_backend("backup"))),
        route("r-pair", M_PAIR, [pool_backend("pool-pair")]),
        route("r-pair-cold", M_PAIR_COLD, [pool_backend("pool-pair")]),
    ]


@pytest.fixture(scope="module")
def fallback(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FallbackStack]:
    log_dir = tmp_path_factory.mktemp("fallback")
    loras = [arg for model in POOL_MODELS for arg in ("--lora", model)]
    with running_stack(log_dir) as started, contextlib.ExitStack() as fakes:
        sim = started.sim(replicas=3, models=[BASE], time_scale=0.05,
                          extra=[*loras, "--error-rate", "1:1", "--hang-rate", "2:1"])
        victim = started.sim(replicas=1, models=[BASE], time_scale=0.05, extra=loras)
        primary = fakes.enter_context(
            start_fake_provider(log_dir, name="primary", api_key=PROVIDER_KEY))
        backup = fakes.enter_context(
            start_fake_provider(log_dir, name="backup", api_key=PROVIDER_KEY))
        dead_address = f"{HOST}:{free_port()}"  # bound and closed: connections are refused
        config = write_config(log_dir / "gateway.yaml", fallback_config(
            sim, victim, dead_address, primary, backup, key_file(log_dir)))
        gateway = started.gateway(config)
        yield FallbackStack(gateway, primary, backup, sim.replicas[0], victim)


@pytest.fixture(autouse=True)
def clean_fakes(fallback: FallbackStack) -> None:
    """Every test starts with empty scripts and request logs."""
    fallback.primary.clear()
    fallback.backup.clear()


def assert_served(reply: Reply, backend: str, attempts: int) -> None:
    assert reply.status == 200, reply.describe()
    assert reply.backend == backend, reply.describe()
    assert reply.attempts == attempts, reply.describe()


class Counters:
    """Metric samples read before an action, to assert on what the action added."""

    def __init__(self, gateway: GatewayProcess) -> None:
        self.gateway = gateway
        self.before = gateway.metrics()

    def added(self, name: str, **labels: str) -> float:
        return (metric_value(self.gateway.metrics(), name, **labels)
                - metric_value(self.before, name, **labels))


# -- fallback on each trigger -------------------------------------------------------------------


@pytest.mark.parametrize(("model", "route_name", "pool", "failure"), [
    (M_CONNECT, "r-connect", "pool-dead", "connect-failure"),
    (M_TIMEOUT, "r-timeout", "pool-hang", "timeout"),
    (M_5XX, "r-5xx", "pool-err", "5xx"),
], ids=["connect-failure", "timeout", "5xx"])
def test_pool_failure_falls_back_to_provider(fallback: FallbackStack, model: str, route_name: str,
                                             pool: str, failure: str) -> None:
    counters = Counters(fallback.gateway)
    replies = [post_chat(fallback.gateway, model, content=f"question {i}")
               for i in range(REQUESTS_PER_TRIGGER)]

    for i, reply in enumerate(replies):
        assert_served(reply, BACKUP, attempts=2)
        assert reply.text() == f"backup answers: question {i}"
    assert len(fallback.backup.requests()) == REQUESTS_PER_TRIGGER
    assert fallback.primary.requests() == []
    rule = route_label(route_name)
    assert counters.added("inferlane_fallbacks_total", route=rule, from_backend=pool_label(pool),
                          to_backend=BACKUP, reason=failure) == REQUESTS_PER_TRIGGER
    assert counters.added("inferlane_backend_errors_total", backend=pool_label(pool),
                          **{"class": failure}) == REQUESTS_PER_TRIGGER
    assert counters.added("inferlane_backend_requests_total", route=rule, arm=pool_label(pool),
                          backend=BACKUP, status="200") == REQUESTS_PER_TRIGGER


def test_429_falls_back_and_the_throttled_provider_is_skipped_until_retry_after(
        fallback: FallbackStack) -> None:
    gateway = fallback.gateway
    rule = route_label("r-429")
    fallback.primary.script({"status": 429, "retry_after": RETRY_AFTER})
    counters = Counters(gateway)

    throttled = post_chat(gateway, M_429, content="first")
    assert_served(throttled, BACKUP, attempts=2)
    assert throttled.text() == "backup answers: first"
    # Within Retry-After the primary is not even tried: the backup answers at the first attempt.
    direct = post_chat(gateway, M_429, content="second")
    assert_served(direct, BACKUP, attempts=1)

    assert len(fallback.primary.requests()) == 1
    assert len(fallback.backup.requests()) == 2
    assert counters.added("inferlane_backend_errors_total", backend=PRIMARY,
                          **{"class": "429"}) == 1
    assert counters.added("inferlane_fallbacks_total", route=rule, from_backend=PRIMARY,
                          to_backend=BACKUP, reason="429") == 1
    assert counters.added("inferlane_backend_skipped_total", route=rule, backend=PRIMARY,
                          reason="cooldown") == 1
    assert counters.added("inferlane_backend_cooldowns_total", backend=PRIMARY,
                          state="open") == 1

    # Once Retry-After has passed, the primary gets traffic again (its probe succeeds).
    def served_by_primary() -> Reply | None:
        reply = post_chat(gateway, M_429, content="again")
        assert reply.status == 200, reply.describe()
        return reply if reply.backend == PRIMARY else None

    recovered = poll(served_by_primary, "the primary to serve after Retry-After",
                     RECOVERY_TIMEOUT, interval=0.2)
    assert recovered.attempts == 1
    assert recovered.text() == "primary answers: again"
    assert counters.added("inferlane_backend_cooldowns_total", backend=PRIMARY,
                          state="closed") == 1


def test_context_window_error_body_falls_back(fallback: FallbackStack) -> None:
    fallback.primary.script({"context_window": True})
    counters = Counters(fallback.gateway)

    reply = post_chat(fallback.gateway, M_CONTEXT, content="a long story")

    assert_served(reply, BACKUP, attempts=2)
    assert reply.text() == "backup answers: a long story"
    assert len(fallback.primary.requests()) == 1
    assert len(fallback.backup.requests()) == 1
    assert counters.added("inferlane_backend_errors_total", backend=PRIMARY,
                          **{"class": "context-window-exceeded"}) == 1
    assert counters.added("inferlane_fallbacks_total", route=route_label("r-context"),
                          from_backend=PRIMARY, to_backend=BACKUP,
                          reason="context-window-exceeded") == 1


def test_failure_not_listed_in_on_is_answered_without_fallback(fallback: FallbackStack) -> None:
    fallback.primary.script({"status": 500})
    counters = Counters(fallback.gateway)

    reply = post_chat(fallback.gateway, M_CONTEXT)

    assert reply.status == 500, reply.describe()
    assert reply.backend == PRIMARY
    assert reply.attempts == 1
    assert reply.json()["error"]["type"] == "server_error"
    assert fallback.backup.requests() == []
    assert counters.added("inferlane_retries_exhausted_total", route=route_label("r-context"),
                          reason="5xx does not trigger a fallback") == 1


def test_context_window_precheck_skips_a_provider_without_sending(fallback: FallbackStack) -> None:
    counters = Counters(fallback.gateway)
    long_prompt = "word " * (SMALL_WINDOW * 2)  # about 250 tokens, more than 100

    long = post_chat(fallback.gateway, M_PRECHECK, content=long_prompt, max_tokens=5)
    short = post_chat(fallback.gateway, M_PRECHECK, content="short", max_tokens=5)

    assert_served(long, BACKUP, attempts=1)
    assert_served(short, SMALL, attempts=1)  # the pre-check only skips what does not fit
    assert short.text() == "primary answers: short"  # "small" is the primary fake
    (received,) = fallback.primary.requests()
    assert received["body"]["messages"][0]["content"] == "short"
    assert len(fallback.backup.requests()) == 1
    assert counters.added("inferlane_backend_skipped_total", route=route_label("r-precheck"),
                          backend=SMALL, reason="context-window-exceeded") == 1
    assert counters.added("inferlane_backend_errors_total", backend=SMALL) == 0


def test_context_window_precheck_skips_a_pool(fallback: FallbackStack) -> None:
    counters = Counters(fallback.gateway)
    long_prompt = "word " * (POOL_WINDOW * 2)  # about 2500 tokens, more than 2000

    long = post_chat(fallback.gateway, M_PRECHECK_POOL, content=long_prompt, max_tokens=5)
    short = post_chat(fallback.gateway, M_PRECHECK_POOL, content="short", max_tokens=5)

    assert_served(long, BACKUP, attempts=1)
    assert_served(short, pool_label("pool-small"), attempts=1)
    assert short.endpoint == fallback.survivor.address
    assert len(fallback.backup.requests()) == 1
    assert counters.added("inferlane_backend_skipped_total",
                          route=route_label("r-precheck-pool"), backend=pool_label("pool-small"),
                          reason="context-window-exceeded") == 1
    assert counters.added("inferlane_requests_total", pool="default/pool-small") == 1


# -- retries on the same backend, and none after the first byte ---------------------------------


def test_route_retry_retries_the_same_provider(fallback: FallbackStack) -> None:
    fallback.primary.script({"status": 500})
    counters = Counters(fallback.gateway)

    reply = post_chat(fallback.gateway, M_RETRY, content="retry me")

    assert_served(reply, PRIMARY, attempts=2)
    assert reply.text() == "primary answers: retry me"
    assert len(fallback.primary.requests()) == 2
    assert fallback.backup.requests() == []
    assert counters.added("inferlane_retries_total", route=route_label("r-retry"),
                          backend=PRIMARY, reason="5xx") == 1
    assert counters.added("inferlane_fallbacks_total", route=route_label("r-retry")) == 0


def test_route_retry_codes_limit_same_backend_retries(fallback: FallbackStack) -> None:
    fallback.primary.script({"status": 502})  # not in codes [500, 503]: straight to the fallback

    reply = post_chat(fallback.gateway, M_RETRY, content="not that code")

    assert_served(reply, BACKUP, attempts=2)
    assert len(fallback.primary.requests()) == 1
    assert len(fallback.backup.requests()) == 1


def test_no_retry_once_the_stream_started(fallback: FallbackStack) -> None:
    fallback.primary.script({"stream_error_after": 2})

    reply = post_chat(fallback.gateway, M_STREAM, content="one two three four five", stream=True)

    assert reply.status == 200, reply.describe()
    assert reply.backend == PRIMARY
    assert reply.attempts == 1
    events = sse_data(reply.body)
    contents = [event for event in events if '"content"' in event and '"error"' not in event]
    assert contents, events  # the client got the first bytes...
    assert '"error"' in events[-1], events  # ...and then an in-stream error, as the last event
    assert "[DONE]" not in events
    assert len(fallback.primary.requests()) == 1
    assert fallback.backup.requests() == []  # never retried elsewhere after the first byte


def test_stream_failing_before_the_first_byte_falls_back(fallback: FallbackStack) -> None:
    fallback.primary.script({"status": 503})

    reply = post_chat(fallback.gateway, M_STREAM, content="stream me", stream=True)

    assert_served(reply, BACKUP, attempts=2)
    events = sse_data(reply.body)
    assert events[-1] == "[DONE]", events
    assert not any('"error"' in event for event in events), events
    assert len(fallback.backup.requests()) == 1


# -- the retry budget and circuit breakers ------------------------------------------------------


def test_exhausted_retry_budget_answers_the_failure_without_fallback(
        fallback: FallbackStack) -> None:
    fallback.primary.script({"status": 500})
    counters = Counters(fallback.gateway)

    reply = post_chat(fallback.gateway, M_BUDGET)

    assert reply.status == 500, reply.describe()
    assert reply.backend == PRIMARY
    assert reply.attempts == 1
    assert fallback.backup.requests() == []
    assert counters.added("inferlane_retries_exhausted_total", route=route_label("r-budget"),
                          reason="retry budget exhausted") == 1
    assert counters.added("inferlane_fallbacks_total", route=route_label("r-budget")) == 0
    # The answered failure is labelled with the provider that gave it, not as a pool's.
    assert counters.added("gen_ai_server_request_duration_seconds_count",
                          gen_ai_operation_name="chat", gen_ai_provider_name="openai",
                          inferlane_backend=PRIMARY) == 1


def breaker(gateway: GatewayProcess, rule: str, key: str) -> dict[str, Any] | None:
    """The ``/admin/backends`` entry of breaker ``key`` of ``rule`` (None: closed, clean)."""
    found: dict[str, Any] | None = admin_json(gateway, "/admin/backends")["rules"].get(
        f"{rule}#0", {}).get(key)
    return found


def test_cooldown_opens_skips_and_recovers_after_a_probe(fallback: FallbackStack) -> None:
    gateway = fallback.gateway
    rule = route_label("r-cooldown")
    fallback.primary.script(*[{"status": 500}] * 3)
    counters = Counters(gateway)

    failing = [post_chat(gateway, M_COOLDOWN, content=f"n{i}") for i in range(3)]
    for reply in failing:
        assert_served(reply, BACKUP, attempts=2)
    opened = breaker(gateway, rule, PRIMARY)
    assert opened is not None
    assert opened["state"] == "open", opened
    assert counters.added("inferlane_backend_cooldowns_total", backend=PRIMARY,
                          state="open") == 1
    assert gateway.metric("inferlane_backend_cooling_down", backend=PRIMARY) == 1

    skipped = post_chat(gateway, M_COOLDOWN, content="skipped")
    assert_served(skipped, BACKUP, attempts=1)
    assert len(fallback.primary.requests()) == 3  # the open breaker kept the 4th away
    assert counters.added("inferlane_backend_skipped_total", route=rule, backend=PRIMARY,
                          reason="cooldown") == 1

    def served_by_primary() -> Reply | None:
        reply = post_chat(gateway, M_COOLDOWN, content="probe")
        assert reply.status == 200, reply.describe()
        return reply if reply.backend == PRIMARY else None

    probe = poll(served_by_primary, "a probe to the primary after its cooldown",
                 RECOVERY_TIMEOUT, interval=0.2)
    assert probe.attempts == 1
    assert breaker(gateway, rule, PRIMARY) is None  # closed, with a fresh window
    assert counters.added("inferlane_backend_cooldowns_total", backend=PRIMARY,
                          state="closed") == 1
    assert gateway.metric("inferlane_backend_cooling_down", backend=PRIMARY) == 0
    after = post_chat(gateway, M_COOLDOWN, content="closed again")
    assert_served(after, PRIMARY, attempts=1)


# -- a dead replica inside a pool ---------------------------------------------------------------


def kill_victim(fallback: FallbackStack) -> None:
    """SIGKILL the victim replica's process (once) and wait until its port refuses."""
    (lone,) = fallback.victim.replicas
    if fallback.victim.returncode() is None:
        fallback.victim.send_signal(signal.SIGKILL)
        fallback.victim.wait_exit(timeout=10)
    poll(lambda: http_get(f"{lone.url}/health")[0] == 0 or None,
         "the killed replica to refuse connections", 10)


def test_refused_endpoint_is_retried_on_another_endpoint_of_the_pool(
        fallback: FallbackStack) -> None:
    gateway = fallback.gateway
    (lone,) = fallback.victim.replicas
    both = {post_chat(gateway, M_PAIR).endpoint for _ in range(4)}
    assert both == {fallback.survivor.address, lone.address}  # round-robin over both replicas
    counters = Counters(gateway)

    kill_victim(fallback)
    replies = [post_chat(gateway, M_PAIR, content=f"after kill {i}") for i in range(10)]

    for reply in replies:
        assert reply.status == 200, reply.describe()
        assert reply.backend == pool_label("pool-pair")
        assert reply.endpoint == fallback.survivor.address
    assert {reply.attempts for reply in replies} <= {1, 2}
    assert any(reply.attempts == 2 for reply in replies)  # the dead one was tried, then skipped
    retried = counters.added("inferlane_retries_total", route=route_label("r-pair"),
                             backend=pool_label("pool-pair"), reason="connect-failure")
    assert retried == sum(reply.attempts - 1 for reply in replies)
    assert counters.added("inferlane_backend_errors_total", backend=pool_label("pool-pair"),
                          **{"class": "connect-failure"}) == retried


def test_a_refused_endpoint_is_ejected_for_every_route_of_the_pool(
        fallback: FallbackStack) -> None:
    """Passive health belongs to the pool, not the route: a route first used after the victim
    died pays at most the outlier threshold (5 consecutive failures) in retries, shared with
    every other route of the pool, then the victim is out of selection."""
    kill_victim(fallback)
    counters = Counters(fallback.gateway)

    replies = [post_chat(fallback.gateway, M_PAIR_COLD, content=f"cold {i}") for i in range(10)]

    for reply in replies:
        assert reply.status == 200, reply.describe()
        assert reply.endpoint == fallback.survivor.address
    retried = counters.added("inferlane_retries_total", route=route_label("r-pair-cold"),
                             backend=pool_label("pool-pair"), reason="connect-failure")
    assert retried <= 5
    (pool,) = [p for p in admin_json(fallback.gateway, "/admin/health")["pools"]
               if p["pool"] == "default/pool-pair"]
    victim_address = fallback.victim.replicas[0].address
    (victim,) = [e for e in pool["endpoints"] if e["endpoint"] == victim_address]
    assert victim["ejected"]
    assert not victim["routable"]


def test_a_fallback_that_cannot_carry_the_request_is_passed_over(
        fallback: FallbackStack) -> None:
    # logprobs has no Anthropic equivalent: the anthropic fallback is skipped, not answered 400.
    body = {"model": M_UNUSABLE, "messages": [{"role": "user", "content": "odds?"}],
            "max_tokens": 8, "logprobs": True}
    request = urllib.request.Request(
        f"{fallback.gateway.api_base}/chat/completions", data=json.dumps(body).encode(),
        headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        status, backend = response.status, response.headers["x-inferlane-backend"]
    assert (status, backend) == (200, BACKUP)
    paths = [sent["path"] for sent in fallback.backup.requests()]
    assert paths == ["/v1/chat/completions"]  # nothing was sent as /v1/messages
    assert metric_value(fallback.gateway.metrics(), "inferlane_backend_skipped_total",
                        route=route_label("r-unusable"), backend=provider_label("claude"),
                        reason="unsupported-request") == 1
