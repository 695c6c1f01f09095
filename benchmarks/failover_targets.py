"""The processes of the failover benchmark, all on 127.0.0.1, and the configs they read.

- ``Primary``: three ``inferlane sim`` processes of one replica each (the primary InferencePool),
  on fixed ports so replica 2 can be SIGKILLed and a fresh one started on the same port; faults
  change over ``POST /sim/faults``;
- the fallback provider: one more ``inferlane sim`` process, used as an ``openai-compatible``
  Provider (by inferlane) or a ``backup`` deployment (by LiteLLM);
- ``start_inferlane``: ``inferlane serve`` with the pool, the Provider and a TrafficPolicy whose
  fallback is that Provider (``inferlane_config`` writes it);
- ``start_litellm``: LiteLLM proxy, one worker, the replicas as deployments of the model and the
  provider as a ``fallbacks`` model group.

Processes are started with ``peers.start_process`` and stopped by PID (``ManagedProcess.stop``,
or ``popen.kill()`` for the SIGKILL phase); the caller keeps them in an ``ExitStack``.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

import peers
import routing_peers

MODEL = "sim-model"
BACKUP_GROUP = "sim-model-backup"  # LiteLLM's model group of the provider
ROUTE = "chat"
PROVIDER = "backup"


def start_sim(log_dir: Path, name: str, port: int, sim_args: Sequence[str],
              timeout_s: float = 30.0) -> peers.ManagedProcess:
    """One ``inferlane sim`` replica on ``port``, waited for on ``/health``."""
    executable = peers.inferlane_executable()
    if executable is None:
        raise peers.PeerError("no `inferlane` executable found")
    argv = [str(executable), "sim", "--replicas", "1", "--port", str(port), "--host",
            "127.0.0.1", "--model", MODEL, *sim_args]
    process = peers.start_process(name, argv, log_dir)
    deadline = time.monotonic() + timeout_s
    while True:
        if not process.alive():
            raise peers.PeerError(f"{name} exited: {process.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return process
        except OSError as error:
            if time.monotonic() > deadline:
                process.stop()
                raise peers.PeerError(f"{name} not up on {port}: {process.log_tail()}") from error
            time.sleep(0.1)


class Primary:
    """The primary pool's replicas, one process each, on ports fixed for the whole run."""

    def __init__(self, log_dir: Path, sim_args: Sequence[str], replicas: int = 3) -> None:
        self._log_dir = log_dir
        self._sim_args = tuple(sim_args)
        self.ports = tuple(peers.free_port() for _ in range(replicas))
        self.processes: list[peers.ManagedProcess | None] = [None] * replicas
        self._starts = 0

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    def start(self, index: int) -> None:
        self._starts += 1
        self.processes[index] = start_sim(
            self._log_dir, f"replica-{index}-{self._starts}", self.ports[index],
            [*self._sim_args, "--seed", str(index)])

    def kill(self, index: int) -> float:
        """SIGKILL, as when the OOM killer or a node failure takes the server; when it was sent
        (``perf_counter``)."""
        at = time.perf_counter()
        process = self.processes[index]
        if process is not None and process.alive():
            process.popen.kill()
            process.popen.wait(10)
        return at

    def alive(self, index: int) -> bool:
        process = self.processes[index]
        return process is not None and process.alive()

    def stop(self) -> None:
        for process in self.processes:
            if process is not None:
                process.stop()

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p is not None and p.alive()]


async def set_faults(session: aiohttp.ClientSession, url: str, faults: dict[str, Any]) -> None:
    """Replace one replica's faults (``POST /sim/faults``); raise unless it took them."""
    async with session.post(f"{url}/sim/faults", json=faults) as response:
        if response.status != 200:
            raise peers.PeerError(f"{url}/sim/faults answered {response.status}: "
                                  f"{await response.text()}")


# --- inferlane ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    pool_retries: int  # the route rule's retry.attempts (0: no same-pool retry)
    budget_percent: float
    budget_min_retries: int
    cooldown_s: float


