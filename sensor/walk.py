"""The header walk's vocabulary and its encapsulation steps, in Python.

bpf/parse.h walks a frame's headers in the XDP program; this module is the
same walk for userspace, built on the names bpf/sensor.h defines (mirrored in
sensor/kernel/contract.py): `walk_frame` is what the kernel does, step for
step (the Python pre-filter uses it), and the `*_step` functions are the one
reading of each tunnel header, shared with the packet decoder
(sensor/packet.py), which decodes the same layers with Arkime's stricter
checks. Sans-I/O; every loop is bounded by a SENSOR_* depth.

A step takes the frame and the offset of its header and returns where the
next header starts and what it is, as an ethertype (ETHERTYPE_TEB: an
Ethernet header), or None when the bytes are not that encapsulation.
"""
from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from sensor.kernel.contract import (
    GTP_EXT_MAX, IPPROTO_UDP, IPV6_EXT_MAX, MPLS_MAX, VLAN_MAX, WALK_OFFSET_MAX, WALK_STEPS, Tunnel, UdpTunnel, WalkResult,
)

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_TEB = 0x6558          # Transparent Ethernet Bridging: an Ethernet header follows
ETHERTYPE_VLAN = (0x8100, 0x88A8)
ETHERTYPE_MPLS = (0x8847, 0x8848)
ETHERTYPE_PPPOE = 0x8864        # PPPoE session stage
ETHERTYPE_PPP = 0x880B          # PPP, as GRE carries it (PPTP)
ETHERTYPE_ERSPAN = 0x88BE       # ERSPAN type II (type I when GRE has no sequence number)
ETHERTYPE_ERSPAN3 = 0x22EB
ETHERTYPE_NSH = 0x894F          # Network Service Header (RFC 8300)
ETHERTYPE_CISCO_METADATA = 0x8909

IPPROTO_IPIP = 4
IPPROTO_IPV6 = 41
IPPROTO_GRE = 47
IPV6_EXTENSIONS = frozenset((0, 43, 44, 51, 60))
_IPV6_FRAGMENT, _IPV6_AH = 44, 51

# Arkime's UDP tunnel ports (by destination port, as Arkime dispatches them).
DEFAULT_UDP_TUNNELS: Mapping[int, UdpTunnel] = MappingProxyType({
    4789: UdpTunnel.VXLAN, 4790: UdpTunnel.VXLAN_GPE, 6081: UdpTunnel.GENEVE, 2152: UdpTunnel.GTP,
})
# The names Arkime adds to a session's `protocol` for each tunnel bit.
TUNNEL_PROTOCOLS: tuple[tuple[Tunnel, str], ...] = (
    (Tunnel.GRE, "gre"), (Tunnel.PPPOE, "pppoe"), (Tunnel.PPP, "ppp"), (Tunnel.MPLS, "mpls"),
    (Tunnel.GTP, "gtp"), (Tunnel.VXLAN, "vxlan"), (Tunnel.VXLAN_GPE, "vxlan-gpe"), (Tunnel.GENEVE, "geneve"),
)

_U16 = struct.Struct("!H")
_HH = struct.Struct("!HH")
_PPPOE = struct.Struct("!BBxxHH")     # ver/type, code, (session), length, PPP protocol
_GRE_C, _GRE_R, _GRE_K, _GRE_S, _GRE_A = 0x8000, 0x4000, 0x2000, 0x1000, 0x0080
# NSH next protocol -> ethertype
_NSH_NEXT = {1: ETHERTYPE_IPV4, 2: ETHERTYPE_IPV6, 3: ETHERTYPE_TEB, 4: ETHERTYPE_NSH, 5: ETHERTYPE_MPLS[0]}


def tunnel_protocols(bits: int) -> list[str]:
    """Arkime's protocol names for a set of Tunnel bits."""
    return [name for bit, name in TUNNEL_PROTOCOLS if bits & bit]


