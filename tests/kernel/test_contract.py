"""The ctypes mirror (sensor/kernel/contract.py) matches what the compiler
made of bpf/sensor.h: same sizes, same field offsets."""
from __future__ import annotations

import ctypes as ct

import pytest

from sensor.kernel import contract

pytestmark = pytest.mark.kernel


@pytest.mark.parametrize("map_name,key_type,leaf_type", [
    ("flows", contract.FlowKey, contract.FlowState),
    ("ports", contract.PortKey, ct.c_uint8),
    ("prefixes", contract.PrefixKey, ct.c_uint8),
    ("prefix_shapes", ct.c_uint32, contract.PrefixShape),
    ("config", ct.c_uint32, contract.SensorConfig),
])
def test_map_layouts_match_the_compiled_program(program, map_name, key_type, leaf_type):
    table = program.bpf[map_name.encode()]
    for ours, theirs in ((key_type, table.Key), (leaf_type, table.Leaf)):
        assert ct.sizeof(ours) == ct.sizeof(theirs)
        for name, *_ in getattr(ours, "_fields_", []):
            assert getattr(ours, name).offset == getattr(theirs, name).offset, name


def test_record_header_round_trips_through_the_kernel(xdp):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    frame = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="10.9.0.1", dst="10.9.0.2") / UDP(sport=5353, dport=5353) / b"abc")
    [rec] = xdp.run(frame)
    # Every field lands where the mirror says: the frame follows the header
    # exactly, and the header's key is the canonical key Python computes.
    assert rec.frame == frame
    expected = contract.make_key(17, ("10.9.0.1", 5353), ("10.9.0.2", 5353))
    assert bytes(rec.header.key) == bytes(expected)
    assert rec.header.verdict == contract.Verdict.SELECTED
    assert 0 < rec.header.ts_ns
