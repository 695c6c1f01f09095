"""The eBPF program's map keys and values, as ctypes structures (mirrors ``lb.bpf.c``).

Where it sits: ``maps`` and ``dataplane`` read and write the kernel's maps through these.
Addresses and ports are stored in network byte order, as the program compares them with
packet bytes; ``ipv4`` and ``port`` convert. ``dataplane`` checks each map's key and value
sizes against these at load, so a drift between the two files fails loudly, not silently.
"""

from __future__ import annotations

import ipaddress
import socket
from ctypes import Structure, c_uint8, c_uint16, c_uint32, c_uint64

NO_BACKEND = 0xFFFF_FFFF  # a Maglev slot without a backend (the table is empty)
IPPROTO = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}


def ipv4(address: str) -> int:
    """``address`` as the u32 whose memory holds its network-order bytes."""
    return socket.htonl(int(ipaddress.IPv4Address(address)))


def ipv4_text(value: int) -> str:
    return str(ipaddress.IPv4Address(socket.ntohl(value)))


def port(number: int) -> int:
    """``number`` as the u16 whose memory holds its network-order bytes."""
    return socket.htons(number)


class LbConfig(Structure):
    _fields_ = [("vip", c_uint32), ("port", c_uint16), ("protocol", c_uint8),
                ("pad", c_uint8), ("table_size", c_uint32), ("pad2", c_uint32),
                ("udp_idle_ns", c_uint64)]


class Backend(Structure):
    _fields_ = [("ip", c_uint32), ("port", c_uint16), ("pad", c_uint16)]


class FlowKey(Structure):
    _fields_ = [("src_ip", c_uint32), ("dst_ip", c_uint32), ("src_port", c_uint16),
                ("dst_port", c_uint16), ("protocol", c_uint8), ("pad", c_uint8 * 3)]


class FlowTarget(Structure):
    _fields_ = [("ip", c_uint32), ("port", c_uint16), ("pad", c_uint16),
                ("backend", c_uint32), ("pad2", c_uint32), ("last_seen_ns", c_uint64)]


class Counters(Structure):
    _fields_ = [("packets", c_uint64), ("bytes", c_uint64), ("reply_packets", c_uint64),
                ("reply_bytes", c_uint64)]
