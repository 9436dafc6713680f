"""Frame / ParsedField / ParsedMessage keep ProtoPoke's shapes and to_dict keys."""

from __future__ import annotations

import json
import uuid

from sensor.flows.state import Direction, SessionState
from sensor.models import Field, Frame, ParsedField, ParsedMessage


def test_enum_values_match_protopoke():
    assert Direction.CLIENT_TO_SERVER.value == "client_to_server"
    assert Direction.SERVER_TO_CLIENT.opposite() is Direction.CLIENT_TO_SERVER
    assert [Direction.CLIENT_TO_SERVER.index, Direction.SERVER_TO_CLIENT.index] == [0, 1]
    assert [s.value for s in SessionState] == ["connecting", "active", "only server", "only client", "closed"]


def test_frame_create_and_to_dict():
    frame = Frame.create("sess", Direction.SERVER_TO_CLIENT, b"\x01\xff", 7, "line")
    assert uuid.UUID(frame.id).version == 4
    assert frame.to_dict() == {
        "id": frame.id,
        "session_id": "sess",
        "direction": "server_to_client",
        "raw_bytes": "01ff",
        "raw_bytes_len": 2,
        "timestamp": frame.timestamp,
        "sequence_number": 7,
        "framer_name": "line",
    }


def test_parsed_message_helpers_and_json():
    frame = Frame.create("s", Direction.CLIENT_TO_SERVER, b"\x01ab", 0)
    child = ParsedField("bit", 1, b"\x01", 0, 1, "decimal", "1")
    fields = [
        ParsedField("op", 1, b"\x01", 0, 1, "hex", "0x01", [child]),
        Field("name", b"ab", b"ab", 1, 2, "hex", "61 62"),
        ParsedField("items", [child], b"", 3, 0),
    ]
    message = ParsedMessage.from_frame(frame, "P", "Login", fields, "[3B] Login")
    assert Field is ParsedField
    assert message.field_by_name("name") is fields[1]
    assert message.field_by_name("missing") is None
    assert message.as_dict() == {"op": 1, "name": b"ab", "items": [child]}
    data = message.to_dict()
    assert uuid.UUID(data["id"]).version == 4 and data["id"] == message.id
    assert data["frame_id"] == frame.id
    assert data["fields"][0]["children"][0]["name"] == "bit"
    assert data["fields"][1]["value"] == "6162"
    assert data["fields"][2]["value"][0]["name"] == "bit"
    assert data["error"] is None
    json.dumps(data)
    assert ParsedMessage.from_frame(frame, "P").fields == []


def test_display_value_given_as_a_renderer_reads_like_a_string():
    lazy = ParsedField("n", 16, b"\x10", 0, 1, "hex", "0x{:02X}".format)
    eager = ParsedField("n", 16, b"\x10", 0, 1, "hex", "0x10")
    assert lazy.display_value == "0x10"
    assert lazy.to_dict()["display_value"] == "0x10"
    assert lazy == eager


def test_a_leaf_field_makes_its_children_list_once_on_first_read():
    leaf = ParsedField("n", 1, b"\x01", 0, 1)
    leaf.children.append(ParsedField("bit", 1, b"\x01", 0, 1))
    assert [child.name for child in leaf.children] == ["bit"]  # the same list each read
    assert ParsedField("n", 1, b"\x01", 0, 1) == ParsedField("n", 1, b"\x01", 0, 1, children=[])
    assert ParsedField("n", 1, b"\x01", 0, 1).to_dict()["children"] == []
