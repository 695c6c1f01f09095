"""RateLimitPolicy through real processes: per-key request and token budgets, a budget shared by
two gateways through a real Redis, what happens when Redis is unreachable, and that API keys
stay out of metrics and logs.

One sim replica serves every model (LoRA adapters of one base model); routes split the model
names so each policy governs its own route. Every test uses client keys of its own (random), so
the budgets of one test never touch another's. Within a test the requests of one key are sent
back to back, well inside one minute's window (a sliding window: the (n+1)th request of a burst
of n is refused unless tens of seconds pass in between).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import redis

from .conftest import (
    HOST,
    GatewayProcess,
    SimFleet,
    Stack,
    assert_openai_error,
    free_port,
    gateway_doc,
    metric_value,
    model_server_doc,
    pool_doc,
    route_doc,
    running_stack,
    write_config,
)

pytestmark = pytest.mark.e2e

BASE = "m-rl"
MODEL_RPM = "m-rpm"  # policy "rpm": 3 requests per minute per x-api-key
MODEL_TPM = "m-tpm"  # policy "tpm": 40 tokens per minute per bearer token
MODEL_ONE = "m-one"  # policy "per-model": 2 requests per minute, for m-one only
MODEL_TWO = "m-two"  # same route and policy as m-one, no rule of its own
MODEL_OPEN = "m-open"  # policy on an unreachable Redis, FailOpen
MODEL_CLOSE = "m-close"  # policy on an unreachable Redis, FailClose
MODEL_SHARED = "m-shared"  # the two-gateway Redis test
ADAPTERS = (MODEL_RPM, MODEL_TPM, MODEL_ONE, MODEL_TWO, MODEL_OPEN, MODEL_CLOSE, MODEL_SHARED)
RPM, TPM, ONE_RPM, SHARED_RPM = 3, 40, 2, 4
KEY_HEADER = "x-api-key"


def policy_doc(name: str, targets: list[dict[str, str]], rate_limit: dict[str, Any]
               ) -> dict[str, Any]:
    return {"apiVersion": "inferlane.dev/v1alpha1", "kind": "RateLimitPolicy",
            "metadata": {"name": name},
            "spec": {"targetRefs": targets, "rateLimit": rate_limit}}


def route_ref(name: str) -> dict[str, str]:
    return {"kind": "HTTPRoute", "name": name}


def serving_docs(sim: SimFleet) -> list[dict[str, Any]]:
    """Gateway, the one ModelServer (every adapter) and its round-robin pool."""
    (replica,) = sim.replicas
    return [gateway_doc(),
            model_server_doc("rl", replica.address, [BASE, *ADAPTERS], {"app": "rl"}),
            pool_doc("pool-rl", {"app": "rl"})]


def limits_config(sim: SimFleet, dead_redis: str) -> list[dict[str, Any]]:
    unreachable = {"url": dead_redis, "timeoutMs": 200}
    return [
        *serving_docs(sim),
        route_doc("route-rpm", [MODEL_RPM], "pool-rl"),
        route_doc("route-tpm", [MODEL_TPM], "pool-rl"),
        route_doc("route-models", [MODEL_ONE, MODEL_TWO], "pool-rl"),
        route_doc("route-open", [MODEL_OPEN], "pool-rl"),
        route_doc("route-close", [MODEL_CLOSE], "pool-rl"),
        policy_doc("rpm", [route_ref("route-rpm")], {
            "clientKey": {"header": KEY_HEADER},
            "rules": [{"name": "three", "requestsPerMinute": RPM}]}),
        policy_doc("tpm", [route_ref("route-tpm")], {
            "rules": [{"name": "tokens", "tokensPerMinute": TPM}]}),
        policy_doc("per-model", [route_ref("route-models")], {
            "rules": [{"name": "only-one", "model": MODEL_ONE, "requestsPerMinute": ONE_RPM}]}),
        policy_doc("redis-open", [route_ref("route-open")], {
            "backend": "redis", "redis": unreachable, "failureMode": "FailOpen",
            "rules": [{"name": "any", "requestsPerMinute": 1000}]}),
        policy_doc("redis-close", [route_ref("route-close")], {
            "backend": "redis", "redis": unreachable, "failureMode": "FailClose",
            "rules": [{"name": "any", "requestsPerMinute": 1000}]}),
    ]


@dataclass(frozen=True, slots=True)
class LimitsStack:
    sim: SimFleet
    gateway: GatewayProcess


@pytest.fixture(scope="module")
def limits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimitsStack]:
    log_dir = tmp_path_factory.mktemp("rate-limits")
    with running_stack(log_dir) as stack:
        sim = stack.sim(replicas=1, models=[BASE], time_scale=0.05,
                        extra=[arg for adapter in ADAPTERS for arg in ("--lora", adapter)])
        dead_redis = f"redis://{HOST}:{free_port()}/0"  # bound and closed: refused
        config = write_config(log_dir / "gateway.yaml", limits_config(sim, dead_redis))
        yield LimitsStack(sim, stack.gateway(config, ["--access-log"]))


# -- helpers -------------------------------------------------------------------------------------


def new_key(tag: str) -> str:
    return f"sk-e2e-{tag}-{uuid.uuid4().hex}"


def client_for(gateway: GatewayProcess, api_key: str,
               headers: Mapping[str, str] | None = None) -> openai.OpenAI:
    """A sync SDK client sending ``api_key`` as its bearer token; use it as a context manager."""
    return openai.OpenAI(base_url=gateway.api_base, api_key=api_key, max_retries=0,
                         timeout=60.0, default_headers=dict(headers or {}))


def ask(client: openai.OpenAI, model: str, max_tokens: int = 2, content: str = "hi") -> int:
    """One chat completion that must succeed; its total tokens."""
    completion = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}], max_tokens=max_tokens)
    assert completion.choices[0].message.content
    assert completion.usage is not None
    return completion.usage.total_tokens


def refused(client: openai.OpenAI, model: str) -> openai.RateLimitError:
    """One chat completion that must be refused with 429 rate_limit_exceeded."""
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=2)
    error = caught.value
    assert error.status_code == 429
    assert error.code == "rate_limit_exceeded", error.body
    assert error.type == "rate_limit_error", error.body
    assert_openai_error(error.response.json(), code="rate_limit_exceeded")
    retry_after = error.response.headers.get("retry-after", "")
    assert retry_after.isdigit(), dict(error.response.headers)
    # A sliding window over two minutes: a burst may only be forgiven well into the next
    # window, so the wait can pass 60 s, never 120 s.
    assert 1 <= int(retry_after) <= 120, retry_after
    return error


def received(sim: SimFleet) -> float:
    return metric_value(sim.metrics(sim.replicas[0]), "inferlane_sim_requests_received_total")


def rate_limited(gateway: GatewayProcess, policy: str, **labels: str) -> float:
    return gateway.metric("inferlane_rate_limited_total", policy=policy, **labels)


def key_digest(raw: str) -> str:
    """The gateway's documented hash of a client key (sha256, 16 hex digits)."""
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


