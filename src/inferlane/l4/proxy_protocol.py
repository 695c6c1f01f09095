"""PROXY protocol headers (HAProxy's v1 text and v2 binary forms), encoded as bytes.

Where it sits: the TCP proxy (``proxy_tcp.py``) writes one header towards the backend before any
client byte, so the backend sees the client's address instead of the proxy's. Pure functions;
the spec is https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt.

An address pair whose families differ (an IPv4 client on an IPv6 listener, or the reverse) is
sent as IPv6 with the IPv4 side mapped to ``::ffff:a.b.c.d``, as HAProxy does.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Literal

ProxyProtocolVersion = Literal["v1", "v2"]
Transport = Literal["tcp", "udp"]
Address = tuple[str, int]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_VERSION_PROXY = 0x21  # version 2 (high nibble), command PROXY (low nibble)
V2_VERSION_LOCAL = 0x20  # version 2, command LOCAL: the connection is the proxy's own
V2_FAMILIES: dict[tuple[int, Transport], int] = {
    (4, "tcp"): 0x11, (4, "udp"): 0x12, (6, "tcp"): 0x21, (6, "udp"): 0x22,
}


def _parse_ip(text: str) -> IPAddress:
    # A scoped IPv6 address ("fe80::1%eth0") cannot travel in either form: drop the zone.
    return ipaddress.ip_address(text.split("%", 1)[0])


def _same_family(source: IPAddress, destination: IPAddress) -> tuple[IPAddress, IPAddress]:
    """Both addresses in one family: IPv4 when both are, else IPv6 (IPv4 mapped)."""
    if source.version == destination.version:
        return source, destination

    def as_v6(address: IPAddress) -> ipaddress.IPv6Address:
        if isinstance(address, ipaddress.IPv6Address):
            return address
        return ipaddress.IPv6Address(f"::ffff:{address}")

    return as_v6(source), as_v6(destination)


def _check_port(port: int) -> int:
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"PROXY protocol: port {port} is outside 0..65535")
    return port


def encode_v1(source: Address, destination: Address) -> bytes:
    """``PROXY TCP4 <src ip> <dst ip> <src port> <dst port>\\r\\n`` (TCP6 for IPv6).

    ``source`` is the client's (ip, port); ``destination`` the address the client connected to.
    """
    src_ip, dst_ip = _same_family(_parse_ip(source[0]), _parse_ip(destination[0]))
    family = "TCP4" if src_ip.version == 4 else "TCP6"
    line = (f"PROXY {family} {src_ip.compressed} {dst_ip.compressed} "
            f"{_check_port(source[1])} {_check_port(destination[1])}\r\n")
    return line.encode("ascii")


def encode_v2(source: Address, destination: Address, *, transport: Transport = "tcp") -> bytes:
    """The binary header: signature, version/command 0x21, family, length, then the addresses.

    IPv4: 4+4 address bytes and 2+2 port bytes (length 12); IPv6: 16+16 and 2+2 (length 36).
    Everything in network byte order; no TLVs.
    """
    src_ip, dst_ip = _same_family(_parse_ip(source[0]), _parse_ip(destination[0]))
    addresses = src_ip.packed + dst_ip.packed + struct.pack(
        "!HH", _check_port(source[1]), _check_port(destination[1]))
    family = V2_FAMILIES[(src_ip.version, transport)]
    return V2_SIGNATURE + struct.pack("!BBH", V2_VERSION_PROXY, family, len(addresses)) + addresses


def encode_v2_local() -> bytes:
    """A v2 LOCAL header (no addresses): e.g. for a health check the proxy makes itself."""
    return V2_SIGNATURE + struct.pack("!BBH", V2_VERSION_LOCAL, 0x00, 0)


def encode_header(version: ProxyProtocolVersion, source: Address, destination: Address) -> bytes:
    """The header of ``version`` for a TCP connection from ``source`` to ``destination``."""
    if version == "v1":
        return encode_v1(source, destination)
    if version == "v2":
        return encode_v2(source, destination)
    raise ValueError(f"PROXY protocol: unknown version {version!r}; expected 'v1' or 'v2'")
