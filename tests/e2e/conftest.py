"""End-to-end harness: real ``inferlane`` processes over 127.0.0.1, nothing of ours mocked.

Tests start the simulator (``inferlane sim``) and the gateway (``inferlane serve``) as
subprocesses on ephemeral ports, talk to them with real clients (the ``openai`` SDK; raw aiohttp
where the SDK cannot express a case), and stop them by PID in fixture teardown: SIGTERM, then
SIGKILL after a timeout. Every wait is a bounded poll; nothing asserts on timing.

- ``Process``: one subprocess; stdout/stderr go to files so assertion messages can quote them.
- ``SimFleet`` / ``GatewayProcess``: the two inferlane servers, started and waited for.
- ``Stack``: starts fleets and gateways for one test or module and stops all of them.
- ``*_doc`` builders and ``write_config``: the YAML a test needs, written into ``tmp_path``.
- ``metric_value``: sums Prometheus samples by name and labels.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import openai
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

T = TypeVar("T")

HOST = "127.0.0.1"
START_TIMEOUT = 30.0  # seconds for a process to listen; generous for a loaded 2-core machine
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
POLL_INTERVAL = 0.05
MODEL_HEADER = "X-Gateway-Model-Name"

_counter = itertools.count()


def inferlane_command(*args: str) -> list[str]:
    """The argv running ``inferlane ARGS`` with this interpreter (the venv's)."""
    return [sys.executable, "-m", "inferlane", *args]


def sim_command(*args: str) -> list[str]:
    """The argv running ``inferlane sim ARGS``."""
    return inferlane_command("sim", *args)


def free_port() -> int:
    """A port that was free a moment ago (callers retry if someone takes it meanwhile)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def free_port_range(count: int, attempts: int = 50) -> int:
    """First of ``count`` consecutive ports that were all free a moment ago."""
    for _ in range(attempts):
        first = free_port()
        if first + count > 65535:
            continue
        sockets: list[socket.socket] = []
        try:
            for port in range(first, first + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.bind((HOST, port))
            return first
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free ports found in {attempts} attempts")


def poll(check: Callable[[], T | None], what: str, timeout: float,
         interval: float = POLL_INTERVAL) -> T:
    """Call ``check`` until it returns something other than None; AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


async def poll_async(check: Callable[[], T | None], what: str, within: float) -> T:
    """``poll`` for async tests: the (possibly blocking) ``check`` runs in a worker thread."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = await asyncio.to_thread(check)
        if result is not None:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within:g}s waiting for {what}")
        await asyncio.sleep(POLL_INTERVAL)


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """Status and body of GET ``url``; status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return int(error.code), error.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def answers_ok(url: str) -> bool | None:
    """True once GET ``url`` answers 200 (None before, for ``poll``)."""
    return http_get(url)[0] == 200 or None


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def assert_openai_error(body: Any, *, code: str | None = None) -> dict[str, Any]:
    """``body`` is OpenAI's error JSON; returns the inner ``error`` object."""
    assert isinstance(body, dict), f"error body is not a JSON object: {body!r}"
    assert set(body) == {"error"}, f"unexpected top-level keys: {body!r}"
    error = body["error"]
    assert isinstance(error, dict), body
    assert {"message", "type", "param", "code"} <= set(error), f"missing keys: {error!r}"
    for key in ("message", "type"):
        assert isinstance(error[key], str), error
        assert error[key], error
    if code is not None:
        assert error["code"] == code, error
    return error


# -- processes ------------------------------------------------------------------------------


class ProcessFailed(AssertionError):
    pass


class Process:
    """One subprocess we started; output captured to files under ``log_dir``."""

    def __init__(self, name: str, argv: Sequence[str], log_dir: Path) -> None:
        self.name = name
        self.argv = list(argv)
        stem = f"{name}-{next(_counter)}"
        self.stdout_path = log_dir / f"{stem}.stdout"
        self.stderr_path = log_dir / f"{stem}.stderr"
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._popen is not None, f"{self.name} was never started"
        return self._popen.pid

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # The child keeps its own copies of the descriptors; ours close right away.
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self._popen = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env
            )

    def returncode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def describe(self, lines: int = 40) -> str:
        state = "not started" if self._popen is None else (
            "running" if self.returncode() is None else f"exited {self.returncode()}")
        tail = "\n".join(self.stderr().splitlines()[-lines:])
        shown = " ".join(arg for arg in self.argv[1:] if "\n" not in arg)
        return f"{self.name} (pid {self._popen.pid if self._popen else '-'}, {state}): " \
               f"{shown}\n--- stderr tail ---\n{tail}"

    def wait_until(self, check: Callable[[], T | None], what: str,
                   timeout: float = START_TIMEOUT) -> T:
        """Poll ``check`` while the process lives; fail fast with its stderr if it dies."""

        def alive_check() -> T | None:
            result = check()
            if result is None and self.returncode() is not None:
                raise ProcessFailed(f"{what}: process died\n{self.describe()}")
            return result

        try:
            return poll(alive_check, what, timeout)
        except ProcessFailed:
            raise
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.describe()}") from None

    def send_signal(self, sig: int) -> None:
        assert self._popen is not None
        self._popen.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        assert self._popen is not None
        return self._popen.wait(timeout=timeout)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        popen = self._popen
        if popen is None:
            return None
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    popen.kill()
                popen.wait(timeout=timeout)
        return popen.returncode


