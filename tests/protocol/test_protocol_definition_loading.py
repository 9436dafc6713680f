"""Loading: accepted notations, file formats, and every error caught before decoding starts."""

from __future__ import annotations

import json

import pytest

from sensor.protocol.definition import (
    DirectionFilter,
    DisplayHint,
    FieldType,
    MatchType,
    ProtocolDefinitionError,
    load_definition_dict,
    load_definition_file,
)


def proto(*messages, **top):
    return {"name": "P", **top, "messages": list(messages)}


def one_field(**field):
    return proto({"name": "M", "fields": [{"name": "f", **field}]})


def test_wrapped_and_bare_top_level_with_defaults():
    bare = load_definition_dict({"name": "P"})
    wrapped = load_definition_dict({"protocol": {"name": "P", "endianness": "LITTLE", "version": 2}})
    assert (bare.name, bare.version, bare.endianness, bare.messages) == ("P", "1.0", "big", ())
    assert (wrapped.endianness, wrapped.version) == ("little", "2")


def test_message_defaults_and_direction_aliases():
    definition = load_definition_dict(
        proto(
            {"name": "A"},
            {"name": "B", "direction": "c2s"},
            {"name": "C", "direction": "server"},
            {"name": "D", "direction": "Client-To-Server"},
        )
    )
    a, b, c, d = definition.messages
    assert a.match.type is MatchType.ALWAYS and a.direction is DirectionFilter.BOTH and a.fields == ()
    assert b.direction is DirectionFilter.CLIENT_TO_SERVER
    assert c.direction is DirectionFilter.SERVER_TO_CLIENT
    assert d.direction is DirectionFilter.CLIENT_TO_SERVER


@pytest.mark.parametrize(
    ("value", "expected"), [("0x01", b"\x01"), ("0x01 0x02", b"\x01\x02"), ([0x41, "0x03"], b"\x41\x03"), (255, b"\xff"), ("", b"")]
)
def test_magic_value_notations(value, expected):
    rule = load_definition_dict(proto({"name": "M", "match": {"type": "MAGIC", "offset": 2, "value": value}})).messages[0].match
    assert (rule.type, rule.offset, rule.value) == (MatchType.MAGIC, 2, expected)


def test_sequence_rule_and_field_coercions():
    definition = load_definition_dict(
        proto(
            {
                "name": "M",
                "match": {"type": "sequence", "index": 2, "direction": "s2c"},
                "fields": [
                    {"name": "n", "type": "UINT16", "display": "HEX", "enum": {"0x01": "one", 2: "two"}},
                    {"name": "blob", "length": "{n}"},
                    {"name": "t", "type": "tlv-sequence", "tlv": {"tags": {"0x0a": {"name": "x"}}}},
                    {"name": "odd", "type": "uint8", "display": "sparkly"},
                ],
            }
        )
    )
    message = definition.messages[0]
    assert (message.match.index, message.match.direction) == (2, DirectionFilter.SERVER_TO_CLIENT)
    n, blob, tlv, odd = message.fields
    assert n.type is FieldType.UINT16 and n.display is DisplayHint.HEX and dict(n.enum) == {1: "one", 2: "two"}
    assert blob.type is FieldType.BYTES and blob.length.names == {"n"}
    assert tlv.tlv.type_size == 1 and tlv.tlv.length_size == 2 and tlv.tlv.tags[10].name == "x"
    assert odd.display is DisplayHint.AUTO  # ProtoPoke falls back to auto


def test_json_and_yaml_files(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps(proto({"name": "J"})))
    (tmp_path / "p.yml").write_text("protocol:\n  name: Y\n  messages:\n    - name: M\n")
    assert load_definition_file(tmp_path / "p.json").messages[0].name == "J"
    definition = load_definition_file(tmp_path / "p.yml")
    assert definition.name == "Y" and definition.source == str(tmp_path / "p.yml")


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_definition_file(tmp_path / "missing.yaml")
    (tmp_path / "p.txt").write_text("name: P")
    with pytest.raises(ProtocolDefinitionError, match="unsupported extension '.txt'"):
        load_definition_file(tmp_path / "p.txt")
    (tmp_path / "bad.yaml").write_text("name: [unclosed")
    with pytest.raises(ProtocolDefinitionError, match="not valid YAML"):
        load_definition_file(tmp_path / "bad.yaml")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ProtocolDefinitionError, match="not valid JSON"):
        load_definition_file(tmp_path / "bad.json")


def test_error_names_file_message_field_and_problem(tmp_path):
    path = tmp_path / "chat.yaml"
    path.write_text(
        "name: Chat\nmessages:\n  - name: Login\n    fields:\n"
        "      - {name: user_len, type: uint16}\n      - {name: user, type: string, length: '{usr_len}'}\n"
    )
    with pytest.raises(ProtocolDefinitionError) as info:
        load_definition_file(path)
    message = str(info.value)
    for part in (str(path), "messages[0]", "'Login'", "fields[1]", "'user'", "usr_len", "user_len"):
        assert part in message


