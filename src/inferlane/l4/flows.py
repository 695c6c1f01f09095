"""The values every L4 piece shares: a flow's key and a backend.

Where it sits: the L4 data planes (the asyncio proxy in ``l4/proxy_tcp.py``/``proxy_udp.py``,
the eBPF fast path in ``l4/ebpf/``) turn packets or connections into ``FlowKey``s; the pure
core (``algorithms.py``, ``maglev.py``, ``conntrack.py``) decides which ``L4Backend`` a new flow
goes to and remembers it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

Protocol = Literal["tcp", "udp"]


@dataclass(frozen=True, slots=True)
class FlowKey:
    """One flow as the load balancer sees it: the client's address and the virtual one."""

    protocol: Protocol
    client_ip: str
    client_port: int
    vip_ip: str
    vip_port: int

    def hash64(self) -> int:
        """A stable 64-bit hash of the 5-tuple (the same in every process and run)."""
        text = f"{self.protocol}|{self.client_ip}|{self.client_port}|{self.vip_ip}|{self.vip_port}"
        return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8,
                                              person=b"inferlane-flow").digest(), "big")

    def client_hash64(self) -> int:
        """A stable 64-bit hash of the client's IP alone (``source-hash``)."""
        return int.from_bytes(hashlib.blake2b(self.client_ip.encode(), digest_size=8,
                                              person=b"inferlane-src").digest(), "big")


@dataclass(frozen=True, slots=True)
class L4Backend:
    """One backend of a backend set; ``weight`` 0 drains it (existing flows stay)."""

    host: str
    port: int
    weight: int = 1
    key: str = field(init=False, compare=False, repr=False)  # "host:port" ("[v6]:port")

    def __post_init__(self) -> None:
        host = f"[{self.host}]" if ":" in self.host else self.host
        object.__setattr__(self, "key", f"{host}:{self.port}")
