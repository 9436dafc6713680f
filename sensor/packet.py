"""Decode one captured frame into a `Packet` (L2 to L4), without I/O.

Every decoder reads fixed headers with precompiled `struct.Struct` objects:
this is the userspace hot path, so no scapy/dpkt and no per-field objects.

Contract:
- IP packets always decode to a `Packet`, whatever the IP protocol. TCP, UDP
  and SCTP carry ports; other protocols (ICMP, GRE, ...) and IP fragments
  have ports 0 and `payload` holds the bytes after the IP headers (for ICMP:
  the whole ICMP message, type and code first; for a fragment its data,
  which sensor.flows.defrag reassembles and decode_datagram decodes).
- Tunnels are taken apart as the XDP program's header walk does (bpf/parse.h,
  sensor/walk.py, the same step functions): GRE (keyed, PPP-in-GRE, ERSPAN
  I/II/III), VXLAN, VXLAN-GPE, Geneve and GTP-U on their UDP ports, MPLS,
  PPPoE, IP-in-IP and IPv6-in-IPv4, at most WALK_STEPS headers deep. The
  `Packet` is the innermost IP packet; `outer` says what it came out of
  (Arkime's outer fields). A fragment is never decapsulated.
- Anything that is not IP, or whose headers are cut short or malformed (a UDP
  length below 8 included, unless both IP and UDP lengths are 0: TSO/GRO),
  raises a `PacketError` subclass; the caller counts it by type and goes on.
- `payload` stops at the IP total length (IPv4) or payload length (IPv6), so
  Ethernet padding never becomes data. A zero IPv4 total length (TSO/GRO
  captures) or a zero IPv6 payload length (jumbogram) means "up to the end of
  the captured bytes".
"""
from __future__ import annotations

import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from sensor.kernel.contract import IPPROTO_TCP, IPPROTO_UDP, MPLS_MAX, VLAN_MAX, WALK_OFFSET_MAX, WALK_STEPS, TcpFlag, Tunnel
from sensor.walk import (
    DEFAULT_UDP_TUNNELS, ETHERTYPE_CISCO_METADATA, ETHERTYPE_ERSPAN, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_ERSPAN3,
    ETHERTYPE_MPLS, ETHERTYPE_NSH, ETHERTYPE_PPP, ETHERTYPE_PPPOE, ETHERTYPE_TEB, IPPROTO_GRE, IPPROTO_IPIP,
    IPPROTO_IPV6, UDP_TUNNEL_BITS, cisco_metadata_step, erspan_step, gre_step, mpls_step, nsh_step, ppp_step,
    pppoe_step, udp_tunnel_step,
)

LINKTYPE_NULL = 0
LINKTYPE_LOOP = 108  # OpenBSD loopback: LINKTYPE_NULL with the family in network order
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_RAW_OPENBSD = 12  # DLT_RAW value on some BSDs, same format as 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
LINKTYPE_FRELAY = 107
LINKTYPE_IEEE802_11_RADIOTAP = 127
LINKTYPE_NFLOG = 239

_VLAN_ETHERTYPES = (0x8100, 0x88A8)
MAX_VLAN_TAGS = VLAN_MAX

IPPROTO_ICMP = 1
IPPROTO_ICMPV6 = 58
IPPROTO_SCTP = 132

# IPv6 extension headers we walk through, and how many at most (a bounded loop,
# like the XDP parser, so a crafted chain cannot make us spin).
MAX_IPV6_EXTENSION_HEADERS = 8
_IPV6_HOP_BY_HOP, _IPV6_ROUTING, _IPV6_FRAGMENT, _IPV6_AH, _IPV6_DEST_OPTS = 0, 43, 44, 51, 60
_IPV6_SIMPLE_EXTENSIONS = frozenset((_IPV6_HOP_BY_HOP, _IPV6_ROUTING, _IPV6_DEST_OPTS))