def parse_udp_tunnels(specs: str | Mapping[int, str | UdpTunnel]) -> dict[int, UdpTunnel]:
    """`vxlan:4789,geneve:6081,gtp:2152` (or a mapping port -> name) as a port
    table; a clear ValueError for a name or port that is not one."""
    items = specs.items() if isinstance(specs, Mapping) else (
        _split_spec(part) for part in specs.split(",") if part.strip())
    table: dict[int, UdpTunnel] = {}
    for port, kind in items:
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"UDP tunnel port {port!r} is not a port number (1-65535)")
        if not isinstance(kind, UdpTunnel):
            try:
                kind = UdpTunnel[str(kind).upper().replace("-", "_")]
            except KeyError:
                names = ", ".join(t.name.lower().replace("_", "-") for t in UdpTunnel if t)
                raise ValueError(f"unknown UDP tunnel {kind!r} (one of {names})") from None
        table[port] = kind
    return table


def _split_spec(part: str) -> tuple[int, str]:
    name, _, port = part.strip().partition(":")
    if not port.strip().isdigit():
        raise ValueError(f"UDP tunnel {part.strip()!r} is not NAME:PORT (e.g. vxlan:4789)")
    return int(port), name.strip()


# -- the steps: one reading of each encapsulation header ----------------------------

def mpls_step(frame: bytes, off: int) -> tuple[int, int] | None:
    """An MPLS label stack (at most MPLS_MAX labels) over IPv4/IPv6, told by the version nibble."""
    for _ in range(MPLS_MAX):
        if off + 5 > len(frame):
            return None
        bottom = frame[off + 2] & 1
        off += 4
        if bottom:
            version = frame[off] >> 4
            if version == 4:
                return off, ETHERTYPE_IPV4
            if version == 6:
                return off, ETHERTYPE_IPV6
            return None
    return None


def pppoe_step(frame: bytes, off: int) -> tuple[int, int] | None:
    """A PPPoE session header (version/type 0x11, code 0) carrying PPP IPv4/IPv6."""
    if off + 8 > len(frame):
        return None
    ver_type, code, length, proto = _PPPOE.unpack_from(frame, off)
    if ver_type != 0x11 or code != 0 or length < 2 or length > len(frame) - off - 6:
        return None
    return _ppp_protocol(proto, off + 8)


def ppp_step(frame: bytes, off: int) -> tuple[int, int] | None:
    """PPP as GRE carries it: optional HDLC address/control (ff 03), a 1-byte
    (compressed, odd) or 2-byte protocol."""
    if off + 2 > len(frame):
        return None
    if frame[off] == 0xFF:
        off += 2
        if off + 2 > len(frame):
            return None
    if frame[off] & 1:
        return _ppp_protocol(frame[off], off + 1)
    return _ppp_protocol(_U16.unpack_from(frame, off)[0], off + 2)


def _ppp_protocol(proto: int, off: int) -> tuple[int, int] | None:
    if proto == 0x21:
        return off, ETHERTYPE_IPV4
    if proto == 0x57:
        return off, ETHERTYPE_IPV6
    return None


def nsh_step(frame: bytes, off: int) -> tuple[int, int] | None:
    """A Network Service Header (version 0): its length (in 4-byte words, at
    least the 8-byte base and path headers), then what its next protocol names."""
    if off + 8 > len(frame) or frame[off] >> 6:
        return None
    size = (frame[off + 1] & 0x3F) * 4
    nxt = _NSH_NEXT.get(frame[off + 3])
    if size < 8 or nxt is None or off + size > len(frame):
        return None
    return off + size, nxt


def cisco_metadata_step(frame: bytes, off: int) -> tuple[int, int] | None:
    """Cisco metadata (the security group tag): 6 bytes, then the ethertype of what follows."""
    if off + 8 > len(frame):
        return None
    return off + 8, _U16.unpack_from(frame, off + 6)[0]


def erspan_step(frame: bytes, off: int, ethertype: int) -> tuple[int, int, int] | None:
    """ERSPAN type II (version 1, 8 bytes) or III (version 2, 12 bytes, 8 more
    with the platform subheader) over Ethernet; also returns the VLAN it names."""
    three = ethertype == ETHERTYPE_ERSPAN3
    size = 12 if three else 8
    if off + size > len(frame) or frame[off] >> 4 != (2 if three else 1):
        return None
    vlan = _U16.unpack_from(frame, off)[0] & 0x0FFF
    if three and _U16.unpack_from(frame, off + 10)[0] & 1:
        size += 8
        if off + size > len(frame):
            return None
    return off + size, ETHERTYPE_TEB, vlan


