"""A BPF ring buffer read straight from its memory mapping, a batch of
records per call, instead of one ctypes callback per record.

The layout and protocol are the kernel's (include/uapi/linux/bpf.h,
kernel/bpf/ringbuf.c): the map fd maps as one consumer page, read-write,
holding consumer_pos (the only word userspace writes), then read-only a
producer page holding producer_pos followed by the data area mapped twice
in a row, so a record that wraps past the end still reads as one slice.
Each record starts with an 8-byte header: its length, with a BUSY bit while
the producer still writes it and a DISCARD bit for a record to skip, then a
word the kernel keeps for itself; records are 8-byte aligned. Positions only
grow; `pos & (size - 1)` is the offset in the data area.

The positions and headers are read as whole aligned words through
memoryviews (single loads and stores), which x86's ordering makes enough:
the producer publishes a header before it moves producer_pos.
"""
from __future__ import annotations

import ctypes
import mmap
import select
import struct

from sensor.kernel.contract import RECORD_HEADER_SIZE, FlowKey, RecordHeader

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
_LENGTH_MASK = DISCARD_BIT - 1
_HEADER = 8
BATCH_MAX = 4096            # records per read(): bounds how long one call holds a lock

# The record fields the live path needs, in one unpack (offsets from contract.RecordHeader).
_FIELDS = struct.Struct("=QIIIH")   # ts_ns, ifindex, flow_hash, wire_len, caplen
_KEY_OFFSET = RecordHeader.key.offset
_KEY_SIZE = ctypes.sizeof(FlowKey)
assert _FIELDS.size == RecordHeader.side.offset


class RingReader:
    """One ring buffer map, mapped into this process. `wait` sleeps until
    the kernel wakes the ring (it does so per batch, see emit() in
    bpf/sensor.bpf.c) or the timeout ends; `read` copies out what the ring
    holds and gives the space back at once."""

    def __init__(self, map_fd: int, size: int) -> None:
        if size <= 0 or size & (size - 1) or size % mmap.PAGESIZE:
            raise ValueError(f"ring size must be a power-of-two number of pages, not {size}")
        page = mmap.PAGESIZE
        self.size = size
        self._consumer = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._producer = mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._consumer_pos = memoryview(self._consumer).cast("Q")
        self._producer_pos = memoryview(self._producer)[:8].cast("Q")
        self._data = memoryview(self._producer)[page:]
        self._words = self._data.cast("I")
        self._mask = size - 1
        self._epoll = select.epoll()
        # Edge-triggered: only a kernel wakeup makes `wait` return early, not
        # records left below the wakeup threshold.
        self._epoll.register(map_fd, select.EPOLLIN | select.EPOLLET)

    def wait(self, timeout: float) -> bool:
        """Sleep until the kernel wakes this ring or `timeout` seconds pass;
        True when woken."""
        return bool(self._epoll.poll(timeout))

    def held(self) -> int:
        """Bytes the ring holds (records and their headers)."""
        return self._producer_pos[0] - self._consumer_pos[0]

    def read(self, limit: int = BATCH_MAX) -> list[bytes]:
        """Copy out up to `limit` committed records, oldest first, and free
        their space. Stops at a record still being written."""
        cons = self._consumer_pos[0]
        prod = self._producer_pos[0]
        data, words, mask = self._data, self._words, self._mask
        out: list[bytes] = []
        while cons < prod and len(out) < limit:
            off = cons & mask
            header = words[off >> 2]
            if header & BUSY_BIT:
                break
            length = header & _LENGTH_MASK
            if not header & DISCARD_BIT:
                start = off + _HEADER
                out.append(bytes(data[start:start + length]))
            cons += (length + _HEADER + 7) & ~7
        self._consumer_pos[0] = cons
        return out

    def close(self) -> None:
        self._epoll.close()
        for view in (self._consumer_pos, self._producer_pos, self._words, self._data):
            view.release()
        self._consumer.close()
        self._producer.close()


def record_fields(raw: bytes) -> tuple[int, int, int, bytes, bytes]:
    """(ts_ns, flow_hash, wire_len, raw FlowKey, frame) of one sensor record,
    without building any ctypes value (the live path's per-record cost)."""
    ts_ns, _, flow_hash, wire_len, caplen = _FIELDS.unpack_from(raw)
    return (ts_ns, flow_hash, wire_len, raw[_KEY_OFFSET:_KEY_OFFSET + _KEY_SIZE],
            raw[RECORD_HEADER_SIZE:RECORD_HEADER_SIZE + caplen])
