"""The L4 benchmark's paths (``l4.py``): the processes behind each one, started and checked.

- ``Agent``: an ``l4_load.py agent`` process (JSON commands in, answers out), one per topology;
- ``start_inferlane``: ``inferlane serve`` with one TCP listener and a TCPRoute to a sink;
- ``Target``: a path -- where its agent connects, which proxy to meter, and what to set up
  around each run (``EbpfSession``: attach the eBPF fast path for that run only);
- ``setup_loopback``/``setup_veth``: start the sinks, agents and proxies of a topology, check
  each path carries a round trip, and list the ones that cannot run with the reason.

Every process is started here in its own session and registered with the caller's
``ExitStack``, which stops it by its PID; the veth lab is removed the same way.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import select
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import l4_netns
import machine
import peers

LOAD_SCRIPT = peers.BENCH_DIR / "l4_load.py"
IO_TIMEOUT = 15.0  # l4_load.IO_TIMEOUT
VETH_PORTS = {"veth-direct": 7000, "veth-ebpf": 7001, "veth-userspace": 7002}
VIP_PORT = 8000
VETH_PROXY_PORT = 9000
EBPF_MAX_FLOWS = 65536  # ≈13 MiB of kernel memory; a 64-connection run opens ~20k flows


# --- processes -----------------------------------------------------------------------------------


class AgentError(RuntimeError):
    """A load agent failed a command, gave no answer in time, or exited."""


class Agent:
    """An ``l4_load.py agent`` process: JSON commands in, one JSON answer per command out."""

    def __init__(self, name: str, argv: Sequence[str], log_dir: Path,
                 cpus: Sequence[int]) -> None:
        command = [*(["taskset", "-c", ",".join(map(str, cpus))] if cpus else []), *argv]
        log_path = log_dir / f"{name}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=log, start_new_session=True)
        self.process = peers.ManagedProcess(name, popen, log_path, tuple(cpus))

    @property
    def pid(self) -> int:
        return self.process.pid

    def ask(self, command: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        popen = self.process.popen
        assert popen.stdin is not None
        assert popen.stdout is not None
        try:
            popen.stdin.write(json.dumps(command).encode() + b"\n")
            popen.stdin.flush()
        except OSError as error:
            raise AgentError(f"{self.process.name} is gone ({error}); log "
                             f"{self.process.log_path}:\n{self.process.log_tail()}") from None
        readable, _, _ = select.select([popen.stdout], [], [], timeout_s)
        if not readable:
            raise AgentError(f"{self.process.name} gave no answer to {command['op']} in "
                             f"{timeout_s:g} s")
        line = popen.stdout.readline()
        if not line:
            raise AgentError(f"{self.process.name} exited; log {self.process.log_path}:\n"
                             f"{self.process.log_tail()}")
        answer: dict[str, Any] = json.loads(line)
        if "failed" in answer:
            raise AgentError(f"{command['op']} to {command.get('host')}:{command.get('port')} "
                             f"failed: {answer['failed']}")
        return answer

    def close(self) -> None:
        popen = self.process.popen
        with contextlib.suppress(OSError, ValueError):
            assert popen.stdin is not None
            popen.stdin.write(b'{"op": "quit"}\n')
            popen.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(5)
        self.process.stop()


def tcp_route_config(port: int, backend: str) -> str:
    """One TCP listener, a TCPRoute (maglev, user space) to a BackendSet of one sink."""
    return f"""\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: bench}}
spec:
  gatewayClassName: inferlane
  listeners:
  - {{name: l4, port: {port}, protocol: TCP}}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata:
  name: sink
  annotations:
    inferlane.dev/l4-algorithm: maglev
    inferlane.dev/dataplane: userspace
spec:
  parentRefs: [{{name: bench, sectionName: l4}}]
  rules:
  - backendRefs: [{{group: inferlane.dev, kind: BackendSet, name: sink}}]
---
apiVersion: inferlane.dev/v1alpha1
kind: BackendSet
metadata: {{name: sink}}
spec:
  endpoints:
  - {{address: "{backend}"}}
