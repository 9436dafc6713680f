"""The real XDP program (BPF_PROG_TEST_RUN) takes tunnels apart: the flow,
its rules and counters are the inner flow's; fuzzed tunnel headers pass
untouched; the Python pre-filter agrees with it frame by frame."""
from __future__ import annotations

import random

import pytest
from scapy.all import raw
from scapy.layers.inet import IP, UDP

from sensor.kernel.contract import IPPROTO_TCP, Stat, Verdict, WALK_STEPS, make_key
from sensor.kernel.program import ProgramOptions
from sensor.prefilter import PythonFlowTable
from tests import tunnelframes as tf

from sensor.kernel.rules import RuleSet

pytestmark = pytest.mark.kernel

INNER_KEY = make_key(IPPROTO_TCP, (tf.INNER_SRC, tf.INNER_SPORT), (tf.INNER_DST, tf.INNER_DPORT))


@pytest.mark.parametrize("name", sorted(tf.frames()))
def test_the_inner_flow_is_selected_and_counted(xdp, name: str) -> None:
    frame = tf.frames()[name][0]
    # The port rule tcp:8080 names the inner server port: only the inner flow can match it.
    [record] = xdp.run(frame)
    assert bytes(record.header.key) == bytes(INNER_KEY)
    assert record.frame == frame
    state = xdp.program.flow(INNER_KEY)
    assert state.verdict == Verdict.SELECTED
    # VLANs are the flow's: a tag on the outer frame, or the one an ERSPAN header names.
    vlan = {"vlan-vxlan": [12, 0], "erspan-ii": [7, 0], "erspan-iii": [7, 0]}.get(name, [0, 0])
    assert list(state.vlan) == vlan
    assert sum(state.packets) == 1 and sum(state.bytes) == len(frame)
    assert xdp.delta(Stat.TUNNELLED) == 1


@pytest.mark.parametrize("name", sorted(tf.service_headers()))
def test_the_flow_behind_a_service_header_is_the_inner_one(xdp, name: str) -> None:
    frame = tf.service_headers()[name]
    [record] = xdp.run(frame)
    assert bytes(record.header.key) == bytes(INNER_KEY)
    assert xdp.delta(Stat.TUNNELLED) == 0      # a header Arkime names no tunnel for


@pytest.mark.parametrize("name", sorted(tf.no_ip_inside()))
def test_a_tunnel_with_no_ip_inside_counts_on_its_ip_headers_flow(xdp, name: str) -> None:
    frame, proto = tf.no_ip_inside()[name]
    assert xdp.run(frame) == []
    state = xdp.program.flow(make_key(proto, (tf.OUTER_SRC, 0), (tf.OUTER_DST, 0)))
    assert sum(state.packets) == 1 and sum(state.bytes) == len(frame) and sum(state.databytes) == 0
    assert (xdp.delta(Stat.PARSED), xdp.delta(Stat.NOT_IP)) == (1, 0)


def test_both_directions_of_a_vxlan_flow_meet(xdp) -> None:
    from scapy.layers.inet import TCP
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN
    reply = raw(tf.outer_eth() / IP(src=tf.OUTER_DST, dst=tf.OUTER_SRC) / UDP(sport=50001, dport=4789)
                / VXLAN(vni=tf.VNI, flags=0x08) / Ether() / IP(src=tf.INNER_DST, dst=tf.INNER_SRC)
                / TCP(sport=tf.INNER_DPORT, dport=tf.INNER_SPORT, flags="A"))
    xdp.run(tf.frames()["vxlan"][0], reply, reply)
    state = xdp.program.flow(INNER_KEY)
    assert sorted(state.packets) == [1, 2]


def test_depth_beyond_the_bound_is_counted_not_followed(xdp) -> None:
    assert xdp.run(tf.nested(WALK_STEPS - 1)) == []
    assert xdp.delta(Stat.WALK_DEPTH) == 1
    [record] = xdp.run(tf.nested(WALK_STEPS - 2))
    assert bytes(record.header.key) == bytes(INNER_KEY)


def test_udp_tunnel_ports_are_the_programs_options(make_harness) -> None:
    frame = raw(tf.outer_ip(UDP(sport=1, dport=9999) / tf.frames()["vxlan"][0][42:]))
    default = make_harness(ProgramOptions(), ports=("tcp:8080",))
    assert default.run(frame) == []
    custom = make_harness(ProgramOptions(udp_tunnels={9999: 1}), ports=("tcp:8080",))
    [record] = custom.run(frame)
    assert bytes(record.header.key) == bytes(INNER_KEY)


def _fuzzed(rng: random.Random, count: int) -> list[bytes]:
    """Tunnel frames with random bytes written over their encapsulation headers, and cut short."""
    frames = []
    for frame in ([f for f, _, _ in tf.frames().values()] + list(tf.service_headers().values())
                  + [f for f, _ in tf.no_ip_inside().values()]):
        for _ in range(count):
            mutated = bytearray(frame)
            for _ in range(rng.randrange(1, 4)):
                mutated[rng.randrange(12, min(len(mutated), 110))] = rng.randrange(256)
            frames.append(bytes(mutated[:rng.randrange(14, len(mutated) + 1)]))
    return frames


def test_fuzzed_tunnel_headers_pass_untouched_and_agree_with_python(make_harness) -> None:
    options = ProgramOptions(emit_undecided=True, max_undecided_payloads=4)
    kernel = make_harness(options, ports=("tcp:8080", "udp:4789"))
    python = PythonFlowTable(RuleSet().add_specs(("tcp:8080", "udp:4789"), ()), options)
    frames = _fuzzed(random.Random(11), 40)
    for frame in frames:
        [*emitted] = kernel.run(frame)   # asserts XDP_PASS and the frame unchanged
        ours = python.process(frame, 0)
        assert (ours is None) == (not emitted), frame.hex()
        if ours is not None:
            assert bytes(ours.header.key) == bytes(emitted[0].header.key), frame.hex()
    stats = python.stats()
    for stat in (Stat.PARSED, Stat.NOT_IP, Stat.TRUNCATED, Stat.TUNNELLED, Stat.WALK_DEPTH, Stat.FLOW_NEW):
        assert kernel.delta(stat) == stats[stat], stat
