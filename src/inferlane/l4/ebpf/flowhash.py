"""The eBPF program's flow hash, in Python: which Maglev slot a flow lands in.

Where it sits: pure; ``lb.bpf.c``'s ``flow_hash`` is the other copy (the kernel's
``jhash_3words`` over the client and virtual address, both ports and the protocol). The
user-space data plane hashes flows with ``FlowKey.hash64`` instead; the two never share a
flow, so they need not agree. Tests and tools use this one to predict the fast path's choice.
"""

from __future__ import annotations

import ipaddress

from inferlane.l4.ebpf.layout import IPPROTO
from inferlane.l4.flows import FlowKey

_MASK = 0xFFFF_FFFF


def _rol32(word: int, shift: int) -> int:
    return ((word << shift) | (word >> (32 - shift))) & _MASK


def jhash_3words(a: int, b: int, c: int, initval: int) -> int:
    """The Linux kernel's ``jhash_3words`` (Bob Jenkins' lookup3 final mix)."""
    start = (0xDEADBEEF + (3 << 2) + initval) & _MASK
    a, b, c = (a + start) & _MASK, (b + start) & _MASK, (c + start) & _MASK
    for x, y, shift in ((2, 1, 14), (0, 2, 11), (1, 0, 25), (2, 1, 16), (0, 2, 4), (1, 0, 14),
                        (2, 1, 24)):
        words = [a, b, c]
        words[x] = ((words[x] ^ words[y]) - _rol32(words[y], shift)) & _MASK
        a, b, c = words
    return c


def flow_hash(flow: FlowKey) -> int:
    """The 32-bit hash ``to_backend`` computes for ``flow`` (IPv4 only)."""
    return jhash_3words(int(ipaddress.IPv4Address(flow.client_ip)),
                        int(ipaddress.IPv4Address(flow.vip_ip)),
                        (flow.client_port << 16) | flow.vip_port, IPPROTO[flow.protocol])


def table_slot(flow: FlowKey, table_size: int) -> int:
    """The Maglev slot ``flow`` is looked up in when it is new."""
    return flow_hash(flow) % table_size
