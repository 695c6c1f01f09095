"""Linux network namespaces joined by veth pairs, for end-to-end tests that need a real network.

A ``NetnsLab`` builds a private network inside one 10.231.X.0/24 (X chosen at random, free on
this host) and removes it again. Test processes run inside its namespaces (``exec_argv``); the
test itself and the gateway stay in the host namespace and reach the namespaces over veths.
``set_link`` takes a veth down or up from its namespace side (a cut cable); the static routes
added through it come back when it comes up. ``block``/``unblock`` swap one route of a
namespace for an ``unreachable`` one (a partial outage).

Cleanup: namespaces are named ``PREFIX-X-PID-ROLE`` and host-side veth ends ``PREFIX`` + X in
hex + a letter + a number, so parallel runs never clash and a later run removes what a crashed
one left behind (namespaces whose PID is gone, host veth ends of an X with no namespace left).
Deleting a namespace deletes its veths and their peers, so ``close`` leaves nothing, also after a
half-built lab. Only the host namespace's routes and addresses on those veths are touched there:
never a route outside 10.231.0.0/16, never an interface this module did not create, and never a
host-side route that would outlive its veth (a lost route there would send 10.231 traffic to the
default gateway).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import random
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SUPERNET = ipaddress.ip_network("10.231.0.0/16")
IP_TIMEOUT = 10.0  # seconds for one `ip` command
LOCK_PATH = Path(tempfile.gettempdir()) / "inferlane-netns.lock"
_PREFIX_RE = re.compile(r"[a-z]{2,5}")


class NetnsError(RuntimeError):
    """An ``ip`` command failed; the message quotes it and its stderr."""


def ip(*args: str, namespace: str | None = None, check: bool = True) -> str:
    """Run ``ip [-n NAMESPACE] ARGS``; stdout, or NetnsError when it fails and ``check``."""
    argv = ["ip", *(("-n", namespace) if namespace else ()), *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=IP_TIMEOUT,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise NetnsError(f"{' '.join(argv)}: {error}") from None
    if check and done.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def namespaces() -> list[str]:
    """Names of the network namespaces ``ip netns`` knows."""
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]


def host_links() -> list[str]:
    """Interface names of the host namespace."""
    return [match.group(1) for match in re.finditer(r"^\d+: ([^:@\s]+)", ip("-o", "link"),
                                                    re.M)]


def netns_unavailable(prefix: str) -> str | None:
    """Why namespaces and veths cannot be used here (for a skip message), or None."""
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    # Shaped like a lab namespace (X = 999, no subnet), so remove_leftovers knows it.
    name = f"{prefix}-999-{os.getpid()}-check{random.randrange(16**6):06x}"
    try:
        ip("netns", "add", name)
    except NetnsError as error:
        return f"cannot create a network namespace: {error}"
    try:
        ip("link", "add", "check0", "type", "veth", "peer", "name", "check1", namespace=name)
    except NetnsError as error:
        return f"cannot create a veth pair: {error}"
    finally:
        with contextlib.suppress(NetnsError):
            ip("netns", "delete", name)
    return None


@contextlib.contextmanager
def _host_lock() -> Iterator[None]:
    """Serialize leftover cleanup and subnet claims between runs (released if we die)."""
    with open(LOCK_PATH, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(prefix: str) -> list[str]:
    """Delete namespaces of ``prefix`` whose creating process is gone, then host veth ends of
    ``prefix`` whose subnet has no namespace left; returns what was deleted."""
    removed = []
    ours = re.compile(rf"{re.escape(prefix)}-(\d+)-(\d+)-[a-z0-9]+")
    for name in namespaces():
        match = ours.fullmatch(name)
        if match and not _alive(int(match.group(2))):
            with contextlib.suppress(NetnsError):
                ip("netns", "delete", name)
                removed.append(name)
    live = {int(m.group(1)) for name in namespaces() if (m := ours.fullmatch(name))}
    veth = re.compile(rf"{re.escape(prefix)}([0-9a-f]{{2}})[a-z]\d+")
    for link in host_links():
        match = veth.fullmatch(link)
        if match and int(match.group(1), 16) not in live:
            with contextlib.suppress(NetnsError):
                ip("link", "delete", link)
                removed.append(link)
    return removed


def _subnet_used(octet: int, prefix: str) -> bool:
    subnet = ipaddress.ip_network(f"10.231.{octet}.0/24")
    text = ip("-o", "addr") + ip("route", "show", "table", "all")
    for found in re.findall(r"\b10\.231\.\d{1,3}\.\d{1,3}(?:/\d+)?", text):
        if ipaddress.ip_network(found, strict=False).overlaps(subnet):
            return True
    return any(name.startswith(f"{prefix}-{octet}-") for name in namespaces())


@dataclass(frozen=True, slots=True)
class Link:
    """A veth pair; ``left`` None is the host namespace (its end is never set down)."""

    left: str | None
    left_device: str
    left_address: str
    right: str
    right_device: str
    right_address: str

    def end(self, namespace: str) -> tuple[str, str]:
        """(device, address) of the end inside ``namespace``."""
        if namespace == self.right:
            return self.right_device, self.right_address
        if namespace == self.left and self.left is not None:
            return self.left_device, self.left_address
        raise ValueError(f"link {self.left_device}<->{self.right_device} has no end in "
                         f"{namespace}")


@dataclass(frozen=True, slots=True)
class _Route:
    namespace: str | None
    destination: str
    via: str
    device: str


@dataclass
class NetnsLab:
    """See the module docstring; build with ``NetnsLab.create`` and always ``close``."""

    prefix: str
    octet: int
    names: list[str] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    _routes: dict[tuple[str | None, str], _Route] = field(default_factory=dict)
    _blocked: set[tuple[str, str]] = field(default_factory=set)

    @classmethod
    def create(cls, prefix: str, *, attempts: int = 64) -> NetnsLab:
        """Remove leftovers of ``prefix``, claim a free 10.231.X.0/24 and its first namespace
        (the claim: other runs see the X in its name)."""
        if not _PREFIX_RE.fullmatch(prefix):
            raise ValueError(f"prefix {prefix!r}: 2-5 lowercase letters (interface names are "
                             "at most 15 characters)")
        with _host_lock():
            remove_leftovers(prefix)
            for octet in random.sample(range(256), min(attempts, 256)):
                if _subnet_used(octet, prefix):
                    continue
                lab = cls(prefix, octet)
                lab.namespace("claim")
                return lab
        raise NetnsError(f"no free 10.231.X.0/24 found in {attempts} tries")

    def address(self, last: int) -> str:
        """``10.231.X.LAST`` of this lab."""
        found = ipaddress.ip_address(f"10.231.{self.octet}.{last}")
        assert found in SUPERNET
        return str(found)

    def namespace(self, role: str) -> str:
        """A new namespace with ``lo`` up; its name."""
        name = f"{self.prefix}-{self.octet}-{os.getpid()}-{role}"
        ip("netns", "add", name)
        self.names.append(name)
        ip("link", "set", "lo", "up", namespace=name)
        return name

    def link(self, left: str | None, right: str, left_last: int, right_last: int) -> Link:
        """A veth pair between ``left`` (None: the host) and ``right`` with a /30 between
        ``10.231.X.LEFT_LAST`` and ``10.231.X.RIGHT_LAST``, both ends up."""
        network = ipaddress.ip_network(f"{self.address(left_last)}/30", strict=False)
        if ipaddress.ip_address(self.address(right_last)) not in network:
            raise ValueError(f"{left_last} and {right_last} are not in one /30")
        index = len(self.links)
        host_tag = f"{self.prefix}{self.octet:02x}"
        left_device = f"{host_tag}h{index}" if left is None else f"v{index}l"
        right_device = f"v{index}r"
        # One command makes both ends, each in its namespace: never a half-placed pair.
        ip("link", "add", left_device, "type", "veth", "peer", "name", right_device,
           "netns", right, namespace=left)
        made = Link(left, left_device, self.address(left_last), right, right_device,
                    self.address(right_last))
        self.links.append(made)
        for namespace, device, address in ((left, left_device, made.left_address),
                                           (right, right_device, made.right_address)):
            ip("addr", "add", f"{address}/30", "dev", device, namespace=namespace)
            ip("link", "set", device, "up", namespace=namespace)
        return made

    def local_address(self, namespace: str, last: int) -> str:
        """Give ``namespace`` the address ``10.231.X.LAST/32`` on ``lo`` (reachable over any
        of its links: Linux accepts packets for any local address on any interface)."""
        address = self.address(last)
        ip("addr", "add", f"{address}/32", "dev", "lo", namespace=namespace)
        return address

    def route(self, namespace: str | None, destination: str, link: Link) -> None:
        """``destination``/32 from ``namespace`` (None: the host) via the far end of ``link``."""
        if namespace == link.right:
            via, device = link.left_address, link.right_device
        elif namespace == link.left:
            via, device = link.right_address, link.left_device
        else:
            raise ValueError(f"{namespace or 'the host'} is not on link {link.right_device}")
        route = _Route(namespace, destination, via, device)
        self._routes[(namespace, destination)] = route
        self._apply(route)

    def set_link(self, link: Link, namespace: str, *, up: bool) -> None:
        """Take the end of ``link`` in ``namespace`` down (its routes go) or up (they return).
        Never the host's end: its routes would fall back to the host's default route."""
        if namespace not in self.names:
            raise ValueError("set_link acts on a namespace end of the link, not the host's")
        device, _ = link.end(namespace)
        ip("link", "set", device, "up" if up else "down", namespace=namespace)
        if up:
            for route in self._routes.values():
                if route.namespace == namespace and route.device == device \
                        and (namespace, route.destination) not in self._blocked:
                    self._apply(route)

    def block(self, namespace: str, destination: str) -> None:
        """Make ``destination`` unreachable from ``namespace`` (not the host: an
        ``unreachable`` route there would outlive the lab if the test process died)."""
        if namespace not in self.names:
            raise ValueError(f"{namespace} is not a namespace of this lab")
        ip("route", "replace", "unreachable", f"{destination}/32", namespace=namespace)
        self._blocked.add((namespace, destination))

    def unblock(self, namespace: str, destination: str) -> None:
        self._blocked.discard((namespace, destination))
        self._apply(self._routes[(namespace, destination)])

    def exec_argv(self, namespace: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside ``namespace`` (``ip netns exec`` execs it: same PID)."""
        return ["ip", "netns", "exec", namespace, *argv]

    def close(self) -> None:
        """Delete every namespace (and with them every veth); safe to call twice."""
        errors = []
        # Host ends first, explicitly: a deleted namespace is torn down in the background, its
        # veths' host ends would linger a moment.
        existing = set(host_links())
        for link in self.links:
            if link.left is None and link.left_device in existing:
                try:
                    ip("link", "delete", link.left_device)
                except NetnsError as error:
                    errors.append(str(error))
        for name in reversed(self.names):
            try:
                ip("netns", "delete", name)
            except NetnsError as error:
                errors.append(str(error))
        self.names.clear()
        self.links.clear()
        self._routes.clear()
        self._blocked.clear()
        if errors:
            raise NetnsError("; ".join(errors))

    def leftovers(self) -> list[str]:
        """Namespaces and host interfaces of this lab that still exist (for assertions)."""
        mine = f"{self.prefix}-{self.octet}-{os.getpid()}-"
        tag = f"{self.prefix}{self.octet:02x}"
        return ([n for n in namespaces() if n.startswith(mine)]
                + [link for link in host_links() if link.startswith(tag)])

    def _apply(self, route: _Route) -> None:
        ip("route", "replace", f"{route.destination}/32", "via", route.via, "dev", route.device,
           namespace=route.namespace)


@contextlib.contextmanager
def netns_lab(prefix: str) -> Iterator[NetnsLab]:
    """A ``NetnsLab`` closed on exit, also when building or the test fails."""
    lab = NetnsLab.create(prefix)
    try:
        yield lab
    finally:
        lab.close()
