"""The decoder takes tunnels apart: the innermost flow, Arkime's outer fields,
bounded depth; and it agrees with the kernel's walk (sensor.walk) frame by frame."""
from __future__ import annotations

import pytest
from scapy.all import raw
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import GRE

from sensor.kernel.contract import WALK_STEPS, Tunnel, UdpTunnel, WalkResult
from sensor.packet import DepthLimit, NotIp, decode_frame
from sensor.walk import parse_udp_tunnels, tunnel_protocols, walk_frame
from tests import tunnelframes as tf


@pytest.mark.parametrize("name", sorted(tf.frames()))
def test_the_innermost_flow_and_its_outer_fields(name: str) -> None:
    frame, protocols, inner_ethernet = tf.frames()[name]
    packet = decode_frame(frame, 1.0)
    assert (packet.src_ip, packet.src_port, packet.dst_ip, packet.dst_port) == (
        tf.INNER_SRC, tf.INNER_SPORT, tf.INNER_DST, tf.INNER_DPORT)
    assert packet.payload == tf.PAYLOAD
    assert packet.frame_len == len(frame)
    assert packet.outer is not None
    assert tuple(tunnel_protocols(packet.outer.tunnels)) == protocols
    expected_ips = {"mpls": ("", ""), "pppoe": ("", ""), "ip6ip": (tf.OUTER_SRC6, tf.OUTER_DST6)}
    assert (packet.outer.src_ip, packet.outer.dst_ip) == expected_ips.get(name, (tf.OUTER_SRC, tf.OUTER_DST))
    # Arkime files an outer header's first address (its destination) as srcOuterMac.
    macs = (tf.OUTER_MACS[1], tf.OUTER_MACS[0]) if inner_ethernet else ("", "")
    assert (packet.outer.src_mac, packet.outer.dst_mac) == macs
    assert packet.outer.vni == (tf.VNI if name in ("vxlan", "geneve", "vlan-vxlan") else 0)


@pytest.mark.parametrize("name", sorted(tf.service_headers()))
def test_service_headers_are_stepped_over_without_outer_fields(name: str) -> None:
    frame = tf.service_headers()[name]
    packet = decode_frame(frame, 1.0)
    assert (packet.src_ip, packet.src_port, packet.dst_ip, packet.dst_port, packet.payload) == (
        tf.INNER_SRC, tf.INNER_SPORT, tf.INNER_DST, tf.INNER_DPORT, tf.PAYLOAD)
    assert packet.outer is None     # Arkime names no tunnel and keeps no outer address for them
    result, walk = walk_frame(frame)
    assert (result, walk.l4_off, walk.tunnels) == (WalkResult.FLOW, len(frame) - len(tf.PAYLOAD) - 20, 0)  # 20: the TCP header


def test_erspan_names_its_vlan() -> None:
    assert decode_frame(tf.frames()["erspan-ii"][0], 0.0).vlan == (7,)
    assert decode_frame(tf.frames()["erspan-iii"][0], 0.0).vlan == (7,)
    assert decode_frame(tf.frames()["vlan-vxlan"][0], 0.0).vlan == (12,)


def test_a_plain_packet_has_no_outer() -> None:
    assert decode_frame(raw(tf.outer_eth() / tf.inner_ip()), 0.0).outer is None


def test_depth_is_bounded() -> None:
    # Ethernet + IP headers: WALK_STEPS of them are walked, one more is refused.
    ok = decode_frame(tf.nested(WALK_STEPS - 2), 0.0)
    assert (ok.src_ip, ok.dst_port) == (tf.INNER_SRC, tf.INNER_DPORT)
    with pytest.raises(DepthLimit):
        decode_frame(tf.nested(WALK_STEPS - 1), 0.0)
    result, _ = walk_frame(tf.nested(WALK_STEPS - 1))
    assert result == WalkResult.DEPTH_LIMIT


def test_not_a_tunnel_is_plain_udp() -> None:
    # A VXLAN port with a payload that is not VXLAN (reserved bits set): plain UDP, as in Arkime.
    frame = raw(tf.outer_eth() / IP(src=tf.OUTER_SRC, dst=tf.OUTER_DST) / UDP(sport=1, dport=4789) / (b"\xff" * 16))
    packet = decode_frame(frame, 0.0)
    assert (packet.ip_protocol, packet.dst_port, packet.outer) == (17, 4789, None)


def test_a_tunnel_carrying_no_ip_is_its_ip_headers_flow_by_addresses() -> None:
    # Arkime's corrupt-ip: the frame is the last IP header's, no ports, no payload.
    for frame, proto in tf.no_ip_inside().values():
        packet = decode_frame(frame, 0.0)
        assert (packet.ip_protocol, packet.src_ip, packet.src_port, packet.dst_ip, packet.dst_port, packet.payload) == (
            proto, tf.OUTER_SRC, 0, tf.OUTER_DST, 0, b"")
        result, walk = walk_frame(frame)
        assert (result, walk.family, walk.proto, walk.src[:4], walk.dst[:4]) == (
            WalkResult.NOT_IP, 4, proto, bytes((192, 0, 2, 1)), bytes((192, 0, 2, 2)))
    with pytest.raises(NotIp):
        decode_frame(raw(tf.outer_eth() / GRE(proto=0x0806)), 0.0)   # no IP header at all: not IP


def test_udp_tunnel_ports_are_configurable() -> None:
    frame = raw(tf.outer_ip(UDP(sport=1, dport=9999) / tf.frames()["vxlan"][0][42:]))
    assert decode_frame(frame, 0.0).dst_port == 9999
    table = parse_udp_tunnels("vxlan:9999")
    assert table == {9999: UdpTunnel.VXLAN}
    assert decode_frame(frame, 0.0, udp_tunnels=table).dst_port == tf.INNER_DPORT
    assert decode_frame(frame, 0.0, udp_tunnels=table).outer.tunnels == Tunnel.VXLAN


@pytest.mark.parametrize("spec", ["vxlan", "nope:4789", "vxlan:0", "vxlan:70000"])
def test_bad_udp_tunnel_specs_are_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_udp_tunnels(spec)


@pytest.mark.parametrize("name", sorted(tf.frames()))
def test_the_kernel_walk_finds_the_same_innermost_packet(name: str) -> None:
    frame = tf.frames()[name][0]
    result, walk = walk_frame(frame)
    assert result == WalkResult.FLOW
    assert (walk.family, walk.proto, walk.src[:4], walk.dst[:4]) == (
        4, 6, bytes(map(int, tf.INNER_SRC.split("."))), bytes(map(int, tf.INNER_DST.split("."))))
    assert walk.tunnels == decode_frame(frame, 0.0).outer.tunnels