def gre_step(frame: bytes, off: int) -> tuple[int, int] | None:
    """GRE version 0 (RFC 2784/2890: checksum, key, sequence) or 1 (PPTP);
    ERSPAN type I is GRE 0x88be without a sequence number. None for routing
    (deprecated), other versions and protocol 0 (keepalives)."""
    if off + 4 > len(frame):
        return None
    flags, proto = _HH.unpack_from(frame, off)
    version = flags & 7
    if version == 0:
        if flags & _GRE_R:
            return None
        off += 4 + (4 if flags & _GRE_C else 0) + (4 if flags & _GRE_K else 0) + (4 if flags & _GRE_S else 0)
    elif version == 1:
        off += 8 + (4 if flags & _GRE_S else 0) + (4 if flags & _GRE_A else 0)
    else:
        return None
    if proto == 0 or off > len(frame):
        return None
    if proto == ETHERTYPE_ERSPAN and not flags & _GRE_S:
        proto = ETHERTYPE_TEB
    return off, proto


def udp_tunnel_step(kind: int, frame: bytes, off: int, length: int) -> tuple[int, int, int] | None:
    """The tunnel header at the start of a UDP payload of `length` bytes (the
    UDP length, cut to what was captured): (next offset, next ethertype, VNI
    or 0). None: not this tunnel, the datagram is plain UDP."""
    if kind == UdpTunnel.GTP:
        return _gtp(frame, off, length)
    if length <= 8 or off + 8 > len(frame):
        return None
    b0, b1 = frame[off], frame[off + 1]
    vni = (frame[off + 4] << 16) | (frame[off + 5] << 8) | frame[off + 6]
    if kind == UdpTunnel.VXLAN:
        if b0 & 0x77 or b1 & 0xB7:
            return None
        return off + 8, ETHERTYPE_TEB, vni if b0 & 0x08 else 0
    if kind == UdpTunnel.VXLAN_GPE:
        if b0 & 0xF0 or b1:
            return None
        nxt = {1: ETHERTYPE_IPV4, 2: ETHERTYPE_IPV6, 3: ETHERTYPE_TEB}.get(frame[off + 3])
        return None if nxt is None else (off + 8, nxt, vni if b0 & 0x08 else 0)
    if kind == UdpTunnel.GENEVE:
        if b0 & 0xC0 or b1 & 0x3F:
            return None
        proto = _U16.unpack_from(frame, off + 2)[0]
        inner = off + 8 + (b0 & 0x3F) * 4
        if proto == 0 or inner > off + length:
            return None
        return inner, proto, vni
    return None


def _gtp(frame: bytes, off: int, length: int) -> tuple[int, int, int] | None:
    """GTP-U version 1 G-PDU (type 0xff) whose length field matches the datagram,
    with optional sequence/N-PDU/extension fields and up to GTP_EXT_MAX extension headers."""
    if length <= 12 or off + 12 > len(frame):
        return None
    flags = frame[off]
    if flags & 0xF0 != 0x30 or frame[off + 1] != 0xFF or _U16.unpack_from(frame, off + 2)[0] != length - 8:
        return None
    end = off + length
    pos, nxt = off + 8, 0
    if flags & 7:
        nxt = frame[pos + 3]
        pos += 4
    for _ in range(GTP_EXT_MAX):
        if not nxt:
            break
        if pos + 1 > min(end, len(frame)) or frame[pos] == 0:
            return None
        pos += frame[pos] * 4
        if pos > min(end, len(frame)):
            return None
        nxt = frame[pos - 1]
    if nxt or pos >= min(end, len(frame)):
        return None
    return pos, ETHERTYPE_IPV6 if frame[pos] >> 4 == 6 else ETHERTYPE_IPV4, 0


# -- the kernel's walk, step for step ------------------------------------------------

