"""Built-in framers driven with bytes: split reads, partial headers, oversize, flush, reset."""

from __future__ import annotations

import struct

import pytest

from sensor.flows.state import Direction
from sensor.framing import (
    DelimiterFramer,
    FixedSizeFramer,
    LengthPrefixFramer,
    LineFramer,
    RawFramer,
)

C2S = Direction.CLIENT_TO_SERVER


def payloads(frames):
    return [f.raw_bytes for f in frames]


def feed_all(framer, chunks):
    out = []
    for chunk in chunks:
        out.extend(framer.feed(chunk))
    return out


class TestRaw:
    def test_each_chunk_is_a_frame_with_metadata(self):
        framer = RawFramer("sess-1", C2S)
        frames = feed_all(framer, [b"ab", b"", b"cde"])
        assert payloads(frames) == [b"ab", b"cde"]
        assert [f.sequence_number for f in frames] == [0, 1]
        assert {f.framer_name for f in frames} == {"raw"}
        assert {f.session_id for f in frames} == {"sess-1"}
        assert {f.direction for f in frames} == {C2S}
        assert len({f.id for f in frames}) == 2
        assert framer.flush() == []

    def test_reset_restarts_numbering(self):
        framer = RawFramer("s", C2S)
        feed_all(framer, [b"a", b"b"])
        framer.reset()
        assert framer.feed(b"c")[0].sequence_number == 0


