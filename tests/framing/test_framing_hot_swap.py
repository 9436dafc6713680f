"""Hot-swap keeps the old framer's buffered bytes and keeps numbering going."""

from __future__ import annotations

from sensor.flows.state import Direction
from sensor.framing import DelimiterFramer, FixedSizeFramer, LengthPrefixFramer, RawFramer, reframe

C2S = Direction.CLIENT_TO_SERVER


def test_buffered_bytes_move_to_the_new_framer():
    old = DelimiterFramer("s", C2S)
    assert [f.raw_bytes for f in old.feed(b"line\n\x00\x00\x00\x03ab")] == [b"line\n"]
    new = LengthPrefixFramer("s", C2S)
    assert reframe(old, new) == []  # 6 buffered bytes: an incomplete length-prefixed frame
    frames = new.feed(b"c")
    assert [f.raw_bytes for f in frames] == [b"\x00\x00\x00\x03abc"]
    assert frames[0].sequence_number == 1  # continues after the old framer's frame 0
    assert old.flush() == []


def test_reframe_returns_frames_completed_by_the_buffer():
    old = LengthPrefixFramer("s", C2S, prefix_length=1)
    old.feed(b"\x09abcdef")
    frames = reframe(old, FixedSizeFramer("s", C2S, size=3))
    assert [f.raw_bytes for f in frames] == [b"\x09ab", b"cde"]
    assert [f.sequence_number for f in frames] == [0, 1]


def test_empty_buffer_and_raw_framer():
    old = RawFramer("s", C2S)
    old.feed(b"x")
    new = DelimiterFramer("s", C2S)
    assert reframe(old, new) == []
    assert new.feed(b"y\n")[0].sequence_number == 1
