"""The ``inferlane`` command line as a user runs it: validate, serve, sim, demo, and shutdown."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import pytest

from .conftest import (
    HOST,
    Process,
    Stack,
    free_port,
    free_port_range,
    gateway_doc,
    inferlane_command,
    model_server_doc,
    pool_doc,
    route_doc,
    write_config,
)

pytestmark = pytest.mark.e2e

RUN_TIMEOUT = 60.0  # bound on any one CLI run

VALID_CONFIG = [
    gateway_doc(),
    model_server_doc("server-0", "127.0.0.1:18000", ["m"], {"app": "m"}),
    pool_doc("pool-m", {"app": "m"}),
    route_doc("route-m", ["m"], "pool-m"),
]

# Two problems on known lines: a listener port out of range, a reference to a missing pool.
INVALID_CONFIG = """\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: gw
spec:
  gatewayClassName: inferlane
  listeners:
    - name: http
      port: 70000
      protocol: HTTP
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: route-m
spec:
  parentRefs:
    - name: gw
  rules:
    - backendRefs:
        - group: inference.networking.k8s.io
          kind: InferencePool
          name: pool-missing
"""


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(inferlane_command(*args), capture_output=True, text=True,
                          timeout=RUN_TIMEOUT, check=False)


def test_validate_accepts_a_valid_config(tmp_path: Path) -> None:
    config = write_config(tmp_path / "valid.yaml", VALID_CONFIG)

    result = run("validate", str(config))

    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout
    assert "1 ModelServer" in result.stdout


def test_validate_reports_every_issue_with_file_line_kind_name_and_field(tmp_path: Path) -> None:
    config = write_config(tmp_path / "invalid.yaml", INVALID_CONFIG)

    result = run("validate", str(config))

    assert result.returncode == 1, (result.stdout, result.stderr)
    port_line = line_of(INVALID_CONFIG, "port: 70000")
    pool_line = line_of(INVALID_CONFIG, "name: pool-missing")
    assert f"{config}:{port_line}: Gateway/gw: spec.listeners[0].port:" in result.stderr
    assert (f"{config}:{pool_line}: HTTPRoute/route-m: spec.rules[0].backendRefs[0].name:"
            in result.stderr)
    assert "pool-missing" in result.stderr
    assert "2 problems" in result.stderr


def test_serve_refuses_an_invalid_config(tmp_path: Path) -> None:
    config = write_config(tmp_path / "invalid.yaml", INVALID_CONFIG)

    result = run("serve", "--config", str(config), "--host", HOST, "--port", str(free_port()))

    assert result.returncode != 0
    pool_line = line_of(INVALID_CONFIG, "name: pool-missing")
    assert f"{config}:{pool_line}: HTTPRoute/route-m: spec.rules[0].backendRefs[0].name:" \
        in result.stderr


def test_missing_config_file_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"

    validated = run("validate", str(missing))
    served = run("serve", "--config", str(missing), "--host", HOST, "--port", str(free_port()))

    assert validated.returncode == 1
    assert served.returncode != 0
    for result in (validated, served):
        assert f"{missing}: ?/?: cannot read config file" in result.stderr, result.stderr


def test_serve_on_a_taken_port_exits_with_a_message(tmp_path: Path) -> None:
    config = write_config(tmp_path / "valid.yaml", VALID_CONFIG)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = run("serve", "--config", str(config), "--host", HOST, "--port", str(port))

    assert result.returncode != 0
    assert "cannot listen" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_runs_a_workload_and_prints_the_summary() -> None:
    for _ in range(3):  # ports can be taken between the probe and the bind: retry
        port, sim_port = free_port(), free_port_range(4)
        result = run("demo", "--duration", "3", "--port", str(port), "--sim-port", str(sim_port))
        if "cannot start" not in result.stdout:
            break

    assert result.returncode == 0, (result.stdout, result.stderr)
    assert f"http://127.0.0.1:{port}" in result.stdout
    assert "Requests by model" in result.stdout
    assert "Which endpoint answered" in result.stdout
    assert " 0 failed" in result.stdout
    for replica in range(4):
        assert f"127.0.0.1:{sim_port + replica}" in result.stdout


def test_sim_command_starts_replicas(tmp_path: Path) -> None:
    process = Process("sim-cli", inferlane_command(
        "sim", "--replicas", "2", "--port", "0", "--model", "m"), tmp_path)
    process.start()
    try:
        lines = process.wait_until(
            lambda: [line for line in process.stdout().splitlines() if "listening on" in line]
            if process.stdout().count("listening on") >= 2 else None,
            "two replicas to listen")
    finally:
        process.stop()
    assert lines[0].startswith("replica 0 model=m listening on http://127.0.0.1:")


def test_gateway_stops_cleanly_on_sigterm(stack: Stack, tmp_path: Path) -> None:
    config = write_config(tmp_path / "gateway.yaml", VALID_CONFIG)
    gateway = stack.gateway(config)

    gateway.send_signal(signal.SIGTERM)

    assert gateway.wait_exit(timeout=RUN_TIMEOUT) == 0
    assert "Traceback" not in gateway.stderr()
    assert "shutting down" in gateway.stderr()  # log lines go to stderr ...
    assert gateway.stdout() == ""  # ... and nothing to stdout


def test_sim_stops_cleanly_on_sigterm(stack: Stack) -> None:
    sim = stack.sim(replicas=2, models=["m"])

    sim.send_signal(signal.SIGTERM)

    assert sim.wait_exit(timeout=RUN_TIMEOUT) == 0
    assert "Traceback" not in sim.stderr(), sim.stderr()
