"""decode_frame / decode_ip on frames crafted with scapy; expectations are written by hand."""
from __future__ import annotations

import struct

import pytest
from scapy.all import raw
from scapy.layers.dot11 import Dot11, RadioTap
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR
from scapy.layers.inet6 import (
    IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting,
)
from scapy.layers.l2 import ARP, LLC, SNAP, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether

from sensor.packet import (
    ExtensionHeaderLimit, MalformedHeader, NotIp, Packet, PacketError, Truncated, UnsupportedLinktype,
    decode_frame, decode_ip,
)

ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def test_ethernet_ipv4_tcp_fields() -> None:
    frame = raw(ETH / IP(src="10.1.2.3", dst="192.168.7.9", ttl=33, id=4242)
                / TCP(sport=40000, dport=443, seq=123456789, ack=987654321, flags="PA", window=1024)
                / b"hello")
    packet = decode_frame(frame, 1700000000.25)
    assert packet == Packet(
        timestamp=1700000000.25, frame_len=len(frame), vlan=(), ip_version=4,
        src_ip="10.1.2.3", dst_ip="192.168.7.9", ip_protocol=6, ttl=33,
        src_port=40000, dst_port=443, tcp_flags=0x18, seq=123456789, ack=987654321,
        window=1024, payload=b"hello", ip_id=4242,
    )


def test_tcp_options_and_ae_flag() -> None:
    frame = raw(ETH / IP() / TCP(flags="SN", options=[("MSS", 1460), ("NOP", None), ("WScale", 7)]) / b"x")
    packet = decode_frame(frame, 0.0)
    assert packet.tcp_flags == 0x02 | 0x100
    assert packet.payload == b"x"


def test_ethernet_padding_is_not_payload() -> None:
    frame = raw(ETH / IP(src="1.1.1.1", dst="2.2.2.2") / UDP(sport=53, dport=5353) / b"ab") + b"\x00" * 16
    assert len(frame) == 60
    packet = decode_frame(frame, 0.0)
    assert packet.payload == b"ab"
    assert (packet.src_port, packet.dst_port) == (53, 5353)
    assert packet.frame_len == 60


def test_tcp_padding_is_not_payload() -> None:
    frame = raw(ETH / IP() / TCP(flags="A")) + b"\xee" * 6
    assert decode_frame(frame, 0.0).payload == b""


def test_ipv4_options_are_skipped() -> None:
    frame = raw(ETH / IP(options=[IPOption_RR()]) / UDP(sport=1, dport=2) / b"data")
    assert frame[14] & 0x0F > 5  # the IHL really grew
    packet = decode_frame(frame, 0.0)
    assert (packet.src_port, packet.dst_port, packet.payload) == (1, 2, b"data")


def test_wire_len_is_kept() -> None:
    frame = raw(ETH / IP() / UDP() / b"abc")
    assert decode_frame(frame, 0.0, wire_len=1514).frame_len == 1514


def test_vlan_and_qinq() -> None:
    one = raw(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / Dot1Q(vlan=100) / IP() / UDP(sport=7, dport=8))
    two = raw(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / Dot1AD(vlan=300) / Dot1Q(vlan=4000, prio=5) / IP() / UDP(sport=7, dport=8))
    assert decode_frame(one, 0.0).vlan == (100,)
    packet = decode_frame(two, 0.0)
    assert packet.vlan == (300, 4000)
    assert packet.dst_port == 8


