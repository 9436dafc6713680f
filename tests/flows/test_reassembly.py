"""TcpReassembler: ordering, trimming, bounds and sequence wraparound."""
from __future__ import annotations

import random

from sensor.flows.reassembly import TcpReassembler, seq_diff

ISN = 1000  # SYN sequence number: the stream's first byte is ISN + 1


def _after_syn(**bounds: int) -> TcpReassembler:
    stream = TcpReassembler(**bounds)
    assert stream.feed(ISN, b"", syn=True) == []
    return stream


def test_in_order_segments_pass_through() -> None:
    stream = _after_syn()
    assert stream.feed(ISN + 1, b"GET / ") == [b"GET / "]
    assert stream.feed(ISN + 7, b"HTTP/1.1") == [b"HTTP/1.1"]
    assert stream.next_seq == ISN + 15


def test_syn_payload_starts_after_the_syn() -> None:
    stream = TcpReassembler()
    assert stream.feed(ISN, b"fastopen", syn=True) == [b"fastopen"]
    assert stream.feed(ISN + 9, b"!") == [b"!"]


def test_reordered_segments_come_out_in_order() -> None:
    stream = _after_syn()
    assert stream.feed(ISN + 7, b"world") == []
    assert stream.feed(ISN + 12, b"!") == []
    assert stream.queued_segments == 2 and stream.queued_bytes == 6
    assert stream.feed(ISN + 1, b"hello ") == [b"hello ", b"world", b"!"]
    assert stream.queued_segments == 0 and stream.queued_bytes == 0


def test_retransmits_are_dropped_and_counted() -> None:
    stream = _after_syn()
    stream.feed(ISN + 1, b"abcdef")
    assert stream.feed(ISN + 1, b"abcdef") == []
    assert stream.feed(ISN + 3, b"cd") == []
    assert stream.retransmitted_bytes == 8


def test_overlap_is_trimmed() -> None:
    stream = _after_syn()
    stream.feed(ISN + 1, b"abcdef")
    assert stream.feed(ISN + 4, b"defghi") == [b"ghi"]
    assert stream.retransmitted_bytes == 3


def test_overlapping_queued_segments() -> None:
    stream = _after_syn()
    assert stream.feed(ISN + 5, b"EFGH") == []
    assert stream.feed(ISN + 3, b"CDEF") == []
    assert b"".join(stream.feed(ISN + 1, b"AB")) == b"ABCDEFGH"


def test_duplicate_queued_segment_keeps_the_longer() -> None:
    stream = _after_syn()
    stream.feed(ISN + 3, b"C")
    stream.feed(ISN + 3, b"CDE")
    stream.feed(ISN + 3, b"CD")
    assert b"".join(stream.feed(ISN + 1, b"AB")) == b"ABCDE"


def test_shuffled_duplicated_overlapping_segments_rebuild_the_stream() -> None:
    rng = random.Random(7)
    data = bytes(rng.randrange(256) for _ in range(5000))
    segments = []
    pos = 0
    while pos < len(data):
        size = rng.randrange(1, 200)
        start = max(0, pos - rng.randrange(0, 30))  # some overlap with earlier bytes
        segments.append((start, data[start:pos + size]))
        pos += size
    segments += rng.sample(segments, 20)  # retransmits
    rng.shuffle(segments)
    stream = _after_syn(max_segments=10_000)
    out = b"".join(b"".join(stream.feed(ISN + 1 + start, chunk)) for start, chunk in segments)
    assert out == data
    assert not stream.incomplete and stream.queued_segments == 0


def test_mid_stream_pickup_starts_at_first_payload() -> None:
    stream = TcpReassembler()
    assert stream.feed(50_000, b"") == []  # a pure ACK does not start the stream
    assert not stream.started
    assert stream.feed(70_000, b"middle") == [b"middle"]
    assert stream.feed(69_990, b"0123456789") == []  # before the start: treated as old data
    assert stream.feed(70_006, b"-end") == [b"-end"]


def test_start_from_ack_of_syn_ack() -> None:
    stream = TcpReassembler()
    stream.start(5001)
    assert stream.feed(5011, b"later") == []  # bytes 5001..5010 are missing
    assert stream.feed(5001, b"0123456789") == [b"0123456789", b"later"]


def test_sequence_wraparound() -> None:
    assert seq_diff(1, 0xFFFFFFFF) == 2 and seq_diff(0xFFFFFFFF, 1) == -2
    stream = TcpReassembler()
    stream.feed(0xFFFFFFFC, b"", syn=True)  # first byte at 2**32 - 3
    assert stream.feed(2, b"ef") == []  # arrives first, after the wrap
    assert stream.feed(0xFFFFFFFD, b"abcde") == [b"abcde", b"ef"]
    assert stream.next_seq == 4
    assert stream.feed(0xFFFFFFFF, b"de") == []  # retransmit across the wrap
    assert stream.feed(4, b"g") == [b"g"]


def test_out_of_order_segment_bound_makes_stream_incomplete() -> None:
    stream = _after_syn(max_segments=3)
    for n in range(3):
        assert stream.feed(ISN + 11 + n, b"x") == []
    assert not stream.incomplete
    assert stream.feed(ISN + 20, b"yy") == []  # a fourth queued segment: over the bound
    assert stream.incomplete
    assert (stream.gaps, stream.discarded_bytes, stream.queued_segments, stream.queued_bytes) == (1, 5, 0, 0)
    assert stream.feed(ISN + 1, b"0123456789") == []  # nothing more, even in order


def test_out_of_order_byte_bound_makes_stream_incomplete() -> None:
    stream = _after_syn(max_bytes=100)
    assert stream.feed(ISN + 50, b"a" * 60) == []
    assert not stream.incomplete
    assert stream.feed(ISN + 200, b"b" * 41) == []
    assert stream.incomplete and stream.discarded_bytes == 101


def test_flush_delivers_nothing_past_a_gap() -> None:
    stream = _after_syn()
    stream.feed(ISN + 1, b"head")
    stream.feed(ISN + 10, b"tail")
    stream.feed(ISN + 20, b"more")
    assert stream.flush() == 8
    assert (stream.gaps, stream.discarded_bytes, stream.queued_segments) == (1, 8, 0)
    assert stream.flush() == 0 and stream.gaps == 1
