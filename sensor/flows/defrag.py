"""IPv4 and IPv6 fragment reassembly for the packets that reach userspace
(sans-I/O, packet time only), so plugins see whole datagrams and a session
counts a fragmented datagram once, as Arkime does.

- Fragments belong together by (IP version, source, destination, protocol,
  IP id / IPv6 fragment id).
- Overlap policy: a datagram whose fragments overlap, duplicates included,
  is dropped at once and counted (`overlaps`): no byte of it is chosen over
  another. Arkime never completes such a datagram either (its chain of
  offsets breaks), so it is counted in no session there as well.
- Bounds: at most `max_datagrams` datagrams in progress and `max_held_bytes`
  held in all (the oldest is dropped first, `evicted`), at
  most `max_fragments` fragments and MAX_DATAGRAM bytes per datagram
  (`too_big`), and `timeout` seconds from a datagram's first fragment
  (`timed_out`). Dropped fragments are counted in no session.
- The reassembled packet takes its time, IP fields and frame length from the
  fragment that completed it (Arkime's rule): that fragment's headers plus
  the whole datagram's payload. Its L4 header (and any tunnel inside) is
  decoded then, by sensor.packet.decode_datagram.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from sensor.packet import Packet, PacketError, decode_datagram

MAX_DATAGRAM = 65535        # bytes of fragmentable payload one datagram may reassemble to

_Key = tuple[int, str, str, int, int]


@dataclass(frozen=True, slots=True)
class DefragLimits:
    timeout: float = 60.0
    max_datagrams: int = 10_000     # Arkime's maxFrags
    max_fragments: int = 50         # per datagram, Arkime's bound
    max_held_bytes: int = 32 << 20


@dataclass(slots=True)
class DefragStats:
    reassembled: int = 0
    overlaps: int = 0
    timed_out: int = 0
    evicted: int = 0
    too_big: int = 0
    undecodable: int = 0    # whole, but its L4 header is malformed

    @property
    def failed(self) -> int:
        return self.overlaps + self.timed_out + self.evicted + self.too_big + self.undecodable


@dataclass(slots=True)
class _Datagram:
    started: float
    pieces: dict[int, bytes] = field(default_factory=dict)    # offset -> fragment data
    held: int = 0
    end: int | None = None      # payload length, known once the last fragment came


class Defragmenter:
    """Feed every fragment; get the reassembled packet back when one completes."""

    def __init__(self, limits: DefragLimits = DefragLimits()) -> None:
        self.limits = limits
        self.stats = DefragStats()
        self._datagrams: OrderedDict[_Key, _Datagram] = OrderedDict()   # oldest first
        self._held = 0

    def __len__(self) -> int:
        return len(self._datagrams)

    def add(self, packet: Packet) -> Packet | None:
        """Take one fragment (`packet.payload` is its data); the whole datagram
        as a decoded packet when this fragment completes it, else None."""
        self.expire(packet.timestamp)
        key = (packet.ip_version, packet.src_ip, packet.dst_ip, packet.ip_protocol, packet.ip_id)
        datagram = self._datagrams.get(key)
        if datagram is None:
            datagram = self._datagrams[key] = _Datagram(packet.timestamp)
        start, data = packet.frag_offset, packet.payload
        stop = start + len(data)
        if not packet.more_fragments:
            if datagram.end is not None or any(o + len(d) > stop for o, d in datagram.pieces.items()):
                return self._drop(key, "overlaps")
            datagram.end = stop
        elif datagram.end is not None and stop > datagram.end:
            return self._drop(key, "overlaps")
        if any(o < stop and start < o + len(d) for o, d in datagram.pieces.items()) or (
                not data and start in datagram.pieces):
            return self._drop(key, "overlaps")
        if stop > MAX_DATAGRAM or len(datagram.pieces) >= self.limits.max_fragments:
            return self._drop(key, "too_big")
        datagram.pieces[start] = data
        datagram.held += len(data)
        self._held += len(data)
        if datagram.end is not None and datagram.held == datagram.end and 0 in datagram.pieces:
            return self._complete(key, datagram, packet)
        self._bound()
        return None

    def expire(self, now: float) -> None:
        """Drop the datagrams whose first fragment is older than the timeout."""
        deadline = now - self.limits.timeout
        datagrams = self._datagrams
        while datagrams:
            key, oldest = next(iter(datagrams.items()))
            if oldest.started >= deadline:
                break
            self._drop(key, "timed_out")

    def _complete(self, key: _Key, datagram: _Datagram, last: Packet) -> Packet | None:
        self._forget(key)
        payload = b"".join(data for _, data in sorted(datagram.pieces.items()))
        frame_len = last.frame_len - len(last.payload) + len(payload)
        try:
            whole = decode_datagram(last, payload, frame_len)
        except PacketError:
            self.stats.undecodable += 1
            return None
        self.stats.reassembled += 1
        return whole

    def _bound(self) -> None:
        limits = self.limits
        while self._datagrams and (len(self._datagrams) > limits.max_datagrams
                                   or self._held > limits.max_held_bytes):
            self._drop(next(iter(self._datagrams)), "evicted")

    def _drop(self, key: _Key, reason: str) -> None:
        self._forget(key)
        setattr(self.stats, reason, getattr(self.stats, reason) + 1)

    def _forget(self, key: _Key) -> None:
        datagram = self._datagrams.pop(key)
        self._held -= datagram.held
