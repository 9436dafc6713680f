"""One record's packets, read back from the pcap output by its `fileId`/`packetPos`.

The record names the node and the directory the pcap output wrote (a
`--pcap-dir` given by the reader wins, for files that were moved). Packets are
copied as stored: the 16-byte record header (time, captured and wire length)
and the frame, so the extract is byte for byte what the sensor saw.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

from sensor.errors import SensorError
from sensor.output.pcap import RECORD_HEADER, SNAPLEN, find_file

_FILE_HEADER = struct.Struct("<IHHiIII")
_CAPLEN = struct.Struct("<8xI4x")
_MAGIC = 0xA1B2C3D4


class PcapExtractError(SensorError):
    """A record's packets cannot be read back; the message says which and why."""


def positions(record: dict[str, Any]) -> list[tuple[int, int]]:
    """(file number, offset) of each packet, from Arkime's packetPos (-NUM marks the file)."""
    found: list[tuple[int, int]] = []
    current = None
    for value in record.get("packetPos") or []:
        if value < 0:
            current = -value
        elif current is None:
            raise PcapExtractError("packetPos starts with an offset before any file number: not a pcap-output record")
        else:
            found.append((current, value))
    return found


def extract(record: dict[str, Any], out: BinaryIO, pcap_dir: str | Path | None = None) -> int:
    """Write the record's packets to `out` as a pcap file; returns how many."""
    where = positions(record)
    if not where:
        raise PcapExtractError("this session has no packets in pcap files: record it with -o pcap:DIR (sessions "
                               "the kernel counted without sending packets up have none)")
    directory = Path(pcap_dir or (record.get("xdpsensor") or {}).get("pcapDir") or ".")
    node = record.get("node")
    if not node:
        raise PcapExtractError("the record names no node: it was not written with the pcap output")
    files: dict[int, BinaryIO] = {}
    linktype = None
    try:
        for num, offset in where:
            f = files.get(num)
            if f is None:
                path = find_file(directory, node, num)
                if path is None:
                    raise PcapExtractError(f"pcap file {num} of node {node} is not in {directory}: "
                                           f"pass --pcap-dir DIR where the files are now")
                f = files[num] = open(path, "rb")
                header = f.read(_FILE_HEADER.size)
                if len(header) < _FILE_HEADER.size or _FILE_HEADER.unpack(header)[0] != _MAGIC:
                    raise PcapExtractError(f"{path} is not a pcap file written by the sensor")
                kind = _FILE_HEADER.unpack(header)[6]
                if linktype is None:
                    linktype = kind
                    out.write(_FILE_HEADER.pack(_MAGIC, 2, 4, 0, 0, SNAPLEN, linktype))
                elif kind != linktype:
                    raise PcapExtractError(f"the session's packets span link types {linktype} and {kind}")
            f.seek(offset)
            head = f.read(RECORD_HEADER)
            if len(head) < RECORD_HEADER:
                raise PcapExtractError(f"packet at {offset} of file {num} is missing (the file is shorter)")
            data = f.read(_CAPLEN.unpack(head)[0])
            out.write(head)
            out.write(data)
    finally:
        for f in files.values():
            f.close()
    return len(where)