# TCP flag bits as found in `Packet.tcp_flags` (AE, formerly NS, is bit 8): the
# names of bpf/sensor.h, as plain ints (IntFlag arithmetic is slow on the hot path).
TCP_FIN = int(TcpFlag.FIN)
TCP_SYN = int(TcpFlag.SYN)
TCP_RST = int(TcpFlag.RST)
TCP_PSH = int(TcpFlag.PSH)
TCP_ACK = int(TcpFlag.ACK)
TCP_URG = int(TcpFlag.URG)
TCP_ECE = int(TcpFlag.ECE)
TCP_CWR = int(TcpFlag.CWR)
TCP_AE = int(TcpFlag.AE)

# Address families seen in the 4-byte header of LINKTYPE_NULL (host byte order
# of the capturing machine): AF_INET is 2 everywhere, AF_INET6 differs by OS.
_NULL_AF_INET = 2
_NULL_AF_INET6 = frozenset((10, 24, 28, 30))

_ETHERTYPE = struct.Struct("!H")
_VLAN_TAG = struct.Struct("!HH")
_IPV4 = struct.Struct("!BxHHHBB2x4s4s")
_IPV6 = struct.Struct("!4xHBB16s16s")
_IPV6_EXT = struct.Struct("!BB")
_IPV6_FRAG = struct.Struct("!BxHI")
_TCP = struct.Struct("!HHIIBBH")
_UDP = struct.Struct("!HHH")
_PORTS = struct.Struct("!HH")
_NULL_FAMILY_LE = struct.Struct("<I")
_NULL_FAMILY_BE = struct.Struct(">I")
_LE16 = struct.Struct("<H")
_NFLOG_TLV = struct.Struct("<HH")

_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6
_inet_ntop = socket.inet_ntop

# The common frame in one unpack: Ethernet II without VLAN, IPv4 without
# options, then 20 bytes of TCP header (for UDP: ports, length, checksum).
_ETH_IPV4_L4 = struct.Struct("!12xHBxHHHBB2x4s4sHHIIBBH")
_FAST_MIN_LEN = _ETH_IPV4_L4.size  # 54

# inet_ntop costs more than the rest of the fast path together, and a link
# carries few distinct addresses: their text is kept, up to a bound.
_ADDRESS_TEXT: dict[bytes, str] = {}
_ADDRESS_TEXT_MAX = 1 << 14
_known_address_text = _ADDRESS_TEXT.get
_new_packet = object.__new__


def _address_text(raw: bytes) -> str:
    """inet_ntop of a 4- or 16-byte address, memoized."""
    text = _ADDRESS_TEXT.get(raw)
    if text is None:
        if len(_ADDRESS_TEXT) >= _ADDRESS_TEXT_MAX:
            _ADDRESS_TEXT.clear()
        text = _ADDRESS_TEXT[raw] = _inet_ntop(_AF_INET if len(raw) == 4 else _AF_INET6, raw)
    return text


class PacketError(ValueError):
    """A frame that cannot be decoded into an IP packet."""


class Truncated(PacketError):
    """A header is cut short by the end of the captured bytes (snaplen or corruption)."""


class NotIp(PacketError):
    """The frame carries no IPv4/IPv6 packet (ARP, LLDP, too many VLAN tags, ...)."""


class MalformedHeader(PacketError):
    """A header field is impossible (bad IP version, IHL < 5, TCP data offset < 5, ...)."""


class UnsupportedLinktype(PacketError):
    """The capture's link type is not one this decoder knows."""


class ExtensionHeaderLimit(PacketError):
    """An IPv6 packet has more extension headers than MAX_IPV6_EXTENSION_HEADERS."""


class DepthLimit(PacketError):
    """More than WALK_STEPS headers (Ethernet, MPLS, PPPoE, PPP, ERSPAN, IP) before the innermost packet."""


@dataclass(frozen=True, slots=True)
class Outer:
    """What a tunnelled packet came out of, as Arkime records it: the tunnels'
    bits, the IP and Ethernet headers just outside the innermost ones ("" when
    there is none), the VXLAN/Geneve network id (0 when none)."""

    tunnels: int = 0
    src_ip: str = ""
    dst_ip: str = ""
    src_mac: str = ""
    dst_mac: str = ""
    vni: int = 0


