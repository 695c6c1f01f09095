"""PROXY protocol encoders against the spec (haproxy.org/download/2.9/doc/proxy-protocol.txt):
v1 text lines, v2 signature, version/command, family, length and address blocks."""

from __future__ import annotations

import pytest

from inferlane.l4.proxy_protocol import (
    V2_SIGNATURE,
    encode_header,
    encode_v1,
    encode_v2,
    encode_v2_local,
)

SIGNATURE = bytes.fromhex("0d0a0d0a000d0a515549540a")  # spec §2.2, written out


def test_signature_is_the_specs_twelve_bytes() -> None:
    assert V2_SIGNATURE == SIGNATURE == b"\r\n\r\n\x00\r\nQUIT\n"


@pytest.mark.parametrize(
    ("source", "destination", "line"),
    [
        pytest.param(("192.168.0.1", 56324), ("192.168.0.11", 443),
                     b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", id="spec-example"),
        pytest.param(("255.255.255.255", 65535), ("255.255.255.255", 65535),
                     b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
                     id="tcp4-longest"),
        pytest.param(("::1", 5000), ("2001:db8::2", 80),
                     b"PROXY TCP6 ::1 2001:db8::2 5000 80\r\n", id="tcp6-compressed"),
        pytest.param(("192.0.2.1", 1), ("2001:db8::2", 80),
                     b"PROXY TCP6 ::ffff:c000:201 2001:db8::2 1 80\r\n", id="mixed-maps-v4"),
        pytest.param(("fe80::1%eth0", 7), ("fe80::2", 8),
                     b"PROXY TCP6 fe80::1 fe80::2 7 8\r\n", id="zone-dropped"),
    ],
)
def test_v1_lines(source: tuple[str, int], destination: tuple[str, int], line: bytes) -> None:
    assert encode_v1(source, destination) == line
    assert encode_header("v1", source, destination) == line


def test_v1_longest_tcp6_line_fits_the_specs_107_bytes() -> None:
    full = "ffff:" * 7 + "ffff"
    line = encode_v1((full, 65535), (full, 65535))
    assert len(line) == 104
    assert len(line) <= 107


@pytest.mark.parametrize(
    ("source", "destination", "transport", "tail"),
    [
        pytest.param(("127.0.0.1", 5000), ("10.0.0.2", 80), "tcp",
                     "21" "11" "000c" "7f000001" "0a000002" "1388" "0050", id="tcp4"),
        pytest.param(("127.0.0.1", 5000), ("10.0.0.2", 53), "udp",
                     "21" "12" "000c" "7f000001" "0a000002" "1388" "0035", id="udp4"),
        pytest.param(("::1", 5000), ("::2", 443), "tcp",
                     "21" "21" "0024" + "00" * 15 + "01" + "00" * 15 + "02" + "1388" "01bb",
                     id="tcp6"),
        pytest.param(("::1", 5000), ("::2", 443), "udp",
                     "21" "22" "0024" + "00" * 15 + "01" + "00" * 15 + "02" + "1388" "01bb",
                     id="udp6"),
        pytest.param(("192.0.2.1", 65535), ("::2", 0), "tcp",
                     "21" "21" "0024" + "00" * 10 + "ffff" "c0000201" + "00" * 15 + "02"
                     + "ffff" "0000", id="mixed-maps-v4"),
    ],
)
def test_v2_headers(source: tuple[str, int], destination: tuple[str, int], transport: str,
                    tail: str) -> None:
    header = encode_v2(source, destination, transport="udp" if transport == "udp" else "tcp")
    assert header == SIGNATURE + bytes.fromhex(tail)
    # The length field counts the address block that follows the 16-byte fixed part.
    assert int.from_bytes(header[14:16], "big") == len(header) - 16


def test_v2_through_encode_header_is_tcp() -> None:
    header = encode_header("v2", ("10.1.2.3", 1234), ("10.9.9.9", 80))
    assert header[12:14] == b"\x21\x11"
    assert len(header) == 16 + 12


def test_v2_local_has_no_addresses() -> None:
    assert encode_v2_local() == SIGNATURE + bytes.fromhex("20000000")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(lambda: encode_v1(("10.0.0.1", 70000), ("10.0.0.2", 80)),
                     "port 70000 is outside", id="v1-port"),
        pytest.param(lambda: encode_v2(("10.0.0.1", 1), ("10.0.0.2", -1)),
                     "port -1 is outside", id="v2-port"),
        pytest.param(lambda: encode_v1(("not-an-ip", 1), ("10.0.0.2", 80)),
                     "does not appear to be an IPv4 or IPv6 address", id="hostname"),
        pytest.param(lambda: encode_header("v3", ("10.0.0.1", 1), ("10.0.0.2", 80)),  # type: ignore[arg-type]
                     "unknown version 'v3'", id="version"),
    ],
)
def test_invalid_input_is_refused(call: object, message: str) -> None:
    assert callable(call)
    with pytest.raises(ValueError, match=message):
        call()
