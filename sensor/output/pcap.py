"""The pcap output: the packets that reach userspace, in rotating pcap files, with
Arkime's `fileId`/`packetPos`/`packetLen` in every record pointing into them.

Files are `DIR/NODE-YYMMDD-HHMMSS-NUM.pcap` (UTC time of the file's first
packet, NUM Arkime's file number, 8 digits, one more than the highest in DIR
for this node). A file is closed and the next one started when it would pass
`max_bytes`, when its first packet is `max_seconds` older than the current
one (packet time, so offline reads rotate as live ones would), or when the
link type changes.

As in Arkime, a record's `packetPos` lists, per file, `-NUM` and then the byte
offset of each packet's 16-byte record header; `fileId` lists the NUMs and
`packetLen` 16 + the captured length (0 at each `-NUM`). A record lists the
packets since the session's previous record (mid-session saves start afresh).

Packets are buffered and written in blocks; the buffer is also written before
a record that points into it is saved, so a record lists only packets that are
on disk. When writing fails (disk full, directory gone or read-only) the error
is logged once, the file is abandoned, the packets are counted in
`unwritten_packets` and left out of the records, and a new file is tried after
`retry` seconds; capture goes on meanwhile.
"""
from __future__ import annotations

import logging
import os
import re
import socket
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from sensor.errors import SensorError
from sensor.flows.session import Session
from sensor.hooks import FinishedSession
from sensor.packet import Packet

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 1 << 30
DEFAULT_MAX_SECONDS = 3600.0
BUFFER_BYTES = 256 * 1024  # written to disk when the buffer holds this much
SNAPLEN = 262144
RECORD_HEADER = 16
_FILE_HEADER = struct.Struct("<IHHiIII")
_RECORD_HEADER = struct.Struct("<IIII")
_PCAP_MAGIC_US = 0xA1B2C3D4
_SIZE = re.compile(r"^(\d+)([kmg]?)$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
USAGE = "pcap:DIR[?node=NAME&max_size=BYTES(k/m/g)&max_age=SECONDS]"


class PcapTargetError(SensorError, ValueError):
    """A `-o pcap:` value that cannot be used; the message says what to write."""


def default_node() -> str:
    """Arkime's default node name: the short host name."""
    return socket.gethostname().split(".")[0] or "xdpsensor"


@dataclass(frozen=True, slots=True)
class PcapTarget:
    directory: Path
    node: str
    max_bytes: int = DEFAULT_MAX_BYTES
    max_seconds: float = DEFAULT_MAX_SECONDS


def parse_pcap_target(text: str) -> PcapTarget:
    """`DIR[?node=NAME&max_size=100m&max_age=600]` (what follows `pcap:`)."""
    path, _, query = text.partition("?")
    if not path:
        raise PcapTargetError(f"no directory in pcap:{text}: write {USAGE}")
    options = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    unknown = set(options) - {"node", "max_size", "max_age"}
    if unknown:
        raise PcapTargetError(f"unknown option(s) {', '.join(sorted(unknown))} in pcap:{text}: write {USAGE}")
    node = options.get("node") or default_node()
    if not re.fullmatch(r"[A-Za-z0-9_.]+(-[A-Za-z0-9_.]+)*", node):
        raise PcapTargetError(f"node name {node!r}: use letters, digits, '.', '_' and '-'")
    size = _SIZE.match(options.get("max_size", str(DEFAULT_MAX_BYTES)))
    try:
        max_seconds = float(options.get("max_age", DEFAULT_MAX_SECONDS))
    except ValueError:
        max_seconds = -1
    if size is None or max_seconds <= 0:
        raise PcapTargetError(f"max_size must be a byte count (k/m/g allowed) and max_age seconds > 0 in pcap:{text}")
    max_bytes = int(size[1]) * _UNITS[size[2].lower()]
    if max_bytes < 4096:
        raise PcapTargetError(f"max_size {max_bytes} is too small for a pcap file: give at least 4k")
    return PcapTarget(Path(path), node, max_bytes, max_seconds)


def check_pcap_target(text: str) -> None:
    """Refuse, before anything opens, a directory that cannot be made or written."""
    directory = parse_pcap_target(text).directory
    probe = directory
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise PcapTargetError(f"pcap:{text}: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PcapTargetError(f"pcap:{text}: {probe} is not writable by this user")


def file_name(node: str, num: int, timestamp: float) -> str:
    return f"{node}-{time.strftime('%y%m%d-%H%M%S', time.gmtime(timestamp))}-{num:08d}.pcap"


def find_file(directory: Path, node: str, num: int) -> Path | None:
    """The pcap file with Arkime file number `num` written by `node` in `directory`."""
    matches = sorted(directory.glob(f"{node}-??????-??????-{num:08d}.pcap"))
    return matches[0] if matches else None


def _highest_file_number(directory: Path, node: str) -> int:
    pattern = re.compile(rf"^{re.escape(node)}-\d{{6}}-\d{{6}}-(\d{{8}})\.pcap$")
    numbers = [int(m[1]) for m in map(pattern.match, os.listdir(directory)) if m] if directory.is_dir() else []
    return max(numbers, default=0)


@dataclass(slots=True)
class _OpenFile:
    num: int
    fd: int
    first_ts: float
    linktype: int
    size: int  # bytes in the file and the buffer: the next packet's position
    written: int  # bytes on disk
    buffer: list[bytes] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)  # end offset of each buffered packet


class PcapSink:
    """A pipeline listener (`packet`, `record_saving`) and an output (`write` does nothing:
    the packets are already written when the record is)."""

    def __init__(self, target: PcapTarget | str, retry: float = 1.0) -> None:
        self.target = parse_pcap_target(target) if isinstance(target, str) else target
        self.retry = retry
        self._file: _OpenFile | None = None
        self._next_num = 0  # found in the directory at the first packet
        self._good_end: dict[int, int] = {}  # per file number: the end of its packets on disk
        self._positions: dict[int, list[tuple[int, int, int]]] = {}  # by Session.id: (file, pos, caplen)
        self._retry_at = 0.0
        self._failing = False
        self.files = 0
        self.packets_written = 0
        self.unwritten_packets = 0

    # -- listener hooks ---------------------------------------------------------
    def packet(self, session: Session, packet: Packet, frame: bytes, linktype: int) -> None:
        timestamp = packet.timestamp
        f = self._file
        size = RECORD_HEADER + len(frame)
        if f is None or f.linktype != linktype or f.size + size > self.target.max_bytes \
                or timestamp - f.first_ts >= self.target.max_seconds:
            f = self._rotate(timestamp, linktype)
            if f is None:
                self.unwritten_packets += 1
                return
        seconds = int(timestamp)
        micros = min(999_999, round((timestamp - seconds) * 1_000_000))
        pos = f.size
        f.buffer.append(_RECORD_HEADER.pack(seconds, micros, len(frame), packet.frame_len))
        f.buffer.append(frame)
        f.size += size
        f.ends.append(f.size)
        self._positions.setdefault(session.id, []).append((f.num, pos, len(frame)))
        if f.size - f.written >= BUFFER_BYTES:
            self._write_buffer(f)

    def record_saving(self, session: Session, record: dict[str, Any]) -> None:
        """Add Arkime's packetPos/fileId/packetLen for the packets written since the last record."""
        packets = self._positions.pop(session.id, [])
        f = self._file
        if f is not None and packets and packets[-1][0] == f.num and packets[-1][1] >= f.written:
            self._write_buffer(f)
        positions: list[int] = []
        files: list[int] = []
        lengths: list[int] = []
        last = None
        good_end = self._good_end
        for num, pos, caplen in packets:
            if pos >= good_end.get(num, 0):
                continue  # lost with its file: counted when the write failed
            if num != last:
                positions.append(-num)
                files.append(num)
                lengths.append(0)
                last = num
            positions.append(pos)
            lengths.append(RECORD_HEADER + caplen)
        record["packetPos"] = positions
        record["fileId"] = files
        record["packetLen"] = lengths
        record.setdefault("node", self.target.node)
        record.setdefault("xdpsensor", {})["pcapDir"] = str(self.target.directory.resolve())

    # -- output -----------------------------------------------------------------
    def write(self, finished: FinishedSession) -> None:
        """Nothing to do: the packets went to disk before the record was saved."""

    def flush(self) -> None:
        """Nothing to do here: the capture thread owns the files (see record_saving)."""

    def reopen(self) -> None:
        """Nothing to do: pcap files rotate by themselves."""

    def close(self) -> None:
        """Write the buffer and close the file (after the pipeline has stopped)."""
        self._close_file()
        if self.unwritten_packets:
            log.error("pcap: %d packet(s) not written to %s (%d written in %d file(s))", self.unwritten_packets,
                      self.target.directory, self.packets_written, self.files)

    def _close_file(self) -> None:
        f, self._file = self._file, None
        if f is not None and self._write_buffer(f):
            os.close(f.fd)

    def counters(self) -> dict[str, int]:
        return {"files": self.files, "packets_written": self.packets_written,
                "unwritten_packets": self.unwritten_packets}

    # -- files ------------------------------------------------------------------
    def _rotate(self, timestamp: float, linktype: int) -> _OpenFile | None:
        self._close_file()
        if self._failing and time.monotonic() < self._retry_at:
            return None
        directory = self.target.directory
        header = _FILE_HEADER.pack(_PCAP_MAGIC_US, 2, 4, 0, 0, SNAPLEN, linktype)
        path = None
        try:
            directory.mkdir(parents=True, exist_ok=True)
            num = max(self._next_num, _highest_file_number(directory, self.target.node)) + 1
            path = directory / file_name(self.target.node, num, timestamp)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            try:
                if os.write(fd, header) != len(header):
                    raise OSError(28, os.strerror(28))  # a short write of 24 bytes: the disk is full
            except OSError:
                os.close(fd)
                os.unlink(path)
                raise
        except OSError as exc:
            self._failed(exc, path or directory)
            return None
        self._next_num = num
        self.files += 1
        self._file = _OpenFile(num, fd, timestamp, linktype, len(header), len(header))
        self._good_end[num] = len(header)
        if self._failing:
            log.warning("pcap: writing to %s again (%d packet(s) unwritten so far)", path, self.unwritten_packets)
            self._failing = False
        return self._file

    def _write_buffer(self, f: _OpenFile) -> bool:
        """Write the buffered packets; False when that failed and the file was abandoned."""
        if not f.buffer:
            return True
        data = b"".join(f.buffer)
        done = 0
        try:
            while done < len(data):
                done += os.write(f.fd, memoryview(data)[done:])
        except OSError as exc:
            ends = f.ends
            on_disk = f.written + done
            good = [end for end in ends if end <= on_disk]
            self._good_end[f.num] = good[-1] if good else f.written
            self.unwritten_packets += len(ends) - len(good)
            self.packets_written += len(good)
            self._file = None
            os.close(f.fd)
            self._failed(exc, self.target.directory)
            return False
        self.packets_written += len(f.ends)
        f.written += done
        self._good_end[f.num] = f.written
        f.buffer.clear()
        f.ends.clear()
        return True

    def _failed(self, exc: OSError, where: Path) -> None:
        self._retry_at = time.monotonic() + self.retry
        if not self._failing:
            log.error("pcap: cannot write in %s: %s; packets are counted as unwritten and writing is retried "
                      "every %g s while capture goes on", where, exc.strerror or exc, self.retry)
        self._failing = True