def inferlane_config(listen_port: int, primary: Primary, provider_url: str,
                     gateway: GatewaySettings) -> str:
    rule: dict[str, Any] = {"backendRefs": [{"group": "inference.networking.k8s.io",
                                             "kind": "InferencePool", "name": "primary"}]}
    if gateway.pool_retries:
        rule["retry"] = {"attempts": gateway.pool_retries}
    docs: list[dict[str, Any]] = [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
         "metadata": {"name": "bench"},
         "spec": {"gatewayClassName": "inferlane",
                  "listeners": [{"name": "http", "port": listen_port, "protocol": "HTTP"}]}},
        {"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
         "metadata": {"name": "primary"},
         "spec": {"selector": {"matchLabels": {"app": "primary"}},
                  "targetPorts": [{"number": 8000}]}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
         "metadata": {"name": ROUTE},
         "spec": {"parentRefs": [{"name": "bench"}], "rules": [rule]}},
        {"apiVersion": "inferlane.dev/v1alpha1", "kind": "Provider",
         "metadata": {"name": PROVIDER},
         "spec": {"type": "openai-compatible", "baseURL": f"{provider_url}/v1"}},
        {"apiVersion": "inferlane.dev/v1alpha1", "kind": "TrafficPolicy",
         "metadata": {"name": "failover"},
         "spec": {"targetRefs": [{"kind": "HTTPRoute", "name": ROUTE}],
                  "fallback": {"backendRefs": [{"group": "inferlane.dev", "kind": "Provider",
                                                "name": PROVIDER}]},
                  "retry": {"budget": {"percent": gateway.budget_percent,
                                       "minRetries": gateway.budget_min_retries}},
                  "cooldown": {"duration": f"{gateway.cooldown_s:g}s"}}},
    ]
    for index, port in enumerate(primary.ports):
        docs.append({"apiVersion": "inferlane.dev/v1alpha1", "kind": "ModelServer",
                     "metadata": {"name": f"replica-{index}", "labels": {"app": "primary"}},
                     "spec": {"address": f"127.0.0.1:{port}", "engine": "vllm",
                              "models": [MODEL]}})
    return yaml.safe_dump_all(docs, sort_keys=False)


def start_inferlane(log_dir: Path, name: str, primary: Primary, provider_url: str,
                    gateway: GatewaySettings) -> peers.Launch:
    port = peers.free_port()
    launch = peers.launch_inferlane(log_dir, name,
                                    inferlane_config(port, primary, provider_url, gateway), port)
    routing_peers.ready(launch, MODEL)
    return launch


# --- LiteLLM ------------------------------------------------------------------------------------


def litellm_config(primary: Primary, provider_url: str, retries: int, cooldown_s: float
                   ) -> dict[str, Any]:
    deployments = [
        {"model_name": MODEL,
         "litellm_params": {"model": f"openai/{MODEL}", "api_base": f"{url}/v1",
                            "api_key": "sk-upstream-unused", "timeout": 30}}
        for url in primary.urls
    ]
    deployments.append(
        {"model_name": BACKUP_GROUP,
         "litellm_params": {"model": f"openai/{MODEL}", "api_base": f"{provider_url}/v1",
                            "api_key": "sk-upstream-unused", "timeout": 30}})
    return {"model_list": deployments,
            "router_settings": {"routing_strategy": "simple-shuffle", "num_retries": retries,
                                "fallbacks": [{MODEL: [BACKUP_GROUP]}],
                                "cooldown_time": cooldown_s},
            "litellm_settings": {"telemetry": False, "drop_params": True}}


def start_litellm(log_dir: Path, primary: Primary, provider_url: str, retries: int,
                  cooldown_s: float, closed_port: int) -> peers.Launch:
    path = log_dir / "litellm-failover.yaml"
    path.write_text(json.dumps(litellm_config(primary, provider_url, retries, cooldown_s),
                               indent=2))
    port = peers.free_port()
    argv = [str(peers.PEERS_VENV / "bin" / "litellm"), "--config", str(path), "--host",
            "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    process = peers.start_process("litellm-failover", argv, log_dir,
                                  env=peers.litellm_env(closed_port), cwd=log_dir)
    launch = peers.Launch("litellm", process, port,
                          {"Authorization": f"Bearer {peers.MASTER_KEY}"})
    routing_peers.ready(launch, MODEL, timeout_s=180)
    return launch
