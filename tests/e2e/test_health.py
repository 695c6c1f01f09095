"""Health end to end: monitors and monitor groups, outlier detection, slow start, drain,
steering failover between pools, cookie session affinity and ``inferlane health``.

One stack for the module: an ``inferlane sim`` fleet whose replicas are split between the
scenarios' pools, two replicas in processes of their own on fixed ports (one is killed, one is
killed and restarted where the config expects it), a slow fleet (``--time-scale 1``) whose
streams last long enough to be in flight during a drain, and one gateway with an admin token.
Every scenario has its own model name, route and pools, so the scenarios do not interfere; a
test that faults a replica clears the fault before it ends.

Monitors probe every 0.5 s; each wait for a verdict is a bounded poll of ``GET /admin/health``,
and what the client sees (status, ``x-inferlane-endpoint``, ``x-inferlane-backend``,
``x-inferlane-attempts``) is the proof that traffic moved. Nothing asserts on timing.
"""

from __future__ import annotations

import contextlib
import re
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
    assert_openai_error,
    free_port,
    gateway_doc,
    metric_value,
    model_server_doc,
    poll,
    pool_doc,
    running_stack,
    write_config,
)
from .health_harness import (
    MAX_REQUESTS,
    REQUESTS,
    VERDICT_TIMEOUT,
    Counters,
    FixedPortReplica,
    RequestStream,
    admin_post,
    all_healthy,
    assert_ok,
    during_ejection,
    eject,
    endpoint_report,
    health_cli,
    health_policy_doc,
    member,
    members_by_monitor,
    monitor_doc,
    monitor_group_doc,
    pool_key,
    pool_report,
    requests,
    send_until,
    set_faults,
    start_fixed_replica,
    transitions,
    wait_endpoint,
    wait_pool,
)
from .traffic_harness import (
    GENEROUS_RETRY,
    Reply,
    pool_backend,
    pool_label,
    post_chat,
    route,
    route_label,
    sse_data,
    traffic_policy,
)

pytestmark = pytest.mark.e2e

M_KILL = "hl-kill"  # pool hl-kill: fleet 0-1 + a replica of its own that is killed
M_GROUP = "hl-group"  # pool hl-group: fleet 2-4; MonitorGroup http (voting) + inference (critical)
M_RAMP = "hl-ramp"  # pool hl-ramp: fleet 5-6 + a replica killed and restarted; slow start
M_PASSIVE = "hl-passive"  # pool hl-passive: fleet 7-9; outlier detection only
M_FAILOVER = "hl-failover"  # pools hl-primary (fleet 10-11) then hl-secondary (fleet 12)
M_COOKIE = "hl-cookie"  # pools hl-left (fleet 13) and hl-right (fleet 14), 50/50, cookie
M_EJECT = "hl-eject"  # pool hl-eject: fleet 15-16; outlier detection, ejection end untouched
M_DRAIN = "hl-drain"  # pool hl-drain: the slow fleet 0-2, the last with ModelServer weight 0
FLEET_MODELS = [M_KILL, M_KILL, M_GROUP, M_GROUP, M_GROUP, M_RAMP, M_RAMP,
                M_PASSIVE, M_PASSIVE, M_PASSIVE, M_FAILOVER, M_FAILOVER, M_FAILOVER,
                M_COOKIE, M_COOKIE, M_EJECT, M_EJECT]

# Timeouts leave a loaded 2-core machine room: a dead replica refuses at once and a faulted
# one answers 500 at once, so they only keep healthy replicas from looking dead.
HTTP_MONITOR = "hl-http"  # GET /health every 0.5 s, timeout 0.4 s, down after 2 failures
INFERENCE_MONITOR = "hl-inference"  # a 4-token chat completion every 0.5 s, timeout 0.45 s
PASSIVE_ERRORS = 3
SLOW_START_SECONDS = 10
ADMIN_TOKEN = "hl-admin-token-0123456789"
SESSION_COOKIE = "hl-session"
STREAM_TOKENS = 300  # on the slow fleet: the stream is still being generated during the drain