UNDEFINED = "uses undefined variable"


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ([], "must be a mapping"),
        ({"messages": []}, "required key 'name' is missing"),
        (proto(endianness="middle"), "endianness must be 'big' or 'little'"),
        ({"name": "P", "messages": {"a": 1}}, "'messages' must be a list"),
        (proto("not a mapping"), "a message must be a mapping"),
        (proto({"description": "x"}), "required key 'name' is missing"),
        (proto({"name": "M", "fields": {}}), "'fields' must be a list"),
        (proto({"name": "M", "direction": "sideways"}), "direction 'sideways' is unknown"),
        (proto({"name": "M", "match": "magic"}), "'match' must be a mapping"),
        (proto({"name": "M", "match": {"type": "regex"}}), "match type 'regex' is unknown"),
        (proto({"name": "M", "match": {"type": "magic"}}), "a magic match needs 'value'"),
        (proto({"name": "M", "match": {"type": "magic", "value": 256}}), "outside 0-255"),
        (proto({"name": "M", "match": {"type": "magic", "value": "0x1ff"}}), "outside 0-255"),
        (proto({"name": "M", "match": {"type": "magic", "value": "zz"}}), "'zz' is not a number"),
        (proto({"name": "M", "match": {"type": "magic", "value": {"a": 1}}}), "match value must be"),
        (proto({"name": "M", "match": {"type": "magic", "value": 1, "offset": -1}}), "offset must be >= 0"),
        (proto({"name": "M", "match": {"type": "sequence", "index": "first"}}), "match index must be an integer"),
        (proto({"name": "M", "match": {"type": "sequence", "direction": "up"}}), "direction 'up' is unknown"),
        (proto({"name": "M", "fields": ["f"]}), "a field must be a mapping"),
        (proto({"name": "M", "fields": [{"type": "uint8"}]}), "required key 'name' is missing"),
        (one_field(type="uint128"), "type 'uint128' is unknown"),
        (one_field(type="cstring"), "type 'cstring' is unknown"),
        (one_field(type="bytes"), "a bytes field needs 'length'"),
        (one_field(), "a bytes field needs 'length'"),
        (one_field(type="string"), "a string field needs 'length'"),
        (one_field(type="padding"), "a padding field needs 'length'"),
        (one_field(type="bytes", length=-2), "length -2 is negative"),
        (one_field(type="bytes", length="{remaining}"), "'remaining' is not a keyword"),
        (one_field(type="bytes", length="{later}"), UNDEFINED),
        (one_field(type="bytes", length="{a / 2}"), "use '//'"),
        (one_field(type="bytes", length="n"), "neither an integer"),
        (one_field(type="bytes", length=2.5), "expected an integer"),
        (one_field(type="string", length=2, encoding="klingon"), "encoding 'klingon' is unknown"),
        (one_field(type="bitfield", length=3), "bitfield length must be one of"),
        (one_field(type="bitfield", bits=["a"]), "'bits' must be a mapping"),
        (one_field(type="bitfield", bits={-1: "a"}), "bit index -1 must be >= 0"),
        (one_field(type="uint8", enum=[1, 2]), "'enum' must be a mapping"),
        (one_field(type="uint8", enum={"one": "x"}), "enum key must be an integer"),
        (one_field(type="array"), "needs an 'array' mapping"),
        (one_field(type="array", array={"item": []}), "array 'count' is required"),
        (one_field(type="array", array={"count": 1, "item": {"name": "x"}}), "array 'item' must be a list"),
        (one_field(type="array", array={"count": "{n}", "item": []}), UNDEFINED),
        (one_field(type="array", array={"count": 1, "item": [{"name": "x", "type": "nope"}]}), "type 'nope' is unknown"),
        (one_field(type="tlv_sequence", tlv=[1]), "'tlv' must be a mapping"),
        (one_field(type="tlv_sequence", tlv={"type_size": 3}), "tlv type_size must be 1, 2 or 4"),
        (one_field(type="tlv_sequence", tlv={"length_size": 8}), "tlv length_size must be 1, 2 or 4"),
        (one_field(type="tlv_sequence", tlv={"endianness": "mixed"}), "tlv endianness"),
        (one_field(type="tlv_sequence", tlv={"tags": [1]}), "'tags' must be a mapping"),
        (one_field(type="tlv_sequence", tlv={"tags": {1: "name"}}), "must be a mapping with 'name'"),
        (one_field(type="tlv_sequence", tlv={"tags": {1: {"value_type": "uint8"}}}), "required key 'name' is missing"),
        (one_field(type="tlv_sequence", tlv={"tags": {1: {"name": "a", "value_type": "array"}}}), "value_type 'array' is not supported"),
    ],
)
def test_load_errors(raw, fragment):
    with pytest.raises(ProtocolDefinitionError) as info:
        load_definition_dict(raw, source="defs.yaml")
    assert fragment in str(info.value)
    if isinstance(raw, dict) and isinstance(raw.get("messages"), list) and raw["messages"]:
        assert str(info.value).startswith("defs.yaml: messages[0]")


def test_expression_scope_rules():
    ok = proto(
        {
            "name": "M",
            "fields": [
                {"name": "n", "type": "uint8"},
                {"name": "f", "type": "float32"},
                {"name": "flags", "type": "bitfield"},
                {"name": "s", "type": "string", "length": "{n + f + flags}"},
                {
                    "name": "items",
                    "type": "array",
                    "array": {"count": "{n}", "item": [{"name": "k", "type": "uint8"}, {"name": "v", "length": "{k + n}"}]},
                },
            ],
        }
    )
    load_definition_dict(ok)
    # a string is not numeric; array-item fields are not visible after the array
    for later in ("{s}", "{k}"):
        bad = json.loads(json.dumps(ok))
        bad["messages"][0]["fields"].append({"name": "tail", "length": later})
        with pytest.raises(ProtocolDefinitionError, match=UNDEFINED):
            load_definition_dict(bad)
