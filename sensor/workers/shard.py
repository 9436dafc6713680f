"""`read --workers K`: the parent reads the capture files once and deals
each record to the worker its flow hashes to, by the kernel's own symmetric
flow hash (prefilter.flow_hash, the Python twin of flow_hash() in
bpf/sensor.bpf.c), so a flow goes to the same worker index as it would live
and both its directions meet. Each worker runs its share through its own
pre-filter and pipeline; the parent owns the outputs.

Records travel in batches, one pipe write per BATCH_RECORDS records of a
worker: the frames joined in one bytes object, and per record a fixed-size
entry (time, wire length, captured length, link type, kind). The parent also
runs the housekeeping schedule one process would (offline.Housekeeping) and
puts each expiry in every worker's stream at its place, so sessions and
kernel flows expire at the same points of the capture as with one process.

Later IP fragments carry no ports: they follow their first fragment's worker
(remembered as the kernel does); other frames without a flow go to worker 0."""
from __future__ import annotations

import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from sensor.capture.pcapfile import PcapRecord, Span
from sensor.offline import EXPIRE_EVERY, Housekeeping, RecordFeed, ReplaySummary, program_frame, read_runs
from sensor.packet import LINKTYPE_ETHERNET
from sensor.prefilter import FRAG_ENTRIES, ParsedFrame, flow_hash, parse_frame
from sensor.walk import DEFAULT_UDP_TUNNELS
from sensor.workers.pool import WorkerPool

MEMO_MAX = 1 << 16      # remembered (addresses, ports) -> worker
BATCH_RECORDS = 256     # records per pipe write to a worker (~100 KiB of 400-byte frames)

# A batch entry: capture time, wire length, captured length, link type, kind.
_ENTRY = struct.Struct("<dIIHB")
RECORD, EXPIRE, EXPIRE_KERNEL = 0, 1, 2


class Sharder:
    """The worker of each capture record. Plain IPv4 frames are looked up by
    their protocol, raw addresses and ports, so the full parse (and the hash)
    runs once per flow direction, not per packet; tunnel packets (whose flow
    is the one inside) are parsed every time."""

    def __init__(self, count: int, udp_tunnels: Mapping[int, int] = DEFAULT_UDP_TUNNELS) -> None:
        """`udp_tunnels`: the UDP tunnels the filters take apart (config udp_tunnels), so a flow
        inside one is dealt by its inner addresses, as the filters key it."""
        self.count = count
        self.udp_tunnels = udp_tunnels
        self._memo: list[dict[bytes, int]] = [{} for _ in range(256)]   # by IP protocol
        self._frags: OrderedDict[tuple, int] = OrderedDict()

    def split(self, run: list[Span]) -> list[list[Span]]:
        """The records of a run (pcapfile.Span's), each in its worker's list, in one loop."""
        shares: list[list[Span]] = [[] for _ in range(self.count)]
        memos = self._memo
        for span in run:
            _, linktype, buffer, start, end, _ = span
            if linktype == LINKTYPE_ETHERNET and end - start >= 38 and buffer[start + 12:start + 15] == b"\x08\x00\x45" \
                    and not (buffer[start + 20] & 0x3F or buffer[start + 21]):   # IPv4, no options, not a fragment
                memo = memos[buffer[start + 23]]
                raw = buffer[start + 26:start + 38]          # addresses, ports
                shard = memo.get(raw)
                if shard is None:
                    shard, plain = self._parsed(linktype, buffer[start:end])
                    if plain:
                        if len(memo) >= MEMO_MAX:
                            memo.clear()
                        memo[raw] = shard
                shares[shard].append(span)
            else:
                shares[self._parsed(linktype, buffer[start:end])[0]].append(span)
        return shares

    def _parsed(self, linktype: int, data: bytes) -> tuple[int, bool]:
        """(the worker, whether the frame's addresses and ports are its flow's:
        not so inside a tunnel, nor for a frame on no TCP/UDP flow)."""
        frame = program_frame(linktype, data)
        p = parse_frame(frame, self.udp_tunnels) if frame is not None else None
        if not isinstance(p, ParsedFrame):
            return 0, False
        if p.key is None:
            return self._frags.get(p.frag_key, 0), False
        shard = flow_hash(p.key) % self.count
        if p.first_fragment:
            self._frags[p.frag_key] = shard
            if len(self._frags) > FRAG_ENTRIES:
                self._frags.popitem(last=False)
        return shard, not p.tunnels