@dataclass(frozen=True, slots=True)
class HealthStack:
    gateway: GatewayProcess
    fleet: SimFleet
    kill_victim: FixedPortReplica  # the third replica of hl-kill
    ramp_victim: FixedPortReplica  # the third replica of hl-ramp
    slow: SimFleet

    def replicas(self, *indexes: int) -> list[SimReplica]:
        return [self.fleet.replicas[i] for i in indexes]


def servers(pool: str, replicas: list[SimReplica], model: str,
            weights: dict[int, int] | None = None) -> list[dict[str, Any]]:
    """One ModelServer per replica, labelled for ``pool``; ``weights`` by position."""
    docs = []
    for position, replica in enumerate(replicas):
        doc = model_server_doc(f"{pool}-{position}", replica.address, [model], {"hl": pool})
        if weights and position in weights:
            doc["spec"]["weight"] = weights[position]
        docs.append(doc)
    return docs


def health_config(fleet: SimFleet, kill_victim: SimReplica, ramp_victim: SimReplica,
                  slow: SimFleet) -> list[dict[str, Any]]:
    def r(*indexes: int) -> list[SimReplica]:
        return [fleet.replicas[i] for i in indexes]

    no_passive = {"enabled": False}  # active health alone decides (no 30 s ejection to outlast)
    return [
        gateway_doc(),
        *servers("hl-kill", [*r(0, 1), kill_victim], M_KILL),
        *servers("hl-group", r(2, 3, 4), M_GROUP),
        *servers("hl-ramp", [*r(5, 6), ramp_victim], M_RAMP),
        *servers("hl-passive", r(7, 8, 9), M_PASSIVE),
        *servers("hl-primary", r(10, 11), M_FAILOVER),
        *servers("hl-secondary", r(12), M_FAILOVER),
        *servers("hl-left", r(13), M_COOKIE),
        *servers("hl-right", r(14), M_COOKIE),
        *servers("hl-eject", r(15, 16), M_EJECT),
        *servers("hl-drain", slow.replicas, M_DRAIN, weights={2: 0}),
        *(pool_doc(name, {"hl": name}) for name in (
            "hl-kill", "hl-group", "hl-ramp", "hl-passive", "hl-primary", "hl-secondary",
            "hl-left", "hl-right", "hl-eject", "hl-drain")),
        monitor_doc(HTTP_MONITOR, "http", timeout="400ms", up=2, down=2,
                    http={"path": "/health"}),
        monitor_doc(INFERENCE_MONITOR, "inference", timeout="450ms", up=1, down=2,
                    inference={"maxTokens": 4}),
        monitor_group_doc("hl-checks", [member(HTTP_MONITOR),
                                        member(INFERENCE_MONITOR, mustBeHealthy=True)]),
        health_policy_doc("hl-kill-health", ["hl-kill"], monitor=HTTP_MONITOR),
        health_policy_doc("hl-group-health", ["hl-group"], monitor="hl-checks",
                          monitor_kind="MonitorGroup"),
        health_policy_doc("hl-ramp-health", ["hl-ramp"], monitor=HTTP_MONITOR,
                          slowStart=f"{SLOW_START_SECONDS}s"),
        health_policy_doc("hl-passive-health", ["hl-passive"],
                          passive={"consecutiveErrors": PASSIVE_ERRORS,
                                   "baseEjectionTime": "5s", "maxEjectionPercent": 10}),
        health_policy_doc("hl-eject-health", ["hl-eject"],
                          passive={"consecutiveErrors": PASSIVE_ERRORS,
                                   "baseEjectionTime": "1s", "maxEjectionPercent": 50}),
        health_policy_doc("hl-primary-health", ["hl-primary"], monitor=INFERENCE_MONITOR,
                          minHealthy=2, slowStart="0s", passive=no_passive),
        health_policy_doc("hl-cookie-health", ["hl-left", "hl-right"],
                          monitor=INFERENCE_MONITOR, minHealthy=1, passive=no_passive),
        route("hl-kill", M_KILL, [pool_backend("hl-kill")]),
        route("hl-group", M_GROUP, [pool_backend("hl-group")]),
        route("hl-ramp", M_RAMP, [pool_backend("hl-ramp")]),
        route("hl-passive", M_PASSIVE, [pool_backend("hl-passive")]),
        route("hl-eject", M_EJECT, [pool_backend("hl-eject")]),
        route("hl-drain", M_DRAIN, [pool_backend("hl-drain")]),
        route("hl-failover", M_FAILOVER,
              [pool_backend("hl-primary"), pool_backend("hl-secondary")]),
        traffic_policy("hl-failover-steering", "hl-failover", steering={"policy": "failover"},
                       retry=GENEROUS_RETRY),
        route("hl-cookie", M_COOKIE, [pool_backend("hl-left", 50), pool_backend("hl-right", 50)],
              sessionPersistence={"type": "Cookie", "sessionName": SESSION_COOKIE}),
    ]


