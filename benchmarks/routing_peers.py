"""Start the simulated fleet and the routers the routing benchmark compares, all on 127.0.0.1.

- the fleet: one ``inferlane sim`` process with N replicas on consecutive ports;
- inferlane: one ``inferlane serve`` per load-balancing value (InferencePool annotation
  ``inferlane.dev/load-balancing``), each with the whole fleet as one pool;
- peers from ``benchmarks/.peers-venv`` (versions pinned in ``ROUTER_PINS``): ``sglang-router``
  (``--policy cache_aware``, ``HF_HUB_OFFLINE=1``), ``vllm-router`` (the Rust router,
  ``--policy cache_aware``) and LiteLLM proxy with ``routing_strategy: least-busy``.

Processes are started and stopped with ``peers.start_process`` / ``ManagedProcess.stop`` (by PID,
own session); callers keep them in an ``ExitStack``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import peers
from inferlane.bench.runner import fleet_config

ROUTER_PINS: Mapping[str, str] = {"sglang-router": "0.3.2", "vllm-router": "0.1.17"}
POLICIES = ("round-robin", "random", "least-request", "default", "predicted-latency")
PEER_ROUTERS = ("sglang-router", "vllm-router", "litellm-least-busy")


@dataclass(frozen=True, slots=True)
class SimFleet:
    process: peers.ManagedProcess
    ports: tuple[int, ...]

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]


def ensure_routers(log_dir: Path) -> dict[str, str]:
    """Install the pinned routers into the peers' venv (LiteLLM via ``peers.ensure_peers_venv``)."""
    versions = peers.ensure_peers_venv(log_dir)
    python = peers.PEERS_VENV / "bin" / "python"
    script = (
        "import importlib.metadata as m, json, sys\nout = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n] = m.version(n)\n    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )

    def installed() -> dict[str, str]:
        done = subprocess.run([str(python), "-c", script, *ROUTER_PINS], capture_output=True,
                              text=True, timeout=60, check=False)
        return dict(json.loads(done.stdout)) if done.returncode == 0 else {}

    if installed() != dict(ROUTER_PINS):
        log_path = log_dir / "routers-install.log"
        with log_path.open("wb") as log:
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet",
                 *(f"{name}=={version}" for name, version in ROUTER_PINS.items())],
                stdout=log, stderr=subprocess.STDOUT, timeout=1800, check=False)
    return {**versions, **installed()}