class _Layers:
    """The walk so far, on the general path: headers taken, VLAN ids, tunnels,
    and the IP and Ethernet headers met (for the outer fields)."""

    __slots__ = ("vlan", "steps", "tunnels", "vni", "ips", "macs", "udp_tunnels")

    def __init__(self, steps: int = 0, udp_tunnels: Mapping[int, int] = DEFAULT_UDP_TUNNELS) -> None:
        self.vlan: tuple[int, ...] = ()
        self.steps = steps
        self.tunnels = 0
        self.vni = 0
        self.ips: list[tuple[str, str]] = []
        self.macs: list[int] = []       # offsets of the Ethernet headers met
        self.udp_tunnels = udp_tunnels

    def step(self) -> None:
        self.steps += 1
        if self.steps > WALK_STEPS:
            raise DepthLimit(f"more than {WALK_STEPS} headers before the innermost packet")

    def outer(self, frame: bytes) -> Outer | None:
        if len(self.ips) < 2 and len(self.macs) < 2 and not self.tunnels:
            return None
        src_ip, dst_ip = self.ips[-2] if len(self.ips) >= 2 else ("", "")
        src_mac = dst_mac = ""
        if len(self.macs) >= 2:
            at = self.macs[-2]
            # Arkime files the first address (the destination) as the "source" outer MAC.
            src_mac, dst_mac = _mac_text(frame[at:at + 6]), _mac_text(frame[at + 6:at + 12])
        return Outer(self.tunnels, src_ip, dst_ip, src_mac, dst_mac, self.vni)


def _mac_text(raw: bytes) -> str:
    return raw.hex(":")


@dataclass(slots=True)
class Packet:
    """One decoded IP packet; ports are 0 when the protocol or fragment has none."""

    # decode_frame's fast path fills every field by hand: a new field must be set there too.
    timestamp: float
    frame_len: int
    vlan: tuple[int, ...]
    ip_version: int
    src_ip: str
    dst_ip: str
    ip_protocol: int
    ttl: int
    src_port: int = 0
    dst_port: int = 0
    tcp_flags: int = 0
    seq: int = 0
    ack: int = 0
    window: int = 0
    payload: bytes = b""
    ip_id: int = 0
    is_fragment: bool = False
    frag_offset: int = 0
    more_fragments: bool = False
    outer: Outer | None = None  # set when the packet came out of a tunnel
    trailer: int = 0            # captured bytes past the IP packet (Ethernet padding); set for protocols without ports


