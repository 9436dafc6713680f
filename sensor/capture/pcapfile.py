"""Read pcap and pcapng files record by record; write simple pcap files.

Hand-written so the reader has no dependency and streams: one record (pcapng)
or one chunk of CHUNK bytes (pcap, parsed in place: two reads per record
cost more than the parse) in memory at a time. Records are not decoded here: unknown link types are yielded like any
other and decoding is the caller's business (`sensor.packet.decode_frame`).

A truncated final record ends the iteration with `TruncatedCapture`, raised only
after every complete record before it has been yielded, so nothing read is lost.
"""
from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from os import PathLike
from typing import BinaryIO, NamedTuple

from sensor.errors import SensorError

# Larger records are treated as corruption rather than allocated.
MAX_RECORD_BYTES = 256 * 1024 * 1024
# Timestamps from 1970 to 2242: beyond, a pcapng interface's resolution or
# offset is corrupt (and nanoseconds would not fit the kernel's 64 bits).
MAX_TIMESTAMP = float(2**33)
CHUNK = 1 << 16     # bytes per read of a classic pcap: ~600 records of 100 bytes, a bounded buffer

_PCAP_MAGIC_US = 0xA1B2C3D4
_PCAP_MAGIC_NS = 0xA1B23C4D
_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D
_PCAPNG_IDB = 1
_PCAPNG_SPB = 3
_PCAPNG_EPB = 6
_IDB_OPT_TSRESOL = 9
_IDB_OPT_TSOFFSET = 14
_OPT_END = 0

_U32_LE = struct.Struct("<I")


class PcapError(SensorError):
    """The file is not a readable pcap/pcapng capture."""


class BadMagic(PcapError):
    """The file does not start with a pcap or pcapng magic number."""


class TruncatedCapture(PcapError):
    """The file ends inside a header or record; every complete record was yielded first."""


class PcapRecord(NamedTuple):
    timestamp: float
    linktype: int
    data: bytes
    wire_len: int


# A record not yet copied out: (timestamp, linktype, buffer, start, end, wire_len),
# its bytes being buffer[start:end]; for readers that hand most records on.
Span = tuple[float, int, bytes, int, int, int]
RUN_RECORDS = 256   # records per run at most


def read_pcap(path: str | PathLike[str]) -> Iterator[PcapRecord]:
    """Yield the records of a pcap or pcapng file, detected by its magic."""
    with open(path, "rb") as stream:
        yield from iter_records(stream)


def iter_records(stream: BinaryIO) -> Iterator[PcapRecord]:
    """Yield the records of an open binary pcap/pcapng stream."""
    for run in iter_runs(stream):
        for timestamp, linktype, buffer, start, end, wire_len in run:
            yield PcapRecord(timestamp, linktype, buffer[start:end], wire_len)


def iter_runs(stream: BinaryIO) -> Iterator[list[Span]]:
    """The records of an open binary pcap/pcapng stream as runs of up to
    RUN_RECORDS Spans (not copied out), a classic pcap's parsed from its chunk
    in one tight loop: a caller pays no generator step per record."""
    head = stream.read(4)
    if len(head) < 4:
        raise TruncatedCapture(f"file is {len(head)} bytes long: too short for a capture header")
    magic_le = _U32_LE.unpack(head)[0]
    if magic_le == _PCAPNG_SHB:
        run: list[Span] = []
        try:
            for rec in _iter_pcapng(stream, head):
                run.append((rec.timestamp, rec.linktype, rec.data, 0, len(rec.data), rec.wire_len))
                if len(run) >= RUN_RECORDS:
                    yield run
                    run = []
        except PcapError:
            if run:
                yield run   # every complete record before the error first
            raise
        if run:
            yield run
        return
    for order in ("<", ">"):
        magic = struct.unpack(order + "I", head)[0]
        if magic in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS):
            yield from _pcap_runs(stream, order, 1e-9 if magic == _PCAP_MAGIC_NS else 1e-6)
            return
    raise BadMagic(f"magic 0x{head.hex()} is neither pcap (a1b2c3d4/a1b23c4d) nor pcapng (0a0d0d0a)")


def _read_exact(stream: BinaryIO, size: int, what: str) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise TruncatedCapture(f"{what}: needed {size} bytes, file ends after {len(data)}")
    return data


def _pcap_runs(stream: BinaryIO, order: str, tick: float) -> Iterator[list[Span]]:
    header = _read_exact(stream, 20, "pcap file header")
    linktype = struct.unpack(order + "16xI", header)[0] & 0xFFFF  # upper bits: FCS info
    unpack = struct.Struct(order + "IIII").unpack_from
    buf, pos, index, want = b"", 0, 0, CHUNK
    while True:
        size, run = len(buf), []
        while pos + 16 <= size:
            seconds, fraction, caplen, wire_len = unpack(buf, pos)
            if caplen > MAX_RECORD_BYTES:
                if run:
                    yield run   # every complete record before the error first
                raise PcapError(f"record {index}: captured length {caplen} is implausible; the file is corrupt")
            end = pos + 16 + caplen
            if end > size:
                want = max(CHUNK, end - size)   # a record longer than a chunk: read the rest at once
                break
            run.append((seconds + fraction * tick, linktype, buf, pos + 16, end, wire_len))
            pos = end
            index += 1
            if len(run) == RUN_RECORDS:
                break
        if run:
            yield run
            if len(run) == RUN_RECORDS:
                continue
        more = stream.read(want)
        buf, pos, want = buf[pos:] + more, 0, CHUNK
        if not more:
            if len(buf) >= 16:
                caplen = unpack(buf, 0)[2]
                raise TruncatedCapture(f"record {index}: needed {caplen} bytes, file ends after {len(buf) - 16}")
            if buf:
                raise TruncatedCapture(f"record {index}: header cut short ({len(buf)} of 16 bytes)")
            return


