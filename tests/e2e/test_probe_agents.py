"""Probe agents in other network namespaces: regions vote on endpoint health, end to end.

One network for the module (``netns.NetnsLab``, a random free 10.231.X.0/24)::

    host ─────────────── veth .1/.2 ─────────────── srv: 3 sim processes, one address each
    gateway "home"                                   (.101 .102 .103 on lo, port 8000)
     │ 0.0.0.0                                        │             │
     ├─ veth .5/.6 ── eu: agent "eu" ── veth .13/.14 ─┘             │
     └─ veth .9/.10 ─ us: agent "us" ── veth .17/.18 ───────────────┘

Three regions vote: the gateway itself (``serve --region home``) and two ``inferlane probe``
agents. The gateway votes too because that is how most deployments run (one gateway plus a few
remote vantage points), and it makes the vote mix the gateway's own probes with agents'
reports. Each agent reaches the gateway over its host veth and the servers over a veth of its
own straight to srv (a /32 route per server address), so cutting one path leaves the other.

- a partition from the servers (the agent's srv veth down): that region says every endpoint is
  down, one of three is not a majority, nothing flips;
- cut off completely (both veths down): the region stops reporting and is dropped from the vote
  after regionTimeout, then comes back;
- an outage seen by two regions (a server address unreachable from eu and us) and a real one (a
  sim process stopped): the majority takes the endpoint out, requests go to the others;
- a reload, and a gateway restart with a changed config (generations count from 1 again):
  the agents probe by the new plan; a region removed from the config leaves the report;
- the admin token and region checks refuse agents with a message, no traceback.

Assertions read ``GET /admin/health``, ``/metrics`` and the ``x-inferlane-endpoint`` of real
requests; every wait is a bounded poll, nothing is timed. Each scenario starts from "all healthy"
and restores what it broke (also when it fails). Skipped when ``ip netns`` is not permitted.
"""

from __future__ import annotations

import contextlib
import functools
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from .conftest import (
    HOST,
    GatewayProcess,
    Process,
    ProcessFailed,
    SimFleet,
    answers_ok,
    gateway_doc,
    inferlane_command,
    model_server_doc,
    poll,
    pool_doc,
    route_doc,
    write_config,
)
from .netns import Link, NetnsLab, netns_unavailable
from .traffic_harness import admin_json, post_chat

pytestmark = pytest.mark.e2e

T = TypeVar("T")

PREFIX = "ilpa"  # namespaces and host veths of this module (netns.py names them)
MODEL = "probe-model"
SIM_PORT = 8000  # every server has an address of its own, so one port for all
GATEWAY_REGION = "home"
AGENT_REGIONS = ("eu", "us")
REGIONS = (GATEWAY_REGION, *AGENT_REGIONS)
REPORT_INTERVAL = "0.3"
TOKEN = "probe-agents-e2e-token"
TOKEN_ENV = "INFERLANE_ADMIN_TOKEN"
SETTLE_TIMEOUT = 30.0  # bound on verdicts forming or changing (probes every 0.5 s)
EXIT_TIMEOUT = 30.0  # bound on a refused agent exiting
RESTART_ATTEMPTS = 3  # gateway restarts on the same port (another socket may take it)
REQUESTS = 9  # per check: three rounds of round-robin over three endpoints


def health_docs(addresses: list[str], regions: tuple[str, ...], *, monitor: str = "alive",
                path: str = "/health") -> list[dict[str, Any]]:
    """One pool of ``addresses``, probed by an HTTP monitor from ``regions``."""
    return [
        gateway_doc(),
        *[model_server_doc(f"server-{i}", address, [MODEL], {"app": "probed"})
          for i, address in enumerate(addresses)],
        pool_doc("pool", {"app": "probed"}),
        route_doc("route", [MODEL], "pool"),
        {"apiVersion": "inferlane.dev/v1alpha1", "kind": "Monitor",
         "metadata": {"name": monitor},
         "spec": {"type": "http", "interval": "500ms", "timeout": "400ms",
                  "consecutiveUp": 1, "consecutiveDown": 2, "http": {"path": path}}},
        {"apiVersion": "inferlane.dev/v1alpha1", "kind": "HealthCheckPolicy",
         "metadata": {"name": "pool-health"},
         "spec": {"targetRefs": [{"group": "inference.networking.k8s.io",
                                  "kind": "InferencePool", "name": "pool"}],
                  "monitorRef": {"kind": "Monitor", "name": monitor},
                  "regions": list(regions), "regionTimeout": "3s", "slowStart": "0s",
                  # Passive health off: these tests are about what the probes decide.
                  "passive": {"enabled": False}}},
    ]


