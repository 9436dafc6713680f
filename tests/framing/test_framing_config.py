"""Framer names and kwargs are checked before anything is built, with messages that say what to fix."""

from __future__ import annotations

import pytest

from sensor.flows.state import Direction
from sensor.framing import (
    FRAMER_REGISTRY,
    DelimiterFramer,
    FramerConfigError,
    LengthPrefixFramer,
    create_framer,
    validate_framer_config,
)

C2S = Direction.CLIENT_TO_SERVER


def test_registry_names():
    assert set(FRAMER_REGISTRY) == {"raw", "delimiter", "line", "length_prefix", "fixed"}


def test_create_framer_builds_configured_instance():
    framer = create_framer("length_prefix", "s", C2S, prefix_length=2, byte_order="little")
    assert isinstance(framer, LengthPrefixFramer)
    assert [f.raw_bytes for f in framer.feed(b"\x01\x00x")] == [b"\x01\x00x"]


def test_config_error_is_a_value_error():
    assert issubclass(FramerConfigError, ValueError)


@pytest.mark.parametrize(
    ("name", "kwargs", "fragment"),
    [
        ("nope", {}, "unknown framer 'nope'"),
        ("length_prefix", {"length_size": 2}, "unknown kwargs ['length_size']"),
        ("raw", {"delimiter": b"\n"}, "unknown kwargs ['delimiter']"),
        ("length_prefix", {"prefix_length": 3}, "prefix_length must be one of 1, 2, 4, 8"),
        ("length_prefix", {"prefix_length": "4"}, "prefix_length must be int, got str"),
        ("length_prefix", {"prefix_length": True}, "prefix_length must be int, got bool"),
        ("length_prefix", {"byte_order": "middle"}, "byte_order must be 'big' or 'little'"),
        ("length_prefix", {"prefix_offset": -1}, "prefix_offset must be >= 0"),
        ("length_prefix", {"max_frame_size": 0}, "max_frame_size must be > 0"),
        ("delimiter", {"delimiter": b""}, "delimiter must be a non-empty"),
        ("delimiter", {"delimiter": "0xzz"}, "not valid 0x-hex"),
        ("delimiter", {"include_delimiter": 1}, "include_delimiter must be bool"),
        ("delimiter", {"delimiter": 10}, "delimiter must be bytes, got int"),
        ("fixed", {}, "kwarg 'size' (int) is required"),
        ("fixed", {"size": 0}, "size must be > 0"),
    ],
)
def test_bad_configs_are_rejected(name, kwargs, fragment):
    with pytest.raises(FramerConfigError) as info:
        validate_framer_config(name, kwargs)
    assert fragment in str(info.value)
    with pytest.raises(FramerConfigError):
        create_framer(name, "s", C2S, **kwargs)


def test_direct_construction_is_checked_too():
    with pytest.raises(FramerConfigError):
        LengthPrefixFramer("s", C2S, prefix_length=3)


@pytest.mark.parametrize(("given", "expected"), [("\r\n", b"\r\n"), ("0x0d0a", b"\r\n"), ("0X00", b"\x00"), (b"|", b"|"), ("é", "é".encode())])
def test_bytes_kwargs_from_yaml_text_or_hex(given, expected):
    spec = validate_framer_config("delimiter", {"delimiter": given})
    assert spec.kwargs == {"delimiter": expected}
    framer = spec.create("s", C2S)
    assert isinstance(framer, DelimiterFramer)
    assert [f.raw_bytes for f in framer.feed(b"a" + expected + b"b")] == [b"a" + expected]


def test_spec_keeps_only_given_kwargs_and_builds_pairs():
    spec = validate_framer_config("line", None)
    assert spec.kwargs == {}
    c2s, s2c = spec.create_pair("sess")
    assert (c2s.direction, s2c.direction) == (Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT)
    assert c2s is not s2c
    c2s.feed(b"partial")
    assert s2c.feed(b"x\n")[0].raw_bytes == b"x\n"  # buffers never cross directions
