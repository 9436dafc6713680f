"""Every DSL feature decoded from frames built here with struct; decode never raises."""

from __future__ import annotations

import math
import struct

import pytest

from sensor.flows.state import Direction
from sensor.models import Frame
from sensor.protocol import DefinitionDecoder, load_definition_dict

C2S, S2C = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT


def decoder(*messages, endianness="big"):
    return DefinitionDecoder(load_definition_dict({"name": "T", "endianness": endianness, "messages": list(messages)}))


def fields_decoder(*fields, endianness="big"):
    return decoder({"name": "M", "fields": list(fields)}, endianness=endianness)


def frame(data, direction=C2S, seq=5):
    return Frame.create("sess", direction, data, seq)


def decode(dec, data, direction=C2S, seq=5):
    return dec.decode(frame(data, direction, seq))


def shown(message):
    return {f.name: (f.value, f.display_hint, f.display_value) for f in message.fields}


@pytest.mark.parametrize("endianness", ["big", "little"])
def test_numbers_in_protocol_endianness(endianness):
    order = ">" if endianness == "big" else "<"
    types = ["uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "float32", "float64"]
    values = [200, 0xBEEF, 0xDEADBEEF, 2**63 + 5, -100, -2, -70000, -(2**40), 1.5, -2.25]
    data = struct.pack(order + "BHIQbhiqfd", *values)
    message = decode(fields_decoder(*({"name": t, "type": t} for t in types), endianness=endianness), data)
    assert message.error is None
    assert [f.value for f in message.fields] == values
    offsets = [0, 1, 3, 7, 15, 16, 18, 22, 30, 34]
    assert [(f.offset, f.size) for f in message.fields] == list(zip(offsets, [1, 2, 4, 8, 1, 2, 4, 8, 4, 8]))
    assert [f.raw_bytes for f in message.fields] == [data[o : o + s] for o, s in zip(offsets, [1, 2, 4, 8, 1, 2, 4, 8, 4, 8])]
    assert message.display_name == f"[{len(data)}B] M"


def test_integer_display_rules():
    dec = fields_decoder(
        {"name": "a", "type": "uint8"},
        {"name": "b", "type": "uint16"},
        {"name": "c", "type": "uint16", "display": "hex"},
        {"name": "d", "type": "uint8", "enum": {1: "one"}},
        {"name": "e", "type": "uint8", "enum": {1: "one"}, "display": "enum"},
        {"name": "f", "type": "uint8", "enum": {1: "one"}, "display": "decimal"},
        {"name": "g", "type": "uint8", "display": "ascii"},
        {"name": "h", "type": "float32", "display": "hex"},
        {"name": "i", "type": "uint8", "display": "enum"},
    )
    message = decode(dec, struct.pack(">BHHBBBBfB", 10, 300, 16, 1, 7, 1, 65, 1.0, 3))
    assert shown(message) == {
        "a": (10, "hex", "0x0A"),
        "b": (300, "decimal", "300"),
        "c": (16, "hex", "0x0010"),
        "d": (1, "enum", "one"),
        "e": (7, "enum", "<unknown: 0x7>"),
        "f": (1, "decimal", "1"),
        "g": (65, "ascii", "65"),
        "h": (1.0, "hex", "0x3F800000"),
        "i": (3, "enum", "3"),
    }


def test_bytes_string_padding():
    long_blob = bytes(range(40))
    dec = fields_decoder(
        {"name": "n", "type": "uint8"},
        {"name": "blob", "type": "bytes", "length": "{n}"},
        {"name": "empty", "type": "bytes", "length": 0},
        {"name": "pad", "type": "padding", "length": 2},
        {"name": "text", "type": "string", "length": 5, "encoding": "utf8"},
        {"name": "bad", "type": "string", "length": 2, "encoding": "ascii", "display": "unicode"},
        {"name": "nul", "type": "string", "length": 3},
        {"name": "rest", "type": "bytes", "length": -1, "display": "ascii"},
    )
    data = bytes([40]) + long_blob + b"\0\0" + "héllo".encode()[:5] + b"\xff\x41" + b"a\0b" + b"xyz"
    message = decode(dec, data)
    assert message.error is None
    values = shown(message)
    assert values["blob"] == (long_blob, "hex", long_blob[:32].hex(" ").upper() + " … (40 bytes)")
    assert values["empty"] == (b"", "hex", "(empty)")
    assert values["pad"] == (None, "hex", "(2 padding bytes)")
    assert values["text"] == ("héll", "ascii", "héll")
    assert values["bad"] == ("\ufffdA", "unicode", "\ufffdA")
    assert values["nul"] == ("a\x00b", "ascii", repr("a\x00b"))
    assert values["rest"] == (b"xyz", "ascii", "78 79 7A")
    assert message.field_by_name("rest").offset == len(data) - 3
    assert "pad" in message.as_dict()


def test_null_terminated_strings():
    dec = fields_decoder(
        {"name": "a", "type": "string", "null_terminated": True},
        {"name": "b", "type": "string", "null_terminated": True, "length": 3},
        {"name": "c", "type": "uint8"},
        {"name": "d", "type": "string", "null_terminated": True},
    )
    message = decode(dec, b"host\0abcdef\0" + b"\x07" + b"tail")
    # b stops at its 3-byte maximum without a NUL; c reads the next byte
    assert [(f.name, f.value, f.offset, f.size) for f in message.fields] == [
        ("a", "host", 0, 5),
        ("b", "abc", 5, 3),
        ("c", ord("d"), 8, 1),
        ("d", "ef", 9, 3),
    ]
    missing = decode(dec, b"abc")
    assert [(f.name, f.value, f.size) for f in missing.fields][:1] == [("a", "abc", 3)]
    assert missing.error is not None and "'c'" in missing.error  # b is empty, c is truncated


def test_bitfields():
    dec = fields_decoder(
        {"name": "one", "type": "bitfield", "bits": {0: "lsb", 7: "msb", 9: "beyond"}},
        {"name": "two", "type": "bitfield", "length": 2, "bits": {15: "qr", 8: "rd", 0: "r0"}},
    )
    message = decode(dec, bytes([0b1000_0001]) + struct.pack(">H", 0x8100))
    one, two = message.fields
    assert (one.value, one.display_hint, one.display_value, one.size) == (0x81, "hex", "0x81", 1)
    assert [(c.name, c.value, c.offset, c.size, c.display_hint) for c in one.children] == [
        ("lsb", 1, 0, 1, "decimal"),
        ("msb", 1, 0, 1, "decimal"),
        ("beyond", 0, 0, 1, "decimal"),
    ]
    assert (two.value, two.display_value, two.offset) == (0x8100, "0x8100", 1)
    assert [(c.name, c.value) for c in two.children] == [("r0", 0), ("rd", 1), ("qr", 1)]


def test_bitfield_value_feeds_expressions_little_endian():
    dec = fields_decoder({"name": "n", "type": "bitfield", "length": 2}, {"name": "b", "length": "{n}"}, endianness="little")
    assert decode(dec, struct.pack("<H", 2) + b"xy").as_dict()["b"] == b"xy"


def test_arrays_see_outer_and_earlier_item_values():
    dec = fields_decoder(
        {"name": "count", "type": "uint8"},
        {"name": "extra", "type": "uint8"},
        {
            "name": "items",
            "type": "array",
            "array": {
                "count": "{count}",
                "item": [
                    {"name": "len", "type": "uint8"},
                    {"name": "data", "type": "bytes", "length": "{len + extra}"},
                ],
            },
        },
        {"name": "tail", "type": "bytes", "length": "{count}"},
    )
    data = bytes([2, 1]) + bytes([1]) + b"ab" + bytes([0]) + b"c" + b"TT"
    message = decode(dec, data)
    assert message.error is None
    items = message.field_by_name("items")
    assert (items.display_value, items.offset, items.size, items.raw_bytes) == ("(2 items)", 2, 5, data[2:7])
    assert [i.name for i in items.children] == ["[0]", "[1]"]
    assert items.value is items.children
    assert [[(c.name, c.value) for c in i.children] for i in items.children] == [
        [("len", 1), ("data", b"ab")],
        [("len", 0), ("data", b"c")],
    ]
    assert items.children[1].offset == 5 and items.children[1].value is items.children[1].children
    assert message.as_dict()["tail"] == b"TT"


def test_array_truncated_keeps_fields_before_it():
    dec = fields_decoder(
        {"name": "n", "type": "uint8"},
        {"name": "xs", "type": "array", "array": {"count": "{n}", "item": [{"name": "x", "type": "uint16"}]}},
    )
    message = decode(dec, bytes([3]) + struct.pack(">HH", 1, 2))
    assert message.message_type == "M"
    assert [f.name for f in message.fields] == ["n"]
    assert message.error == "Truncated data parsing field 'x': need 2 bytes at offset 5, but frame is only 5 bytes"


def test_negative_array_count_gives_no_items_and_empty_items_are_bounded():
    dec = fields_decoder(
        {"name": "n", "type": "int8"},
        {"name": "xs", "type": "array", "array": {"count": "{n}", "item": [{"name": "s", "type": "string", "null_terminated": True}]}},
    )
    assert decode(dec, bytes([0xFF])).field_by_name("xs").display_value == "(0 items)"
    message = decode(dec, bytes([100]) + b"a\0")
    assert message.error is not None and "count 100" in message.error


def tlv_entry(tag, value, tag_fmt=">H", length_fmt=">H"):
    return struct.pack(tag_fmt, tag) + struct.pack(length_fmt, len(value)) + value


def test_tlv_sequence():
    dec = fields_decoder(
        {"name": "total", "type": "uint16"},
        {
            "name": "attrs",
            "type": "tlv_sequence",
            "length": "{total}",
            "tlv": {
                "type_size": 2,
                "length_size": 2,
                "tags": {
                    1: {"name": "id", "value_type": "uint32"},
                    2: {"name": "text", "value_type": "string"},
                    3: {"name": "blob", "value_type": "bytes", "display": "ascii"},
                    4: {"name": "short_id", "value_type": "uint32"},
                },
            },
        },
        {"name": "after", "type": "uint8"},
    )
    block = tlv_entry(1, struct.pack(">I", 77)) + tlv_entry(2, "hé".encode()) + tlv_entry(3, b"\x01") + tlv_entry(0x99, b"zz") + tlv_entry(4, b"\x01\x02")
    message = decode(dec, struct.pack(">H", len(block)) + block + b"\x05")
    assert message.error is None
    attrs = message.field_by_name("attrs")
    assert attrs.display_value == "(5 TLV entries)" and attrs.size == len(block) and attrs.value is attrs.children
    assert [(c.name, c.value, c.display_hint, c.display_value) for c in attrs.children] == [
        ("id", 77, "hex", "[0x0001] 77"),
        ("text", "hé", "hex", "[0x0002] hé"),
        ("blob", b"\x01", "ascii", "[0x0003] 01"),
        ("tag_0x0099", b"zz", "hex", "[0x0099] 7A 7A"),
        ("short_id", b"\x01\x02", "hex", "[0x0004] 01 02"),  # size mismatch: left as bytes
    ]
    assert [(c.offset, c.size) for c in attrs.children][:2] == [(2, 8), (10, 7)]
    assert message.as_dict()["after"] == 5


def test_tlv_header_order_vs_value_order_and_clipping():
    dec = fields_decoder(
        {
            "name": "attrs",
            "type": "tlv_sequence",
            "tlv": {"type_size": 1, "length_size": 1, "endianness": "little", "tags": {7: {"name": "v", "value_type": "uint16"}}},
        },
        endianness="big",
    )
    data = bytes([7, 2]) + struct.pack(">H", 0x0102) + bytes([7, 9]) + b"abc"
    attrs = decode(dec, data).fields[0]
    assert [(c.name, c.value) for c in attrs.children] == [("v", 0x0102), ("v", b"abc")]
    assert attrs.children[1].size == 5  # clipped to the frame
    two_byte = fields_decoder({"name": "a", "type": "tlv_sequence", "tlv": {"type_size": 2, "length_size": 4, "endianness": "little"}})
    entry = struct.pack("<HI", 0x0A0B, 1) + b"q"
    assert decode(two_byte, entry).fields[0].children[0].name == "tag_0x0A0B"


def test_matching_rules_and_first_match_wins():
    dec = decoder(
        {"name": "Banner", "direction": "s2c", "match": {"type": "sequence", "index": 0, "direction": "server_to_client"}},
        {"name": "Login", "direction": "c2s", "match": {"type": "magic", "value": "0x01"}},
        {"name": "LoginAck", "direction": "s2c", "match": {"type": "magic", "value": "0x01"}},
        {"name": "Ping", "match": {"type": "magic", "value": [0x02]}},
        {"name": "PingToo", "match": {"type": "magic", "value": "0x02"}},
        {"name": "Deep", "match": {"type": "magic", "offset": 2, "value": "0xAA 0xBB"}},
        {"name": "Second", "match": {"type": "sequence", "index": 1}},
        {"name": "Rest", "direction": "client", "match": {"type": "always"}},
    )
    cases = [
        (b"\x01", C2S, 0, "Login"),
        (b"\x01", S2C, 0, "Banner"),
        (b"\x01", S2C, 3, "LoginAck"),
        (b"\x02", S2C, 3, "Ping"),
        (b"\x00\x00\xAA\xBB", C2S, 3, "Deep"),
        (b"\x00\x00\xAA", C2S, 3, "Rest"),  # too short for the magic
        (b"\x00\x00\xAA", S2C, 1, "Second"),
        (b"\x09", S2C, 2, "<unknown>"),
    ]
    for data, direction, seq, expected in cases:
        assert decode(dec, data, direction, seq).message_type == expected, (data, direction, seq)


def test_sequence_matching_is_idempotent():
    dec = decoder({"name": "First", "match": {"type": "sequence", "index": 0}}, {"name": "Other"})
    banner = frame(b"hello", S2C, 0)
    assert [dec.decode(banner).message_type for _ in range(3)] == ["First"] * 3
    assert dec.decode(frame(b"hello", S2C, 1)).message_type == "Other"


def test_empty_magic_always_matches():
    dec = decoder({"name": "Any", "match": {"type": "magic", "offset": 9, "value": ""}})
    assert decode(dec, b"").message_type == "Any"


def test_no_match_gives_unknown_with_raw_field():
    dec = decoder({"name": "Only", "match": {"type": "magic", "value": "0x01"}})
    data = bytes(range(40))
    message = decode(dec, data, seq=12)
    assert message.message_type == "<unknown>"
    assert message.error == "No message definition matched frame seq=12"
    assert message.display_name == "[40B] <unknown>"
    (raw,) = message.fields
    assert (raw.name, raw.value, raw.offset, raw.size, raw.display_hint) == ("raw", data, 0, 40, "hex")
    assert raw.display_value == data.hex(" ").upper()  # the whole frame, not cut at 32
    assert message.protocol_name == "T"
    empty = decoder()
    assert decode(empty, b"x").message_type == "<unknown>"


def test_truncation_inside_a_fixed_run_keeps_earlier_fields():
    dec = fields_decoder({"name": "a", "type": "uint8"}, {"name": "b", "type": "uint16"}, {"name": "c", "type": "uint32"})
    message = decode(dec, b"\x01\x00\x02\x00")
    assert [(f.name, f.value) for f in message.fields] == [("a", 1), ("b", 2)]
    assert message.error == "Truncated data parsing field 'c': need 4 bytes at offset 3, but frame is only 4 bytes"
    assert message.message_type == "M"


def test_trailing_bytes_are_ignored():
    message = decode(fields_decoder({"name": "a", "type": "uint8"}), b"\x01rest")
    assert message.error is None and message.as_dict() == {"a": 1}


@pytest.mark.parametrize(
    ("fields", "data", "fragment"),
    [
        ([{"name": "a", "type": "uint8"}, {"name": "b", "length": "{10 // a}"}], b"\x00", "failed: integer division or modulo by zero"),
        ([{"name": "a", "type": "uint8"}, {"name": "b", "length": "{a - 5}"}], b"\x01", "gave -4"),
        ([{"name": "a", "type": "uint8"}, {"name": "b", "length": "{a > 0}"}], b"\x01", "not a whole number"),
        ([{"name": "f", "type": "float32"}, {"name": "b", "length": "{f}"}], struct.pack(">f", math.nan), "cannot use"),
        ([{"name": "a", "type": "uint8"}, {"name": "x", "type": "array", "array": {"count": "{a // 0}", "item": []}}], b"\x01", "count '{a // 0}' failed"),
    ],
)
def test_decode_never_raises_on_expression_problems(fields, data, fragment):
    message = decode(fields_decoder(*fields), data)
    assert message.message_type == "M"
    assert fragment in message.error
    assert message.fields[0].name == fields[0]["name"]


def test_float_lengths_are_truncated_like_protopoke():
    dec = fields_decoder({"name": "f", "type": "float64"}, {"name": "b", "length": "{f}"})
    assert decode(dec, struct.pack(">d", 2.9) + b"abc").as_dict()["b"] == b"ab"


def test_rest_of_frame_from_an_expression():
    dec = fields_decoder({"name": "a", "type": "uint8"}, {"name": "b", "length": "{a - 2}"})
    assert decode(dec, b"\x01xyz").as_dict()["b"] == b"xyz"