@dataclass(frozen=True, slots=True)
class SimReplica:
    index: int
    model: str
    address: str  # host:port

    @property
    def url(self) -> str:
        return f"http://{self.address}"


_REPLICA_LINE = re.compile(r"^replica (\d+) model=(\S+) listening on http://(\S+)$", re.M)


class SimFleet(Process):
    """``inferlane sim`` on ephemeral ports; ``replicas`` parsed from its startup lines."""

    def __init__(self, log_dir: Path, *, replicas: int, models: Sequence[str],
                 time_scale: float, extra: Sequence[str] = ()) -> None:
        argv = ["--replicas", str(replicas), "--port", "0", "--host", HOST,
                "--time-scale", str(time_scale)]
        for model in models:
            argv += ["--model", model]
        super().__init__("sim", sim_command(*argv, *extra), log_dir)
        self.expected = replicas
        self.replicas: list[SimReplica] = []

    def start(self) -> None:
        super().start()
        self.replicas = self.wait_until(self._parse_replicas, "sim replicas to listen")
        for replica in self.replicas:
            self.wait_until(functools.partial(answers_ok, f"{replica.url}/health"),
                            f"sim replica {replica.index} /health")

    def _parse_replicas(self) -> list[SimReplica] | None:
        found = [SimReplica(int(i), model, address)
                 for i, model, address in _REPLICA_LINE.findall(self.stdout())]
        return found if len(found) >= self.expected else None

    def serving(self, model: str) -> list[SimReplica]:
        return [r for r in self.replicas if r.model == model]

    def metrics(self, replica: SimReplica) -> str:
        status, body = http_get(f"{replica.url}/metrics")
        assert status == 200, f"sim /metrics of {replica.address} answered {status}"
        return body.decode()

    def aborted(self, replicas: Sequence[SimReplica] | None = None) -> float:
        """``inferlane_sim_aborted_requests_total`` summed over ``replicas`` (default: all)."""
        return sum(metric_value(self.metrics(r), "inferlane_sim_aborted_requests_total")
                   for r in (self.replicas if replicas is None else replicas))


class GatewayProcess(Process):
    """``inferlane serve`` on a free port, ready once ``/readyz`` answers 200."""

    START_ATTEMPTS = 5

    def __init__(self, log_dir: Path, config: Path, extra: Sequence[str] = ()) -> None:
        super().__init__("gateway", [], log_dir)
        self.log_dir = log_dir
        self.config = config
        self.extra = list(extra)
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/v1"

    def start(self) -> None:
        for attempt in range(self.START_ATTEMPTS):
            self.port = free_port()
            self.argv = inferlane_command(
                "serve", "--config", str(self.config), "--host", HOST, "--port", str(self.port),
                *self.extra)
            super().start()
            try:
                self.wait_until(functools.partial(answers_ok, f"{self.base_url}/readyz"),
                                "gateway /readyz")
                return
            except ProcessFailed:
                # Someone took the port between free_port() and the bind: try another one.
                if "cannot listen" not in self.stderr() or attempt == self.START_ATTEMPTS - 1:
                    raise
                self.stop()
                stem = f"gateway-{next(_counter)}"
                self.stdout_path = self.log_dir / f"{stem}.stdout"
                self.stderr_path = self.log_dir / f"{stem}.stderr"

    def readyz(self) -> dict[str, Any]:
        status, body = http_get(f"{self.base_url}/readyz")
        assert status == 200, f"/readyz answered {status}\n{self.describe()}"
        result: dict[str, Any] = json.loads(body)
        return result

    def generation(self) -> int:
        return int(self.readyz()["configGeneration"])

    def metrics(self) -> str:
        status, body = http_get(f"{self.base_url}/metrics")
        assert status == 200, f"/metrics answered {status}\n{self.describe()}"
        return body.decode()

    def metric(self, name: str, **labels: str) -> float:
        return metric_value(self.metrics(), name, **labels)

    def client(self, **options: Any) -> openai.OpenAI:
        """A sync SDK client; use it as a context manager so it is closed."""
        options.setdefault("timeout", 60.0)
        return openai.OpenAI(base_url=self.api_base, api_key="unused", max_retries=0, **options)

    def async_client(self, **options: Any) -> openai.AsyncOpenAI:
        options.setdefault("timeout", 60.0)
        return openai.AsyncOpenAI(base_url=self.api_base, api_key="unused", max_retries=0,
                                  **options)