@pytest.fixture(scope="module")
def health(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HealthStack]:
    log_dir = tmp_path_factory.mktemp("health")
    token_file = log_dir / "admin.token"
    token_file.write_text(f"{ADMIN_TOKEN}\n", encoding="utf-8")
    with running_stack(log_dir) as started, contextlib.ExitStack() as own:
        fleet = started.sim(replicas=len(FLEET_MODELS), models=FLEET_MODELS, time_scale=0.05)
        slow = started.sim(replicas=3, models=[M_DRAIN], time_scale=1.0)
        victims = []
        for model in (M_KILL, M_RAMP):
            victim = start_fixed_replica(log_dir, model=model, time_scale=0.05)
            own.callback(victim.stop)
            victims.append(victim)
        config = write_config(log_dir / "gateway.yaml", health_config(
            fleet, victims[0].replica, victims[1].replica, slow))
        gateway = started.gateway(config, ["--admin-token-file", str(token_file)])
        yield HealthStack(gateway, fleet, victims[0], victims[1], slow)


def wait_pool_healthy(health: HealthStack, pool: str) -> dict[str, Any]:
    return wait_pool(health.gateway, pool, "every endpoint healthy", all_healthy)


# -- 1. a killed replica ------------------------------------------------------------------------


def test_killed_replica_turns_unhealthy_and_no_request_fails(health: HealthStack) -> None:
    gateway = health.gateway
    victim = health.kill_victim.replica.address
    wait_pool_healthy(health, "hl-kill")
    counters = Counters(gateway)

    with RequestStream(gateway, M_KILL, threads=2, max_requests=2000) as stream:
        stream.wait_answered("before", 12)
        health.kill_victim.kill()
        stream.enter("killed")  # from here on nothing can reach the victim
        killed = wait_endpoint(gateway, "hl-kill", victim, "unhealthy",
                               lambda e: e["verdict"] == "unhealthy")
        stream.enter("unhealthy")
        stream.wait_answered("unhealthy", 12)
    sent = stream.sent

    failed = [s.reply.describe() for s in sent if s.reply.status != 200]
    assert not failed, f"{len(failed)} of {len(sent)} requests failed: {failed[:3]}"
    assert {s.reply.endpoint for s in sent if s.phase == "before"} == {
        *(r.address for r in health.replicas(0, 1)), victim}
    # Requests that met the dead replica were retried on another endpoint before any byte
    # reached the client: one extra attempt each, counted as connect-failure retries.
    assert all(s.reply.attempts in (1, 2) for s in sent)
    assert all(s.reply.endpoint != victim for s in sent if s.phase != "before")
    retried = counters.added("inferlane_retries_total", route=route_label("hl-kill"),
                             backend=pool_label("hl-kill"), reason="connect-failure")
    assert retried == sum(s.reply.attempts - 1 for s in sent)
    # Once health said unhealthy, the dead replica is not even tried.
    after = [s.reply for s in sent if s.phase == "unhealthy"]
    assert all(reply.attempts == 1 for reply in after), [r.describe() for r in after]

    assert not killed["routable"]
    (http_member,) = killed["members"]
    assert http_member["monitor"] == pool_key(HTTP_MONITOR)
    assert http_member["verdict"] == "unhealthy"
    (region,) = http_member["regions"]
    assert region["ok"] is False
    assert "refused" in region["reason"], region
    assert transitions(counters, "endpoint", "hl-kill", victim, "unhealthy") == 1
    line = re.compile(rf"health: endpoint {re.escape(victim)} of pool "
                      rf"{re.escape(pool_key('hl-kill'))} is unhealthy: (\S.*)$", re.M)
    found = poll(lambda: line.search(gateway.stderr()), "the unhealthy log line", 10)
    assert "1 of 1 voting members unhealthy" in found.group(1), found.group(0)


