"""The processes of the health-check failover benchmark, all on 127.0.0.1, and their configs.

- ``Fleet``: N ``inferlane sim`` processes of one replica each (one InferencePool), on ports fixed
  for the whole run, so replica i can be SIGKILLed by its PID and a fresh one started on the
  same port; ``restart`` waits for the new one's ``/health`` in 20 ms steps and says when it
  answered;
- ``gateway_config``: ``inferlane serve``'s config for one scenario (the pool, a catch-all route
  and the scenario's HealthCheckPolicy, Monitors and MonitorGroup);
- ``start_gateway`` (with ``--admin-token-file``) and ``start_agent`` (``inferlane probe``).

Processes are started with ``peers.start_process`` (own session, log file) and stopped by PID
(``ManagedProcess.stop``, or ``popen.kill()`` for a replica's SIGKILL); the caller keeps them in
an ``ExitStack``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

import failover_targets
import peers
import routing_peers

MODEL = "sim-model"
POOL = "fleet"
POOL_KEY = f"default/{POOL}"
AGENT_REGIONS = ("region-a", "region-b")
READY_POLL_S = 0.02  # a restarted replica's /health is asked this often


# --- scenarios ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    policy: bool = True  # False: no HealthCheckPolicy at all (the pool gets the defaults)
    passive: bool = True  # outlier detection with its defaults; False: passive.enabled false
    monitor: str = ""  # "", "http" (one Monitor) or "group" (a MonitorGroup, 3 regions)

    @property
    def regions(self) -> tuple[str, ...]:
        return ("gateway", *AGENT_REGIONS) if self.monitor == "group" else ("gateway",)


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("no health", "HealthCheckPolicy with `passive: {enabled: false}` and no monitor: "
             "only the connect retry (and the scheduler's stale-metrics filter)",
             passive=False),
    Scenario("passive only", "HealthCheckPolicy without monitorRef: outlier detection with its "
             "defaults (5 errors in a row, 30 s ejection, maxEjectionPercent 10)"),
    Scenario("single monitor", "http Monitor `GET /health` every 0.5 s, consecutiveDown 2, "
             "from the gateway; passive off", passive=False, monitor="http"),
    Scenario("monitor group", "MonitorGroup of the http Monitor and an inference Monitor "
             "(mustBeHealthy), regions gateway + 2 `inferlane probe` agents; passive off",
             passive=False, monitor="group"),
    Scenario("monitor + passive", "the single monitor with outlier detection at its defaults "
             "(what a policy with only monitorRef gets)", monitor="http"),
    Scenario("no policy", "no HealthCheckPolicy: the pool gets the defaults, which are "
             "`passive only`'s (not run unless named)", policy=False),
)}
DEFAULT_SCENARIOS = tuple(name for name in SCENARIOS if name != "no policy")


@dataclass(frozen=True, slots=True)
class MonitorTiming:
    http_interval_s: float = 0.5
    http_timeout_s: float = 0.4
    inference_interval_s: float = 0.5
    inference_timeout_s: float = 0.4
    consecutive_down: int = 2
    consecutive_up: int = 2


TIMING = MonitorTiming()


def _doc(kind: str, name: str, spec: dict[str, Any], api: str = "inferlane.dev/v1alpha1",
         labels: dict[str, str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = labels
    return {"apiVersion": api, "kind": kind, "metadata": metadata, "spec": spec}


def _seconds(value: float) -> str:
    return f"{round(value * 1000)}ms"


def gateway_config(listen_port: int, replica_ports: list[int] | tuple[int, ...],
                   scenario: Scenario, timing: MonitorTiming = TIMING,
                   load_balancing: str = "default") -> str:
    """The YAML ``inferlane serve`` reads for ``scenario``."""
    pool = _doc("InferencePool", POOL, {"selector": {"matchLabels": {"app": POOL}},
                                        "targetPorts": [{"number": 8000}]},
                api="inference.networking.k8s.io/v1")
    if load_balancing != "default":
        pool["metadata"]["annotations"] = {"inferlane.dev/load-balancing": load_balancing}
    docs: list[dict[str, Any]] = [
        _doc("Gateway", "bench", {"gatewayClassName": "inferlane", "listeners": [
            {"name": "http", "port": listen_port, "protocol": "HTTP"}]},
            api="gateway.networking.k8s.io/v1"),
        pool,
        _doc("HTTPRoute", "chat", {"parentRefs": [{"name": "bench"}], "rules": [
            {"backendRefs": [{"group": "inference.networking.k8s.io", "kind": "InferencePool",
                              "name": POOL}]}]}, api="gateway.networking.k8s.io/v1"),
    ]
    for index, port in enumerate(replica_ports):
        docs.append(_doc("ModelServer", f"replica-{index}", {
            "address": f"127.0.0.1:{port}", "engine": "vllm", "models": [MODEL]},
            labels={"app": POOL}))
    thresholds = {"consecutiveUp": timing.consecutive_up,
                  "consecutiveDown": timing.consecutive_down}
    if scenario.monitor:
        docs.append(_doc("Monitor", "http-health", {
            "type": "http", "interval": _seconds(timing.http_interval_s),
            "timeout": _seconds(timing.http_timeout_s), **thresholds,
            "http": {"path": "/health"}}))
    if scenario.monitor == "group":
        docs.append(_doc("Monitor", "tiny-inference", {
            "type": "inference", "interval": _seconds(timing.inference_interval_s),
            "timeout": _seconds(timing.inference_timeout_s), **thresholds,
            "inference": {"maxTokens": 2}}))
        docs.append(_doc("MonitorGroup", "checks", {"quorumPercent": 50, "members": [
            {"monitorRef": {"name": "http-health"}},
            {"monitorRef": {"name": "tiny-inference"}, "mustBeHealthy": True}]}))
    if scenario.policy:
        spec: dict[str, Any] = {
            "targetRefs": [{"group": "inference.networking.k8s.io", "kind": "InferencePool",
                            "name": POOL}],
            "regions": list(scenario.regions)}
        if scenario.monitor == "http":
            spec["monitorRef"] = {"kind": "Monitor", "name": "http-health"}
        elif scenario.monitor == "group":
            spec["monitorRef"] = {"kind": "MonitorGroup", "name": "checks"}
        if not scenario.passive:
            spec["passive"] = {"enabled": False}
        docs.append(_doc("HealthCheckPolicy", "fleet-health", spec))
    return yaml.safe_dump_all(docs, sort_keys=False)


# --- the fleet ----------------------------------------------------------------------------------


def _sim_argv(port: int, seed: int, sim_args: tuple[str, ...]) -> list[str]:
    executable = peers.inferlane_executable()
    if executable is None:
        raise peers.PeerError("no `inferlane` executable found")
    return [str(executable), "sim", "--replicas", "1", "--port", str(port), "--host",
            "127.0.0.1", "--model", MODEL, "--seed", str(seed), *sim_args]


async def wait_health(session: aiohttp.ClientSession, process: peers.ManagedProcess, url: str,
                      timeout_s: float = 30.0) -> float:
    """Poll ``url/health`` until it answers 200; the ``perf_counter`` time it did."""
    deadline = time.perf_counter() + timeout_s
    while True:
        if not process.alive():
            raise peers.PeerError(f"{process.name} exited: {process.log_tail()}")
        try:
            async with session.get(f"{url}/health") as response:
                if response.status == 200:
                    return time.perf_counter()
        except (aiohttp.ClientError, TimeoutError, OSError):
            pass
        if time.perf_counter() > deadline:
            raise peers.PeerError(f"{process.name} not up at {url}: {process.log_tail()}")
        await asyncio.sleep(READY_POLL_S)


class Fleet(failover_targets.Primary):
    """The pool's replicas, one process each, on ports fixed for the whole run; started
    asynchronously (the load runs meanwhile) and timed."""

    def __init__(self, log_dir: Path, replicas: int, sim_args: tuple[str, ...]) -> None:
        super().__init__(log_dir, sim_args, replicas)

    def address(self, index: int) -> str:
        return f"127.0.0.1:{self.ports[index]}"

    async def launch(self, session: aiohttp.ClientSession, index: int) -> float:
        """Start replica ``index`` (a fresh process on its port); when it answered /health."""
        self._starts += 1
        process = peers.start_process(f"replica-{index}-{self._starts}",
                                      _sim_argv(self.ports[index], index, self._sim_args),
                                      self._log_dir)
        self.processes[index] = process
        return await wait_health(session, process, self.urls[index])

    def kill(self, index: int) -> float:
        """SIGKILL replica ``index`` by its PID (as the OOM killer would); when it was sent."""
        if not self.alive(index):
            raise peers.PeerError(f"replica {index} is not running; cannot kill it")
        return super().kill(index)


# --- gateway and agents -------------------------------------------------------------------------


def start_gateway(log_dir: Path, name: str, config: str, port: int,
                  token_file: Path) -> peers.Launch:
    """``inferlane serve`` on ``config``, admin calls enabled with ``token_file``; waited for
    until a chat completion goes through."""
    executable = peers.inferlane_executable()
    if executable is None:
        raise peers.PeerError("no `inferlane` executable found")
    path = log_dir / f"{name}.yaml"
    path.write_text(config)
    argv = [str(executable), "serve", "--config", str(path), "--port", str(port),
            "--host", "127.0.0.1", "--admin-token-file", str(token_file)]
    launch = peers.Launch(name, peers.start_process(name, argv, log_dir), port)
    routing_peers.ready(launch, MODEL)
    return launch


def start_agent(log_dir: Path, name: str, region: str, gateway_port: int, token_file: Path,
                report_interval_s: float) -> peers.ManagedProcess:
    """``inferlane probe --region REGION`` reporting to the gateway on loopback."""
    executable = peers.inferlane_executable()
    if executable is None:
        raise peers.PeerError("no `inferlane` executable found")
    argv = [str(executable), "probe", "--region", region, "--gateway",
            f"http://127.0.0.1:{gateway_port}", "--token-file", str(token_file),
            "--report-interval", f"{report_interval_s:g}"]
    return peers.start_process(name, argv, log_dir)
