"""The `arkime` output: OpenSearch bulk NDJSON of Arkime session documents.

Each record becomes two lines, `{"index": {"_index": "arkime_sessions3-YYMMDD", "_id": ID}}`
and the document, ready for `curl -H 'Content-Type: application/x-ndjson' --data-binary
@file http://opensearch:9200/_bulk` (Arkime's daily index, by the UTC day of the session's
last packet, as Arkime's capture names it). The document is the SPI record with
what Arkime's capture adds: `node`, `@timestamp` (the save time, ms), `packetPos`/
`fileId`/`packetLen` (empty unless the pcap output wrote the packets), and, seen in
the first packets of each direction as Arkime looks at them, the MAC addresses,
`ethertype`, TTLs and non-zero DSCP values. Our own `xdpsensor` block is left out
(its session id becomes the document id).
"""
from __future__ import annotations

import json
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qs

from sensor.errors import SensorError
from sensor.flows.session import Session
from sensor.hooks import FinishedSession
from sensor.packet import Packet
from sensor.output.pcap import default_node

TRAIT_PACKETS = 10  # per direction, as Arkime checks its first packets for MACs, DSCP and tunnels
USAGE = "arkime:PATH[?node=NAME&prefix=PREFIX] (OpenSearch bulk NDJSON, - for stdout)"
_LINKTYPE_ETHERNET = 1
_LINKTYPE_RAW = (101, 12, 14)
_VLAN = (0x8100, 0x88A8, 0x9100)
_U16 = struct.Struct("!H")
_encode = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


class ArkimeTargetError(SensorError, ValueError):
    """An `-o arkime:` value that cannot be used."""


def parse_arkime_target(target: str) -> tuple[str, str, str]:
    """(path, node, index prefix) of what follows `arkime:`."""
    path, _, query = target.partition("?")
    options = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    if not path or set(options) - {"node", "prefix"}:
        raise ArkimeTargetError(f"arkime:{target}: write {USAGE}")
    return path, options.get("node") or default_node(), options.get("prefix", "arkime_")


def index_name(record: dict, prefix: str = "arkime_") -> str:
    """Arkime's daily sessions index for a record (by its last packet, UTC)."""
    last = record.get("lastPacket") or record.get("firstPacket") or 0
    return f"{prefix}sessions3-{time.strftime('%y%m%d', time.gmtime(last / 1000))}"


def arkime_document(record: dict, node: str, saved_ms: int) -> dict:
    """The Arkime session document of one SPI record."""
    doc = {key: value for key, value in record.items() if key != "xdpsensor"}
    doc["node"] = record.get("node") or node
    doc["@timestamp"] = saved_ms
    for key in ("packetPos", "fileId", "packetLen"):
        doc.setdefault(key, [])
    return doc


@dataclass(slots=True)
class _Traits:
    """What the first packets of each direction of a session showed."""

    seen: list[int] = field(default_factory=lambda: [0, 0])
    macs: tuple[dict[str, None], dict[str, None]] = field(default_factory=lambda: ({}, {}))
    ttls: tuple[dict[int, None], dict[int, None]] = field(default_factory=lambda: ({}, {}))
    dscp: tuple[dict[int, None], dict[int, None]] = field(default_factory=lambda: ({}, {}))
    ethertype: int = 0


class ArkimeBulkWriter:
    """Writes bulk NDJSON; as a pipeline listener it also gathers the link and IP
    traits Arkime's documents carry (`packet`) and adds them to the record (`record_saving`)."""

    def __init__(self, target: str) -> None:
        self.path, self.node, self.prefix = parse_arkime_target(target)
        if self.path != "-":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._out = self._open()
        self._traits: dict[int, _Traits] = {}
        self.written = 0

    def _open(self) -> TextIO:
        return sys.stdout if self.path == "-" else open(self.path, "a", encoding="utf-8")

    # -- listener hooks (capture thread) -----------------------------------------
    def packet(self, session: Session, packet: Packet, frame: bytes, linktype: int) -> None:
        traits = self._traits.get(session.id)
        if traits is None:
            traits = self._traits[session.id] = _Traits()
        elif traits.seen[0] >= TRAIT_PACKETS and traits.seen[1] >= TRAIT_PACKETS:
            return
        direction = session.direction_of(packet.src_ip, packet.src_port)
        if traits.seen[direction] >= TRAIT_PACKETS:
            return
        traits.seen[direction] += 1
        traits.ttls[direction][packet.ttl] = None  # the session's own IP header (inside any tunnel)
        if linktype == _LINKTYPE_ETHERNET and len(frame) >= 14:
            offset, ethertype = 14, _U16.unpack_from(frame, 12)[0]
            while ethertype in _VLAN and len(frame) >= offset + 4:
                ethertype = _U16.unpack_from(frame, offset + 2)[0]
                offset += 4
            traits.macs[direction][frame[6:12].hex(":")] = None
            traits.macs[1 - direction][frame[0:6].hex(":")] = None
        elif linktype in _LINKTYPE_RAW and frame:
            offset, ethertype = 0, 0x0800 if frame[0] >> 4 == 4 else 0x86DD
        else:
            return
        traits.ethertype = traits.ethertype or ethertype
        # DSCP of the first IP header (the outer one of a tunnel).
        version = frame[offset] >> 4 if len(frame) > offset else 0
        if version == 4 and len(frame) >= offset + 20:
            dscp = frame[offset + 1] >> 2
        elif version == 6 and len(frame) >= offset + 40:
            dscp = ((frame[offset] & 0x0F) << 2) | (frame[offset + 1] >> 6)
        else:
            dscp = 0
        if dscp:
            traits.dscp[direction][dscp] = None

    def record_saving(self, session: Session, record: dict[str, Any]) -> None:
        traits = self._traits.pop(session.id, None)
        if traits is None:
            return
        if traits.ethertype:
            record["ethertype"] = traits.ethertype
        for side, prefix, i in (("source", "src", 0), ("destination", "dst", 1)):
            macs = sorted(traits.macs[i])
            if macs:
                end = record.setdefault(side, {})
                end["mac"] = macs
                end["mac-cnt"] = len(macs)
            for name, values in (("TTL", traits.ttls[i]), ("Dscp", traits.dscp[i])):
                if values:
                    record[f"{prefix}{name}"] = sorted(values)
                    record[f"{prefix}{name}Cnt"] = len(values)

    # -- output (writer thread) --------------------------------------------------
    def write(self, finished: FinishedSession) -> None:
        record = finished.record
        header = {"_index": index_name(record, self.prefix)}
        sid = (record.get("xdpsensor") or {}).get("sessionId")
        if sid:
            header["_id"] = sid
        document = arkime_document(record, self.node, int(time.time() * 1000))
        self._out.write(_encode({"index": header}) + "\n" + _encode(document) + "\n")
        self.written += 1

    def flush(self) -> None:
        self._out.flush()

    def reopen(self) -> None:
        """Start a new file at the same path (after log rotation moved the old one)."""
        if self._out is not sys.stdout:
            self._out.close()
            self._out = self._open()

    def close(self) -> None:
        self._out.flush()
        if self._out is not sys.stdout:
            self._out.close()
