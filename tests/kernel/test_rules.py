"""Rule specs and the prefix shapes the kernel looks up (pure: no kernel)."""
from __future__ import annotations

import pytest

from sensor.kernel.rules import (PortRole, PortRule, PrefixRule, RuleError, RuleSet, kernel_view, parse_port_spec,
                                 parse_prefix_spec)


def test_port_spec_covers_both_ends():
    assert set(parse_port_spec("udp:5353")) == {PortRule(17, 5353, PortRole.SERVER), PortRule(17, 5353, PortRole.CLIENT)}


@pytest.mark.parametrize("spec", ["udp", "udp:", "udp:0", "udp:70000", "gre:80", "tcp:http"])
def test_bad_port_specs_say_how_to_write_them(spec):
    with pytest.raises(RuleError, match="PROTO:PORT|tcp or udp or sctp"):
        parse_port_spec(spec)


def test_prefix_specs_text_hex_and_half_bytes():
    assert parse_prefix_spec("tcp:0:GET ") == PrefixRule(6, 0, b"GET ")
    assert parse_prefix_spec("udp:4:0x0102") == PrefixRule(17, 4, b"\x01\x02")
    assert parse_prefix_spec("tcp:0:0x16030") == PrefixRule(6, 0, b"\x16\x03\x00", 0xF0)


@pytest.mark.parametrize("spec", ["tcp:0:", "tcp:x:GET", "tcp:0:0xzz", "icmp:0:a", "tcp:70000:a"])
def test_bad_prefix_specs_are_refused(spec):
    with pytest.raises(RuleError):
        parse_prefix_spec(spec)


def test_shapes_group_patterns_and_are_bounded():
    rules = RuleSet(prefixes={parse_prefix_spec(s) for s in ("tcp:0:GET ", "tcp:0:POST", "tcp:0:HEAD")})
    assert len(rules.shapes()) == 1  # three patterns, one lookup
    offsets = RuleSet(prefixes={PrefixRule(6, n, b"x") for n in range(9)})
    with pytest.raises(RuleError, match="at most 8"):
        offsets.shapes()


def test_crowded_offsets_are_cut_to_a_superset():
    methods = [b"GET ", b"POST", b"HEAD", b"PUT ", b"DELETE", b"OPTIONS", b"CONNECT", b"TRACE", b"PATCH",
               b"PROPFIND", b"MKCOL", b"HTTP/", b"M-SEARCH", b"NOTIFY", b"SUBSCRIBE", b"UNSUBSCRIBE"]
    rules = RuleSet(prefixes={PrefixRule(6, 0, m) for m in methods} | {parse_prefix_spec("tcp:0:0x16030")})
    rules.prefixes |= {PrefixRule(17, n, b"ab") for n in range(4)}
    uncut = {kernel_view(r)[0] for r in rules.prefixes}
    assert len(uncut) > 8  # more shapes than the kernel looks up
    shapes = rules.shapes()
    assert len(shapes) <= 8
    # Every pattern is still selected (a superset), and unrelated bytes are not.
    for m in methods:
        assert rules.prefix_selected(6, m + b" / HTTP/1.1\r\n")
    assert rules.prefix_selected(6, b"\x16\x03\x01\x02\x00")
    assert not rules.prefix_selected(6, b"SSH-2.0-OpenSSH")
    # The UDP rules at other offsets keep their full length.
    assert {s.length for s in shapes if s.proto == 17} == {2}


def test_python_matching_follows_the_kernel_rules():
    rules = RuleSet(prefixes={parse_prefix_spec("tcp:0:0x16030"), PrefixRule(6, 2, b"long-pattern-over-16-bytes!")})
    assert rules.prefix_selected(6, b"\x16\x03\x01...")
    assert not rules.prefix_selected(6, b"\x16\x03\x11...")
    assert not rules.prefix_selected(17, b"\x16\x03\x01...")
    # Only the first 16 bytes of a long pattern are compared: a superset.
    assert rules.prefix_selected(6, b"..long-pattern-over-XX")


def test_offload_from_plugin_registrations():
    rules = RuleSet()
    rules.add_offload(ports=[(6, 6379, "dst"), (17, 123, "src")], prefixes=[(6, 0, b"*"), (17, 0, b"")],
                      match_all=[17])
    assert PortRule(6, 6379, PortRole.SERVER) in rules.ports
    assert PortRule(17, 123, PortRole.CLIENT) in rules.ports
    assert rules.prefixes == {PrefixRule(6, 0, b"*")}
    assert rules.port_selected(17, 1, 2)  # every UDP flow: a plugin matches them all


def test_specs_add_up_as_on_the_command_line():
    rules = RuleSet().add_specs(["udp:5353"], ["tcp:0:GET "])
    assert rules.port_selected(17, 40000, 5353) and rules.port_selected(17, 5353, 40000)
    assert rules.prefix_selected(6, b"GET / HTTP/1.1")
    assert not rules.port_selected(6, 40000, 5353)