def start_sim(log_dir: Path, replicas: int, sim_args: Sequence[str], cpus: Sequence[int] = ()
              ) -> SimFleet:
    executable = peers.inferlane_executable()
    if executable is None:
        raise peers.PeerError("no `inferlane` executable found")
    base = _free_port_block(replicas)
    argv = [str(executable), "sim", "--replicas", str(replicas), "--port", str(base),
            "--host", "127.0.0.1", *sim_args]
    process = peers.start_process("sim", argv, log_dir, cpus=cpus)
    ports = tuple(base + index for index in range(replicas))
    deadline = time.monotonic() + 30
    for port in ports:
        while True:
            if not process.alive():
                raise peers.PeerError(f"sim exited: {process.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError as error:
                if time.monotonic() > deadline:
                    process.stop()
                    raise peers.PeerError(
                        f"sim replica on {port} not up: {process.log_tail()}") from error
                time.sleep(0.1)
    return SimFleet(process, ports)


def _free_port_block(count: int) -> int:
    """A port P such that P..P+count-1 were free a moment ago (bounded search)."""
    import socket

    for _ in range(50):
        base = peers.free_port()
        if base + count > 65535:
            continue
        sockets = []
        try:
            for offset in range(count):
                probe = socket.socket()
                sockets.append(probe)
                probe.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
        finally:
            for probe in sockets:
                probe.close()
    raise peers.PeerError(f"no block of {count} free ports found")


def inferlane_config(listen_port: int, fleet: SimFleet, policy: str, models: Sequence[str]
                     ) -> str:
    return fleet_config([f"127.0.0.1:{port}" for port in fleet.ports], mode=policy,
                        models=models, listen_port=listen_port)


def validate_policy(log_dir: Path, fleet: SimFleet, policy: str, models: Sequence[str]
                    ) -> str | None:
    """None when ``inferlane validate`` accepts the policy, else the reason it gave."""
    executable = peers.inferlane_executable()
    if executable is None:
        return "no `inferlane` executable"
    path = log_dir / f"inferlane-{policy}.yaml"
    path.write_text(inferlane_config(peers.free_port(), fleet, policy, models))
    done = subprocess.run([str(executable), "validate", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)
    if done.returncode == 0:
        return None
    lines = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    return " ".join(lines)[:300] if lines else f"exit {done.returncode}"


def start_inferlane(log_dir: Path, fleet: SimFleet, policy: str, models: Sequence[str],
                    cpus: Sequence[int], model: str) -> peers.Launch:
    port = peers.free_port()
    launch = peers.launch_inferlane(log_dir, f"inferlane-{policy}",
                                    inferlane_config(port, fleet, policy, models), port,
                                    cpus=cpus, label=f"inferlane {policy}")
    ready(launch, model)
    return launch


def start_sglang_router(log_dir: Path, fleet: SimFleet, cpus: Sequence[int], model: str
                        ) -> peers.Launch:
    port = peers.free_port()
    argv = [str(peers.PEERS_VENV / "bin" / "python"), "-m", "sglang_router.launch_router",
            "--host", "127.0.0.1", "--port", str(port), "--worker-urls", *fleet.urls,
            "--policy", "cache_aware", "--prometheus-host", "127.0.0.1",
            "--prometheus-port", str(peers.free_port()), "--log-level", "warn"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    process = peers.start_process("sglang-router", argv, log_dir, cpus=cpus, env=env)
    launch = peers.Launch("sglang-router", process, port)
    ready(launch, model)
    return launch


def start_vllm_router(log_dir: Path, fleet: SimFleet, cpus: Sequence[int], model: str
                      ) -> peers.Launch:
    port = peers.free_port()
    argv = [str(peers.PEERS_VENV / "bin" / "vllm-router"), "--host", "127.0.0.1",
            "--port", str(port), "--worker-urls", *fleet.urls, "--policy", "cache_aware",
            "--prometheus-host", "127.0.0.1", "--prometheus-port", str(peers.free_port()),
            "--log-level", "warning"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    process = peers.start_process("vllm-router", argv, log_dir, cpus=cpus, env=env)
    launch = peers.Launch("vllm-router", process, port)
    ready(launch, model)
    return launch


def start_litellm(log_dir: Path, fleet: SimFleet, models: Sequence[str], cpus: Sequence[int],
                  closed_port: int, model: str) -> peers.Launch:
    """LiteLLM proxy, one worker, every replica a deployment of every model, least-busy."""
    deployments = [
        {"model_name": name,
         "litellm_params": {"model": f"openai/{name}", "api_base": f"{url}/v1",
                            "api_key": "sk-upstream-unused"}}
        for name in models for url in fleet.urls
    ]
    config = {"model_list": deployments,
              "router_settings": {"routing_strategy": "least-busy"},
              "litellm_settings": {"telemetry": False, "drop_params": True}}
    path = log_dir / "litellm-routing.yaml"
    path.write_text(json.dumps(config, indent=2))
    port = peers.free_port()
    argv = [str(peers.PEERS_VENV / "bin" / "litellm"), "--config", str(path), "--host",
            "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    process = peers.start_process("litellm-least-busy", argv, log_dir, cpus=cpus,
                                  env=peers.litellm_env(closed_port), cwd=log_dir)
    launch = peers.Launch("litellm-least-busy", process, port,
                          {"Authorization": f"Bearer {peers.MASTER_KEY}"})
    ready(launch, model, timeout_s=120)
    return launch


def ready(launch: peers.Launch, model: str, timeout_s: float = 60.0) -> None:
    """Poll a small chat completion for ``model`` through the launch until it answers 200."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "ping"}],
                       "max_tokens": 2}).encode()
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    try:
        while time.monotonic() < deadline:
            if not launch.process.alive():
                raise peers.PeerError(f"{launch.name} exited: {launch.process.log_tail()}")
            request = urllib.request.Request(
                f"http://127.0.0.1:{launch.port}/v1/chat/completions", data=body,
                headers={"Content-Type": "application/json", **launch.headers})
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError as error:
                last = str(error)
            time.sleep(0.3)
        raise peers.PeerError(f"{launch.name} not ready after {timeout_s:g} s ({last}); "
                              f"log {launch.process.log_path}:\n{launch.process.log_tail()}")
    except BaseException:
        launch.process.stop()
        raise

