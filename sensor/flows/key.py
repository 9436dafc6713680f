"""Flow identity: the canonical lookup key, VLAN keying, and the Community ID v1 hash."""
from __future__ import annotations

import base64
import hashlib
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

from sensor.packet import IPPROTO_ICMP, IPPROTO_ICMPV6, Packet

# (ip_protocol, (keyed VLAN id,) or (), endpoint a ip, a port, endpoint b ip, b port), with
# (a ip, a port) <= (b ip, b port) as strings: both directions of a flow map to
# one key. The order is only canonical, not numeric; Community ID orders numerically.
FlowKey = tuple[int, tuple[int, ...], str, int, str, int]


# ICMP types that come in request/reply pairs map to their counterpart, so both
# directions hash alike; other types are one-way (Zeek's rule, adopted by the spec).
_ICMP_COUNTERPART = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
_ICMPV6_COUNTERPART = {
    128: 129, 129: 128, 130: 131, 131: 130, 133: 134, 134: 133,
    135: 136, 136: 135, 139: 140, 140: 139, 144: 145, 145: 144,
}

_SEED = struct.Struct("!H")
_PROTO_PAD_PORTS = struct.Struct("!BxHH")
_PROTO_PAD = struct.Struct("!Bx")


VLAN_ID_MAX = 4095


@dataclass(frozen=True, slots=True)
class VlanKeying:
    """Arkime's `sessionIdTracking=vlan`: flows are keyed on their first VLAN id
    too, so overlapping address spaces on different VLANs stay apart. `collapse`
    maps a VLAN id to the id its flows are keyed on (Arkime's [vlan-vni-collapse]:
    a flow a SPAN port shows on several VLANs stays one). The kernel keys alike
    (flow_key.vlan, the vlan_collapse map)."""

    collapse: Mapping[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for vlan, keyed in self.collapse.items():
            if not (0 <= vlan <= VLAN_ID_MAX and 0 <= keyed <= VLAN_ID_MAX):
                raise ValueError(f"VLAN collapse {vlan} -> {keyed}: VLAN ids are 0..{VLAN_ID_MAX}")

    def key_of(self, vlan: tuple[int, ...]) -> int:
        """The id a frame with these VLAN tags (outermost first) is keyed on."""
        first = vlan[0] if vlan else 0
        return self.collapse.get(first, first)


def flow_key(packet: Packet, vlan_key: VlanKeying | None = None) -> FlowKey:
    """The direction-free key of the flow this packet belongs to.

    Like Arkime, VLAN ids are not part of the key by default: a flow that a
    SPAN port shows on two VLANs (before and after a router) is one session.
    """
    vlan = (vlan_key.key_of(packet.vlan),) if vlan_key is not None else ()
    src = (packet.src_ip, packet.src_port)
    dst = (packet.dst_ip, packet.dst_port)
    if src <= dst:
        return (packet.ip_protocol, vlan, packet.src_ip, packet.src_port, packet.dst_ip, packet.dst_port)
    return (packet.ip_protocol, vlan, packet.dst_ip, packet.dst_port, packet.src_ip, packet.src_port)


def community_id(src_ip: str, dst_ip: str, sport: int | None, dport: int | None, proto: int, seed: int = 0) -> str:
    """Community ID v1 ("1:<base64 sha1>") per the Corelight spec.

    For ICMP/ICMPv6 pass the ICMP type as `sport` and the code as `dport`.
    For other protocols pass ports 0 to get Arkime's value, None for the spec's.
    """
    family = socket.AF_INET6 if ":" in src_ip else socket.AF_INET
    return community_id_packed(socket.inet_pton(family, src_ip), socket.inet_pton(family, dst_ip),
                               sport, dport, proto, seed)


def community_id_packed(saddr: bytes, daddr: bytes, sport: int | None, dport: int | None, proto: int,
                        seed: int = 0) -> str:
    """`community_id` of addresses already packed (4 or 16 bytes each): a
    kernel flow's key holds them so, and a flood's records skip the text round trip."""
    if proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        counterparts = _ICMP_COUNTERPART if proto == IPPROTO_ICMP else _ICMPV6_COUNTERPART
        icmp_type, icmp_code = sport or 0, dport or 0
        # A one-way type keeps its code; Arkime still orders the endpoints (the spec would not).
        sport, dport = (icmp_type, counterparts[icmp_type]) if icmp_type in counterparts else (icmp_type, icmp_code)
        has_ports = True
    else:
        # Ports given are hashed whatever the protocol: Arkime (db.c) hashes two, zeros when the
        # protocol has none; None leaves them out (the spec's form for port-less protocols).
        has_ports = sport is not None and dport is not None
    if (saddr, sport or 0) > (daddr, dport or 0):
        saddr, daddr, sport, dport = daddr, saddr, dport, sport
    tail = _PROTO_PAD_PORTS.pack(proto, sport, dport) if has_ports else _PROTO_PAD.pack(proto)
    digest = hashlib.sha1(_SEED.pack(seed) + saddr + daddr + tail).digest()
    return "1:" + base64.b64encode(digest).decode("ascii")