def decode_frame(
    frame: bytes,
    timestamp: float,
    linktype: int = LINKTYPE_ETHERNET,
    wire_len: int | None = None,
    udp_tunnels: Mapping[int, int] = DEFAULT_UDP_TUNNELS,
) -> Packet:
    """Decode a captured frame of the given pcap link type.

    `wire_len` is the original length on the wire (defaults to len(frame)).
    `udp_tunnels` maps UDP destination ports to the UdpTunnel they carry.
    Raises a `PacketError` subclass for anything that is not a decodable IP packet.
    """
    end = len(frame)
    frame_len = end if wire_len is None else wire_len
    if linktype == LINKTYPE_ETHERNET:
        if end >= _FAST_MIN_LEN:
            # The fast path: Ethernet, no VLAN, IPv4 without options or fragmentation, TCP
            # or UDP with sane lengths. Anything else goes down the general path, which
            # decodes it or rejects it with the right error.
            (ethertype, ver_ihl, total_len, ip_id, frag, ttl, proto, src, dst,
             sport, dport, seq, ack, offset_byte, flags, window) = _ETH_IPV4_L4.unpack_from(frame)
            if ethertype == ETHERTYPE_IPV4 and ver_ihl == 0x45 and not frag & 0x3FFF:
                if total_len and 14 + total_len < end:
                    end = 14 + total_len
                payload = None
                if proto == IPPROTO_TCP:
                    header_end = 34 + ((offset_byte >> 4) << 2)
                    if 54 <= header_end <= end:
                        flags |= (offset_byte & 1) << 8
                        payload = frame[header_end:end]
                elif proto == IPPROTO_UDP and dport not in udp_tunnels:
                    udp_len = seq >> 16  # the UDP length sits where TCP's sequence number starts
                    if udp_len >= 8 and end >= 42:
                        if udp_len <= end - 34:
                            end = 34 + udp_len
                        seq = ack = flags = window = 0
                        payload = frame[42:end]
                if payload is not None:
                    # Packet(...) with 19 arguments costs more than filling its slots.
                    packet = _new_packet(Packet)
                    packet.timestamp = timestamp
                    packet.frame_len = frame_len
                    packet.vlan = ()
                    packet.ip_version = 4
                    packet.src_ip = _known_address_text(src) or _address_text(src)
                    packet.dst_ip = _known_address_text(dst) or _address_text(dst)
                    packet.ip_protocol = proto
                    packet.ttl = ttl
                    packet.src_port = sport
                    packet.dst_port = dport
                    packet.tcp_flags = flags
                    packet.seq = seq
                    packet.ack = ack
                    packet.window = window
                    packet.payload = payload
                    packet.ip_id = ip_id
                    packet.is_fragment = False
                    packet.frag_offset = 0
                    packet.more_fragments = False
                    packet.outer = None
                    packet.trailer = 0
                    return packet
        return _decode_ethernet(frame, 0, timestamp, frame_len, _Layers(udp_tunnels=udp_tunnels))
    # Other link types: the XDP program sees them behind an Ethernet header built
    # for it (sensor.offline), which counts as its first step.
    layers = _Layers(steps=1, udp_tunnels=udp_tunnels)
    if linktype in (LINKTYPE_RAW, LINKTYPE_RAW_OPENBSD, LINKTYPE_IPV4, LINKTYPE_IPV6):
        return _decode_ip_at(frame, 0, timestamp, frame_len, layers)
    if linktype == LINKTYPE_LINUX_SLL:
        return _decode_ethertype(frame, 16, _ethertype_at(frame, 14, 16), timestamp, frame_len, layers)
    if linktype == LINKTYPE_LINUX_SLL2:
        return _decode_ethertype(frame, 20, _ethertype_at(frame, 0, 20), timestamp, frame_len, layers)
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        return _decode_null(frame, timestamp, frame_len, layers)
    if linktype == LINKTYPE_IEEE802_11_RADIOTAP:
        return _decode_radiotap(frame, timestamp, frame_len, layers)
    if linktype == LINKTYPE_NFLOG:
        return _decode_nflog(frame, timestamp, frame_len, layers)
    if linktype == LINKTYPE_FRELAY:
        return _decode_frame_relay(frame, timestamp, frame_len, layers)
    raise UnsupportedLinktype(
        f"pcap linktype {linktype} is not supported (use 0, 1, 12, 101, 107, 113, 127, 228, 229, 239 or 276)")


def decode_ip(data: bytes, timestamp: float, wire_len: int | None = None) -> Packet:
    """Decode a bare IPv4/IPv6 packet (raw-IP link types); the version nibble decides."""
    return _decode_ip_at(data, 0, timestamp, len(data) if wire_len is None else wire_len, _Layers(steps=1))


def _ethertype_at(frame: bytes, offset: int, header_len: int) -> int:
    if len(frame) < header_len:
        raise Truncated(f"link header needs {header_len} bytes, frame has {len(frame)}")
    return _ETHERTYPE.unpack_from(frame, offset)[0]


def _decode_ethernet(frame: bytes, start: int, timestamp: float, frame_len: int, layers: _Layers) -> Packet:
    """An Ethernet header at `start` (the frame's, or one a tunnel carries), with up to VLAN_MAX tags."""
    layers.step()
    if len(frame) < start + 14:
        raise Truncated(f"Ethernet header needs 14 bytes, {len(frame) - start} captured")
    layers.macs.append(start)
    ethertype = _ETHERTYPE.unpack_from(frame, start + 12)[0]
    offset = start + 14
    tags = 0
    while ethertype in _VLAN_ETHERTYPES:
        if tags == MAX_VLAN_TAGS:
            raise NotIp(f"more than {MAX_VLAN_TAGS} VLAN tags")
        if len(frame) < offset + 4:
            raise Truncated(f"VLAN tag at offset {offset} is cut short")
        tci, ethertype = _VLAN_TAG.unpack_from(frame, offset)
        if start == 0 or not layers.vlan:  # Arkime: every tag of the frame, the first one inside
            layers.vlan += (tci & 0x0FFF,)
        tags += 1
        offset += 4
    return _decode_ethertype(frame, offset, ethertype, timestamp, frame_len, layers)