# -- 2. a monitor group with a critical inference member ---------------------------------------


def test_failing_inference_takes_out_an_endpoint_whose_health_page_answers(
        health: HealthStack) -> None:
    gateway = health.gateway
    bad, *good = health.replicas(2, 3, 4)
    wait_pool_healthy(health, "hl-group")
    counters = Counters(gateway)

    try:
        set_faults(bad, error_rate=1.0)
        down = wait_endpoint(gateway, "hl-group", bad.address, "unhealthy",
                             lambda e: e["verdict"] == "unhealthy")
        members = members_by_monitor(down)
        http_member = members[pool_key(HTTP_MONITOR)]
        inference_member = members[pool_key(INFERENCE_MONITOR)]
        assert (http_member["role"], http_member["verdict"]) == ("voting", "healthy"), down
        assert (inference_member["role"], inference_member["verdict"]) == (
            "critical", "unhealthy"), down
        assert f"critical member {pool_key(INFERENCE_MONITOR)} failed" in down["reason"], down
        assert not down["routable"]

        replies = requests(gateway, M_GROUP)
        assert {reply.endpoint for reply in replies} == {r.address for r in good}
        assert all(reply.attempts == 1 for reply in replies)
    finally:
        set_faults(bad)
    wait_endpoint(gateway, "hl-group", bad.address, "healthy again",
                  lambda e: e["verdict"] == "healthy" and e["routable"])
    assert transitions(counters, "endpoint", "hl-group", bad.address, "unhealthy") == 1
    assert transitions(counters, "endpoint", "hl-group", bad.address, "healthy") == 1


# -- 3. recovery with slow start ----------------------------------------------------------------


def test_a_restarted_replica_ramps_up_then_serves_again(health: HealthStack) -> None:
    gateway = health.gateway
    victim = health.ramp_victim
    address = victim.replica.address
    wait_pool_healthy(health, "hl-ramp")

    victim.kill()
    wait_endpoint(gateway, "hl-ramp", address, "unhealthy",
                  lambda e: e["verdict"] == "unhealthy")
    victim.start()  # the same port: the config still names it

    weights: list[float] = []

    def full_weight(entry: dict[str, Any]) -> bool:
        if entry["verdict"] == "healthy" and entry["weight"] is not None:
            weights.append(entry["weight"])
        return entry["verdict"] == "healthy" and entry["weight"] == 1.0

    wait_endpoint(gateway, "hl-ramp", address, "back at full weight", full_weight,
                  timeout=SLOW_START_SECONDS + 3 * VERDICT_TIMEOUT)
    ramping = [w for w in weights if 0 < w < 1]
    assert ramping, f"no weight between 0 and 1 was seen: {weights}"
    assert ramping == sorted(ramping), ramping  # the ramp only goes up
    send_until(gateway, M_RAMP, f"a request served by {address}",
               lambda reply: reply.endpoint == address)


# -- 4. passive health only ---------------------------------------------------------------------