"""


def start_inferlane(name: str, log_dir: Path, listen: tuple[str, int], backend: str,
                    cpus: Sequence[int], wrap: Callable[[list[str]], list[str]] = list,
                    ) -> peers.ManagedProcess:
    """``inferlane serve`` with only the TCP listener (``wrap``: e.g. into a namespace)."""
    executable = peers.inferlane_executable()
    if executable is None:
        raise peers.PeerError("no `inferlane` executable beside this interpreter or on PATH")
    config = log_dir / f"{name}.yaml"
    config.write_text(tcp_route_config(listen[1], backend))
    argv = [str(executable), "serve", "--config", str(config), "--host", listen[0],
            "--scrape-interval", "0"]
    return peers.start_process(name, wrap(argv), log_dir, cpus=cpus)


# --- targets -------------------------------------------------------------------------------------


@dataclass
class Target:
    """One path: where its agent connects, what to meter, what to set up around a run."""

    name: str
    agent: Agent
    host: str
    port: int
    proxy: peers.ManagedProcess | None = None
    phases: frozenset[str] = frozenset({"bulk", "conn", "rr"})
    session: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext


class EbpfSession:
    """Attaches the fast path for one run and detaches it after (``close``), adding what the
    program counted to ``totals``. A fresh instance each time: a fresh flow table too."""

    def __init__(self, lab: l4_netns.VethLab, totals: dict[str, int]) -> None:
        self.lab = lab
        self.totals = totals
        self._instances = itertools.count()

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        from inferlane.l4.ebpf import EbpfDataPlane
        from inferlane.l4.flows import L4Backend

        plane = EbpfDataPlane(f"{l4_netns.PREFIX}-{os.getpid()}-{next(self._instances)}",
                              netns=self.lab.lb)
        backend = L4Backend(l4_netns.BACKEND_ADDRESS, VETH_PORTS["veth-ebpf"])
        plane.start(l4_netns.VIP, VIP_PORT, "tcp", l4_netns.CLIENT_IFACE, [backend],
                    max_flows=EBPF_MAX_FLOWS)
        try:
            yield
            counters = plane.counters()
            for key, value in (("packets", sum(c.packets for c in counters.values())),
                               ("reply_packets",
                                sum(c.reply_packets for c in counters.values())),
                               ("dropped", plane.dropped()), ("attachments", 1)):
                self.totals[key] = self.totals.get(key, 0) + value
        finally:
            plane.close()


@dataclass
class Setup:
    targets: dict[str, Target]
    skipped: dict[str, str]
    pids: list[int]
    facts: list[str]


def _probe(agent: Agent, host: str, port: int, seconds: float = 30.0) -> str | None:
    answer = agent.ask({"op": "probe", "host": host, "port": port, "seconds": seconds},
                       seconds + IO_TIMEOUT)
    return None if answer["ok"] else str(answer["error"])


def _started(process: peers.ManagedProcess, stack: contextlib.ExitStack,
             pids: list[int]) -> peers.ManagedProcess:
    stack.callback(process.stop)
    pids.append(process.pid)
    return process


def _agent(name: str, argv: list[str], run_dir: Path, cpus: Sequence[int],
           stack: contextlib.ExitStack, pids: list[int]) -> Agent:
    agent = Agent(name, argv, run_dir, cpus)
    stack.callback(agent.close)
    pids.append(agent.pid)
    return agent


def setup_loopback(layout: machine.CpuLayout, run_dir: Path, stack: contextlib.ExitStack,
                   setup: Setup) -> None:
    load_cpus = layout.client
    ports = {"lo-direct": peers.free_port(), "lo-userspace": peers.free_port()}
    backend_argv = [sys.executable, str(LOAD_SCRIPT), "backend", "--host", "127.0.0.1"]
    for port in ports.values():
        backend_argv += ["--port", str(port)]
    _started(peers.start_process("lo-backend", backend_argv, run_dir, cpus=load_cpus), stack,
             setup.pids)
    agent = _agent("lo-agent", [sys.executable, str(LOAD_SCRIPT), "agent"], run_dir,
                   load_cpus, stack, setup.pids)
    problem = _probe(agent, "127.0.0.1", ports["lo-direct"])
    if problem is not None:
        raise SystemExit(f"the loopback sink does not answer: {problem}")
    setup.targets["lo-direct"] = Target("lo-direct", agent, "127.0.0.1", ports["lo-direct"])
    sink = f"127.0.0.1:{ports['lo-userspace']}"
    for name, cpus, phases in (("lo-userspace", layout.proxy, {"bulk", "conn", "rr"}),
                               ("lo-userspace-shared", load_cpus, {"rr"})):
        port = peers.free_port()
        try:
            proxy = _started(start_inferlane(name, run_dir, ("127.0.0.1", port), sink, cpus),
                             stack, setup.pids)
        except peers.PeerError as error:
            setup.skipped[name] = str(error)
            continue
        problem = _probe(agent, "127.0.0.1", port)
        if problem is not None or not proxy.alive():
            setup.skipped[name] = (f"inferlane did not proxy ({problem}); log "
                                   f"{proxy.log_path}")
            proxy.stop()
            continue
        setup.targets[name] = Target(name, agent, "127.0.0.1", port, proxy, frozenset(phases))


def setup_veth(layout: machine.CpuLayout, run_dir: Path, stack: contextlib.ExitStack,
               setup: Setup, ebpf_totals: dict[str, int]) -> None:
    """The veth paths; ``ebpf_totals`` collects what the eBPF program counts over the runs."""
    names = ("veth-direct", "veth-ebpf", "veth-userspace")
    reason = l4_netns.unavailable()
    lab = None
    if reason is None:
        try:
            lab = l4_netns.VethLab.create()
        except l4_netns.LabError as error:
            reason = f"building the namespaces failed: {error}"
    if lab is None:
        setup.skipped.update(dict.fromkeys(names, f"no veth lab: {reason}"))
        return
    stack.callback(lab.close)
    setup.facts.append(f"veth offloads on lb's client-facing end: {lab.offloads()}")
    load_cpus = layout.client
    backend_argv = [sys.executable, str(LOAD_SCRIPT), "backend", "--host", "0.0.0.0"]
    for port in VETH_PORTS.values():
        backend_argv += ["--port", str(port)]
    _started(peers.start_process("veth-backend", lab.exec_argv(lab.back, backend_argv), run_dir,
                                 cpus=load_cpus), stack, setup.pids)
    agent = _agent("veth-agent", lab.exec_argv(lab.client, [sys.executable, str(LOAD_SCRIPT),
                                                            "agent"]),
                   run_dir, load_cpus, stack, setup.pids)
    problem = _probe(agent, l4_netns.BACKEND_ADDRESS, VETH_PORTS["veth-direct"])
    if problem is not None:
        setup.skipped.update(dict.fromkeys(names, f"the backend namespace's sink does not "
                                                  f"answer through lb: {problem}"))
        return
    setup.targets["veth-direct"] = Target("veth-direct", agent, l4_netns.BACKEND_ADDRESS,
                                          VETH_PORTS["veth-direct"])
    setup_ebpf(lab, agent, setup, ebpf_totals)
    sink = f"{l4_netns.BACKEND_ADDRESS}:{VETH_PORTS['veth-userspace']}"
    try:
        proxy = _started(start_inferlane(
            "veth-userspace", run_dir, (l4_netns.LB_CLIENT_SIDE, VETH_PROXY_PORT), sink,
            layout.proxy, wrap=lambda argv: lab.exec_argv(lab.lb, argv)), stack, setup.pids)
    except peers.PeerError as error:
        setup.skipped["veth-userspace"] = str(error)
        return
    problem = _probe(agent, l4_netns.LB_CLIENT_SIDE, VETH_PROXY_PORT)
    if problem is not None or not proxy.alive():
        setup.skipped["veth-userspace"] = (f"inferlane in the lb namespace did not proxy "
                                           f"({problem}); log {proxy.log_path}")
        proxy.stop()
        return
    setup.targets["veth-userspace"] = Target("veth-userspace", agent, l4_netns.LB_CLIENT_SIDE,
                                             VETH_PROXY_PORT, proxy)


def setup_ebpf(lab: l4_netns.VethLab, agent: Agent, setup: Setup,
               ebpf_totals: dict[str, int]) -> None:
    """The eBPF target, after one trial attach that must carry a round trip through the VIP;
    else the reason from ``availability()`` or from the failed start."""
    try:
        from inferlane.l4.ebpf import EbpfError, availability
    except ImportError as error:
        setup.skipped["veth-ebpf"] = f"inferlane.l4.ebpf does not import ({error})"
        return
    status = availability()
    if not status.available:
        setup.skipped["veth-ebpf"] = status.reason
        return
    session = EbpfSession(lab, {})
    try:
        with session():
            problem = _probe(agent, l4_netns.VIP, VIP_PORT, seconds=5.0)
    except EbpfError as error:
        setup.skipped["veth-ebpf"] = str(error)
        return
    if problem is not None:
        setup.skipped["veth-ebpf"] = f"no round trip through the VIP ({problem})"
        return
    setup.targets["veth-ebpf"] = Target("veth-ebpf", agent, l4_netns.VIP, VIP_PORT,
                                        session=EbpfSession(lab, ebpf_totals))
