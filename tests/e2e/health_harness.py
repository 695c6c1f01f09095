"""Config builders, admin calls and a bounded request stream for the health end-to-end tests
(``test_health.py``).

- ``monitor_doc``, ``monitor_group_doc``, ``health_policy_doc``: the health resources.
- ``FixedPortReplica``: one ``inferlane sim`` replica on a port chosen below the kernel's
  ephemeral range, so a killed replica can come back where the config expects it (nobody's
  ``connect()`` or port-0 bind takes such a port meanwhile).
- ``set_faults``: ``POST /sim/faults`` on a replica (``{}`` clears every fault).
- ``pool_report`` / ``endpoint_report`` / ``wait_endpoint``: ``GET /admin/health`` read per pool
  and endpoint, and bounded polls on it.
- ``admin_post``: an admin call with or without the bearer token, whatever its status.
- ``Counters``/``transitions``: what an action added to the gateway's metrics.
- ``requests``, ``send_until``, ``eject``, ``during_ejection``: bounded batches of chat
  requests (each loop bounded in count and time); ``health_cli`` runs ``inferlane health``.
- ``RequestStream``: background threads sending sequential chat requests, bounded in count and
  time, each reply tagged with the phase the test was in when the request started.
"""

from __future__ import annotations

import functools
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from .conftest import (
    HOST,
    GatewayProcess,
    Process,
    ProcessFailed,
    SimReplica,
    answers_ok,
    http_get,
    inferlane_command,
    metric_value,
    poll,
    sim_command,
)
from .traffic_harness import NAMESPACE, Reply, admin_json, post_chat

API_VERSION = "inferlane.dev/v1alpha1"
POOL_GROUP = "inference.networking.k8s.io"
VERDICT_TIMEOUT = 20.0  # bound on a verdict forming (a few 0.5 s probes) on a loaded machine
REQUESTS = 9  # per check that traffic avoids (or reaches) something: 3 rounds of round-robin
MAX_REQUESTS = 200  # bound of every loop sending requests until something happens
EPHEMERAL_FLOOR = 32768  # Linux's default ip_local_port_range starts here
SPARE_PORTS = (20000, EPHEMERAL_FLOOR)


# -- config documents ---------------------------------------------------------------------------


