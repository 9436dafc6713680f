"""`read --workers K`: capture records shared among K worker processes by the
kernel's own symmetric flow hash (prefilter.flow_hash, the Python twin of
flow_hash() in bpf/sensor.bpf.c), so a flow goes to the same worker index as
it would live and both its directions meet. Every worker reads the files and
keeps its share, through its own pre-filter and pipeline; the parent owns the
outputs.

Later IP fragments carry no ports: they follow their first fragment's worker
(remembered as the kernel does); other frames without a flow go to worker 0."""
from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
import threading

from sensor.offline import ReplaySummary, program_frame
from sensor.packet import LINKTYPE_ETHERNET
from sensor.prefilter import FRAG_ENTRIES, ParsedFrame, flow_hash, parse_frame
from sensor.workers.pool import WorkerPool

MEMO_MAX = 1 << 16      # remembered (addresses, ports) -> worker


class Sharder:
    """The worker of each capture record. Plain IPv4 frames are looked up by
    their protocol, raw addresses and ports, so the full parse (and the hash)
    runs once per flow direction, not per packet (every worker reads every
    record: this is paid K times); tunnel packets (whose flow is the one
    inside) are parsed every time."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._memo: list[dict[bytes, int]] = [{} for _ in range(256)]   # by IP protocol
        self._frags: OrderedDict[tuple, int] = OrderedDict()

    def __call__(self, linktype: int, buffer: bytes, start: int, end: int) -> int:
        """The worker of the record buffer[start:end] (a pcapfile.Span's)."""
        if linktype == LINKTYPE_ETHERNET and end - start >= 38 and buffer[start + 12:start + 15] == b"\x08\x00\x45" \
                and not (buffer[start + 20] & 0x3F or buffer[start + 21]):   # IPv4, no options, not a fragment
            memo = self._memo[buffer[start + 23]]
            raw = buffer[start + 26:start + 38]          # addresses, ports
            shard = memo.get(raw)
            if shard is None:
                shard, plain = self._parsed(linktype, buffer[start:end])
                if plain:
                    if len(memo) >= MEMO_MAX:
                        memo.clear()
                    memo[raw] = shard
            return shard
        return self._parsed(linktype, buffer[start:end])[0]

    def _parsed(self, linktype: int, data: bytes) -> tuple[int, bool]:
        """(the worker, whether the frame's addresses and ports are its flow's:
        not so inside a tunnel, nor for a frame on no TCP/UDP flow)."""
        frame = program_frame(linktype, data)
        p = parse_frame(frame) if frame is not None else None
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


def read_in_workers(paths: Sequence[Path], pool: WorkerPool, stop: threading.Event | None = None) -> ReplaySummary:
    """Wait for the pool's (started) workers to read the captures, each its
    share; what they did, added up."""
    started = time.monotonic()
    parts = pool.join(stop)
    summary = ReplaySummary()
    for part in parts:
        summary.add(part)
    summary.seconds = time.monotonic() - started
    return summary
