"""Tunnelled frames crafted with scapy, shared by the decoder, walk, kernel
and lab tests: every one carries the same inner TCP segment
INNER_SRC:INNER_SPORT -> INNER_DST:INNER_DPORT, so a test can check the
innermost flow it decodes against these constants, independently of the code."""
from __future__ import annotations

from scapy.all import raw
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III
from scapy.contrib.geneve import GENEVE
from scapy.contrib.gtp import GTP_U_Header
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import GRE, Dot1Q, Ether
from scapy.layers.ppp import PPP, PPPoE
from scapy.layers.vxlan import VXLAN

OUTER_SRC, OUTER_DST = "192.0.2.1", "192.0.2.2"
OUTER_SRC6, OUTER_DST6 = "2001:db8::1", "2001:db8::2"
OUTER_MACS = ("02:00:00:00:00:01", "02:00:00:00:00:02")   # (src, dst) of the frame
INNER_MACS = ("02:00:00:00:01:01", "02:00:00:00:01:02")
INNER_SRC, INNER_DST = "10.20.0.1", "10.20.0.2"
INNER_SPORT, INNER_DPORT = 40001, 8080
PAYLOAD = b"GET / HTTP/1.1\r\n\r\n"
VNI = 4242


def outer_eth() -> Ether:
    return Ether(src=OUTER_MACS[0], dst=OUTER_MACS[1])


def inner_ip(flags: str = "PA") -> IP:
    return IP(src=INNER_SRC, dst=INNER_DST) / TCP(sport=INNER_SPORT, dport=INNER_DPORT, flags=flags) / PAYLOAD


def inner_eth(flags: str = "PA") -> Ether:
    return Ether(src=INNER_MACS[0], dst=INNER_MACS[1]) / inner_ip(flags)


def outer_ip(proto_layer) -> IP:
    return outer_eth() / IP(src=OUTER_SRC, dst=OUTER_DST) / proto_layer


def frames(flags: str = "PA") -> dict[str, tuple[bytes, tuple[str, ...], bool]]:
    """name -> (frame, Arkime's tunnel protocol names, has an inner Ethernet header)."""
    erspan3 = raw(ERSPAN_III(ver=2, vlan=7, session_id=1))  # 12 bytes, no platform subheader
    return {
        "gre": (raw(outer_ip(GRE(proto=0x0800) / inner_ip(flags))), ("gre",), False),
        "gre-keyed": (raw(outer_ip(GRE(key_present=1, key=77, seqnum_present=1, sequence_number=5, proto=0x0800)
                                   / inner_ip(flags))), ("gre",), False),
        "gre-teb": (raw(outer_ip(GRE(proto=0x6558) / inner_eth(flags))), ("gre",), True),
        "gre-ppp": (raw(outer_ip(GRE(proto=0x880B) / b"\xff\x03\x00\x21" / inner_ip(flags))), ("gre", "ppp"), False),
        "erspan-i": (raw(outer_ip(GRE(proto=0x88BE) / inner_eth(flags))), ("gre",), True),
        "erspan-ii": (raw(outer_ip(GRE(proto=0x88BE, seqnum_present=1) / ERSPAN_II(vlan=7, session_id=1)
                                   / inner_eth(flags))), ("gre",), True),
        "erspan-iii": (raw(outer_ip(GRE(proto=0x22EB, seqnum_present=1)) / erspan3 / raw(inner_eth(flags))),
                       ("gre",), True),
        "vxlan": (raw(outer_ip(UDP(sport=50000, dport=4789) / VXLAN(vni=VNI, flags=0x08) / inner_eth(flags))),
                  ("vxlan",), True),
        "geneve": (raw(outer_ip(UDP(sport=50000, dport=6081) / GENEVE(vni=VNI, proto=0x6558) / inner_eth(flags))),
                   ("geneve",), True),
        "gtp-u": (raw(outer_ip(UDP(sport=2152, dport=2152) / GTP_U_Header(teid=9, gtp_type=255) / inner_ip(flags))),
                  ("gtp",), False),
        "mpls": (raw(outer_eth() / MPLS(label=16, s=0) / MPLS(label=17, s=1) / inner_ip(flags)), ("mpls",), False),
        "pppoe": (raw(outer_eth() / PPPoE(sessionid=3) / PPP(proto=0x0021) / inner_ip(flags)), ("pppoe",), False),
        "ipip": (raw(outer_ip(inner_ip(flags))), (), False),
        "ip6ip": (raw(outer_eth() / IPv6(src=OUTER_SRC6, dst=OUTER_DST6) / inner_ip(flags)), (), False),
        "vlan-vxlan": (raw(outer_eth() / Dot1Q(vlan=12) / IP(src=OUTER_SRC, dst=OUTER_DST)
                           / UDP(sport=50000, dport=4789) / VXLAN(vni=VNI, flags=0x08) / inner_eth(flags)),
                       ("vxlan",), True),
    }


def service_headers(flags: str = "PA") -> dict[str, bytes]:
    """name -> a frame whose inner segment follows a header Arkime steps over
    without naming a tunnel (no outer fields): NSH and Cisco metadata."""
    nsh = b"\x0f\xc6\x01\x01" + b"\x00\x00\x01\xff" + bytes(16)   # version 0, 6 words, MD type 1, next: IPv4
    cisco = b"\x01\x01\x00\x01\x00\x05\x08\x00"                  # SGT 5, then IPv4
    return {"nsh": raw(Ether(src=OUTER_MACS[0], dst=OUTER_MACS[1], type=0x894F) / nsh / inner_ip(flags)),
            "cisco-metadata": raw(Ether(src=OUTER_MACS[0], dst=OUTER_MACS[1], type=0x8909) / cisco / inner_ip(flags))}


def no_ip_inside() -> dict[str, tuple[bytes, int]]:
    """name -> (a tunnel whose inside is no IP packet, the protocol of its IP header)."""
    arp = b"\x08\x06" + b"\x00" * 28
    return {"gre": (raw(outer_ip(GRE(proto=0x0806) / arp[2:])), 47),
            "vxlan": (raw(outer_ip(UDP(sport=5, dport=4789) / VXLAN(vni=VNI, flags=0x08) / (bytes(12) + arp))), 17)}


def nested(depth: int) -> bytes:
    """IP-in-IP `depth` times around the inner segment, over Ethernet."""
    packet = inner_ip()
    for _ in range(depth):
        packet = IP(src=OUTER_SRC, dst=OUTER_DST) / packet
    return raw(outer_eth() / packet)