# -- the in-memory backend -----------------------------------------------------------------------


def test_requests_per_minute_are_counted_per_client_key(limits: LimitsStack) -> None:
    gateway = limits.gateway
    first, second = new_key("rpm-a"), new_key("rpm-b")
    received_before = received(limits.sim)
    limited_before = rate_limited(gateway, "default/rpm", rule="three", limit="requests")

    # The policy reads the key from x-api-key; every client here sends the same bearer token.
    with client_for(gateway, "shared-bearer", {KEY_HEADER: first}) as client:
        for _ in range(RPM):
            ask(client, MODEL_RPM)
        error = refused(client, MODEL_RPM)
        assert "default/rpm" in error.message
        assert f"{RPM} requests per minute" in error.message
        refused(client, MODEL_RPM)  # a refusal is not counted, but does not reset either
    with client_for(gateway, "shared-bearer", {KEY_HEADER: second}) as client:
        ask(client, MODEL_RPM)

    assert rate_limited(gateway, "default/rpm", rule="three", limit="requests") \
        - limited_before == 2
    assert rate_limited(gateway, "default/rpm", key=key_digest(first)) == 2
    # Refused requests never reach the model server.
    assert received(limits.sim) - received_before == RPM + 1


def test_tokens_are_charged_after_the_response_and_then_refuse(limits: LimitsStack) -> None:
    gateway = limits.gateway
    heavy, other = new_key("tpm-a"), new_key("tpm-b")
    with client_for(gateway, heavy) as client:
        used = ask(client, MODEL_TPM, max_tokens=TPM)  # admitted: nothing charged yet
        assert used >= TPM
        error = refused(client, MODEL_TPM)
        assert f"{TPM} tokens per minute" in error.message, error.message
    assert rate_limited(gateway, "default/tpm", rule="tokens", limit="tokens",
                        key=key_digest(heavy)) == 1
    with client_for(gateway, other) as client:
        ask(client, MODEL_TPM)  # another bearer token has its own budget


def test_a_rule_for_one_model_limits_only_that_model(limits: LimitsStack) -> None:
    with client_for(limits.gateway, new_key("model")) as client:
        for _ in range(ONE_RPM):
            ask(client, MODEL_ONE)
        refused(client, MODEL_ONE)
        for _ in range(ONE_RPM + 2):
            ask(client, MODEL_TWO)  # same key, same route and policy, no rule for m-two


# -- an unreachable Redis ------------------------------------------------------------------------