def _decode_ethertype(
    frame: bytes, offset: int, ethertype: int, timestamp: float, frame_len: int, layers: _Layers
) -> Packet:
    if ethertype == ETHERTYPE_IPV4:
        return _decode_ipv4(frame, offset, timestamp, frame_len, layers)
    if ethertype == ETHERTYPE_IPV6:
        return _decode_ipv6(frame, offset, timestamp, frame_len, layers)
    if ethertype == ETHERTYPE_TEB:
        return _decode_ethernet(frame, offset, timestamp, frame_len, layers)
    if ethertype < 0x0600:
        raise NotIp(f"802.3 frame (length field {ethertype}), not Ethernet II: not IP")
    if ethertype in ETHERTYPE_MPLS:
        step, bit, name = mpls_step(frame, offset), Tunnel.MPLS, f"MPLS stack (at most {MPLS_MAX} labels)"
    elif ethertype == ETHERTYPE_PPPOE:
        step, bit, name = pppoe_step(frame, offset), Tunnel.PPPOE, "PPPoE session"
    elif ethertype == ETHERTYPE_PPP:
        step, bit, name = ppp_step(frame, offset), Tunnel.PPP, "PPP"
    elif ethertype == ETHERTYPE_NSH:
        step, bit, name = nsh_step(frame, offset), Tunnel.NONE, "NSH"
    elif ethertype == ETHERTYPE_CISCO_METADATA:
        step, bit, name = cisco_metadata_step(frame, offset), Tunnel.NONE, "Cisco metadata"
    elif ethertype == ETHERTYPE_ERSPAN or ethertype == ETHERTYPE_ERSPAN3:
        erspan = erspan_step(frame, offset, ethertype)
        step, bit, name = (erspan[:2] if erspan else None), Tunnel.NONE, "ERSPAN"
        if erspan and erspan[2] and erspan[2] not in layers.vlan:
            layers.vlan += (erspan[2],)
    else:
        raise NotIp(f"ethertype 0x{ethertype:04x} is not IP")
    layers.step()
    if step is None:
        raise NotIp(f"{name} header at offset {offset} carries no IP packet")
    layers.tunnels |= bit
    return _decode_ethertype(frame, step[0], step[1], timestamp, frame_len, layers)


def _decode_null(frame: bytes, timestamp: float, frame_len: int, layers: _Layers) -> Packet:
    if len(frame) < 4:
        raise Truncated(f"loopback header needs 4 bytes, frame has {len(frame)}")
    families = (_NULL_FAMILY_LE.unpack_from(frame)[0], _NULL_FAMILY_BE.unpack_from(frame)[0])
    if _NULL_AF_INET in families:
        return _decode_ipv4(frame, 4, timestamp, frame_len, layers)
    if not _NULL_AF_INET6.isdisjoint(families):
        return _decode_ipv6(frame, 4, timestamp, frame_len, layers)
    raise NotIp(f"loopback address family {families[0]} is not IP")


# 802.11 data frames: frame control byte 0 of a data (0x08) or QoS data (0x88) frame.
_DOT11_DATA, _DOT11_QOS_DATA = 0x08, 0x88
_LLC_SNAP = b"\xaa\xaa\x03\x00\x00\x00"
_FRELAY_NLPID_IP = 0x03CC  # RFC 2427 header: UI control 0x03, NLPID 0xCC = IPv4
_NFLOG_PAYLOAD = 9  # NFULA_PAYLOAD: the packet, from its network header on
_NFLOG_AF_INET, _NFLOG_AF_INET6 = 2, 10