@dataclass(slots=True)
class Walk:
    """What bpf/parse.h's walk_frame() learns: the innermost IP packet."""
    family: int = 0
    proto: int = 0
    src: bytes = b""            # 16 bytes, IPv4 zero-padded
    dst: bytes = b""
    l4_off: int = 0             # the innermost L4 header (a later fragment: its payload)
    l4_end: int = 0
    vlan: list[int] = field(default_factory=lambda: [0, 0])
    tunnels: int = 0
    frag_id: int = 0            # as the kernel stores it (native-order read of the network bytes)
    first_fragment: bool = False
    next_off: int = 0           # a tunnel's inside: where it starts ...
    next_type: int = 0          # ... and its ethertype (ETHERTYPE_TEB: Ethernet)


_ZERO12 = bytes(12)
_IPV4 = struct.Struct("!BxHHHxB2x4s4s")      # ver/ihl, tot_len, id, frag, proto, src, dst
_IPV6_FIXED = struct.Struct("!4xHB")          # payload_len, nexthdr


def walk_frame(frame: bytes, udp_tunnels: Mapping[int, int] = DEFAULT_UDP_TUNNELS) -> tuple[WalkResult, Walk]:
    """walk_frame() of bpf/parse.h: Ethernet and every encapsulation down to
    the innermost IP header, at most WALK_STEPS headers."""
    w = Walk()
    n = len(frame)
    off, kind = 0, ETHERTYPE_TEB
    vlans = 0
    for _ in range(WALK_STEPS):
        if kind == ETHERTYPE_TEB:
            if off + 14 > n:
                return WalkResult.TRUNCATED, w
            kind = _U16.unpack_from(frame, off + 12)[0]
            off += 14
            for _ in range(VLAN_MAX):
                if kind not in ETHERTYPE_VLAN:
                    break
                if off + 4 > n:
                    return WalkResult.TRUNCATED, w
                tci, kind = _HH.unpack_from(frame, off)
                vlans = _met_vlan(w, vlans, tci & 0x0FFF)
                off += 4
            continue
        if kind == ETHERTYPE_IPV4 or kind == ETHERTYPE_IPV6:
            result = (_ipv4 if kind == ETHERTYPE_IPV4 else _ipv6)(frame, off, w, udp_tunnels)
            if result is not None:
                return result, w
            # a tunnel: its inside starts at w.next_off, of ethertype w.next_type
            off, kind = w.next_off, w.next_type
            continue
        if kind in ETHERTYPE_MPLS:
            step, bit = mpls_step(frame, off), Tunnel.MPLS
        elif kind == ETHERTYPE_PPPOE:
            step, bit = pppoe_step(frame, off), Tunnel.PPPOE
        elif kind == ETHERTYPE_PPP:
            step, bit = ppp_step(frame, off), Tunnel.PPP
        elif kind == ETHERTYPE_NSH:
            step, bit = nsh_step(frame, off), Tunnel.NONE
        elif kind == ETHERTYPE_CISCO_METADATA:
            step, bit = cisco_metadata_step(frame, off), Tunnel.NONE
        elif kind == ETHERTYPE_ERSPAN or kind == ETHERTYPE_ERSPAN3:
            erspan = erspan_step(frame, off, kind)
            step, bit = (erspan[:2] if erspan else None), Tunnel.NONE
            if erspan and erspan[2]:
                vlans = _met_vlan(w, vlans, erspan[2])
        else:
            return WalkResult.NOT_IP, w
        if step is None:
            return WalkResult.NOT_IP, w
        off, kind = step
        w.tunnels |= bit
    return WalkResult.DEPTH_LIMIT, w


def _met_vlan(w: Walk, vlans: int, vid: int) -> int:
    """walk_vlan(): a VLAN id met on the way; the walk keeps the first two. Returns the count met."""
    if vlans < 2:
        w.vlan[vlans] = vid
    return vlans + 1