def test_outlier_detection_ejects_a_failing_replica_within_max_ejection_percent(
        health: HealthStack) -> None:
    gateway = health.gateway
    bad, second_bad, _ = health.replicas(7, 8, 9)
    counters = Counters(gateway)
    passive = pool_report(gateway, "hl-passive")
    assert (passive["source"], passive["passive"]) == ("passive only", True)
    assert all(not e["members"] for e in passive["endpoints"])

    def ejected_now() -> list[str]:
        return [e["endpoint"] for e in pool_report(gateway, "hl-passive")["endpoints"]
                if e["ejected"]]

    try:
        set_faults(bad, error_rate=1.0)
        eject(gateway, "hl-passive", M_PASSIVE, bad.address)
        # maxEjectionPercent is 10: a tenth of three endpoints is less than one, yet one may
        # always be ejected (Envoy's rule), so the lone failing replica is out.
        entry = endpoint_report(gateway, "hl-passive", bad.address)
        assert (entry["ejected"], entry["routable"]) == (True, False), entry
        assert entry["verdict"] == "unknown"  # no monitor: passive health has no verdict
        assert transitions(counters, "ejected", "hl-passive", bad.address, "ejected") >= 1
        avoided = during_ejection(gateway, "hl-passive", M_PASSIVE, bad.address,
                                  count=REQUESTS)
        assert all(reply.endpoint != bad.address and reply.attempts == 1 for reply in avoided)

        # A second failing replica: while the first is ejected there is no room (two of three
        # is over 10 %), so it keeps getting requests however often it fails.
        set_faults(second_bad, error_rate=1.0)
        while_first_out = 0
        for i in range(MAX_REQUESTS):
            before = ejected_now()
            assert len(before) <= 1, f"more than one endpoint ejected: {before}"
            reply = post_chat(gateway, M_PASSIVE, content=f"second {i}", max_tokens=4)
            assert reply.status in (200, 500), reply.describe()
            after = ejected_now()
            assert len(after) <= 1, f"more than one endpoint ejected: {after}"
            if before == after == [bad.address] and reply.endpoint == second_bad.address:
                while_first_out += 1
                if while_first_out > PASSIVE_ERRORS:
                    break
        assert while_first_out > PASSIVE_ERRORS, "the second failing replica got no requests"
    finally:
        set_faults(bad)
        set_faults(second_bad)


def test_the_ejected_gauge_clears_when_the_ejection_ends_without_traffic(
        health: HealthStack) -> None:
    gateway = health.gateway
    bad, _ = health.replicas(15, 16)
    labels = {"pool": pool_key("hl-eject"), "endpoint": bad.address}
    counters = Counters(gateway)
    try:
        set_faults(bad, error_rate=1.0)
        eject(gateway, "hl-eject", M_EJECT, bad.address)
    finally:
        set_faults(bad)
    assert gateway.metric("inferlane_health_endpoint_ejected", **labels) == 1

    # No request from here on: only time ends the ejection (1 s).
    wait_endpoint(gateway, "hl-eject", bad.address, "the ejection to end",
                  lambda e: not e["ejected"] and e["routable"])
    gateway.wait_until(
        lambda: gateway.metric("inferlane_health_endpoint_ejected", **labels) == 0 or None,
        "inferlane_health_endpoint_ejected to clear after the ejection ended", 5)
    assert transitions(counters, "returned", "hl-eject", bad.address, "returned") == 1


# -- 5. drain -----------------------------------------------------------------------------------


def drain(gateway: GatewayProcess, endpoint: str, draining: bool,
          token: str | None = ADMIN_TOKEN) -> tuple[int, Any]:
    return admin_post(gateway, "/admin/health/drain",
                      {"pool": pool_key("hl-drain"), "endpoint": endpoint,
                       "draining": draining}, token)