def _decode_radiotap(frame: bytes, timestamp: float, frame_len: int, layers: _Layers) -> Packet:
    """802.11 data frames with LLC/SNAP behind a radiotap header, as Arkime reads them."""
    if len(frame) < 4:
        raise Truncated(f"radiotap header needs 4 bytes, frame has {len(frame)}")
    if frame[0] != 0:
        raise MalformedHeader(f"radiotap version {frame[0]} is not 0")
    mac = _LE16.unpack_from(frame, 2)[0]
    if len(frame) < mac + 2:
        raise Truncated("802.11 header is cut short")
    kind, flags = frame[mac], frame[mac + 1]
    if kind not in (_DOT11_DATA, _DOT11_QOS_DATA):
        raise NotIp(f"802.11 frame control 0x{kind:02x} is not a data frame")
    # 24-byte MAC header; a fourth address when both DS bits are set; QoS control.
    snap = mac + 24 + (6 if flags & 0x03 == 0x03 else 0) + (2 if kind == _DOT11_QOS_DATA else 0)
    if len(frame) < snap + 8:
        raise Truncated("802.11 LLC/SNAP header is cut short")
    if frame[snap:snap + 6] != _LLC_SNAP:
        raise NotIp("802.11 data frame without an LLC/SNAP header: not IP")
    return _decode_ethertype(frame, snap + 8, _ETHERTYPE.unpack_from(frame, snap + 6)[0], timestamp, frame_len, layers)


def _decode_frame_relay(frame: bytes, timestamp: float, frame_len: int, layers: _Layers) -> Packet:
    """Frame relay: 2-byte address, then RFC 2427's 0x03CC for IPv4, else an ethertype."""
    kind = _ethertype_at(frame, 2, 4)
    if kind == _FRELAY_NLPID_IP:
        return _decode_ipv4(frame, 4, timestamp, frame_len, layers)
    return _decode_ethertype(frame, 4, kind, timestamp, frame_len, layers)


def _decode_nflog(frame: bytes, timestamp: float, frame_len: int, layers: _Layers) -> Packet:
    """Linux NFLOG: a 4-byte header (family, version, group), then TLVs; the packet is in NFULA_PAYLOAD."""
    if len(frame) < 4:
        raise Truncated(f"NFLOG header needs 4 bytes, frame has {len(frame)}")
    family = frame[0]
    if frame[1] != 0:
        raise MalformedHeader(f"NFLOG version {frame[1]} is not 0")
    pos = 4
    while pos + 4 <= len(frame):
        length, kind = _NFLOG_TLV.unpack_from(frame, pos)
        if length < 4 or pos + length > len(frame):
            raise Truncated(f"NFLOG TLV at offset {pos} claims {length} bytes, {len(frame) - pos} left")
        if kind & 0x7FFF == _NFLOG_PAYLOAD:
            if family == _NFLOG_AF_INET:
                return _decode_ipv4(frame, pos + 4, timestamp, frame_len, layers)
            if family == _NFLOG_AF_INET6:
                return _decode_ipv6(frame, pos + 4, timestamp, frame_len, layers)
            raise NotIp(f"NFLOG address family {family} is not IP")
        pos += (length + 3) & ~3
    raise NotIp("NFLOG record without a packet payload")


def _decode_ip_at(data: bytes, offset: int, timestamp: float, frame_len: int, layers: _Layers) -> Packet:
    if len(data) <= offset:
        raise Truncated("no IP header: the frame is empty")
    version = data[offset] >> 4
    if version == 4:
        return _decode_ipv4(data, offset, timestamp, frame_len, layers)
    if version == 6:
        return _decode_ipv6(data, offset, timestamp, frame_len, layers)
    raise NotIp(f"IP version {version} is neither 4 nor 6")