class Stack:
    """Processes started for one test (or module); ``close()`` stops every one of them."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._processes: list[Process] = []

    def sim(self, *, replicas: int = 1, models: Sequence[str] = ("sim-model",),
            time_scale: float = 0.05, extra: Sequence[str] = ()) -> SimFleet:
        fleet = SimFleet(self.log_dir, replicas=replicas, models=models, time_scale=time_scale,
                         extra=extra)
        self._processes.append(fleet)
        fleet.start()
        return fleet

    def gateway(self, config: Path, extra: Sequence[str] = ()) -> GatewayProcess:
        gateway = GatewayProcess(self.log_dir, config, extra)
        self._processes.append(gateway)
        gateway.start()
        return gateway

    def close(self) -> None:
        for process in reversed(self._processes):
            process.stop()
        self._processes.clear()


@contextlib.contextmanager
def running_stack(log_dir: Path) -> Iterator[Stack]:
    stack = Stack(log_dir)
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """Processes that live for one test."""
    with running_stack(tmp_path) as started:
        yield started


# -- config ---------------------------------------------------------------------------------

GATEWAY_NAME = "gw"


def gateway_doc(name: str = GATEWAY_NAME) -> dict[str, Any]:
    # The port is replaced by ``serve --port``; the config needs a valid one all the same.
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": name},
        "spec": {"gatewayClassName": "inferlane",
                 "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}]},
    }


def model_server_doc(name: str, address: str, models: Sequence[str],
                     labels: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "inferlane.dev/v1alpha1",
        "kind": "ModelServer",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": {"address": address, "engine": "vllm", "models": list(models)},
    }


def replica_docs(prefix: str, replicas: Sequence[SimReplica],
                 labels: Mapping[str, str], models: Sequence[str] | None = None
                 ) -> list[dict[str, Any]]:
    """One ModelServer per sim replica, named ``PREFIX-INDEX``."""
    return [model_server_doc(f"{prefix}-{r.index}", r.address,
                             list(models) if models is not None else [r.model], labels)
            for r in replicas]


def pool_doc(name: str, match_labels: Mapping[str, str],
             load_balancing: str = "round-robin") -> dict[str, Any]:
    return {
        "apiVersion": "inference.networking.k8s.io/v1",
        "kind": "InferencePool",
        "metadata": {"name": name,
                     "annotations": {"inferlane.dev/load-balancing": load_balancing}},
        "spec": {"selector": {"matchLabels": dict(match_labels)},
                 "targetPorts": [{"number": 8000}]},
    }


def route_doc(name: str, models: Sequence[str], pool: str, *,
              timeouts: Mapping[str, str] | None = None,
              match_type: str = "Exact") -> dict[str, Any]:
    rule: dict[str, Any] = {
        "matches": [{"headers": [{"name": MODEL_HEADER, "type": match_type, "value": model}]}
                    for model in models],
        "backendRefs": [{"group": "inference.networking.k8s.io", "kind": "InferencePool",
                         "name": pool}],
    }
    if timeouts is not None:
        rule["timeouts"] = dict(timeouts)
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {"parentRefs": [{"name": GATEWAY_NAME}], "rules": [rule]},
    }


def rewrite_doc(name: str, pool: str, model: str, targets: Mapping[str, int]) -> dict[str, Any]:
    return {
        "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
        "kind": "InferenceModelRewrite",
        "metadata": {"name": name},
        "spec": {
            "poolRef": {"name": pool},
            "rules": [{"matches": [{"model": {"value": model}}],
                       "targets": [{"modelRewrite": target, "weight": weight}
                                   for target, weight in targets.items()]}],
        },
    }


def write_config(path: Path, documents: Sequence[Mapping[str, Any]] | str) -> Path:
    """Write the config atomically (rename), so a polling reloader never sees half a file."""
    text = documents if isinstance(documents, str) else yaml.safe_dump_all(
        [dict(d) for d in documents], sort_keys=False)
    temporary = path.with_name(f".{path.name}.{next(_counter)}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
    return path


# -- the shared stack -----------------------------------------------------------------------
# One sim process and one gateway serve test_api, test_routing and test_errors: starting them
# once keeps the suite fast. Tests that break a process (crashes, kills) start their own.

MODEL_A = "m-a"  # pool-a: three replicas, round-robin, plus a LoRA adapter
ADAPTER_A = "m-a-sql"
CANARY_A = "m-a-canary"  # rewritten inside pool-a to MODEL_A or ADAPTER_A, 3:1
LIMITED_A = "m-a-limited"  # rewritten to MODEL_A; its route has a 1s request timeout
MODEL_B = "m-b"  # pool-b: one replica
MODEL_HANG = "m-hang"  # pool-hang: a replica that never answers; route timeout 1s
MODEL_HANG_BACKEND = "m-hang-backend"  # the same pool; route backendRequest timeout 1s
MODEL_EMPTY = "m-empty"  # pool-empty selects no ModelServer
MODEL_DEAD = "m-dead"  # pool-dead: a ModelServer whose port nobody listens on
MODEL_ERROR = "m-err"  # pool-err: a replica answering every request with a 500
ANY_CONTROL = r"ctl-[\s\S]*"  # a RegularExpression route to pool-a for any "ctl-..." name
CANARY_WEIGHTS = {MODEL_A: 3, ADAPTER_A: 1}
MAX_BODY_BYTES = 64 * 1024
ROUTED_MODELS = {MODEL_A, CANARY_A, LIMITED_A, MODEL_B, MODEL_HANG, MODEL_HANG_BACKEND,
                 MODEL_EMPTY, MODEL_DEAD, MODEL_ERROR}


@dataclass(frozen=True, slots=True)
class SharedStack:
    sim: SimFleet
    gateway: GatewayProcess
    pool_a: tuple[SimReplica, ...]
    pool_b: tuple[SimReplica, ...]
    error_replica: SimReplica
    dead_address: str


def shared_stack_config(sim: SimFleet, dead_address: str) -> list[dict[str, Any]]:
    return [
        gateway_doc(),
        *replica_docs("a", sim.serving(MODEL_A), {"app": "a"}, [MODEL_A, ADAPTER_A]),
        *replica_docs("b", sim.serving(MODEL_B), {"app": "b"}),
        *replica_docs("hang", sim.serving(MODEL_HANG), {"app": "hang"}),
        *replica_docs("err", sim.serving(MODEL_ERROR), {"app": "err"}),
        model_server_doc("dead", dead_address, [MODEL_DEAD], {"app": "dead"}),
        pool_doc("pool-a", {"app": "a"}),
        pool_doc("pool-b", {"app": "b"}),
        pool_doc("pool-hang", {"app": "hang"}),
        pool_doc("pool-err", {"app": "err"}),
        pool_doc("pool-dead", {"app": "dead"}),
        pool_doc("pool-empty", {"app": "nobody"}),
        route_doc("route-a", [MODEL_A, CANARY_A], "pool-a"),
        route_doc("route-limited", [LIMITED_A], "pool-a", timeouts={"request": "1s"}),
        route_doc("route-b", [MODEL_B], "pool-b"),
        route_doc("route-hang", [MODEL_HANG], "pool-hang", timeouts={"request": "1s"}),
        route_doc("route-hang-backend", [MODEL_HANG_BACKEND], "pool-hang",
                  timeouts={"backendRequest": "1s"}),
        route_doc("route-dead", [MODEL_DEAD], "pool-dead"),
        route_doc("route-err", [MODEL_ERROR], "pool-err"),
        route_doc("route-ctl", [ANY_CONTROL], "pool-a", match_type="RegularExpression"),
        route_doc("route-empty", [MODEL_EMPTY], "pool-empty"),
        rewrite_doc("canary", "pool-a", CANARY_A, CANARY_WEIGHTS),
        rewrite_doc("limited", "pool-a", LIMITED_A, {MODEL_A: 1}),
    ]


@pytest.fixture(scope="session")
def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedStack]:
    log_dir = tmp_path_factory.mktemp("shared-stack")
    with running_stack(log_dir) as started:
        models = [MODEL_A, MODEL_A, MODEL_A, MODEL_B, MODEL_HANG, MODEL_ERROR]
        sim = started.sim(replicas=len(models), models=models, time_scale=0.05,
                          extra=["--lora", f"{ADAPTER_A}={MODEL_A}",
                                 "--hang-rate", f"{models.index(MODEL_HANG)}:1",
                                 "--error-rate", f"{models.index(MODEL_ERROR)}:1"])
        dead_address = f"{HOST}:{free_port()}"  # bound and closed: connections are refused
        config = write_config(log_dir / "gateway.yaml", shared_stack_config(sim, dead_address))
        gateway = started.gateway(config, ["--max-body-bytes", str(MAX_BODY_BYTES)])
        yield SharedStack(sim, gateway, tuple(sim.serving(MODEL_A)), tuple(sim.serving(MODEL_B)),
                          sim.serving(MODEL_ERROR)[0], dead_address)