def test_drain_sends_no_new_requests_and_lets_a_stream_finish(health: HealthStack) -> None:
    gateway = health.gateway
    first, second, weightless = health.slow.replicas
    counters = Counters(gateway)
    body = (b'{"model": "%s", "stream": true, "max_tokens": %d, '
            b'"messages": [{"role": "user", "content": "a long story"}]}'
            % (M_DRAIN.encode(), STREAM_TOKENS))
    request = urllib.request.Request(f"{gateway.api_base}/chat/completions", data=body,
                                     headers={"content-type": "application/json"},
                                     method="POST")
    with urllib.request.urlopen(request, timeout=60) as stream:
        assert stream.status == 200
        streaming = stream.headers["x-inferlane-endpoint"]
        assert streaming in (first.address, second.address)
        other = second.address if streaming == first.address else first.address
        head = stream.readline()
        assert head.startswith(b"data:"), head

        status, answer = drain(gateway, streaming, True)
        assert (status, answer["draining"]) == (200, True), answer
        entry = endpoint_report(gateway, "hl-drain", streaming)
        assert (entry["draining"], entry["routable"]) == (True, False), entry
        replies = requests(gateway, M_DRAIN)
        assert {reply.endpoint for reply in replies} == {other}

        rest = stream.read()
    events = sse_data(head + rest)
    assert events[-1] == "[DONE]", events[-3:]
    assert not any('"error"' in event for event in events), events
    assert len(events) > STREAM_TOKENS // 2  # the whole story, not a cut-off one

    status, answer = drain(gateway, streaming, False)
    assert (status, answer["draining"]) == (200, False), answer
    wait_endpoint(gateway, "hl-drain", streaming, "routable again",
                  lambda e: not e["draining"] and e["routable"])
    send_until(gateway, M_DRAIN, f"a request served by {streaming} again",
               lambda reply: reply.endpoint == streaming)
    assert transitions(counters, "endpoint", "hl-drain", streaming, "draining") == 1
    assert transitions(counters, "endpoint", "hl-drain", streaming, "undrained") == 1

    # ModelServer weight 0 drains from the config: never chosen, in this test or any other.
    entry = endpoint_report(gateway, "hl-drain", weightless.address)
    assert (entry["configuredWeight"], entry["draining"], entry["routable"]) == (0, True, False)
    assert all(reply.endpoint != weightless.address for reply in replies)
    received = metric_value(health.slow.metrics(weightless),
                            "inferlane_sim_requests_received_total")
    assert received == 0, "the weight-0 replica got a request"


def test_drain_needs_the_admin_token(health: HealthStack) -> None:
    gateway = health.gateway
    endpoint = health.slow.replicas[0].address
    for token in (None, "not-the-token"):
        status, answer = drain(gateway, endpoint, True, token=token)
        assert status == 401, answer
        assert_openai_error(answer)
    assert not endpoint_report(gateway, "hl-drain", endpoint)["draining"]
    status, answer = drain(gateway, f"{HOST}:1", True)  # the right token, no such endpoint
    assert status == 404, answer
    assert_openai_error(answer)