class TestDelimiter:
    def test_keeps_delimiter_by_default_and_buffers_partial(self):
        framer = DelimiterFramer("s", C2S)
        assert payloads(framer.feed(b"one\ntw")) == [b"one\n"]
        assert payloads(framer.feed(b"o\nthree\n")) == [b"two\n", b"three\n"]
        assert framer.flush() == []

    def test_multibyte_delimiter_split_across_reads(self):
        framer = DelimiterFramer("s", C2S, delimiter=b"\r\n\r\n")
        stream = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"
        # one byte at a time splits the delimiter at every possible position
        frames = feed_all(framer, [stream[i : i + 1] for i in range(len(stream))])
        assert payloads(frames) == [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n"]
        assert [f.sequence_number for f in frames] == [0, 1]

    def test_delimiter_split_in_the_middle_of_two_reads(self):
        framer = DelimiterFramer("s", C2S, delimiter=b"||")
        assert framer.feed(b"abc|") == []
        assert payloads(framer.feed(b"|def")) == [b"abc||"]
        assert payloads(framer.flush()) == [b"def"]

    def test_exclude_delimiter(self):
        framer = DelimiterFramer("s", C2S, delimiter=b"\x00", include_delimiter=False)
        assert payloads(framer.feed(b"a\x00\x00bc\x00")) == [b"a", b"", b"bc"]

    def test_oversize_remainder_is_emitted_whole(self):
        framer = DelimiterFramer("s", C2S, max_frame_size=8)
        assert payloads(framer.feed(b"ok\n12345678")) == [b"ok\n"]  # 8 bytes: not over the limit yet
        assert payloads(framer.feed(b"9")) == [b"123456789"]
        assert payloads(framer.feed(b"x\n")) == [b"x\n"]

    def test_flush_emits_remainder_once(self):
        framer = DelimiterFramer("s", C2S)
        framer.feed(b"tail")
        assert payloads(framer.flush()) == [b"tail"]
        assert framer.flush() == []

    def test_reset_clears_buffer_and_numbering(self):
        framer = DelimiterFramer("s", C2S)
        framer.feed(b"a\nb")
        framer.reset()
        frames = framer.feed(b"c\n")
        assert payloads(frames) == [b"c\n"]
        assert frames[0].sequence_number == 0


class TestLine:
    def test_crlf_lines_keep_crlf(self):
        framer = LineFramer("s", C2S)
        frames = feed_all(framer, [b"HELO x\r", b"\nMAIL\r\n"])
        assert payloads(frames) == [b"HELO x\r\n", b"MAIL\r\n"]
        assert frames[0].framer_name == "line"

    def test_without_delimiter(self):
        assert payloads(LineFramer("s", C2S, include_delimiter=False).feed(b"a\r\nb\n")) == [b"a\r", b"b"]


class TestLengthPrefix:
    def test_frame_includes_header_and_waits_for_payload(self):
        framer = LengthPrefixFramer("s", C2S)
        assert framer.feed(b"\x00\x00") == []  # partial header
        assert framer.feed(b"\x00\x05hel") == []  # partial payload
        frames = framer.feed(b"lo")
        assert payloads(frames) == [b"\x00\x00\x00\x05hello"]
        assert frames[0].framer_name == "length_prefix"

    def test_several_frames_in_one_read_and_split_reads(self):
        stream = b"".join(struct.pack(">H", len(p)) + p for p in (b"a", b"bcd", b"", b"efgh"))
        expected = [b"\x00\x01a", b"\x00\x03bcd", b"\x00\x00", b"\x00\x04efgh"]
        assert payloads(LengthPrefixFramer("s", C2S, prefix_length=2).feed(stream)) == expected
        for cut in range(1, len(stream)):
            framer = LengthPrefixFramer("s", C2S, prefix_length=2)
            assert payloads(feed_all(framer, [stream[:cut], stream[cut:]])) == expected, cut

    @pytest.mark.parametrize(("size", "order", "fmt"), [(1, "big", ">B"), (2, "little", "<H"), (4, "little", "<I"), (8, "big", ">Q")])
    def test_widths_and_orders(self, size, order, fmt):
        message = struct.pack(fmt, 3) + b"xyz"
        framer = LengthPrefixFramer("s", C2S, prefix_length=size, byte_order=order)
        assert payloads(framer.feed(message + message[:2])) == [message]

    def test_prefix_offset_and_length_add(self):
        # 3-byte header, 2-byte length counting the whole frame (5 header bytes included)
        message = b"HDR" + struct.pack(">H", 9) + b"abcd"
        framer = LengthPrefixFramer("s", C2S, prefix_length=2, prefix_offset=3, length_add=-5)
        assert payloads(framer.feed(message * 2)) == [message, message]

    def test_negative_payload_emits_whole_buffer(self):
        framer = LengthPrefixFramer("s", C2S, prefix_length=1, length_add=-4)
        assert payloads(framer.feed(b"\x02abc\x09")) == [b"\x02abc\x09"]
        assert payloads(framer.feed(b"\x05abcd")) == [b"\x05a"]  # 5 - 4 = 1 payload byte; "bcd" stays

    def test_oversize_emits_whole_buffer_and_recovers(self):
        framer = LengthPrefixFramer("s", C2S, prefix_length=2, max_frame_size=10)
        assert payloads(framer.feed(b"\x00\x02ab\xff\xffjunk")) == [b"\x00\x02ab", b"\xff\xffjunk"]
        assert payloads(framer.feed(b"\x00\x01z")) == [b"\x00\x01z"]

    def test_flush_emits_partial_frame(self):
        framer = LengthPrefixFramer("s", C2S, prefix_length=2)
        framer.feed(b"\x00\x09abc")
        assert payloads(framer.flush()) == [b"\x00\x09abc"]
        assert framer.flush() == []

    def test_sequence_numbers_and_reset(self):
        framer = LengthPrefixFramer("s", C2S, prefix_length=1)
        frames = framer.feed(b"\x01a\x01b\x01")
        assert [f.sequence_number for f in frames] == [0, 1]
        framer.reset()
        assert framer.feed(b"\x01c")[0].sequence_number == 0


class TestFixed:
    def test_exact_frames_across_reads_and_flush_remainder(self):
        framer = FixedSizeFramer("s", C2S, size=3)
        frames = feed_all(framer, [b"ab", b"cdefg", b"hi"])
        assert payloads(frames) == [b"abc", b"def", b"ghi"]
        assert framer.feed(b"j") == []
        assert payloads(framer.flush()) == [b"j"]
        assert frames[2].sequence_number == 2
        assert frames[0].framer_name == "fixed"