def test_three_vlan_tags_are_refused() -> None:
    frame = raw(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / Dot1Q(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / IP() / UDP())
    with pytest.raises(NotIp, match="VLAN"):
        decode_frame(frame, 0.0)


def test_arp_is_not_ip() -> None:
    with pytest.raises(NotIp, match="0x0806"):
        decode_frame(raw(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / ARP()), 0.0)


def test_ipv6_extension_header_walk() -> None:
    frame = raw(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IPv6(src="2001:db8::1", dst="2001:db8::2", hlim=9)
                / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting()
                / UDP(sport=1000, dport=2000) / b"six")
    packet = decode_frame(frame, 0.0)
    assert (packet.ip_version, packet.src_ip, packet.dst_ip, packet.ttl) == (6, "2001:db8::1", "2001:db8::2", 9)
    assert (packet.ip_protocol, packet.src_port, packet.dst_port, packet.payload) == (17, 1000, 2000, b"six")
    assert not packet.is_fragment


def test_ipv6_authentication_header_length_unit() -> None:
    udp = raw(UDP(sport=5, dport=6, chksum=0) / b"ah!")
    # AH: next header, length in 4-byte units minus 2, reserved, SPI, sequence, 12-byte ICV: 24 bytes.
    ah = struct.pack("!BBHII", 17, 24 // 4 - 2, 0, 0x1234, 1) + b"\x00" * 12
    ip6 = raw(IPv6(src="::1", dst="::2", nh=51, plen=len(ah) + len(udp)))
    packet = decode_ip(ip6 + ah + udp, 0.0)
    assert (packet.ip_protocol, packet.src_port, packet.dst_port, packet.payload) == (17, 5, 6, b"ah!")


def test_ipv6_too_many_extension_headers() -> None:
    chain = IPv6()
    for _ in range(9):
        chain = chain / IPv6ExtHdrDestOpt()
    with pytest.raises(ExtensionHeaderLimit):
        decode_frame(raw(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / chain / UDP()), 0.0)


def test_ipv6_fragments() -> None:
    first = decode_frame(raw(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IPv6() / IPv6ExtHdrFragment(id=77, m=1, offset=0)
                             / UDP(sport=9, dport=10) / (b"A" * 16)), 0.0)
    assert (first.is_fragment, first.more_fragments, first.frag_offset, first.ip_id) == (True, True, 0, 77)
    # A fragment's data is left whole for reassembly (sensor.flows.defrag): no ports yet.
    assert (first.ip_protocol, first.src_port, first.dst_port) == (17, 0, 0)
    assert first.payload[:4] == b"\x00\x09\x00\x0a"
    later = decode_frame(raw(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IPv6() / IPv6ExtHdrFragment(id=77, m=0, offset=3, nh=17) / (b"B" * 8)), 0.0)
    assert (later.is_fragment, later.more_fragments, later.frag_offset, later.ip_id) == (True, False, 24, 77)
    assert (later.src_port, later.dst_port, later.payload) == (0, 0, b"B" * 8)


def test_ipv4_fragments() -> None:
    first = decode_frame(raw(ETH / IP(id=555, flags="MF", frag=0) / UDP(sport=4000, dport=53) / (b"q" * 16)), 0.0)
    assert (first.is_fragment, first.more_fragments, first.frag_offset, first.ip_id) == (True, True, 0, 555)
    assert (first.src_port, first.dst_port, first.payload[:4]) == (0, 0, b"\x0f\xa0\x00\x35")
    later = decode_frame(raw(ETH / IP(id=555, frag=185, proto=17) / (b"r" * 40)), 0.0)
    assert (later.is_fragment, later.more_fragments, later.frag_offset) == (True, False, 1480)
    assert (later.src_port, later.dst_port, later.payload) == (0, 0, b"r" * 40)
    whole = decode_frame(raw(ETH / IP(flags="DF") / UDP()), 0.0)
    assert (whole.is_fragment, whole.more_fragments) == (False, False)


def test_icmp_keeps_protocol_and_message() -> None:
    packet = decode_frame(raw(ETH / IP(src="9.9.9.9", dst="8.8.8.8") / ICMP(type=8, code=0, id=1, seq=2)), 0.0)
    assert (packet.ip_protocol, packet.src_port, packet.dst_port) == (1, 0, 0)
    assert packet.payload[:2] == b"\x08\x00"
    assert len(packet.payload) == 8


def test_zero_total_length_means_captured_length() -> None:
    frame = bytearray(raw(ETH / IP() / UDP(sport=1, dport=2, len=0) / b"tso-data"))
    frame[16:18] = b"\x00\x00"  # IPv4 total length 0, as in TSO captures
    assert decode_frame(bytes(frame), 0.0).payload == b"tso-data"


@pytest.mark.parametrize("udp_len", [0, 7])
def test_udp_length_below_its_header_is_malformed(udp_len: int) -> None:
    """arkime_synthetic: Arkime files such a datagram as corrupt-ip, in no session."""
    frame = raw(ETH / IP(src="10.9.8.1", dst="10.9.8.2") / UDP(sport=40100, dport=9999, len=udp_len) / b"udplenok")
    with pytest.raises(MalformedHeader, match="UDP length field"):
        decode_frame(frame, 0.0)


@pytest.mark.parametrize("cut", [0, 10, 14 + 12, 14 + 20 + 10])
def test_truncated_headers(cut: int) -> None:
    frame = raw(ETH / IP() / TCP() / b"payload")
    with pytest.raises(Truncated):
        decode_frame(frame[:cut], 0.0)


def test_snaplen_cut_payload_is_kept() -> None:
    frame = raw(ETH / IP() / TCP() / b"0123456789")
    assert decode_frame(frame[:-4], 0.0).payload == b"012345"


def test_malformed_headers() -> None:
    bad_ihl = bytearray(raw(ETH / IP() / UDP()))
    bad_ihl[14] = 0x43
    with pytest.raises(MalformedHeader):
        decode_frame(bytes(bad_ihl), 0.0)
    bad_offset = bytearray(raw(ETH / IP() / TCP()))
    bad_offset[14 + 20 + 12] = 0x40  # data offset 4
    with pytest.raises(MalformedHeader):
        decode_frame(bytes(bad_offset), 0.0)


def test_errors_share_a_base_class() -> None:
    for error in (Truncated, NotIp, MalformedHeader, UnsupportedLinktype, ExtensionHeaderLimit):
        assert issubclass(error, PacketError)


@pytest.mark.parametrize("linktype", [101, 12, 228])
def test_raw_ipv4_linktypes(linktype: int) -> None:
    packet = decode_frame(raw(IP(src="5.6.7.8", dst="1.2.3.4") / UDP(sport=11, dport=22) / b"r"), 0.0, linktype)
    assert (packet.src_ip, packet.dst_port, packet.payload) == ("5.6.7.8", 22, b"r")


def test_raw_ipv6_and_decode_ip() -> None:
    data = raw(IPv6(src="fe80::1", dst="fe80::2") / TCP(sport=1, dport=2, flags="S"))
    assert decode_frame(data, 0.0, 101).src_ip == "fe80::1"
    assert decode_ip(data, 0.0).tcp_flags == 0x02
    with pytest.raises(NotIp):
        decode_ip(b"\x50" + bytes(39), 0.0)


def test_linux_cooked_v1_and_v2() -> None:
    v1 = decode_frame(raw(CookedLinux(proto=0x0800) / IP(src="3.3.3.3") / UDP(dport=99)), 0.0, 113)
    v2 = decode_frame(raw(CookedLinuxV2(proto=0x86DD) / IPv6(src="::3") / UDP(dport=98)), 0.0, 276)
    assert (v1.src_ip, v1.dst_port) == ("3.3.3.3", 99)
    assert (v2.src_ip, v2.dst_port) == ("::3", 98)


@pytest.mark.parametrize("family", [struct.pack("<I", 2), struct.pack(">I", 2)])
def test_null_loopback_ipv4(family: bytes) -> None:
    packet = decode_frame(family + raw(IP(dst="127.0.0.1") / UDP(dport=7)), 0.0, 0)
    assert (packet.dst_ip, packet.dst_port) == ("127.0.0.1", 7)


def test_openbsd_loop_has_the_family_in_network_order() -> None:
    packet = decode_frame(struct.pack(">I", 24) + raw(IPv6(dst="::1") / UDP(dport=9)), 0.0, 108)
    assert (packet.dst_ip, packet.dst_port) == ("::1", 9)


def test_null_loopback_ipv6_and_unknown_family() -> None:
    assert decode_frame(struct.pack("<I", 30) + raw(IPv6(dst="::1") / UDP()), 0.0, 0).dst_ip == "::1"
    with pytest.raises(NotIp):
        decode_frame(struct.pack("<I", 7) + raw(IP()), 0.0, 0)


def test_unknown_linktype() -> None:
    with pytest.raises(UnsupportedLinktype, match="147"):
        decode_frame(b"\x00" * 40, 0.0, 147)


def test_radiotap_80211_data_frame() -> None:
    """80211http: a radiotap header, a 24-byte 802.11 data header, LLC/SNAP, then IPv4."""
    ip = raw(IP(src="172.5.5.113", dst="14.17.32.211") / TCP(sport=49417, dport=80, flags="S"))
    frame = raw(RadioTap() / Dot11(type=2, subtype=0, FCfield="to_DS") / LLC() / SNAP(code=0x0800)) + ip
    packet = decode_frame(frame, 0.0, 127)
    assert (packet.src_ip, packet.dst_port, packet.tcp_flags, packet.frame_len) == ("172.5.5.113", 80, 0x02, len(frame))
    qos = raw(RadioTap() / Dot11(type=2, subtype=8) / b"\x00\x00" / LLC() / SNAP(code=0x0800)) + ip
    assert decode_frame(qos, 0.0, 127).dst_ip == "14.17.32.211"
    with pytest.raises(NotIp, match="not a data frame"):
        decode_frame(raw(RadioTap() / Dot11(type=0, subtype=8)) + b"\x00" * 40, 0.0, 127)


def test_frame_relay_nlpid_and_ethertype() -> None:
    """icmp-frame-relay: address 0x1861, then an ethertype; RFC 2427 uses 0x03CC."""
    ip = raw(IP(src="10.0.0.1", dst="10.0.0.2") / ICMP())
    assert decode_frame(b"\x18\x61\x08\x00" + ip, 0.0, 107).ip_protocol == 1
    assert decode_frame(b"\x18\x61\x03\xcc" + ip, 0.0, 107).dst_ip == "10.0.0.2"


def test_nflog_payload_tlv() -> None:
    """nflog: header (AF_INET, version 0, group), TLVs padded to 4 bytes, NFULA_PAYLOAD (9) holds the packet."""
    ip = raw(IP(src="10.10.10.10", dst="52.43.228.156") / TCP(sport=54064, dport=80)) + b"\xee"
    prefix_tlv = struct.pack("<HH", 7, 10) + b"abc" + b"\x00"  # length 7, padded to 8
    payload_tlv = struct.pack("<HH", 4 + len(ip), 9) + ip
    packet = decode_frame(b"\x02\x00\x00\x28" + prefix_tlv + payload_tlv, 0.0, 239)
    assert (packet.src_ip, packet.src_port, packet.dst_port) == ("10.10.10.10", 54064, 80)
    with pytest.raises(NotIp, match="without a packet payload"):
        decode_frame(b"\x02\x00\x00\x28" + prefix_tlv, 0.0, 239)
