"""MQTT and Modbus/TCP frames built from their specs, for the plugin tests and the
tests of the bundled protocol definitions (tests/protocol/test_bundled_definitions.py)."""
from __future__ import annotations

import struct


def varint(n: int) -> bytes:
    """MQTT Variable Byte Integer, encoded with the algorithm in MQTT 3.1.1 section 2.2.3."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def text(s: str) -> bytes:
    """MQTT UTF-8 encoded string: a 2-byte big-endian length, then the bytes (section 1.5.3)."""
    raw = s.encode()
    return struct.pack(">H", len(raw)) + raw


def control(first_byte: int, body: bytes = b"") -> bytes:
    """An MQTT control packet: fixed header byte, remaining length, body."""
    return bytes([first_byte]) + varint(len(body)) + body


def adu(pdu: bytes, transaction_id: int = 1, unit_id: int = 0x11) -> bytes:
    """A Modbus/TCP ADU: MBAP header (length = unit id + PDU), then the PDU."""
    return struct.pack(">HHHB", transaction_id, 0, len(pdu) + 1, unit_id) + pdu