def _decode_ipv4(frame: bytes, offset: int, timestamp: float, frame_len: int, layers: _Layers) -> Packet:
    layers.step()
    if len(frame) < offset + 20:
        raise Truncated(f"IPv4 header needs 20 bytes, {len(frame) - offset} captured")
    ver_ihl, total_len, ip_id, frag, ttl, proto, src, dst = _IPV4.unpack_from(frame, offset)
    header_len = (ver_ihl & 0x0F) << 2
    if ver_ihl >> 4 != 4 or header_len < 20:
        raise MalformedHeader(f"IPv4 version/IHL byte 0x{ver_ihl:02x} is invalid")
    end = len(frame)
    if total_len:
        if total_len < header_len:
            raise MalformedHeader(f"IPv4 total length {total_len} is shorter than its header ({header_len})")
        end = min(end, offset + total_len)
    l4 = offset + header_len
    if l4 > end:
        raise Truncated(f"IPv4 options need {header_len} bytes, {end - offset} captured")
    frag_offset = (frag & 0x1FFF) << 3
    more_fragments = bool(frag & 0x2000)
    packet = Packet(
        timestamp, frame_len, layers.vlan, 4, _address_text(src), _address_text(dst), proto, ttl,
        0, 0, 0, 0, 0, 0, b"", ip_id, more_fragments or frag_offset > 0, frag_offset, more_fragments,
    )
    return _decode_l4(packet, frame, l4, end, total_len != 0, layers)


def _decode_ipv6(frame: bytes, offset: int, timestamp: float, frame_len: int, layers: _Layers) -> Packet:
    layers.step()
    if len(frame) < offset + 40:
        raise Truncated(f"IPv6 header needs 40 bytes, {len(frame) - offset} captured")
    if frame[offset] >> 4 != 6:
        raise MalformedHeader(f"IPv6 header has version {frame[offset] >> 4}")
    payload_len, next_header, hop_limit, src, dst = _IPV6.unpack_from(frame, offset)
    pos = offset + 40
    end = min(len(frame), pos + payload_len) if payload_len else len(frame)
    packet = Packet(
        timestamp, frame_len, layers.vlan, 6, _address_text(src), _address_text(dst), next_header, hop_limit,
    )
    for _ in range(MAX_IPV6_EXTENSION_HEADERS):
        if next_header in _IPV6_SIMPLE_EXTENSIONS or next_header == _IPV6_AH or next_header == _IPV6_FRAGMENT:
            if pos + 8 > end:
                raise Truncated(f"IPv6 extension header {next_header} is cut short")
            if next_header == _IPV6_FRAGMENT:
                following, frag, ident = _IPV6_FRAG.unpack_from(frame, pos)
                packet.is_fragment = True
                packet.frag_offset = frag & 0xFFF8
                packet.more_fragments = bool(frag & 1)
                packet.ip_id = ident
                pos += 8
            else:
                following, ext_len = _IPV6_EXT.unpack_from(frame, pos)
                pos += (ext_len + 2) * 4 if next_header == _IPV6_AH else (ext_len + 1) * 8
            next_header = following
            continue
        packet.ip_protocol = next_header
        if pos > end:
            raise Truncated("IPv6 extension headers run past the end of the packet")
        return _decode_l4(packet, frame, pos, end, payload_len != 0, layers)
    raise ExtensionHeaderLimit(f"IPv6 packet has more than {MAX_IPV6_EXTENSION_HEADERS} extension headers")


