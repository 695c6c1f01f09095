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
import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from inferlane.health.tracker import HealthTracker, WatchedPool
from inferlane.l4.algorithms import build_algorithm
from inferlane.l4.config import (
    BACKEND_SET_PREFIX,
    DEFAULT_UDP_IDLE_TIMEOUT,
    L4Listener,
    L4RouteRuntime,
)
from inferlane.l4.conntrack import FlowTable
from inferlane.l4.proxy_tcp import TcpProxy
from inferlane.l4.proxy_udp import DEFAULT_MAX_SESSIONS, UdpProxy
from inferlane.l4.selector import BackendSelector

log = logging.getLogger("inferlane.l4")

CLOSE_GRACE = 10.0  # seconds a removed listener's connections may finish
TCP_MAX_FLOWS = 1_000_000


@dataclass(slots=True)
class _Running:
    listener: L4Listener
    route: L4RouteRuntime
    selector: BackendSelector
    flows: FlowTable
    proxy: TcpProxy | UdpProxy
    dataplane: str  # "userspace" (and why not eBPF, when it was asked for)
    note: str = ""


class L4Service:
    def __init__(self, tracker: HealthTracker, *, host: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._tracker = tracker
        self._host = host
        self._clock = clock
        self._running: dict[tuple[str, str], _Running] = {}
        self._members: dict[str, frozenset[str]] = {}  # health key of a set -> backend keys
        self._applying = asyncio.Lock()  # reloads apply one after another, in order

    async def apply(self, listeners: Iterable[L4Listener],
                    backend_sets: Mapping[str, WatchedPool]) -> None:
        """Serve exactly ``listeners`` (with a route); see the module docstring."""
        async with self._applying:
            await self._apply(listeners, backend_sets)

    async def _apply(self, listeners: Iterable[L4Listener],
                     backend_sets: Mapping[str, WatchedPool]) -> None:
        self._members = {health_key: frozenset(e.address for e in watched.endpoints)
                         for health_key, watched in backend_sets.items()}
        wanted = {(item.gateway, item.name): item for item in listeners if item.routes}
        for key in [k for k in self._running if k not in wanted]:
            removed = self._running.pop(key)
            log.info("listener %s/%s removed; stopping it", *key)
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
            if route.dataplane != running.route.dataplane:
                log.warning("route %s changes its data plane: applied after a restart",
                            route.key)
            running.route = route
            running.listener = listener
            self._retune(running)

    async def _start(self, listener: L4Listener, route: L4RouteRuntime) -> _Running:
        note = ""
        if route.dataplane == "ebpf":
            note = ("eBPF asked for, but this gateway runs the eBPF fast path only through "
                    "its L4 eBPF control plane; serving in user space")
            log.warning("route %s: %s", route.key, note)
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
        return _Running(listener, route, selector, flows, proxy, "userspace", note)

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

    def ports(self) -> dict[str, int]:
        """Bound port per listener ``gateway/name``."""
        return {f"{gw}/{name}": running.proxy.port
                for (gw, name), running in self._running.items()}

    def status(self) -> dict[str, Any]:
        """What ``GET /admin/l4`` and ``inferlane l4 status`` show."""
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
            listeners.append({
                "listener": f"{gateway}/{name}", "protocol": running.listener.protocol,
                "port": running.proxy.port, "route": route.key, "algorithm": route.algorithm,
                "dataplane": running.dataplane, "note": running.note,
                "flows": len(running.flows), "backends": backends,
                "totals": {k: v for k, v in snapshot.items() if k != "backends"},
            })
        return {"listeners": listeners}

    async def close(self) -> None:
        running, self._running = list(self._running.values()), {}
        for item in running:
            await item.proxy.close(0.0)