def _ipv4(frame: bytes, off: int, w: Walk, udp_tunnels: Mapping[int, int]) -> WalkResult | None:
    if off + 20 > len(frame):
        return WalkResult.TRUNCATED
    ver_ihl, tot_len, ip_id, frag, proto, src, dst = _IPV4.unpack_from(frame, off)
    ihl = (ver_ihl & 0x0F) * 4
    if ihl < 20:
        return WalkResult.TRUNCATED
    w.family, w.proto = 4, proto
    w.src, w.dst = src + _ZERO12, dst + _ZERO12
    w.frag_id = ((ip_id & 0xFF) << 8) | (ip_id >> 8)  # the raw network-order u16, read natively
    w.first_fragment = False
    w.l4_off, w.l4_end = off + ihl, off + tot_len
    if frag & 0x1FFF:
        return WalkResult.LATER_FRAGMENT
    if frag & 0x2000:
        w.first_fragment = True
        return WalkResult.FLOW      # a fragment is never decapsulated: its flow is this one
    return _l4(frame, w, udp_tunnels)


def _ipv6(frame: bytes, off: int, w: Walk, udp_tunnels: Mapping[int, int]) -> WalkResult | None:
    n = len(frame)
    if off + 40 > n:
        return WalkResult.TRUNCATED
    payload_len, nexthdr = _IPV6_FIXED.unpack_from(frame, off)
    w.family = 6
    w.src, w.dst = frame[off + 8:off + 24], frame[off + 24:off + 40]
    w.l4_end = off + 40 + payload_len
    w.first_fragment = False
    off += 40
    for _ in range(IPV6_EXT_MAX):
        if nexthdr not in IPV6_EXTENSIONS:
            break
        if off + 8 > n:
            return WalkResult.TRUNCATED
        following = frame[off]
        if nexthdr == _IPV6_FRAGMENT:
            w.frag_id = int.from_bytes(frame[off + 4:off + 8], "little")
            frag = _U16.unpack_from(frame, off + 2)[0]
            if frag & 0xFFF8:
                w.proto, w.l4_off = following, off + 8
                return WalkResult.LATER_FRAGMENT
            w.first_fragment = bool(frag & 1)
            off += 8
        elif nexthdr == _IPV6_AH:
            off += (frame[off + 1] + 2) * 4
        else:
            off += (frame[off + 1] + 1) * 8
        nexthdr = following
    if nexthdr in IPV6_EXTENSIONS:
        return WalkResult.EXT_LIMIT
    w.proto, w.l4_off = nexthdr, off
    if w.first_fragment:
        return WalkResult.FLOW
    return _l4(frame, w, udp_tunnels)


def _l4(frame: bytes, w: Walk, udp_tunnels: Mapping[int, int]) -> WalkResult | None:
    """The end of an unfragmented IP header: a tunnel (None, with the next
    header's offset and ethertype in w.next_off / w.next_type) or the flow."""
    proto, off = w.proto, w.l4_off
    if off >= WALK_OFFSET_MAX:
        return WalkResult.FLOW
    if proto == IPPROTO_IPIP or proto == IPPROTO_IPV6:
        w.next_off, w.next_type = off, ETHERTYPE_IPV4 if proto == IPPROTO_IPIP else ETHERTYPE_IPV6
        w.tunnels |= Tunnel.IP
        return None
    if proto == IPPROTO_GRE:
        step = gre_step(frame, off)
        if step is None:
            return WalkResult.FLOW
        w.next_off, w.next_type = step
        w.tunnels |= Tunnel.GRE
        return None
    if proto == IPPROTO_UDP and off + 8 <= len(frame):
        kind = udp_tunnels.get(_U16.unpack_from(frame, off + 2)[0])
        if kind:
            udp_len = _U16.unpack_from(frame, off + 4)[0]
            length = min(udp_len, len(frame) - off) - 8
            step = udp_tunnel_step(kind, frame, off + 8, length)
            if step is not None:
                w.next_off, w.next_type = step[0], step[1]
                w.tunnels |= UDP_TUNNEL_BITS[kind]
                return None
    return WalkResult.FLOW


UDP_TUNNEL_BITS = {UdpTunnel.VXLAN: Tunnel.VXLAN, UdpTunnel.VXLAN_GPE: Tunnel.VXLAN_GPE,
                    UdpTunnel.GENEVE: Tunnel.GENEVE, UdpTunnel.GTP: Tunnel.GTP}