def test_drain_is_refused_by_a_gateway_without_an_admin_token(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INFERLANE_ADMIN_TOKEN", raising=False)
    dead = f"{HOST}:{free_port()}"  # bound and closed: nothing is ever sent there
    config = write_config(tmp_path / "gateway.yaml", [
        gateway_doc(), model_server_doc("lone", dead, [M_DRAIN], {"hl": "lone"}),
        pool_doc("hl-lone", {"hl": "lone"}), route("hl-lone", M_DRAIN, [pool_backend("hl-lone")]),
    ])
    with running_stack(tmp_path) as started:
        gateway = started.gateway(config)
        status, answer = admin_post(gateway, "/admin/health/drain",
                                    {"pool": pool_key("hl-lone"), "endpoint": dead},
                                    token=ADMIN_TOKEN)
    assert status == 403, answer
    error = assert_openai_error(answer)
    assert "--admin-token-file" in error["message"], error


# -- 6. steering failover between pools -----------------------------------------------------------


def test_failover_steering_moves_to_the_second_pool_while_the_first_is_critical(
        health: HealthStack) -> None:
    gateway = health.gateway
    faulted, _ = health.replicas(10, 11)
    primary, secondary = pool_label("hl-primary"), pool_label("hl-secondary")
    wait_pool_healthy(health, "hl-primary")
    assert {reply.backend for reply in requests(gateway, M_FAILOVER)} == {primary}

    replies: list[Reply] = []

    def critical() -> bool | None:
        assert len(replies) < MAX_REQUESTS, "the primary pool never turned critical"
        replies.append(post_chat(gateway, M_FAILOVER, content="during", max_tokens=4))
        return pool_report(gateway, "hl-primary")["critical"] or None

    try:
        set_faults(faulted, error_rate=1.0)
        # One of two endpoints down is below minHealthy 2: the pool is critical although an
        # endpoint of it still answers. Until then a 500 falls back to the next pool.
        gateway.wait_until(critical, "hl-primary critical", VERDICT_TIMEOUT)
        steered = requests(gateway, M_FAILOVER)
        assert all((r.backend, r.attempts) == (secondary, 1) for r in steered), [
            r.describe() for r in steered]
    finally:
        set_faults(faulted)
    failed = [reply.describe() for reply in replies if reply.status != 200]
    assert not failed, failed
    assert all(r.backend == secondary for r in replies if r.attempts == 2)

    wait_pool(gateway, "hl-primary", "no longer critical", all_healthy)
    back = requests(gateway, M_FAILOVER)
    assert {reply.backend for reply in back} == {primary}


# -- 7. cookie session affinity -------------------------------------------------------------------


def session_token(reply: Reply) -> str | None:
    cookie = reply.headers.get("set-cookie")
    if cookie is None:
        return None
    found = re.match(rf"{SESSION_COOKIE}=([^;]+);", cookie)
    assert found is not None, cookie
    return found.group(1)


def test_cookie_session_stays_on_its_backend_and_moves_when_that_pool_is_critical(
        health: HealthStack) -> None:
    gateway = health.gateway
    replica_of = {pool_label("hl-left"): health.fleet.replicas[13],
                  pool_label("hl-right"): health.fleet.replicas[14]}
    for pool in ("hl-left", "hl-right"):
        wait_pool_healthy(health, pool)

    first = post_chat(gateway, M_COOKIE, max_tokens=4)
    assert_ok(first)
    token = session_token(first)
    assert token is not None, first.describe()
    home = first.backend
    assert home in replica_of
    cookie = {"cookie": f"{SESSION_COOKIE}={token}"}
    for reply in requests(gateway, M_COOKIE, headers=cookie):
        assert reply.backend == home, reply.describe()
        assert session_token(reply) in (None, token)

    home_pool = home.rsplit("/", 1)[-1]
    try:
        set_faults(replica_of[home], error_rate=1.0)
        wait_pool(gateway, home_pool, "critical", lambda p: p["critical"])
        moved = post_chat(gateway, M_COOKIE, max_tokens=4, headers=cookie)
        assert_ok(moved)
        assert moved.backend not in (None, home), moved.describe()
        new_token = session_token(moved)
        assert new_token not in (None, token), moved.describe()
        for reply in requests(gateway, M_COOKIE,
                              headers={"cookie": f"{SESSION_COOKIE}={new_token}"}):
            assert reply.backend == moved.backend, reply.describe()
    finally:
        set_faults(replica_of[home])
    wait_pool(gateway, home_pool, "healthy again", all_healthy)


# -- 8. inferlane health ------------------------------------------------------------------------


def test_health_cli_prints_pools_endpoints_and_verdicts(health: HealthStack) -> None:
    wait_pool_healthy(health, "hl-group")
    out = health_cli(health.gateway, columns="200")  # a wide terminal

    assert f"pool {pool_key('hl-group')} (MonitorGroup {pool_key('hl-checks')})" in out, out
    for replica in health.replicas(2, 3, 4):
        assert replica.address in out, out
    for monitor in (HTTP_MONITOR, INFERENCE_MONITOR):
        assert pool_key(monitor) in out, out
    assert "(inference, critical)" in out, out
    assert "(http, voting)" in out, out
    assert "healthy" in out
    assert f"pool {pool_key('hl-passive')} (passive only)" in out, out


def test_health_cli_piped_keeps_endpoint_addresses_whole(health: HealthStack) -> None:
    wait_pool_healthy(health, "hl-group")
    out = health_cli(health.gateway, columns=None)
    for replica in health.replicas(2, 3, 4):
        assert replica.address in out, out
