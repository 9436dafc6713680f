"""Custom framer scripts written to tmp_path: shared state, direction tags, errors counted."""

from __future__ import annotations

import logging
import textwrap

import pytest

from sensor.flows.state import Direction
from sensor.framing import FramerConfigError, load_custom_framer, validate_framer_config

C2S, S2C = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT

# Frames of [2-byte big-endian total length][...], buffered per direction in the shared state.
SIZE_FRAMER = """
def on_data(data, state, direction):
    buf = state.setdefault(direction, b"") + data
    state.setdefault("calls", []).append(direction)
    out = []
    while len(buf) >= 2 and len(buf) >= int.from_bytes(buf[:2], "big"):
        size = int.from_bytes(buf[:2], "big")
        out.append(buf[:size])
        buf = buf[size:]
    state[direction] = buf
    return out

def on_flush(state, direction):
    rest = state.get(direction, b"")
    state[direction] = b""
    return [rest] if rest else []
"""


def write(tmp_path, text, name="framer.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_script_frames_both_directions_with_shared_state(tmp_path):
    spec = validate_framer_config("ignored", {}, custom_framer_path=write(tmp_path, SIZE_FRAMER))
    c2s, s2c = spec.create_pair("sess")
    assert c2s.state is s2c.state
    assert c2s.feed(b"\x00\x04a") == []
    assert [f.raw_bytes for f in s2c.feed(b"\x00\x03z")] == [b"\x00\x03z"]
    frames = c2s.feed(b"b\x00\x03c\x00\x09")
    assert [f.raw_bytes for f in frames] == [b"\x00\x04ab", b"\x00\x03c"]
    assert [f.sequence_number for f in frames] == [0, 1]
    assert frames[0].framer_name == "_functionframeradapter"
    assert c2s.state["calls"] == ["c2s", "s2c", "c2s"]
    assert [f.raw_bytes for f in c2s.flush()] == [b"\x00\x09"]
    assert s2c.flush() == []


def test_exception_in_script_is_logged_counted_and_chunk_dropped(tmp_path, caplog):
    path = write(
        tmp_path,
        """
        def on_data(data, state, direction):
            if data == b"boom":
                raise RuntimeError("bad chunk")
            return [data]

        def on_flush(state, direction):
            return "not a list"
        """,
    )
    spec = validate_framer_config("raw", None, custom_framer_path=path)
    framer = spec.create("s", C2S)
    with caplog.at_level(logging.ERROR):
        assert framer.feed(b"boom") == []
        assert [f.raw_bytes for f in framer.feed(b"ok")] == [b"ok"]
        assert framer.flush() == []
    assert spec.script.errors == 2
    assert "bad chunk" in caplog.text
    assert str(path) in caplog.text


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("def on_data(data, state, direction):\n    return []\n", "missing: on_flush"),
        ("on_data = 1\non_flush = 2\n", "missing: on_data, on_flush"),
        ("class on_data: pass\ndef on_flush(s, d):\n    return []\n", "missing: on_data"),
        ("raise ImportError('nope')\n", "failed to import"),
        ("def on_data(:\n", "failed to import"),
    ],
)
def test_bad_scripts_name_the_file(tmp_path, source, fragment):
    path = write(tmp_path, source, "bad_framer.py")
    with pytest.raises(FramerConfigError) as info:
        load_custom_framer(path)
    assert fragment in str(info.value)
    assert str(path) in str(info.value)


def test_missing_script_and_kwargs_with_script(tmp_path):
    with pytest.raises(FramerConfigError, match="does not exist"):
        load_custom_framer(tmp_path / "absent.py")
    with pytest.raises(FramerConfigError, match="take no kwargs"):
        validate_framer_config("raw", {"size": 3}, custom_framer_path=write(tmp_path, SIZE_FRAMER))
