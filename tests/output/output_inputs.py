"""Inputs built for the output tests: hand-made SPI records, a tiny protocol, frames and their messages."""
from __future__ import annotations

from collections.abc import Iterable

from sensor.flows.state import Direction
from sensor.hooks import FinishedSession
from sensor.models import Frame, ParsedMessage
from sensor.protocol import DefinitionDecoder, load_definition_dict

C2S, S2C = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT

# A tiny protocol: Hello = opcode 0x01, uint16 name length, name; Ack = opcode 0x02, status enum.
GREETING = {"protocol": {"name": "Greeting", "endianness": "big", "messages": [
    {"name": "Hello", "direction": "c2s", "match": {"type": "magic", "value": [0x01]},
     "fields": [{"name": "opcode", "type": "uint8"}, {"name": "name_len", "type": "uint16"},
                {"name": "name", "type": "string", "length": "{name_len}"}]},
    {"name": "Ack", "match": {"type": "magic", "value": [0x02]},
     "fields": [{"name": "opcode", "type": "uint8"},
                {"name": "status", "type": "uint8", "enum": {0: "ok", 1: "denied"}}]},
]}}
HELLO = b"\x01\x00\x05alice"
ACK = b"\x02\x00"


def spi_record(session_id: str, *, client: str = "10.0.0.1", cport: int | None = 40000, server: str = "10.0.0.2",
               sport: int | None = 80, first_ms: int = 1_700_000_000_000, last_ms: int | None = None,
               protocols: tuple[str, ...] = ("tcp",), ip_protocol: int = 6, packets: int = 4,
               end_reason: str = "fin") -> dict:
    """An SPI record shaped like the pipeline's (see sensor.arkime.spi), built by hand."""
    source = {"ip": client, "packets": packets // 2, "bytes": 100}
    destination = {"ip": server, "packets": packets - packets // 2, "bytes": 200}
    if cport is not None:
        source["port"] = cport
    if sport is not None:
        destination["port"] = sport
    return {
        "firstPacket": first_ms, "lastPacket": first_ms if last_ms is None else last_ms,
        "ipProtocol": ip_protocol, "protocol": list(protocols), "protocolCnt": len(protocols),
        "source": source, "destination": destination,
        "network": {"packets": packets, "bytes": 300}, "totDataBytes": 42,
        "xdpsensor": {"endReason": end_reason, "sessionId": session_id},
    }


def greeting_exchange(session_id: str) -> tuple[list[Frame], list]:
    """Frames of one Hello/Ack exchange, and their messages decoded with GREETING."""
    frames = [Frame.create(session_id, C2S, HELLO, 0), Frame.create(session_id, S2C, ACK, 0)]
    decoder = DefinitionDecoder(load_definition_dict(GREETING))
    return frames, [decoder.decode(frame) for frame in frames]


def finished(record: dict, frames: Iterable[Frame] = (), messages: Iterable[ParsedMessage | None] = ()) -> FinishedSession:
    """What the pipeline hands a sink: the record with its frames and messages."""
    return FinishedSession(record, tuple(frames), tuple(messages))