async def post(gateway: GatewayProcess, model: str, headers: Mapping[str, str]
               ) -> tuple[int, Mapping[str, str], Any]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    async with aiohttp.ClientSession() as session, session.post(
            f"{gateway.api_base}/chat/completions", json=body, headers=dict(headers),
            timeout=aiohttp.ClientTimeout(total=60)) as response:
        return response.status, {k.lower(): v for k, v in response.headers.items()}, \
            await response.json(content_type=None)


def backend_errors(gateway: GatewayProcess, policy: str) -> float:
    return gateway.metric("inferlane_rate_limit_backend_errors_total", policy=policy)


async def test_an_unreachable_redis_admits_on_fail_open_and_refuses_on_fail_close(
        limits: LimitsStack) -> None:
    gateway = limits.gateway
    headers = {"authorization": f"Bearer {new_key('redis-down')}"}
    open_before = backend_errors(gateway, "default/redis-open")
    close_before = backend_errors(gateway, "default/redis-close")

    status, _, body = await post(gateway, MODEL_OPEN, headers)
    assert status == 200, body
    assert body["choices"][0]["message"]["content"], body
    assert backend_errors(gateway, "default/redis-open") == open_before + 1

    status, response_headers, body = await post(gateway, MODEL_CLOSE, headers)
    assert status == 503, body
    error = assert_openai_error(body, code="rate_limit_unavailable")
    assert error["type"] == "service_unavailable", error
    assert "default/redis-close" in error["message"], error
    assert response_headers.get("retry-after", "").isdigit(), response_headers
    assert backend_errors(gateway, "default/redis-close") == close_before + 1
    # The same key on a memory-backed route is unaffected.
    status, _, body = await post(gateway, MODEL_TWO, headers)
    assert status == 200, body


def test_client_keys_never_appear_in_metrics_or_logs(limits: LimitsStack) -> None:
    gateway = limits.gateway
    secret = new_key("never-shown")
    with client_for(gateway, "other-bearer", {KEY_HEADER: secret}) as client:
        for _ in range(RPM):
            ask(client, MODEL_RPM)
        refused(client, MODEL_RPM)
    with client_for(gateway, secret) as client:  # as a bearer token
        ask(client, MODEL_TPM, max_tokens=TPM)
        refused(client, MODEL_TPM)
        ask(client, MODEL_OPEN)  # logs a Redis failure
        with pytest.raises(openai.InternalServerError):
            ask(client, MODEL_CLOSE)

    metrics = gateway.metrics()
    # The key was seen (its hash labels the refusals) ...
    assert rate_limited(gateway, "default/rpm", key=key_digest(secret)) == 1
    assert rate_limited(gateway, "default/tpm", key=key_digest(secret)) == 1
    # ... and is nowhere in clear, nor a recognisable part of it.
    fragment = secret.rsplit("-", 1)[1]
    logs = gateway.stdout() + gateway.stderr()
    assert "POST /v1/chat/completions" in logs, logs[-2000:]  # the access log is on
    assert "rate limit policy default/redis-open" in logs, logs[-2000:]  # Redis failures too
    for text, where in ((metrics, "metrics"), (logs, "logs")):
        assert secret not in text, where
        assert fragment[:12] not in text, where


# -- Redis shared by two gateways ----------------------------------------------------------------


def test_two_gateways_share_one_budget_through_redis(redis_server: str, limits: LimitsStack,
                                                     stack: Stack, tmp_path: Path) -> None:
    prefix = f"e2e-{uuid.uuid4().hex[:12]}:"
    config = write_config(tmp_path / "shared.yaml", [
        *serving_docs(limits.sim),
        route_doc("route-shared", [MODEL_SHARED], "pool-rl"),
        policy_doc("shared", [{"kind": "Gateway", "name": "gw"}], {
            "backend": "redis", "failureMode": "FailClose",
            "redis": {"url": redis_server, "keyPrefix": prefix, "timeoutMs": 2000},
            "rules": [{"name": "shared", "requestsPerMinute": SHARED_RPM}]}),
    ])
    gateways = [stack.gateway(config), stack.gateway(config)]
    key, other = new_key("shared-a"), new_key("shared-b")
    clients = [client_for(gateway, key) for gateway in gateways]
    try:
        for i in range(SHARED_RPM):  # alternate: two requests through each gateway
            ask(clients[i % 2], MODEL_SHARED)
        for client in clients:  # the budget is spent, whichever gateway is asked
            refused(client, MODEL_SHARED)
    finally:
        for client in clients:
            client.close()
    for gateway in gateways:
        with client_for(gateway, other) as client:
            ask(client, MODEL_SHARED)
        assert rate_limited(gateway, "default/shared", key=key_digest(key)) == 1
        assert backend_errors(gateway, "default/shared") == 0

    # The counters live in Redis under the configured prefix.
    connection = redis.Redis.from_url(redis_server)
    try:
        assert connection.keys(f"{prefix}*"), f"no Redis key starts with {prefix!r}"
    finally:
        connection.close()