def _decode_l4(packet: Packet, frame: bytes, pos: int, end: int, ip_length_known: bool,
               layers: _Layers) -> Packet:
    """Fill ports, TCP fields and payload; fragments only get payload.
    An unfragmented packet carrying a tunnel is taken apart: the result is
    the packet inside.

    `ip_length_known` is False when the IP header gave no length (0: TSO/GRO
    captures, jumbograms); a UDP length of 0 then means "unknown" too."""
    layers.ips.append((packet.src_ip, packet.dst_ip))
    if not packet.is_fragment:
        try:
            inner = _decapsulate(packet, frame, pos, end, layers)
        except NotIp:
            # A tunnel with no IP packet inside (ARP, CDP, ...): the frame is this IP header's,
            # by addresses alone and with no payload, as Arkime files it (corrupt-ip).
            packet.outer, packet.vlan = layers.outer(frame), layers.vlan
            return packet
        if inner is not None:
            return inner
    if len(layers.ips) > 1 or layers.tunnels or len(layers.macs) > 1:
        packet.outer = layers.outer(frame)
    if packet.is_fragment:
        packet.payload = frame[pos:end]     # the fragment's data: reassembly decodes L4
        return packet
    proto = packet.ip_protocol
    if proto == IPPROTO_TCP:
        if pos + 20 > end:
            raise Truncated(f"TCP header needs 20 bytes, {end - pos} available")
        (packet.src_port, packet.dst_port, packet.seq, packet.ack,
         offset_byte, flags, packet.window) = _TCP.unpack_from(frame, pos)
        header_len = (offset_byte >> 4) << 2
        if header_len < 20:
            raise MalformedHeader(f"TCP data offset {header_len >> 2} is below 5")
        if pos + header_len > end:
            raise Truncated(f"TCP options need {header_len} bytes, {end - pos} available")
        packet.tcp_flags = flags | ((offset_byte & 1) << 8)
        packet.payload = frame[pos + header_len:end]
    elif proto == IPPROTO_UDP:
        if pos + 8 > end:
            raise Truncated(f"UDP header needs 8 bytes, {end - pos} available")
        packet.src_port, packet.dst_port, udp_len = _UDP.unpack_from(frame, pos)
        if udp_len < 8 and (udp_len or ip_length_known):
            # Arkime files such a datagram as corrupt-ip, in no session.
            raise MalformedHeader(f"UDP length field {udp_len} is shorter than the 8-byte UDP header")
        if 8 <= udp_len <= end - pos:
            end = pos + udp_len
        packet.payload = frame[pos + 8:end]
    elif proto == IPPROTO_SCTP:
        if pos + 12 > end:
            raise Truncated(f"SCTP common header needs 12 bytes, {end - pos} available")
        packet.src_port, packet.dst_port = _PORTS.unpack_from(frame, pos)
        packet.payload = frame[pos + 12:end]
    else:
        packet.payload = frame[pos:end]
        packet.trailer = len(frame) - end
    return packet


def decode_datagram(last: Packet, payload: bytes, frame_len: int) -> Packet:
    """The packet a reassembled IP datagram makes: the IP fields of `last`
    (the fragment that completed it), L4 and any tunnel decoded from the
    whole `payload`. Raises a PacketError like decode_frame."""
    packet = Packet(last.timestamp, frame_len, last.vlan, last.ip_version, last.src_ip, last.dst_ip,
                    last.ip_protocol, last.ttl, ip_id=last.ip_id)
    layers = _Layers()
    layers.vlan = last.vlan
    outer = last.outer
    if outer is not None:
        layers.tunnels, layers.vni = outer.tunnels, outer.vni
        if outer.src_ip:
            layers.ips.append((outer.src_ip, outer.dst_ip))
    inner = _decode_l4(packet, payload, 0, len(payload), True, layers)
    if outer is not None and inner.outer is None:
        inner.outer = outer
    return inner


def _decapsulate(packet: Packet, frame: bytes, pos: int, end: int, layers: _Layers) -> Packet | None:
    """The packet inside IP-in-IP, GRE or a UDP tunnel port, or None when
    `packet` carries none (its own L4 is then decoded as usual): also when
    the inner header would start WALK_OFFSET_MAX bytes in or further."""
    if pos >= WALK_OFFSET_MAX:
        return None
    proto = packet.ip_protocol
    if proto == IPPROTO_IPIP or proto == IPPROTO_IPV6:
        layers.tunnels |= Tunnel.IP
        return _decode_ethertype(frame, pos, ETHERTYPE_IPV4 if proto == IPPROTO_IPIP else ETHERTYPE_IPV6,
                                 packet.timestamp, packet.frame_len, layers)
    if proto == IPPROTO_GRE:
        step = gre_step(frame, pos)
        if step is None:
            return None
        layers.tunnels |= Tunnel.GRE
        return _decode_ethertype(frame, step[0], step[1], packet.timestamp, packet.frame_len, layers)
    if proto == IPPROTO_UDP and pos + 8 <= end:
        sport, dport, udp_len = _UDP.unpack_from(frame, pos)
        kind = layers.udp_tunnels.get(dport)
        if kind:
            step = udp_tunnel_step(kind, frame, pos + 8, min(udp_len, len(frame) - pos) - 8)
            if step is not None:
                layers.tunnels |= UDP_TUNNEL_BITS[kind]
                if step[2]:
                    layers.vni = step[2]
                return _decode_ethertype(frame, step[0], step[1], packet.timestamp, packet.frame_len, layers)
    return None
