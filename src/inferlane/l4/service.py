"""``L4Service``: the gateway's TCP/UDP listeners at run time (the asyncio edge of L4).

For every Gateway listener with ``protocol: TCP``/``UDP`` and a route, one data plane: the
user-space ``TcpProxy``/``UdpProxy`` around a ``BackendSelector`` (flow tracking in front of the
route's algorithm), or the eBPF fast path where the route asks for it and the kernel allows
(``l4/ebpf/``). Health comes from the ``HealthTracker``: a backend is routable for new flows of a
route when the health view of one of *that route's* BackendSets listing it lets it take requests
(monitors, passive checks, admin drains via ``POST /admin/health/drain`` with pool
``backendset/NS/NAME``); sets of other routes that list the same address do not count.

``apply`` follows config reloads without dropping a connection: a listener that stays gets the
new backends (``BackendSelector.update``: tracked flows keep their backend) and, when the
algorithm changes, a new selector sharing the same flow table; its PROXY protocol version and
UDP idle timeout apply to new connections and the next expiry check; a new listener starts; a
removed one stops accepting and lets its connections finish for ``grace`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from inferlane.config.resources.gateway import EBPF_INTERFACE_ANNOTATION
from inferlane.health.tracker import HealthTracker, WatchedPool
from inferlane.l4.algorithms import build_algorithm
from inferlane.l4.config import (
    BACKEND_SET_PREFIX,
    DEFAULT_UDP_IDLE_TIMEOUT,
    L4Listener,
    L4RouteRuntime,
)
from inferlane.l4.conntrack import FlowTable
from inferlane.l4.ebpf.dataplane import EbpfDataPlane, open_fast_path
from inferlane.l4.ebpf.errors import EbpfError
from inferlane.l4.flows import L4Backend
from inferlane.l4.proxy_tcp import TcpProxy
from inferlane.l4.proxy_udp import DEFAULT_MAX_SESSIONS, UdpProxy
from inferlane.l4.selector import BackendSelector

log = logging.getLogger("inferlane.l4")

CLOSE_GRACE = 10.0  # seconds a removed listener's connections may finish
FAST_PATH_SYNC = 0.5  # seconds between health checks of the eBPF tables
TCP_MAX_FLOWS = 1_000_000


@dataclass(slots=True)
class _Running:
    listener: L4Listener
    route: L4RouteRuntime
    selector: BackendSelector
    flows: FlowTable
    proxy: TcpProxy | UdpProxy
    dataplane: str  # "userspace", or "ebpf" (the VIP's packets; the proxy serves the rest)
    note: str = ""  # why the fast path is (not) used
    fast: EbpfDataPlane | None = None
    fast_backends: tuple[L4Backend, ...] = ()  # what the fast path's table was built from


class L4Service:
    def __init__(self, tracker: HealthTracker, *, host: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._tracker = tracker
        self._host = host
        self._clock = clock
        self._running: dict[tuple[str, str], _Running] = {}
        self._members: dict[str, frozenset[str]] = {}  # health key of a set -> backend keys
        self._applying = asyncio.Lock()  # reloads apply one after another, in order
        self._syncer: asyncio.Task[None] | None = None
        self._closed = False

    async def apply(self, listeners: Iterable[L4Listener],
                    backend_sets: Mapping[str, WatchedPool]) -> None:
        """Serve exactly ``listeners`` (with a route); see the module docstring."""
        async with self._applying:
            if self._closed:  # a reload that lost the race with shutdown: start nothing
                return
            await self._apply(listeners, backend_sets)
            await self._sync_fast_paths()
        if self._syncer is None and any(r.fast for r in self._running.values()):
            self._syncer = asyncio.get_running_loop().create_task(self._sync_forever())

    async def _apply(self, listeners: Iterable[L4Listener],
                     backend_sets: Mapping[str, WatchedPool]) -> None:
        self._members = {health_key: frozenset(e.address for e in watched.endpoints)
                         for health_key, watched in backend_sets.items()}
        wanted = {(item.gateway, item.name): item for item in listeners if item.routes}
        for key in [k for k in self._running if k not in wanted]:
            removed = self._running.pop(key)
            log.info("listener %s/%s removed; stopping it", *key)
            await self._close_fast_path(removed)
            await removed.proxy.close(CLOSE_GRACE)
        for key, listener in wanted.items():
            route = listener.routes[0]
            running = self._running.get(key)
            if running is not None and (running.listener.port, running.listener.protocol) != (
                    listener.port, listener.protocol):
                log.warning("listener %s/%s changes port or protocol: applied after a "
                            "restart", *key)
                continue
            if running is None:
                self._running[key] = await self._start(listener, route)
                continue
            if (route.algorithm, route.table_size) != (running.route.algorithm,
                                                         running.route.table_size):
                selector = self._selector(route, running.flows)
                for key_ in running.selector.drained:
                    selector.drain(key_)
                running.selector = selector
                running.proxy.selector = selector
            else:
                moved = running.selector.update(route.backends)
                running.selector.set_routable(self._routable_for(route))
                if moved:
                    log.info("%d flow(s) of %s lost their backend to the reload",
                             len(moved), route.key)
            if route.dataplane != running.route.dataplane or (running.fast is not None and (
                    route.table_size, route.algorithm) != (running.route.table_size,
                                                           running.route.algorithm)):
                log.warning("route %s changes its data plane, algorithm or table size: applied "
                            "to the eBPF fast path after a restart", route.key)
            running.route = route
            running.listener = listener
            self._retune(running)

    async def _start(self, listener: L4Listener, route: L4RouteRuntime) -> _Running:
        if listener.protocol == "tcp":
            flows = FlowTable(idle_timeout=None, max_flows=TCP_MAX_FLOWS)
            selector = self._selector(route, flows)
            proxy: TcpProxy | UdpProxy = TcpProxy(
                selector, host=self._host, port=listener.port,
                proxy_protocol=route.proxy_protocol)
        else:
            idle = route.udp_idle_timeout or DEFAULT_UDP_IDLE_TIMEOUT
            flows = FlowTable(idle_timeout=idle, max_flows=DEFAULT_MAX_SESSIONS)
            selector = self._selector(route, flows)
            proxy = UdpProxy(selector, host=self._host, port=listener.port, idle_timeout=idle)
        await proxy.start()
        log.info("%s listener %s/%s on %s:%d -> %s (%s, %d backends, user space)",
                 listener.protocol.upper(), listener.gateway, listener.name, self._host,
                 proxy.port, route.key, route.algorithm, len(route.backends))
        running = _Running(listener, route, selector, flows, proxy, "userspace")
        try:
            await self._open_fast_path(running)
        except BaseException:
            await proxy.close(0.0)
            raise
        return running

    # -- the eBPF fast path ------------------------------------------------------------------

    async def _open_fast_path(self, running: _Running) -> None:
        """Put the VIP's packets on the eBPF fast path when the route and the host allow;
        ``running.note`` says why not (with a log line when eBPF was asked for)."""
        listener, route = running.listener, running.route
        if route.dataplane == "userspace":
            return
        needs = []
        if listener.vip is None:
            needs.append("an IPv4 IPAddress in the Gateway's spec.addresses (the VIP)")
        if listener.ebpf_interface is None:
            needs.append(f"the Gateway annotation {EBPF_INTERFACE_ANNOTATION}")
        if route.algorithm != "maglev":
            needs.append(f"algorithm maglev (the kernel balances with Maglev, not "
                         f"{route.algorithm})")
        if needs:
            running.note = "eBPF fast path not used: it needs " + "; ".join(needs)
            level = logging.WARNING if route.dataplane == "ebpf" else logging.INFO
            log.log(level, "route %s: %s; serving in user space", route.key, running.note)
            return
        assert listener.vip is not None
        assert listener.ebpf_interface is not None
        backends = self._fast_backends(route)
        instance = re.sub(r"[^A-Za-z0-9_.-]", "-", f"{listener.gateway}-{listener.name}")[:64]
        fast = await asyncio.to_thread(
            open_fast_path, instance, listener.vip, listener.port, listener.protocol,
            listener.ebpf_interface, backends, table_size=route.table_size,
            udp_idle_timeout=route.udp_idle_timeout)
        if fast is None:  # open_fast_path logged why
            running.note = "eBPF fast path unavailable on this host (see the log); user space"
            return
        running.fast, running.fast_backends, running.dataplane = fast, backends, "ebpf"
        running.note = (f"eBPF fast path for {listener.vip}:{listener.port} on "
                        f"{listener.ebpf_interface}; other addresses in user space")
        log.info("route %s: %s", route.key, running.note)

    def _fast_backends(self, route: L4RouteRuntime) -> tuple[L4Backend, ...]:
        """The route's backends for the kernel's table: health-excluded ones at weight 0 (no
        new flows; their flows stay until they end or idle out, as a drain)."""
        routable = self._routable_for(route)
        return tuple(b if b.weight == 0 or routable(b.key) else L4Backend(b.host, b.port, 0)
                     for b in route.backends)

    async def _sync_fast_paths(self) -> None:
        for running in list(self._running.values()):
            fast = running.fast
            if fast is None:
                continue
            backends = self._fast_backends(running.route)
            if backends == running.fast_backends:
                continue
            try:
                await asyncio.to_thread(fast.update, backends)
            except EbpfError as error:
                log.error("route %s: cannot update the eBPF table: %s", running.route.key, error)
                continue
            running.fast_backends = backends

    async def _sync_forever(self) -> None:
        """Health changes between reloads reach the kernel's table within a tick."""
        while True:
            await asyncio.sleep(FAST_PATH_SYNC)
            async with self._applying:
                await self._sync_fast_paths()

    @staticmethod
    async def _close_fast_path(running: _Running) -> None:
        fast, running.fast = running.fast, None
        if fast is None:
            return
        try:
            await asyncio.to_thread(fast.close)
        except EbpfError as error:
            log.error("route %s: removing the eBPF fast path left: %s", running.route.key,
                      error)

    @staticmethod
    def _retune(running: _Running) -> None:
        """A staying listener's proxy takes the route's per-connection settings."""
        route, proxy = running.route, running.proxy
        if isinstance(proxy, TcpProxy):
            proxy.proxy_protocol = route.proxy_protocol
        else:
            idle = route.udp_idle_timeout or DEFAULT_UDP_IDLE_TIMEOUT
            running.flows.idle_timeout = idle
            proxy.idle_timeout = idle

    def _selector(self, route: L4RouteRuntime, flows: FlowTable) -> BackendSelector:
        algorithm = build_algorithm(route.algorithm, table_size=route.table_size)
        return BackendSelector(route.backends, algorithm, flows,
                               routable=self._routable_for(route))

    def _routable_for(self, route: L4RouteRuntime) -> Callable[[str], bool]:
        health_keys = tuple(BACKEND_SET_PREFIX + key for key in route.backend_sets)
        return functools.partial(self._routable, health_keys)

    def _routable(self, health_keys: tuple[str, ...], backend_key: str) -> bool:
        """Health lets new flows go to ``backend_key`` in one of ``health_keys`` (the route's
        sets) that list it; a backend none of them lists is routable."""
        sets = [key for key in health_keys if backend_key in self._members.get(key, ())]
        if not sets:
            return True
        now = self._clock()
        for set_key in sets:
            view = self._tracker.view(set_key, now)
            if view is None or backend_key in view.weights:
                return True
        return False

    def status(self, *, count_flows: bool = True) -> dict[str, Any]:
        """What ``GET /admin/l4`` and ``inferlane l4 status`` show (``count_flows``: walk the
        eBPF flow table too, one syscall per flow; /metrics skips it)."""
        listeners = []
        for (gateway, name), running in self._running.items():
            route, selector = running.route, running.selector
            routable = self._routable_for(route)
            snapshot = running.proxy.snapshot()
            flows = running.flows.counts()
            backends = []
            for backend in route.backends:
                stats = snapshot["backends"].get(backend.key)
                backends.append({
                    "backend": backend.key, "weight": backend.weight,
                    "routable": routable(backend.key),
                    "drained": backend.key in selector.drained or backend.weight == 0,
                    "flows": flows.get(backend.key, 0),
                    "stats": stats,
                })
            entry: dict[str, Any] = {
                "listener": f"{gateway}/{name}", "protocol": running.listener.protocol,
                "port": running.proxy.port, "route": route.key, "algorithm": route.algorithm,
                "dataplane": running.dataplane, "note": running.note,
                "flows": len(running.flows), "backends": backends,
                "totals": {k: v for k, v in snapshot.items() if k != "backends"},
            }
            if running.fast is not None:
                entry["ebpf"] = self._fast_status(running, count_flows)
            listeners.append(entry)
        return {"listeners": listeners}

    @staticmethod
    def _fast_status(running: _Running, count_flows: bool) -> dict[str, Any]:
        fast = running.fast
        assert fast is not None
        try:
            counters = fast.counters()
            return {
                "vip": running.listener.vip, "interface": running.listener.ebpf_interface,
                "flows": fast.flows() if count_flows else None, "dropped": fast.dropped(),
                "backends": {key: {"packets": c.packets, "bytes": c.bytes,
                                   "reply_packets": c.reply_packets,
                                   "reply_bytes": c.reply_bytes}
                             for key, c in counters.items()},
            }
        except EbpfError as error:
            return {"vip": running.listener.vip, "interface": running.listener.ebpf_interface,
                    "error": str(error)}

    async def close(self) -> None:
        # Under the lock: an apply in progress (a reload starting a listener, its fast path
        # attaching in a thread that cancelling would not stop) finishes first and its
        # listeners are closed here too; later applies start nothing.
        async with self._applying:
            self._closed = True
            if self._syncer is not None:
                self._syncer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._syncer
                self._syncer = None
            running, self._running = list(self._running.values()), {}
            for item in running:
                await self._close_fast_path(item)
                await item.proxy.close(0.0)
