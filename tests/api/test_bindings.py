"""Bindings config: every key validated at load with a message naming binding, key and fix."""
from __future__ import annotations

import textwrap

import pytest

from sensor.bindings import BindingError, binding_rules, parse_bindings, prefix_matches
from sensor.flows.state import Direction
from sensor.framing import CustomFramer, DelimiterFramer
from sensor.kernel.rules import PortRole, PortRule, PrefixRule

TCP, UDP = 6, 17

FRAMER_SCRIPT = textwrap.dedent('''
    def on_data(data, state, direction):
        return [data]

    def on_flush(state, direction):
        return []
''')

DEFINITION_YAML = textwrap.dedent('''
    protocol:
      name: Tiny
      messages:
        - name: Ping
          match: {type: magic, value: [0x01]}
          fields:
            - {name: op, type: uint8}
''')


@pytest.fixture
def conf_dir(tmp_path):
    (tmp_path / "framers").mkdir()
    (tmp_path / "framers" / "split.py").write_text(FRAMER_SCRIPT)
    (tmp_path / "tiny.yaml").write_text(DEFINITION_YAML)
    (tmp_path / "not_a_framer.py").write_text("x = 1\n")
    (tmp_path / "bad.yaml").write_text("protocol:\n  messages: []\n")
    return tmp_path


def one(conf_dir, **item):
    return parse_bindings([{"name": "b", "match": {"ports": [502]}, **item}], conf_dir)[0]


def test_full_binding_loads(conf_dir):
    bindings = parse_bindings([
        {"name": "lines", "match": {"ports": [502, "udp:5353"]}, "framer": "delimiter",
         "framer_kwargs": {"delimiter": "0x0d0a", "include_delimiter": False},
         "protocol_definition": "tiny.yaml"},
        {"name": "script", "match": {"protocol": "redis"}, "custom_framer_path": "framers/split.py"},
        {"name": "tls", "match": {"classifier": "tcp:0:0x16030"}},
    ], conf_dir)
    lines, script, tls = bindings
    assert lines.match.ports == {(None, 502), (UDP, 5353)}
    framer = lines.framer.create("s", Direction.CLIENT_TO_SERVER)
    assert isinstance(framer, DelimiterFramer)
    assert [f.raw_bytes for f in framer.feed(b"a\r\nb\r\n")] == [b"a", b"b"]  # hex kwarg became bytes
    assert lines.definition.name == "Tiny"
    assert isinstance(script.framer.create_pair("s")[0], CustomFramer)
    assert script.match.protocol == "redis"
    assert tls.match.classifier == PrefixRule(TCP, 0, b"\x16\x03\x00", 0xF0)
    assert tls.framer.name == "raw" and tls.decoder is None


def test_shared_protopoke_definition_loads(shared_testdata):
    binding = parse_bindings([{"name": "chat", "match": {"ports": ["tcp:9000"]},
                               "framer": "length_prefix", "framer_kwargs": {"prefix_length": 2},
                               "protocol_definition": "chat.proto.yaml"}],
                             shared_testdata / "protopoke-protocols")[0]
    assert binding.definition.name == "ChatProtocol"


def test_inline_definition(conf_dir):
    binding = one(conf_dir, protocol_definition={"name": "Inline", "messages": []})
    assert binding.definition.name == "Inline"


def test_empty_or_missing_section():
    assert parse_bindings(None, ".") == []
    assert parse_bindings([], ".") == []


@pytest.mark.parametrize(("items", "expected"), [
    ({"name": "b"}, r"^bindings: must be a list"),
    (["b"], r"^bindings\[0\]: must be a mapping"),
    ([{"match": {"ports": [1]}}], r"^bindings\[0\]: name: required"),
    ([{"name": 5, "match": {"ports": [1]}}], r"^bindings\[0\]: name: required"),
    ([{"name": "b", "match": {"ports": [1]}}, {"name": "b", "match": {"ports": [2]}}],
     r"^binding 'b' \(bindings\[1\]\): name: already used by bindings\[0\]"),
    ([{"name": "b", "match": {"ports": [1]}, "framer_args": {}}], r"^binding 'b': unknown key\(s\) 'framer_args'"),
    ([{"name": "b"}], r"^binding 'b': match: required"),
    ([{"name": "b", "match": "tcp:502"}], r"^binding 'b': match: required, a mapping"),
    ([{"name": "b", "match": {}}], r"^binding 'b': match: required"),
    ([{"name": "b", "match": {"port": [1]}}], r"^binding 'b': match: unknown key\(s\) 'port'; use protocol, ports"),
    ([{"name": "b", "match": {"ports": 502}}], r"^binding 'b': match.ports: a non-empty list"),
    ([{"name": "b", "match": {"ports": []}}], r"^binding 'b': match.ports: a non-empty list"),
    ([{"name": "b", "match": {"ports": [70000]}}], r"^binding 'b': match.ports\[0\]: port 70000 is out of range"),
    ([{"name": "b", "match": {"ports": [1, "gre:5"]}}],
     r"^binding 'b': match.ports\[1\]: 'gre:5': protocol must be tcp or udp"),
    ([{"name": "b", "match": {"ports": ["502"]}}], r"^binding 'b': match.ports\[0\]: .*PROTO:PORT.*bare number"),
    ([{"name": "b", "match": {"ports": [True]}}], r"^binding 'b': match.ports\[0\]: True is not a port"),
    ([{"name": "b", "match": {"protocol": ""}}], r"^binding 'b': match.protocol: give the Arkime protocol name"),
    ([{"name": "b", "match": {"classifier": "tcp:GET"}}], r"^binding 'b': match.classifier: .*PROTO:OFFSET:BYTES"),
    ([{"name": "b", "match": {"classifier": "tcp:0:0xzz"}}], r"^binding 'b': match.classifier: .*is not hex"),
    ([{"name": "b", "match": {"classifier": 7}}], r"^binding 'b': match.classifier: write PROTO:OFFSET:BYTES"),
])
def test_structural_errors(items, expected):
    with pytest.raises(BindingError, match=expected):
        parse_bindings(items, ".")