class _Interface(NamedTuple):
    linktype: int
    units_per_second: int
    offset_seconds: int


def _iter_pcapng(stream: BinaryIO, head: bytes) -> Iterator[PcapRecord]:
    order = "<"
    interfaces: list[_Interface] = []
    last_timestamp = 0.0
    index = 0
    while True:
        if not head:
            head = stream.read(4)
            if not head:
                return
            if len(head) < 4:
                raise TruncatedCapture(f"block {index}: type cut short")
        length_raw = _read_exact(stream, 4, f"block {index} length")
        block_type = struct.unpack(order + "I", head)[0]
        if block_type == _PCAPNG_SHB:
            bom = _read_exact(stream, 4, "section header byte-order magic")
            order = "<" if _U32_LE.unpack(bom)[0] == _PCAPNG_BYTE_ORDER_MAGIC else ">"
            if struct.unpack(order + "I", bom)[0] != _PCAPNG_BYTE_ORDER_MAGIC:
                raise BadMagic(f"pcapng section header has byte-order magic 0x{bom.hex()}")
            block_len = struct.unpack(order + "I", length_raw)[0]
            body = bom + _read_exact(stream, _body_len(block_len, index) - 4, f"block {index}")
            interfaces = []  # interface ids are per section
        else:
            block_len = struct.unpack(order + "I", length_raw)[0]
            body = _read_exact(stream, _body_len(block_len, index), f"block {index}")
        head = b""
        if block_type == _PCAPNG_IDB:
            interfaces.append(_parse_idb(body, order, index))
        elif block_type == _PCAPNG_EPB:
            if len(body) < 24:
                raise PcapError(f"block {index}: enhanced packet block is too short")
            iface_id, ts_high, ts_low, caplen, wire_len = struct.unpack_from(order + "IIIII", body)
            iface = _interface(interfaces, iface_id, index)
            if 20 + caplen > len(body) - 4:
                raise PcapError(f"block {index}: captured length {caplen} exceeds the block")
            units = (ts_high << 32) | ts_low
            last_timestamp = iface.offset_seconds + units / iface.units_per_second
            if not 0 <= last_timestamp < MAX_TIMESTAMP:
                raise PcapError(f"block {index}: timestamp {last_timestamp:.6g} s is out of range "
                                f"(interface {iface_id}'s if_tsresol or if_tsoffset is corrupt)")
            yield PcapRecord(last_timestamp, iface.linktype, body[20:20 + caplen], wire_len)
        elif block_type == _PCAPNG_SPB:
            # A simple packet block has no timestamp: reuse the previous one so
            # time-driven session timeouts never see time go backwards.
            iface = _interface(interfaces, 0, index)
            wire_len = struct.unpack_from(order + "I", body)[0]
            caplen = min(wire_len, len(body) - 8)  # minus original length and trailing length
            yield PcapRecord(last_timestamp, iface.linktype, body[4:4 + caplen], wire_len)
        index += 1


def _body_len(block_len: int, index: int) -> int:
    """Bytes left to read after a block's type and length fields (body plus trailing length)."""
    if block_len < 12 or block_len % 4 or block_len > MAX_RECORD_BYTES:
        raise PcapError(f"block {index}: total length {block_len} is invalid; the file is corrupt")
    return block_len - 8  # includes the trailing copy of the length


def _interface(interfaces: list[_Interface], iface_id: int, index: int) -> _Interface:
    if iface_id >= len(interfaces):
        raise PcapError(f"block {index}: packet refers to interface {iface_id}, only {len(interfaces)} described")
    return interfaces[iface_id]


def _parse_idb(body: bytes, order: str, index: int) -> _Interface:
    if len(body) < 12:
        raise PcapError(f"block {index}: interface description block is too short")
    linktype = struct.unpack_from(order + "H", body)[0]
    units_per_second = 1_000_000
    offset_seconds = 0
    pos, end = 8, len(body) - 4  # options sit between the fixed part and the trailing length
    while pos + 4 <= end:
        code, length = struct.unpack_from(order + "HH", body, pos)
        value = body[pos + 4:pos + 4 + length]
        if code == _OPT_END:
            break
        if code == _IDB_OPT_TSRESOL and length == 1:
            exponent = value[0] & 0x7F
            units_per_second = 2 ** exponent if value[0] & 0x80 else 10 ** exponent
        elif code == _IDB_OPT_TSOFFSET and length == 8:
            offset_seconds = struct.unpack(order + "q", value)[0]
        pos += 4 + ((length + 3) & ~3)
    return _Interface(linktype, units_per_second, offset_seconds)


def write_pcap(
    path: str | PathLike[str],
    records: Iterable[tuple[float, bytes]],
    linktype: int = 1,
    snaplen: int = 262144,
) -> int:
    """Write (timestamp, frame) pairs as a little-endian microsecond pcap; return the record count."""
    count = 0
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", _PCAP_MAGIC_US, 2, 4, 0, 0, snaplen, linktype))
        for timestamp, data in records:
            seconds = int(timestamp)
            micros = round((timestamp - seconds) * 1_000_000)
            if micros == 1_000_000:
                seconds, micros = seconds + 1, 0
            out.write(struct.pack("<IIII", seconds, micros, len(data), len(data)))
            out.write(data)
            count += 1
    return count