def monitor_doc(name: str, monitor_type: str, *, interval: str = "500ms",
                timeout: str = "300ms", up: int = 1, down: int = 2,
                **settings: Any) -> dict[str, Any]:
    """A Monitor; ``settings`` holds the type's block (``http={...}``, ``inference={...}``)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Monitor",
        "metadata": {"name": name},
        "spec": {"type": monitor_type, "interval": interval, "timeout": timeout,
                 "consecutiveUp": up, "consecutiveDown": down, **settings},
    }


def member(monitor: str, **flags: bool) -> dict[str, Any]:
    """A MonitorGroup member (``mustBeHealthy=True``, ``monitoringOnly=True``, ...)."""
    return {"monitorRef": {"name": monitor}, **flags}


def monitor_group_doc(name: str, members: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "MonitorGroup",
        "metadata": {"name": name},
        "spec": {"members": [dict(m) for m in members]},
    }


def health_policy_doc(name: str, pools: Sequence[str], *, monitor: str | None = None,
                      monitor_kind: str = "Monitor", **spec: Any) -> dict[str, Any]:
    """A HealthCheckPolicy for ``pools``; without ``monitor`` it is passive-only."""
    body: dict[str, Any] = {
        "targetRefs": [{"group": POOL_GROUP, "kind": "InferencePool", "name": pool}
                       for pool in pools],
        **spec,
    }
    if monitor is not None:
        body["monitorRef"] = {"kind": monitor_kind, "name": monitor}
    return {"apiVersion": API_VERSION, "kind": "HealthCheckPolicy", "metadata": {"name": name},
            "spec": body}


def pool_key(pool: str) -> str:
    """How health (reports, drain, metric labels) names an InferencePool."""
    return f"{NAMESPACE}/{pool}"


# -- a replica that can come back on its port ------------------------------------------------


def spare_port(attempts: int = 200) -> int:
    """A port below the ephemeral range that was free a moment ago."""
    chooser = random.Random()
    for _ in range(attempts):
        port = chooser.randrange(*SPARE_PORTS)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {SPARE_PORTS} after {attempts} attempts")


class FixedPortReplica(Process):
    """One sim replica on a fixed port: ``kill`` it (SIGKILL by PID), ``start`` it again
    there."""

    def __init__(self, log_dir: Path, *, port: int, model: str, time_scale: float) -> None:
        super().__init__("sim-fixed", sim_command(
            "--replicas", "1", "--port", str(port), "--host", HOST,
            "--time-scale", str(time_scale), "--model", model), log_dir)
        self.log_dir = log_dir
        self.replica = SimReplica(0, model, f"{HOST}:{port}")
        self._starts = 0

    def start(self) -> None:
        if self._starts:  # keep the first run's logs: a restart writes new files
            stem = f"{self.name}-restart{self._starts}-{self.replica.address.replace(':', '-')}"
            self.stdout_path = self.log_dir / f"{stem}.stdout"
            self.stderr_path = self.log_dir / f"{stem}.stderr"
        self._starts += 1
        super().start()
        self.wait_until(functools.partial(answers_ok, f"{self.replica.url}/health"),
                        f"sim replica on {self.replica.address} /health")

    def kill(self) -> None:
        """SIGKILL our process and wait until its port refuses connections."""
        if self.returncode() is None:
            self.send_signal(signal.SIGKILL)
            self.wait_exit(timeout=10)
        poll(lambda: http_get(f"{self.replica.url}/health")[0] == 0 or None,
             f"the killed replica on {self.replica.address} to refuse connections", 10)


def start_fixed_replica(log_dir: Path, *, model: str, time_scale: float,
                        attempts: int = 3) -> FixedPortReplica:
    """A started ``FixedPortReplica`` (another spare port if someone took the first one);
    the caller stops it."""
    for attempt in range(attempts):
        replica = FixedPortReplica(log_dir, port=spare_port(), model=model,
                                   time_scale=time_scale)
        try:
            replica.start()
            return replica
        except ProcessFailed:
            replica.stop()
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def set_faults(replica: SimReplica, **faults: float) -> None:
    """Replace the replica's faults (none given: clear them)."""
    request = urllib.request.Request(
        f"{replica.url}/sim/faults", data=json.dumps(faults).encode(),
        headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200, f"POST /sim/faults on {replica.address}"
        current = json.loads(response.read())
    for name, value in faults.items():
        assert current[name] == value, current


# -- the health report --------------------------------------------------------------------------


def pool_report(gateway: GatewayProcess, pool: str) -> dict[str, Any]:
    report = admin_json(gateway, "/admin/health")
    for entry in report["pools"]:
        if entry["pool"] == pool_key(pool):
            found: dict[str, Any] = entry
            return found
    raise AssertionError(f"/admin/health has no pool {pool_key(pool)}: {report}")


def endpoint_report(gateway: GatewayProcess, pool: str, address: str) -> dict[str, Any]:
    entry = pool_report(gateway, pool)
    for endpoint in entry["endpoints"]:
        if endpoint["endpoint"] == address:
            found: dict[str, Any] = endpoint
            return found
    raise AssertionError(f"pool {pool_key(pool)} has no endpoint {address}: {entry}")


def members_by_monitor(endpoint: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["monitor"]: m for m in endpoint["members"]}


def wait_endpoint(gateway: GatewayProcess, pool: str, address: str, what: str,
                  check: Callable[[dict[str, Any]], bool],
                  timeout: float = VERDICT_TIMEOUT) -> dict[str, Any]:
    """Poll the endpoint's report entry until ``check`` holds; returns that entry."""

    def matched() -> dict[str, Any] | None:
        entry = endpoint_report(gateway, pool, address)
        return entry if check(entry) else None

    return gateway.wait_until(matched, f"{address} of {pool}: {what}", timeout)


def wait_pool(gateway: GatewayProcess, pool: str, what: str,
              check: Callable[[dict[str, Any]], bool],
              timeout: float = VERDICT_TIMEOUT) -> dict[str, Any]:
    def matched() -> dict[str, Any] | None:
        entry = pool_report(gateway, pool)
        return entry if check(entry) else None

    return gateway.wait_until(matched, f"pool {pool}: {what}", timeout)


def all_healthy(pool: Mapping[str, Any]) -> bool:
    return all(e["verdict"] == "healthy" for e in pool["endpoints"]) and not pool["critical"]


# -- admin calls ----------------------------------------------------------------------------------


def admin_post(gateway: GatewayProcess, path: str, body: Mapping[str, Any],
               token: str | None) -> tuple[int, Any]:
    """Status and JSON body of an admin POST, whatever the status."""
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{gateway.base_url}{path}",
                                     data=json.dumps(body).encode(), headers=headers,
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return int(error.code), json.loads(error.read())


# -- requests -------------------------------------------------------------------------------------


class Counters:
    """Metric samples read before an action, to assert on what the action added."""

    def __init__(self, gateway: GatewayProcess) -> None:
        self.gateway = gateway
        self.before = gateway.metrics()

    def added(self, name: str, **labels: str) -> float:
        return (metric_value(self.gateway.metrics(), name, **labels)
                - metric_value(self.before, name, **labels))


def transitions(counters: Counters, kind: str, pool: str, endpoint: str, state: str) -> float:
    return counters.added("inferlane_health_transitions_total", kind=kind, pool=pool_key(pool),
                          endpoint=endpoint, state=state)


def assert_ok(reply: Reply) -> None:
    assert reply.status == 200, reply.describe()


def requests(gateway: GatewayProcess, model: str, count: int = REQUESTS,
             **options: Any) -> list[Reply]:
    replies = [post_chat(gateway, model, content=f"request {i}", max_tokens=4, **options)
               for i in range(count)]
    for reply in replies:
        assert_ok(reply)
    return replies


def send_until(gateway: GatewayProcess, model: str, what: str,
               done: Callable[[Reply], bool], **options: Any) -> Reply:
    """Send requests (each must succeed) until ``done(reply)``; bounded in count and time."""
    sent = 0

    def one() -> Reply | None:
        nonlocal sent
        sent += 1
        assert sent <= MAX_REQUESTS, f"{MAX_REQUESTS} requests and still not {what}"
        reply = post_chat(gateway, model, content=f"probe {sent}", max_tokens=4, **options)
        assert_ok(reply)
        return reply if done(reply) else None

    return gateway.wait_until(one, what, VERDICT_TIMEOUT)


def eject(gateway: GatewayProcess, pool: str, model: str, address: str) -> None:
    """Send requests until ``address`` (answering every request with a 500) is ejected:
    round-robin sends it every n-th request, answered 500 (no retry is configured), and
    enough of them in a row eject it."""
    sent = 0

    def ejected() -> bool | None:
        nonlocal sent
        sent += 1
        assert sent <= MAX_REQUESTS, f"{address} was never ejected"
        reply = post_chat(gateway, model, content=f"eject {sent}", max_tokens=4)
        assert reply.status in (200, 500), reply.describe()
        return endpoint_report(gateway, pool, address)["ejected"] or None

    gateway.wait_until(ejected, f"{address} of {pool} to be ejected", VERDICT_TIMEOUT)


def during_ejection(gateway: GatewayProcess, pool: str, model: str, address: str,
                    count: int) -> list[Reply]:
    """``count`` requests each sent while the report says ``address`` stays ejected for a while
    yet (one ending meanwhile is waited out: the next failures eject it again, for longer)."""
    replies: list[Reply] = []
    for i in range(MAX_REQUESTS):
        entry = endpoint_report(gateway, pool, address)
        if entry["ejected"] and entry["ejectedForSeconds"] > 0.5:
            reply = post_chat(gateway, model, content=f"ejected {i}", max_tokens=4)
            assert_ok(reply)
            replies.append(reply)
            if len(replies) == count:
                return replies
        else:
            # Not ejected (or about to return): the next failures eject it again.
            post_chat(gateway, model, content=f"re-eject {i}", max_tokens=4)
    raise AssertionError(f"only {len(replies)} requests were sent during an ejection")


def health_cli(gateway: GatewayProcess, columns: str | None) -> str:
    """``inferlane health`` against ``gateway``, its stdout a pipe; ``columns``: the terminal
    width it is told (None: none, as in ``inferlane health | grep ...``)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    if columns is not None:
        env["COLUMNS"] = columns
    result = subprocess.run(
        inferlane_command("health", "--gateway", gateway.base_url), capture_output=True,
        text=True, timeout=30, env=env, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


# -- a steady stream of requests ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sent:
    phase: str  # the stream's phase when the request started
    reply: Reply


class RequestStream:
    """``threads`` threads each sending sequential non-streamed chat requests for ``model``
    until ``stop``, at most ``max_requests`` in all and for at most ``max_seconds``.

    A request that gets no HTTP answer at all is recorded as status 0, so a test sees it as the
    failure it is."""

    def __init__(self, gateway: GatewayProcess, model: str, *, threads: int = 2,
                 max_requests: int = 1000, max_seconds: float = 60.0) -> None:
        self._gateway = gateway
        self._model = model
        self._max_requests = max_requests
        self._deadline = time.monotonic() + max_seconds
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._phase = "before"
        self._started = 0
        self._sent: list[Sent] = []
        self._threads = [threading.Thread(target=self._run, name=f"stream-{model}-{i}",
                                          daemon=True) for i in range(threads)]

    def __enter__(self) -> RequestStream:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> list[Sent]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
            assert not thread.is_alive(), f"{thread.name} did not stop"
        return self.sent

    @property
    def sent(self) -> list[Sent]:
        with self._lock:
            return list(self._sent)

    def enter(self, phase: str) -> None:
        """Requests started from now on are tagged ``phase``."""
        with self._lock:
            self._phase = phase

    def answered(self, phase: str | None = None) -> int:
        with self._lock:
            return sum(1 for s in self._sent if phase is None or s.phase == phase)

    def wait_answered(self, phase: str, count: int, timeout: float = 30.0) -> None:
        poll(lambda: self.answered(phase) >= count or None,
             f"{count} answers in phase {phase!r} of the {self._model} stream", timeout)

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            with self._lock:
                if self._started >= self._max_requests:
                    return
                self._started += 1
                number, phase = self._started, self._phase
            try:
                reply = post_chat(self._gateway, self._model, content=f"steady {number}",
                                  max_tokens=8)
            except OSError as error:  # no HTTP answer at all: reset, refused, timed out
                reply = Reply(0, {}, repr(error).encode())
            with self._lock:
                self._sent.append(Sent(phase, reply))
