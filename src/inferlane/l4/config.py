"""The frozen runtime form of the L4 config: listeners, their route, and its backends.

Where it sits: ``config.l4_build`` makes these from a validated ``ConfigBundle`` (TCP/UDP
Gateway listeners, TCPRoutes/UDPRoutes, BackendSets) and they go into the gateway snapshot; the
L4 data planes read them to bind ports, pick an ``LBAlgorithm`` (``algorithms.build_algorithm``
with ``algorithm`` and ``table_size``) and size the connection table (``udp_idle_timeout``).
Values only: nothing here opens a socket or reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from inferlane.l4.flows import L4Backend, Protocol

# Names accepted by ``inferlane.dev/l4-algorithm``; the same as ``algorithms.ALGORITHM_NAMES``.
L4Algorithm = Literal["round-robin", "least-connections", "power-of-two", "maglev",
                      "source-hash"]
Dataplane = Literal["auto", "userspace", "ebpf"]
ProxyProtocolVersion = Literal["v1", "v2"]

DEFAULT_ALGORITHM: Final[L4Algorithm] = "maglev"
DEFAULT_DATAPLANE: Final[Dataplane] = "auto"
DEFAULT_UDP_IDLE_TIMEOUT: Final = 30.0  # seconds, Katran's UDP flow timeout
MAX_MAGLEV_TABLE_SIZE: Final = 1_000_003  # prime; a bigger table only costs memory
# Health watches a BackendSet under this prefix + "namespace/name" (pools are plain "ns/name").
BACKEND_SET_PREFIX: Final = "backendset/"


@dataclass(frozen=True, slots=True)
class L4RouteRuntime:
    """One TCPRoute or UDPRoute, resolved.

    ``backends`` are the distinct endpoints of every BackendSet the route names, in config
    order, each with its effective weight (0: drained, existing flows stay; see
    ``config.l4_build`` for how backendRef weights combine). ``backend_sets`` are the
    ``"namespace/name"`` keys of those sets, also the keys of their health settings.
    ``udp_idle_timeout`` is ``None`` for TCP (a flow ends with its connection).
    """

    key: str  # "namespace/name" of the route
    protocol: Protocol
    algorithm: L4Algorithm
    table_size: int  # Maglev table size (prime); only the maglev algorithm uses it
    proxy_protocol: ProxyProtocolVersion | None  # PROXY protocol header sent to backends (TCP)
    udp_idle_timeout: float | None  # seconds
    dataplane: Dataplane
    backend_sets: tuple[str, ...]
    backends: tuple[L4Backend, ...]


@dataclass(frozen=True, slots=True)
class L4Listener:
    """A TCP or UDP Gateway listener and the route it forwards to.

    ``routes`` holds at most one route (phase one rejects a second one on the same listener:
    with nothing to match on, it would be ambiguous); empty means no route attached, so there
    is nowhere to forward and connections or datagrams are refused.
    """

    gateway: str  # "namespace/name" of its Gateway
    name: str  # the listener's name within the Gateway
    protocol: Protocol
    port: int
    routes: tuple[L4RouteRuntime, ...]
    vip: str | None = None  # the Gateway's first IPv4 address: the eBPF fast path's VIP
    ebpf_interface: str | None = None  # annotation inferlane.dev/ebpf-interface