# -- reading the gateway ----------------------------------------------------------------------


def endpoints(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (pool,) = report["pools"]
    return {e["endpoint"]: e for e in pool["endpoints"]}


def member(endpoint: dict[str, Any]) -> dict[str, Any]:
    (only,) = endpoint["members"]  # the one Monitor
    result: dict[str, Any] = only
    return result


def votes(endpoint: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Region name -> that region's series for the endpoint (verdict, ok, lastProbeAgo...)."""
    return {r["region"]: r for r in member(endpoint)["regions"]}


def admin_call(url: str, token: str | None, body: dict[str, Any] | None = None
               ) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of an admin GET (``body`` None) or POST."""
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, headers=headers, method="GET" if body is None
                                     else "POST",
                                     data=None if body is None else json.dumps(body).encode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return int(error.code), json.loads(error.read())


# -- the module's network ---------------------------------------------------------------------


@dataclass
class ProbeNet:
    lab: NetnsLab
    gateway: GatewayProcess
    sims: dict[str, SimFleet]  # endpoint address -> the sim process serving it
    agents: dict[str, Process]  # region -> agent
    namespaces: dict[str, str]  # region -> its namespace
    host_links: dict[str, Link]  # region -> its veth to the host
    srv_links: dict[str, Link]  # region -> its veth to srv
    token_file: Path
    config: Path
    log_dir: Path
    restarts: int = 0

    def report(self) -> dict[str, Any]:
        result: dict[str, Any] = admin_json(self.gateway, "/admin/health")
        return result

    def describe(self) -> str:
        parts = [p.describe(15) for p in self.agents.values()]
        with contextlib.suppress(AssertionError, OSError, ValueError):
            parts.append("last /admin/health: " + json.dumps(self.report(), indent=1))
        return "\n".join(parts)

    def wait(self, check: Callable[[dict[str, Any]], T | None], what: str,
             timeout: float = SETTLE_TIMEOUT) -> T:
        """Poll ``check(report)``; fail fast when the gateway or an agent dies."""

        def step() -> T | None:
            for region, agent in self.agents.items():
                assert agent.returncode() is None, f"agent {region} died\n{agent.describe()}"
            return check(self.report())

        try:
            return self.gateway.wait_until(step, what, timeout)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.describe()}") from None

    def all_healthy(self, monitor: str = "alive") -> dict[str, Any]:
        """Wait until every endpoint is healthy by ``monitor`` in every fresh region."""

        def check(report: dict[str, Any]) -> dict[str, Any] | None:
            regions = report["regions"]
            if any(regions.get(r, {"stale": True})["stale"] for r in AGENT_REGIONS):
                return None
            for endpoint in endpoints(report).values():
                if member(endpoint)["monitor"].rpartition("/")[2] != monitor \
                        or endpoint["verdict"] != "healthy" or any(
                        v["verdict"] != "healthy" or v["stale"] or not v["ok"]
                        for v in votes(endpoint).values()):
                    return None
            return report

        return self.wait(check, "every endpoint healthy in every region")

    def chat_endpoints(self, count: int = REQUESTS) -> list[str]:
        """``count`` requests through the gateway; each must succeed. The answering endpoints."""
        answered = []
        for i in range(count):
            reply = post_chat(self.gateway, MODEL, content=f"probe agents {i}", max_tokens=4)
            assert reply.status == 200, reply.describe()
            assert reply.endpoint is not None, reply.describe()
            answered.append(reply.endpoint)
        return answered

    def endpoint_flips(self) -> float:
        """Endpoint transitions to unhealthy so far."""
        return self.gateway.metric("inferlane_health_transitions_total", kind="endpoint",
                                   state="unhealthy")

    def restart_gateway(self, documents: list[dict[str, Any]]) -> None:
        """Stop the gateway, write ``documents`` as its config and start it again on the same
        port (the agents keep their URL and reconnect on their own)."""
        gateway = self.gateway
        gateway.stop()
        write_config(self.config, documents)
        for attempt in range(RESTART_ATTEMPTS):
            # Someone's outgoing connection may hold the port a moment: wait until it is free.
            poll(functools.partial(_bindable, gateway.port), f"port {gateway.port} to be free",
                 SETTLE_TIMEOUT)
            self.restarts += 1
            gateway.stdout_path = self.log_dir / f"gateway-restart-{self.restarts}.stdout"
            gateway.stderr_path = self.log_dir / f"gateway-restart-{self.restarts}.stderr"
            Process.start(gateway)  # not GatewayProcess.start: that picks a new port
            try:
                gateway.wait_until(functools.partial(answers_ok, f"{gateway.base_url}/readyz"),
                                   "the restarted gateway's /readyz")
                return
            except ProcessFailed:
                if "cannot listen" not in gateway.stderr() or attempt == RESTART_ATTEMPTS - 1:
                    raise

    def agent(self, name: str, *args: str) -> Process:
        """An agent on loopback (not started), e.g. to be refused."""
        return Process(name, inferlane_command("probe", *args), self.log_dir)


def sim_in(lab: NetnsLab, namespace: str, address: str, log_dir: Path) -> SimFleet:
    """One sim replica listening on ``address`` inside ``namespace`` (not started)."""
    fleet = SimFleet(log_dir, replicas=1, models=[MODEL], time_scale=0.05,
                     extra=["--host", address, "--port", str(SIM_PORT)])  # the last flag wins
    fleet.argv = lab.exec_argv(namespace, fleet.argv)
    return fleet


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProbeNet]:
    reason = netns_unavailable(PREFIX)
    if reason is not None:
        pytest.skip(f"needs Linux network namespaces (root and iproute2): {reason}")
    log_dir = tmp_path_factory.mktemp("probe-agents")
    token_file = log_dir / "admin-token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    with contextlib.ExitStack() as cleanup:
        lab = NetnsLab.create(PREFIX)
        cleanup.callback(_close_lab, lab)  # registered first: runs after every process stopped
        srv = lab.namespace("srv")
        to_srv = lab.link(None, srv, 1, 2)
        servers = [lab.local_address(srv, 101 + i) for i in range(3)]
        for server in servers:
            lab.route(None, server, to_srv)
        namespaces, host_links, srv_links = {}, {}, {}
        for k, region in enumerate(AGENT_REGIONS):
            namespace = namespaces[region] = lab.namespace(region)
            host_links[region] = lab.link(None, namespace, 4 * k + 5, 4 * k + 6)
            srv_links[region] = lab.link(srv, namespace, 4 * k + 13, 4 * k + 14)
            for server in servers:
                lab.route(namespace, server, srv_links[region])

        sims = {}
        for server in servers:
            fleet = sim_in(lab, srv, server, log_dir)
            cleanup.callback(fleet.stop)
            fleet.start()
            (replica,) = fleet.replicas
            sims[replica.address] = fleet
        config = write_config(log_dir / "gateway.yaml", health_docs(list(sims), REGIONS))
        gateway = GatewayProcess(log_dir, config, [
            "--host", "0.0.0.0", "--region", GATEWAY_REGION,
            "--admin-token-file", str(token_file)])
        cleanup.callback(gateway.stop)
        gateway.start()
        agents = {}
        for region in AGENT_REGIONS:
            url = f"http://{host_links[region].left_address}:{gateway.port}"
            agent = agents[region] = Process(f"probe-{region}", lab.exec_argv(
                namespaces[region], inferlane_command(
                    "probe", "--region", region, "--gateway", url, "--token-file",
                    str(token_file), "--report-interval", REPORT_INTERVAL)), log_dir)
            cleanup.callback(_stop_agent, agent)
            agent.start()
        yield ProbeNet(lab, gateway, sims, agents, namespaces, host_links, srv_links,
                       token_file, config, log_dir)


def _bindable(port: int) -> bool | None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return None
    return True


def _stop_agent(agent: Process) -> None:
    code = agent.stop()
    assert code == 0, f"SIGTERM should stop an agent cleanly\n{agent.describe()}"


def _close_lab(lab: NetnsLab) -> None:
    lab.close()
    left = lab.leftovers()
    assert not left, f"namespaces or links left behind: {left}"


# -- scenarios --------------------------------------------------------------------------------


def test_three_regions_agree_healthy(net: ProbeNet) -> None:
    report = net.all_healthy()
    assert report["region"] == GATEWAY_REGION
    assert set(report["regions"]) == set(AGENT_REGIONS), report["regions"]
    for region, seen in report["regions"].items():
        assert seen["stale"] is False, region
        assert seen["lastReportAgo"] is not None, region
    (pool,) = report["pools"]
    assert pool["regions"] == list(REGIONS)
    assert (pool["routable"], pool["total"], pool["critical"]) == (3, 3, False)
    assert set(endpoints(report)) == set(net.sims)
    for address, endpoint in endpoints(report).items():
        assert endpoint["routable"] is True, address
        voted = member(endpoint)
        assert voted["role"] == "voting"
        assert voted["verdict"] == "healthy"
        assert "0 of 3 regions unhealthy" in voted["reason"], voted
        assert voted["staleRegions"] == []
        assert list(votes(endpoint)) == list(REGIONS)
        for vote in votes(endpoint).values():
            assert vote["verdict"] == "healthy", (address, vote)
            assert vote["lastProbeAgo"] is not None, (address, vote)
            assert vote["rtt"] is not None, (address, vote)
    for region in REGIONS:
        probes = net.gateway.metric("inferlane_health_probes_total", region=region, result="ok")
        assert probes > 0, region
    assert set(net.chat_endpoints()) == set(net.sims)


def test_agent_partitioned_from_servers_does_not_flip_verdicts(net: ProbeNet) -> None:
    net.all_healthy()
    flips = net.endpoint_flips()
    region, namespace = "eu", net.namespaces["eu"]
    net.lab.set_link(net.srv_links[region], namespace, up=False)
    try:

        def eu_sees_all_down(report: dict[str, Any]) -> dict[str, Any] | None:
            seen = [votes(e)[region] for e in endpoints(report).values()]
            return report if all(v["verdict"] == "unhealthy" for v in seen) else None

        report = net.wait(eu_sees_all_down, "region eu to report every endpoint unhealthy")
        assert report["regions"][region]["stale"] is False  # it still reports
        for address, endpoint in endpoints(report).items():
            assert endpoint["verdict"] == "healthy", (address, endpoint)
            assert endpoint["routable"] is True, address
            assert "1 of 3 regions unhealthy" in member(endpoint)["reason"], endpoint
            eu = votes(endpoint)[region]
            assert eu["ok"] is False, eu
            assert eu["reason"], eu
            assert all(votes(endpoint)[r]["verdict"] == "healthy"
                       for r in REGIONS if r != region), endpoint
        assert set(net.chat_endpoints()) == set(net.sims)
        assert net.gateway.metric("inferlane_health_probes_total", region=region,
                                  result="failed") > 0
        assert net.endpoint_flips() == flips
    finally:
        net.lab.set_link(net.srv_links[region], namespace, up=True)
    net.all_healthy()
    assert net.endpoint_flips() == flips


def test_agent_cut_off_is_dropped_after_region_timeout(net: ProbeNet) -> None:
    net.all_healthy()
    flips = net.endpoint_flips()
    region, namespace = "eu", net.namespaces["eu"]
    stale_metric = {"region": region}
    assert net.gateway.metric("inferlane_health_region_stale", **stale_metric) == 0
    # Host side first: no report of the srv partition gets through before the cut.
    net.lab.set_link(net.host_links[region], namespace, up=False)
    net.lab.set_link(net.srv_links[region], namespace, up=False)
    try:

        def eu_stale(report: dict[str, Any]) -> dict[str, Any] | None:
            if not report["regions"][region]["stale"]:
                return None
            members = [member(e) for e in endpoints(report).values()]
            return report if all(m["staleRegions"] == [region] for m in members) else None

        report = net.wait(eu_stale, "region eu to go stale")
        assert net.gateway.metric("inferlane_health_region_stale", **stale_metric) == 1
        assert net.gateway.metric("inferlane_health_transitions_total", kind="region",
                                  state="stale") >= 1
        for address, endpoint in endpoints(report).items():
            assert endpoint["verdict"] == "healthy", (address, endpoint)
            voted = member(endpoint)
            assert "0 of 2 regions unhealthy" in voted["reason"], voted
            assert f"region {region} stale" in voted["reason"], voted
            assert votes(endpoint)[region]["stale"] is True, endpoint
        assert set(net.chat_endpoints()) == set(net.sims)
    finally:
        net.lab.set_link(net.srv_links[region], namespace, up=True)
        net.lab.set_link(net.host_links[region], namespace, up=True)
    report = net.all_healthy()  # the agent retries with backoff; its region comes back
    assert report["regions"][region]["stale"] is False
    assert net.gateway.metric("inferlane_health_region_stale", **stale_metric) == 0
    assert net.endpoint_flips() == flips


def test_a_region_removed_from_the_config_is_no_longer_reported(net: ProbeNet) -> None:
    net.all_healthy()
    region, namespace = "eu", net.namespaces["eu"]
    kept = tuple(r for r in REGIONS if r != region)
    net.lab.set_link(net.host_links[region], namespace, up=False)
    net.lab.set_link(net.srv_links[region], namespace, up=False)
    try:
        net.wait(lambda report: report["regions"][region]["stale"] or None,
                 "region eu to go stale")
        generation = net.gateway.generation()
        write_config(net.config, health_docs(list(net.sims), kept))
        net.gateway.wait_until(lambda: net.gateway.generation() > generation or None,
                               "the gateway to load the config without eu")
        report = net.wait(lambda report: report if all(
            list(votes(e)) == list(kept) for e in endpoints(report).values()) else None,
            "the pool to be probed from home and us only")
        assert report["pools"][0]["regions"] == list(kept)
        assert region not in report["regions"], report["regions"]
        assert net.gateway.metric("inferlane_health_region_stale", region=region) == 0
    finally:
        generation = net.gateway.generation()
        write_config(net.config, health_docs(list(net.sims), REGIONS))
        net.gateway.wait_until(lambda: net.gateway.generation() > generation or None,
                               "the gateway to load the original config")
        net.lab.set_link(net.srv_links[region], namespace, up=True)
        net.lab.set_link(net.host_links[region], namespace, up=True)
    net.all_healthy()


def test_outage_seen_by_two_of_three_regions_takes_the_endpoint_out(net: ProbeNet) -> None:
    net.all_healthy()
    victim = sorted(net.sims)[-1]
    victim_ip = victim.rpartition(":")[0]
    blind = AGENT_REGIONS  # both agents lose the victim; the gateway still reaches it
    for region in blind:
        net.lab.block(net.namespaces[region], victim_ip)
    try:

        def victim_out(report: dict[str, Any]) -> dict[str, Any] | None:
            endpoint = endpoints(report)[victim]
            seen = votes(endpoint)
            return report if endpoint["verdict"] == "unhealthy" and all(
                seen[r]["verdict"] == "unhealthy" for r in blind) else None

        report = net.wait(victim_out, f"{victim} to turn unhealthy")
        endpoint = endpoints(report)[victim]
        assert votes(endpoint)[GATEWAY_REGION]["verdict"] == "healthy", endpoint
        assert "2 of 3 regions unhealthy" in member(endpoint)["reason"], endpoint
        assert endpoint["routable"] is False
        (pool,) = report["pools"]
        assert (pool["routable"], pool["critical"]) == (2, False)
        for address, other in endpoints(report).items():
            if address != victim:
                assert other["verdict"] == "healthy", (address, other)
        answered = net.chat_endpoints()
        assert victim not in answered
        assert set(answered) == set(net.sims) - {victim}
    finally:
        for region in blind:
            net.lab.unblock(net.namespaces[region], victim_ip)
    net.all_healthy()
    assert set(net.chat_endpoints()) == set(net.sims)


def test_a_stopped_server_is_down_in_every_region(net: ProbeNet) -> None:
    net.all_healthy()
    victim = sorted(net.sims)[0]
    fleet = net.sims[victim]
    fleet.stop()
    try:

        def victim_down(report: dict[str, Any]) -> dict[str, Any] | None:
            endpoint = endpoints(report)[victim]
            return report if endpoint["verdict"] == "unhealthy" and all(
                v["verdict"] == "unhealthy" for v in votes(endpoint).values()) else None

        report = net.wait(victim_down, f"{victim} to be down in every region")
        assert "3 of 3 regions unhealthy" in member(endpoints(report)[victim])["reason"]
        for address, other in endpoints(report).items():
            if address != victim:
                assert other["verdict"] == "healthy", (address, other)
        answered = net.chat_endpoints()
        assert set(answered) == set(net.sims) - {victim}
    finally:
        fleet.start()  # same address and port: the ModelServer is unchanged
    net.all_healthy()
    assert set(net.chat_endpoints()) == set(net.sims)


def test_agents_follow_a_reload(net: ProbeNet) -> None:
    """A reload bumps the generation in the report answers: the agents fetch their new plan
    (a renamed monitor: results under the old name would be dropped)."""
    net.all_healthy()
    generation = net.gateway.generation()
    write_config(net.config, health_docs(list(net.sims), REGIONS, monitor="alive-v2",
                                         path="/v1/models"))
    try:
        net.gateway.wait_until(lambda: net.gateway.generation() > generation or None,
                               "the gateway to load the new config")
        report = net.all_healthy(monitor="alive-v2")
        for endpoint in endpoints(report).values():
            for region, vote in votes(endpoint).items():
                assert vote["ok"] is True, (region, vote)
        assert set(net.chat_endpoints()) == set(net.sims)
    finally:
        generation = net.gateway.generation()
        write_config(net.config, health_docs(list(net.sims), REGIONS))
        net.gateway.wait_until(lambda: net.gateway.generation() > generation or None,
                               "the gateway to load the original config")
    net.all_healthy()


def test_agents_refetch_their_plan_after_a_gateway_restart(net: ProbeNet) -> None:
    """A restarted gateway counts config generations from the start again: an agent must not
    take "same number" for "same plan" when the gateway behind the URL is a new process."""
    net.all_healthy()
    docs = health_docs(list(net.sims), REGIONS)
    try:
        net.restart_gateway(docs)  # now every agent holds the first generation's plan
        net.all_healthy()
        net.restart_gateway(health_docs(list(net.sims), REGIONS, monitor="alive-v2",
                                        path="/v1/models"))
        net.all_healthy(monitor="alive-v2")
    finally:
        net.restart_gateway(docs)
    net.all_healthy()


# -- refusals ---------------------------------------------------------------------------------


def test_reports_need_the_token_and_a_known_region(net: ProbeNet) -> None:
    report_url = f"{net.gateway.base_url}/admin/health/reports"
    some = next(iter(net.sims))
    forged = {"region": "eu", "results": [
        {"monitor": "default/alive", "endpoint": some, "ok": False, "rtt": None,
         "reason": "forged", "age": 0.0}]}
    for token in (None, "not-the-token"):
        status, body = admin_call(report_url, token, forged)
        assert status == 401, body
    status, body = admin_call(report_url, TOKEN, {**forged, "region": "mars"})
    assert status == 400, body
    assert "mars" in body["error"]["message"], body
    status, body = admin_call(report_url, TOKEN, {"region": "eu"})
    assert status == 400, body
    status, body = admin_call(f"{net.gateway.base_url}/admin/health/plan", TOKEN)
    assert status == 400, body  # no ?region=
    for vote in (votes(e)["eu"] for e in endpoints(net.report()).values()):
        assert vote["reason"] != "forged", vote
    assert TOKEN not in net.gateway.stdout() + net.gateway.stderr()



@pytest.mark.parametrize(("region", "token", "status", "says"), [
    ("eu", "not-the-token", 401, "wrong admin token"),
    ("mars", TOKEN, 404, "'mars'"),
    (GATEWAY_REGION, TOKEN, 404, "gateway's own region"),
], ids=["wrong-token", "unknown-region", "gateway-region"])
def test_refused_agent_exits_with_the_reason(net: ProbeNet, region: str, token: str,
                                             status: int, says: str) -> None:
    token_file = net.log_dir / f"token-{region}"
    token_file.write_text(token, encoding="utf-8")
    agent = net.agent(f"refused-{region}", "--region", region, "--gateway",
                      net.gateway.base_url, "--token-file", str(token_file),
                      "--report-interval", REPORT_INTERVAL)
    agent.start()
    try:
        code = agent.wait_exit(EXIT_TIMEOUT)
    finally:
        agent.stop()
    stderr = agent.stderr()
    assert code != 0, agent.describe()
    assert f"the gateway refused the agent (HTTP {status})" in stderr, stderr
    assert says in stderr, stderr
    assert "Traceback" not in stderr, stderr
    # The same answers to a direct call, and nothing changed on the gateway.
    url = f"{net.gateway.base_url}/admin/health/plan?region={region}"
    answered, body = admin_call(url, token)
    assert answered == status, body
    assert set(net.report()["regions"]) == set(AGENT_REGIONS)
    for process in (net.gateway, agent):
        assert TOKEN not in process.stdout() + process.stderr(), process.name


def test_agent_without_a_token_exits(net: ProbeNet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    agent = net.agent("tokenless", "--region", "eu", "--gateway", net.gateway.base_url)
    agent.start()
    try:
        code = agent.wait_exit(EXIT_TIMEOUT)
    finally:
        agent.stop()
    assert code == 2, agent.describe()
    assert "no admin token" in agent.stderr()
    assert "Traceback" not in agent.stderr()
    status, body = admin_call(f"{net.gateway.base_url}/admin/health/plan?region=eu", None)
    assert status == 401, body


def test_gateway_without_a_token_refuses_agents(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """No admin token configured: the agent calls are off (403), the report stays open."""
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    dead = f"{HOST}:9"  # discard port: nobody listens, probes fail, nothing else matters here
    config = write_config(tmp_path / "gateway.yaml", health_docs([dead], ("gateway", "eu")))
    gateway = GatewayProcess(tmp_path, config)
    agent = Process("probe-no-admin", inferlane_command(
        "probe", "--region", "eu", "--gateway", f"http://{HOST}:0", "--token-file",
        str(tmp_path / "token")), tmp_path)
    (tmp_path / "token").write_text(TOKEN, encoding="utf-8")
    try:
        gateway.start()
        plan, body = admin_call(f"{gateway.base_url}/admin/health/plan?region=eu", TOKEN)
        assert plan == 403, body
        assert "--admin-token-file" in body["error"]["message"], body
        report, body = admin_call(f"{gateway.base_url}/admin/health/reports", TOKEN,
                                  {"region": "eu", "results": []})
        assert report == 403, body
        assert admin_json(gateway, "/admin/health")["region"] == "gateway"
        agent.argv[agent.argv.index(f"http://{HOST}:0")] = gateway.base_url
        agent.start()
        code = agent.wait_exit(EXIT_TIMEOUT)
        assert code != 0, agent.describe()
        assert "the gateway refused the agent (HTTP 403)" in agent.stderr(), agent.describe()
        assert "Traceback" not in agent.stderr()
    finally:
        agent.stop()
        gateway.stop()
