"""The real XDP program (BPF_PROG_TEST_RUN) counts frames that carry no IP
packet on flows keyed as Arkime keys its non-IP sessions; keys and counts
written here from Arkime's rules, by hand."""
from __future__ import annotations

import socket

import pytest
from scapy.all import raw
from scapy.layers.l2 import ARP, LLC, Dot1Q, Dot3, Ether

from sensor.kernel.contract import EtherKind, FlowKey, Stat, Verdict

pytestmark = pytest.mark.kernel

A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def ether_key(kind: EtherKind, addr: bytes = b"", ethertype: int = 0) -> FlowKey:
    key = FlowKey()
    key.addr[:len(addr)] = list(addr)
    key.port[0] = socket.htons(ethertype)
    key.proto, key.family = kind, 0
    return key


def test_arp_request_and_reply_for_one_address_are_one_flow(xdp) -> None:
    request = raw(Ether(src=A, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=A, psrc="10.0.0.1", pdst="10.0.0.9"))
    reply = raw(Ether(src=B, dst=A) / ARP(op=2, hwsrc=B, psrc="10.0.0.9", pdst="10.0.0.1"))
    assert xdp.run(request, reply) == []    # counted, never sent up
    state = xdp.program.flow(ether_key(EtherKind.ARP, socket.inet_aton("10.0.0.9")))
    assert list(state.packets) == [2, 0] and list(state.bytes) == [len(request) + len(reply), 0]
    assert (state.ethertype, state.verdict) == (0x0806, Verdict.IGNORED)
    assert xdp.delta(Stat.NOT_IP) == 2 and xdp.delta(Stat.FLOW_NEW) == 1 and xdp.delta(Stat.EMITTED) == 0


def test_other_ethertypes_by_mac_pair_and_ethertype_with_their_vlans(xdp) -> None:
    frame = raw(Ether(src=A, dst=B) / Dot1Q(vlan=33, type=0x88B5) / (b"\x00" * 46))
    xdp.run(frame, frame)
    state = xdp.program.flow(ether_key(EtherKind.UNKNOWN, raw(Ether(src=A, dst=B))[:12], 0x88B5))
    assert list(state.packets) == [2, 0] and list(state.vlan) == [33, 0] and state.ethertype == 0x88B5


def test_unreadable_802_3_by_mac_pair_with_its_length_as_ethertype(xdp) -> None:
    frame = raw(Dot3(src=A, dst=B) / LLC(dsap=0x42, ssap=0x42, ctrl=3) / (b"\x00" * 35))
    xdp.run(frame)
    state = xdp.program.flow(ether_key(EtherKind.CORRUPT, raw(Ether(src=A, dst=B))[:12]))
    assert list(state.packets) == [1, 0] and state.ethertype == 38     # LLC 3 + 35 bytes


def test_beyond_arkimes_vlan_bound_no_flow(xdp) -> None:
    frame = raw(Ether(src=A, dst=B) / (Dot1Q(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3)) / Dot1Q(vlan=4)
                / Dot1Q(vlan=5) / Dot1Q(vlan=6) / Dot1Q(vlan=7) / Dot1Q(vlan=8) / Dot1Q(vlan=9, type=0x88B5)
                / (b"\x00" * 46))
    xdp.run(frame)
    assert xdp.delta(Stat.NOT_IP) == 1 and xdp.delta(Stat.FLOW_NEW) == 0