class _Share:
    """The records dealt to one worker and not yet sent."""

    __slots__ = ("index", "frames", "entries", "dealt")

    def __init__(self, index: int) -> None:
        self.index = index
        self.frames: list[bytes] = []
        self.entries = bytearray()
        self.dealt = 0          # records sent (or meant for it, dead)

    def add(self, spans: list[Span]) -> None:
        pack = _ENTRY.pack
        self.frames += [buffer[start:end] for _, _, buffer, start, end, _ in spans]
        self.entries += b"".join([pack(timestamp, wire_len, end - start, linktype, RECORD)
                                  for timestamp, linktype, _, start, end, wire_len in spans])

    def command(self, kind: int, timestamp: float) -> None:
        self.entries += _ENTRY.pack(timestamp, 0, 0, 0, kind)

    def send(self, pool: WorkerPool) -> None:
        """Send the batch, if any (to a dead worker: nowhere; `read_in_workers` counts what it lost)."""
        if self.entries:
            pool.send(self.index, ("share", b"".join(self.frames), bytes(self.entries)))
            self.dealt += len(self.frames)
        self.frames, self.entries = [], bytearray()


class _Dealer:
    """Runs of records to their workers' shares, expiries to every share at
    their places; a share is sent once it holds BATCH_RECORDS records."""

    def __init__(self, pool: WorkerPool, filtered: bool, udp_tunnels: Mapping[int, int]) -> None:
        self.pool = pool
        self.sharder = Sharder(pool.count, udp_tunnels)
        self.housekeeping = Housekeeping(EXPIRE_EVERY, filtered)
        self.shares = [_Share(index) for index in range(pool.count)]

    def deal(self, run: list[Span]) -> None:
        done = 0
        for position, (kernel_due, sessions_due) in self.housekeeping.dues([span[0] for span in run]):
            if kernel_due is not None:      # before the record at `position`
                self._segment(run[done:position])
                done = position
                self._command(EXPIRE_KERNEL, kernel_due)
            if sessions_due:                # after it
                self._segment(run[done:position + 1])
                done = position + 1
                self._command(EXPIRE, run[position][0])
        self._segment(run[done:] if done else run)

    def _segment(self, spans: list[Span]) -> None:
        for share, mine in zip(self.shares, self.sharder.split(spans)):
            if mine:
                share.add(mine)
                if len(share.frames) >= BATCH_RECORDS:
                    share.send(self.pool)

    def _command(self, kind: int, timestamp: float) -> None:
        for share in self.shares:
            share.command(kind, timestamp)

    def flush(self) -> None:
        for share in self.shares:
            share.send(self.pool)


def read_in_workers(paths: Sequence[Path], pool: WorkerPool, filtered: bool,
                    udp_tunnels: Mapping[int, int] = DEFAULT_UDP_TUNNELS,
                    on_progress: Callable[[int, int], None] | None = None,
                    stop: threading.Event | None = None) -> ReplaySummary:
    """Read the captures once, dealing each record to its worker in the
    pool (started, each with its own filter when `filtered`, taking apart
    `udp_tunnels`); then let every worker finish. What the reading and the
    workers did, added up."""
    started = time.monotonic()
    summary = ReplaySummary()
    dealer = _Dealer(pool, filtered, udp_tunnels)
    try:
        for run in read_runs(paths, summary, on_progress, stop):
            dealer.deal(run)
        dealer.flush()
    except BaseException:
        pool.stop()
        raise
    for index in range(pool.count):
        pool.send(index, ("stop",))
    for part in pool.join(stop):
        summary.add(part)
    for death in pool.deaths:   # what it had been dealt and had not fed when it died
        summary.dead_worker_frames += dealer.shares[death.index].dealt - pool.workers[death.index].fed
    summary.seconds = time.monotonic() - started
    return summary


def feed_share(feed: RecordFeed, frames: bytes, entries: bytes) -> int:
    """A worker's side: one batch into its RecordFeed, expiries at their
    places; how many capture records it held."""
    position = records = 0
    for timestamp, wire_len, caplen, linktype, kind in _ENTRY.iter_unpack(entries):
        if kind == RECORD:
            feed.process(PcapRecord(timestamp, linktype, frames[position:position + caplen], wire_len))
            position += caplen
            records += 1
        elif kind == EXPIRE:
            feed.expire(timestamp)
        else:
            feed.expire_kernel(timestamp)
    return records
