"""The L4 benchmark's veth topology: client, load balancer and backend namespaces.

::

    client ns                 lb ns                              back ns
    c0 10.250.0.2/30 ---- l0 10.250.0.1/30    l1 10.250.0.5/30 ---- b0 10.250.0.6/30
                              ip_forward=1                          backend 10.250.0.11/32 on lo
                              (eBPF programs on l0)

The client routes the VIP (10.250.0.100, no address anywhere: the TC program rewrites it
before routing) and the backend's address to lb; the backend routes the client back through
lb (a NAT load balancer's needs, as in ``inferlane.l4.ebpf.dataplane``). So three paths cross
the same two veth pairs and the same forwarding in lb:

- direct: client -> 10.250.0.11 (lb only forwards);
- eBPF: client -> VIP, rewritten on l0's ingress, replies rewritten on its egress;
- user space: client -> 10.250.0.1 (inferlane in lb), inferlane -> 10.250.0.11.

The namespaces are joined to each other only, never to the host namespace, so nothing here
can route to or from the host's network. Veth offloads stay at their defaults (TSO/GSO and
checksum offload on), as on a real host. Namespaces are named ``ilb4-PID-ROLE``; ``create``
first removes those of runs whose PID is gone, and ``close`` deletes all three (their veths
go with them).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "ilb4"
COMMAND_TIMEOUT = 10.0
CLIENT_ADDRESS = "10.250.0.2"
LB_CLIENT_SIDE = "10.250.0.1"
LB_BACKEND_SIDE = "10.250.0.5"
BACK_LINK_ADDRESS = "10.250.0.6"
BACKEND_ADDRESS = "10.250.0.11"
VIP = "10.250.0.100"
CLIENT_IFACE = "l0"  # lb's end of the client link, where the eBPF programs attach
PIN_ROOT = Path("/sys/fs/bpf/inferlane")


class LabError(RuntimeError):
    """A command building or removing the lab failed; the message quotes it."""


def run(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise LabError(f"{' '.join(argv)}: {error}") from None
    if done.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers() -> list[str]:
    """Namespaces and pinned eBPF maps of earlier runs whose process is gone."""
    removed = []
    ours = re.compile(rf"{PREFIX}-(\d+)-[a-z]+")
    for line in run(["ip", "netns", "list"]).splitlines():
        name = line.split()[0] if line.strip() else ""
        match = ours.fullmatch(name)
        if match and not _alive(int(match.group(1))):
            with contextlib.suppress(LabError):
                run(["ip", "netns", "delete", name])
                removed.append(name)
    pinned = re.compile(rf"{PREFIX}-(\d+)-\d+")
    if PIN_ROOT.is_dir():
        for directory in PIN_ROOT.iterdir():
            match = pinned.fullmatch(directory.name)
            if match and not _alive(int(match.group(1))):
                for path in directory.iterdir():
                    path.unlink()
                directory.rmdir()
                removed.append(str(directory))
    return removed


def unavailable() -> str | None:
    """Why the lab cannot be built here (not root, no iproute2), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    try:
        run(["ip", "netns", "list"])
    except LabError as error:
        return f"ip netns does not work: {error}"
    return None


@dataclass
class VethLab:
    """See the module docstring; ``create`` builds it, ``close`` removes it."""

    client: str
    lb: str
    back: str
    made: list[str] = field(default_factory=list)

    @classmethod
    def create(cls) -> VethLab:
        remove_leftovers()
        pid = os.getpid()
        client, lb, back = (f"{PREFIX}-{pid}-{role}" for role in ("client", "lb", "back"))
        lab = cls(client, lb, back)
        try:
            lab._build()
        except BaseException:
            lab.close()
            raise
        return lab

    def _build(self) -> None:
        for name in (self.client, self.lb, self.back):
            run(["ip", "netns", "add", name])
            self.made.append(name)
            run(["ip", "-n", name, "link", "set", "lo", "up"])
        self._link(self.lb, "l0", LB_CLIENT_SIDE, self.client, "c0", CLIENT_ADDRESS)
        self._link(self.lb, "l1", LB_BACKEND_SIDE, self.back, "b0", BACK_LINK_ADDRESS)
        run(["ip", "-n", self.back, "addr", "add", f"{BACKEND_ADDRESS}/32", "dev", "lo"])
        for destination in (VIP, BACKEND_ADDRESS):
            self._route(self.client, destination, LB_CLIENT_SIDE, "c0")
        self._route(self.lb, BACKEND_ADDRESS, BACK_LINK_ADDRESS, "l1")
        self._route(self.back, CLIENT_ADDRESS, LB_BACKEND_SIDE, "b0")
        self.sysctl(self.lb, "net.ipv4.ip_forward", "1")

    def _link(self, left: str, left_device: str, left_address: str, right: str,
              right_device: str, right_address: str) -> None:
        run(["ip", "-n", left, "link", "add", left_device, "type", "veth", "peer", "name",
             right_device, "netns", right])
        for namespace, device, address in ((left, left_device, left_address),
                                           (right, right_device, right_address)):
            run(["ip", "-n", namespace, "addr", "add", f"{address}/30", "dev", device])
            run(["ip", "-n", namespace, "link", "set", device, "up"])

    @staticmethod
    def _route(namespace: str, destination: str, via: str, device: str) -> None:
        run(["ip", "-n", namespace, "route", "replace", f"{destination}/32", "via", via,
             "dev", device])

    @staticmethod
    def sysctl(namespace: str, name: str, value: str) -> None:
        run(["ip", "netns", "exec", namespace, "sysctl", "-q", "-w", f"{name}={value}"])

    def exec_argv(self, namespace: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside ``namespace`` (``ip netns exec`` execs it: same PID)."""
        return ["ip", "netns", "exec", namespace, *argv]

    def offloads(self) -> str:
        """The client link's offload settings that matter for bulk throughput."""
        text = run(["ip", "netns", "exec", self.lb, "ethtool", "-k", CLIENT_IFACE])
        wanted = ("tcp-segmentation-offload", "generic-segmentation-offload",
                  "generic-receive-offload", "tx-checksumming", "rx-checksumming")
        found = [line.strip() for line in text.splitlines()
                 if line.strip().split(":")[0] in wanted]
        return "; ".join(found)

    def close(self) -> None:
        """Delete the namespaces (and their veths); safe to call twice."""
        problems = []
        for name in reversed(self.made):
            try:
                run(["ip", "netns", "delete", name])
            except LabError as error:
                problems.append(str(error))
        self.made.clear()
        if problems:
            raise LabError("; ".join(problems))