@pytest.mark.parametrize(("item", "expected"), [
    ({"framer": "lenght_prefix"}, r"^binding 'b': framer: unknown framer 'lenght_prefix'; choose one of"),
    ({"framer": 3}, r"^binding 'b': framer: a framer name"),
    ({"framer": "length_prefix", "framer_kwargs": {"length_size": 2}},
     r"^binding 'b': framer_kwargs: length_prefix: unknown kwargs \['length_size'\]; it accepts"),
    ({"framer": "length_prefix", "framer_kwargs": {"prefix_length": 3}},
     r"^binding 'b': framer_kwargs: length_prefix: prefix_length must be one of 1, 2, 4, 8"),
    ({"framer": "length_prefix", "framer_kwargs": {"prefix_length": "2"}},
     r"^binding 'b': framer_kwargs: length_prefix: prefix_length must be int"),
    ({"framer": "fixed"}, r"^binding 'b': framer_kwargs: fixed: kwarg 'size' \(int\) is required"),
    ({"framer_kwargs": ["x"]}, r"^binding 'b': framer_kwargs: a mapping"),
    ({"custom_framer_path": "framers/missing.py"}, r"^binding 'b': custom_framer_path: .*missing.py does not exist"),
    ({"custom_framer_path": "not_a_framer.py"}, r"^binding 'b': custom_framer_path: .*missing: on_data, on_flush"),
    ({"custom_framer_path": "framers/split.py", "framer_kwargs": {"size": 4}},
     r"^binding 'b': custom_framer_path: custom framer scripts take no kwargs"),
    ({"custom_framer_path": 5}, r"^binding 'b': custom_framer_path: a path"),
    ({"protocol_definition": "missing.yaml"}, r"^binding 'b': protocol_definition: protocol definition file not found"),
    ({"protocol_definition": "bad.yaml"}, r"^binding 'b': protocol_definition: .*bad.yaml.*name"),
    ({"protocol_definition": ["x"]}, r"^binding 'b': protocol_definition: a path"),
])
def test_framer_and_definition_errors(conf_dir, item, expected):
    with pytest.raises(BindingError, match=expected):
        one(conf_dir, **item)


def test_port_classifier_and_protocol_matching(conf_dir):
    by_port, by_both, by_prefix, by_protocol = parse_bindings([
        {"name": "port", "match": {"ports": ["tcp:502"]}},
        {"name": "both", "match": {"ports": [8080], "protocol": "http"}},
        {"name": "prefix", "match": {"classifier": "udp:2:0x0100"}},
        {"name": "proto", "match": {"protocol": "redis"}},
    ], conf_dir)
    none = (None, None)
    assert by_port.match.matches(TCP, 40000, 502, frozenset(), none)
    assert by_port.match.matches(TCP, 502, 40000, frozenset(), none)  # either end, like --port
    assert not by_port.match.matches(UDP, 40000, 502, frozenset(), none)
    assert not by_both.match.matches(TCP, 40000, 8080, frozenset({"tcp"}), none)
    assert by_both.match.matches(UDP, 40000, 8080, frozenset({"http"}), none)
    assert by_both.match.could_match(TCP, 40000, 8080) and not by_both.match.could_match(TCP, 40000, 80)
    dns_query = b"\x12\x34\x01\x00\x00\x01"
    assert by_prefix.match.matches(UDP, 5353, 53, frozenset(), (None, dns_query))
    assert not by_prefix.match.matches(TCP, 5353, 53, frozenset(), (dns_query, None))
    assert not by_prefix.match.matches(UDP, 5353, 53, frozenset(), (b"\x12\x34\x81\x80", None))
    assert not by_prefix.match.could_match(TCP, 1, 2)
    assert by_protocol.match.matches(TCP, 1, 2, frozenset({"redis", "tcp"}), none)
    assert not by_port.match.could_match(TCP, 40000, 502)  # decided at open: nothing left to wait for


def test_prefix_half_byte():
    rule = PrefixRule(TCP, 1, b"\x03\x40", 0xF0)
    assert prefix_matches(rule, b"\x16\x03\x4f")
    assert not prefix_matches(rule, b"\x16\x03\x5f")
    assert not prefix_matches(rule, b"\x16\x03")  # too short


def test_binding_rules_for_the_kernel(conf_dir):
    bindings = parse_bindings([
        {"name": "modbus", "match": {"ports": ["tcp:502"]}},
        {"name": "any53", "match": {"ports": [53], "classifier": "udp:2:0x01"}},
        {"name": "tls", "match": {"classifier": "tcp:0:0x1603"}},
        {"name": "redis", "match": {"protocol": "redis"}},
        {"name": "modbus-again", "match": {"ports": ["tcp:502"]}},
    ], conf_dir)
    ports, prefixes = binding_rules(bindings)
    assert set(ports) == {
        PortRule(TCP, 502, PortRole.SERVER), PortRule(TCP, 502, PortRole.CLIENT),
        PortRule(TCP, 53, PortRole.SERVER), PortRule(TCP, 53, PortRole.CLIENT),
        PortRule(UDP, 53, PortRole.SERVER), PortRule(UDP, 53, PortRole.CLIENT),
    }
    assert len(ports) == 6  # no duplicates
    assert prefixes == [PrefixRule(TCP, 0, b"\x16\x03")]
