"""Protocol definitions that would make a traceback or unbounded work: refused at load with
a one-line reason, or, for a frame that would make too many fields, a decode failure."""
from __future__ import annotations

import pytest

from sensor.flows.state import Direction
from sensor.models import Frame
from sensor.protocol import DefinitionDecoder, load_definition_dict
from sensor.protocol.definition import MAX_ARRAY_NESTING, ProtocolDefinitionError


def definition(fields: list) -> dict:
    return {"name": "p", "messages": [{"name": "m", "fields": fields}]}


def decode(raw: dict, data: bytes):
    return DefinitionDecoder(load_definition_dict(raw)).decode(Frame.create("s", Direction.CLIENT_TO_SERVER, data, 0))


def nested_arrays(depth: int) -> dict:
    field: dict = {"name": "x", "type": "uint8"}
    for i in range(depth):
        field = {"name": f"a{i}", "type": "array", "array": {"count": 1, "item": [field]}}
    return field


@pytest.mark.parametrize("fields, words", [
    ([{"name": "a", "type": "bytes", "length": 2**64}], "larger than any frame"),
    ([nested_arrays(MAX_ARRAY_NESTING + 1)], f"nested more than {MAX_ARRAY_NESTING} deep"),
    ([nested_arrays(2000)], f"nested more than {MAX_ARRAY_NESTING} deep"),
    ([{"name": "n", "type": "uint8"},
      {"name": "a", "type": "bytes", "length": "{" + "(" * 5000 + "n" + ")" * 5000 + "}"}], "length"),
])
def test_definitions_that_cannot_be_used_are_refused_at_load(fields, words):
    with pytest.raises(ProtocolDefinitionError, match=words):
        load_definition_dict(definition(fields))


def test_arrays_nested_to_the_limit_still_decode():
    message = decode(definition([nested_arrays(MAX_ARRAY_NESTING)]), b"\x07")
    assert message.error is None
    field = message.fields[0]
    for _ in range(MAX_ARRAY_NESTING - 1):
        field = field.children[0].children[0]
    assert field.children[0].children[0].value == 7


def test_a_comparison_as_a_length_counts_as_a_number():
    message = decode(definition([{"name": "a", "type": "bytes", "length": "{not 0}"}]), b"xy")
    assert message.error is None and message.fields[0].value == b"x"


def test_nested_arrays_of_empty_items_stop_at_the_frames_item_budget():
    # One 1,400-byte frame whose two counts say 1,280 x 1,280 empty items: 1.6M fields unbounded.
    raw = definition([{"name": "n", "type": "uint16"},
                      {"name": "outer", "type": "array", "array": {"count": "{n}", "item": [
                          {"name": "inner", "type": "array", "array": {"count": "{n}", "item": [
                              {"name": "z", "type": "bytes", "length": 0}]}}]}}])
    data = b"\x05\x00" + bytes(1398)
    message = decode(raw, data)
    assert "more than 5496 items in all" in message.error  # 1,400 bytes + 4,096
    assert [f.name for f in message.fields] == ["n"]  # the fields before the array; none of its millions


def test_arrays_within_the_budget_decode_whole():
    raw = definition([{"name": "n", "type": "uint8"},
                      {"name": "outer", "type": "array", "array": {"count": "{n}", "item": [
                          {"name": "inner", "type": "array", "array": {"count": "{n}", "item": [
                              {"name": "b", "type": "uint8"}]}}]}}])
    message = decode(raw, bytes([30]) + bytes(range(256)) * 4)
    assert message.error is None
    assert len(message.fields[1].children) == 30 and len(message.fields[1].children[29].children[0].children) == 30
