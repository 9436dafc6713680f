"""IP fragment reassembly: whole datagrams out, in any order, once; overlaps,
timeouts and bounds counted; through the session table, a fragmented
datagram is one packet of its session, as Arkime counts it."""
from __future__ import annotations

import pytest
from scapy.all import fragment, raw
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, fragment6
from scapy.layers.l2 import Ether

from sensor.flows.defrag import DefragLimits, Defragmenter
from sensor.flows.table import SessionTable
from sensor.packet import decode_frame

ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
DATA = bytes(range(256)) * 12   # 3072 bytes: three 1480-byte-MTU fragments


def _v4(size: int = 1480, ident: int = 7) -> list[bytes]:
    datagram = IP(src="10.0.0.1", dst="10.0.0.2", id=ident) / UDP(sport=4000, dport=5000) / DATA
    return [raw(ETH / piece) for piece in fragment(datagram, fragsize=size)]


def _decoded(frames: list[bytes], start: float = 1.0) -> list:
    return [decode_frame(frame, start + i * 0.01) for i, frame in enumerate(frames)]


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 2, 0), (2, 0, 1)])
def test_any_order_gives_the_whole_datagram_once(order) -> None:
    frames = _v4()
    assert len(frames) == 3
    defrag = Defragmenter()
    packets = _decoded([frames[i] for i in order])
    results = [defrag.add(p) for p in packets]
    assert results[:2] == [None, None]
    whole = results[2]
    assert (whole.src_port, whole.dst_port, whole.payload) == (4000, 5000, DATA)
    assert not whole.is_fragment
    # The completing fragment's headers (14 + 20 bytes) and the datagram's payload (8 + 3072).
    assert whole.frame_len == 14 + 20 + 8 + len(DATA)
    assert whole.timestamp == packets[2].timestamp
    assert defrag.stats.reassembled == 1 and len(defrag) == 0


def test_ipv6_fragments_reassemble() -> None:
    datagram = IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(id=99) / UDP(sport=1, dport=2) / DATA
    frames = [raw(ETH / piece) for piece in fragment6(datagram, 1280)]
    defrag = Defragmenter()
    results = [defrag.add(p) for p in _decoded(frames)]
    assert results[-1].payload == DATA and results[-1].dst_port == 2
    assert results[:-1] == [None] * (len(frames) - 1)


def test_overlaps_and_duplicates_drop_the_datagram() -> None:
    frames = _v4()
    defrag = Defragmenter()
    first, second, third = _decoded(frames)
    assert defrag.add(first) is None
    assert defrag.add(first) is None          # a duplicate: the datagram is dropped
    assert defrag.stats.overlaps == 1 and len(defrag) == 0
    assert defrag.add(second) is None and defrag.add(third) is None   # what is left never completes
    # An overlap that rewrites bytes already held.
    defrag = Defragmenter()
    shifted = decode_frame(frames[1], 1.0)
    shifted.frag_offset -= 8
    assert defrag.add(decode_frame(frames[0], 1.0)) is None
    assert defrag.add(shifted) is None
    assert defrag.stats.overlaps == 1


def test_timeouts_and_bounds_are_counted() -> None:
    defrag = Defragmenter(DefragLimits(timeout=2.0, max_datagrams=2))
    first = [decode_frame(_v4(ident=i)[0], 1.0) for i in range(3)]
    for packet in first:
        defrag.add(packet)
    assert (len(defrag), defrag.stats.evicted) == (2, 1)
    late = decode_frame(_v4(ident=2)[1], 10.0)
    assert defrag.add(late) is None
    assert defrag.stats.timed_out == 2
    defrag = Defragmenter(DefragLimits(max_fragments=2))
    for packet in _decoded(_v4(size=256))[:3]:
        defrag.add(packet)
    assert defrag.stats.too_big == 1


def test_a_fragmented_datagram_is_one_packet_of_its_session() -> None:
    table = SessionTable()
    client = IP(src="10.0.0.1", dst="10.0.0.2", id=3) / TCP(sport=1234, dport=80, flags="PA", seq=1) / DATA
    frames = [raw(ETH / piece) for piece in fragment(client, fragsize=1480)]
    events = []
    for packet in _decoded(frames):
        events += table.process(packet)
    [session] = list(table)
    assert (session.packets, session.bytes[0]) == ([1, 0], 14 + 20 + 20 + len(DATA))
    payloads = [e.data for e in events if hasattr(e, "data")]
    assert b"".join(payloads) == DATA
    assert table.defrag.stats.reassembled == 1
