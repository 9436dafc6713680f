"""The Python mirror of bpf/sensor.h: every struct and enum that crosses the
kernel/user boundary. tests/kernel/test_contract.py checks it against the
layout the compiler gave the real program."""
from __future__ import annotations

import ctypes as ct
import enum
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

BPF_DIR = Path(__file__).resolve().parents[2] / "bpf"
MAX_SNAPLEN = 2048
PREFIX_MAX = 16
PREFIX_SHAPES = 8
RINGS_MAX = 16
ICMP_MAX = 8            # SENSOR_ICMP_MAX: distinct ICMP types, and codes, a flow keeps
REUSE_MAX = 4           # SENSOR_REUSE_MAX: ended connections of one 5-tuple held at once (FlowKey.retired)
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58
IPPROTO_SCTP = 132
PORTED_PROTOCOLS = frozenset((IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP))  # the rest are keyed by addresses


class Verdict(enum.IntEnum):
    UNDECIDED = 0
    SELECTED = 1
    IGNORED = 2
    BYPASSED = 3


class Reason(enum.IntEnum):
    NONE = 0
    PORT = 1
    PREFIX = 2
    UNDECIDED = 3
    FRAGMENT = 4
    ALL = 5


class FlowFlag(enum.IntFlag):
    FIN_LO = 1
    FIN_HI = 2
    RST = 4
    SEQ_LO = 8
    SEQ_HI = 16
    HANDSHAKE = 32


class Stat(enum.IntEnum):
    SEEN = 0
    PARSED = 1
    NOT_IP = 2
    OTHER_L4 = 3
    TRUNCATED = 4
    IPV6_EXT_LIMIT = 5
    FLOW_NEW = 6
    FLOW_FAIL = 7
    SELECTED = 8
    IGNORED = 9
    EMITTED = 10
    RINGBUF_FULL = 11
    BYPASSED_PKTS = 12
    FRAG_FOLLOWED = 13
    FRAG_ORPHAN = 14
    RING_GONE = 15
    TUNNELLED = 16
    WALK_DEPTH = 17
    FLOW_RING_LOST = 18     # flows that lost a record to a full ring
    FLOW_EVICTED = 19       # written by userspace (SensorProgram): flows the LRU table evicted, a lower bound


STAT_COUNT = len(Stat)


# The header walk (bpf/sensor.h, "The header walk"): depths, results, tunnel bits.
WALK_STEPS = 8
VLAN_MAX = 2
MPLS_MAX = 8
GTP_EXT_MAX = 4
WALK_OFFSET_MAX = 2048
IPV6_EXT_MAX = 8


class WalkResult(enum.IntEnum):
    FLOW = 0
    LATER_FRAGMENT = 1
    TRUNCATED = 2
    NOT_IP = 3
    EXT_LIMIT = 4
    DEPTH_LIMIT = 5


class Tunnel(enum.IntFlag):
    NONE = 0
    GRE = 1
    PPPOE = 2
    PPP = 4
    MPLS = 8
    GTP = 16
    VXLAN = 32
    VXLAN_GPE = 64
    GENEVE = 128
    IP = 256


# Non-IP flows (bpf/sensor.h): FlowKey.family 0, FlowKey.proto an EtherKind.
ETHER_VLAN_MAX = 8


class EtherKind(enum.IntEnum):
    ARP = 1
    LLDP = 2
    ISIS = 3
    XID = 4
    UNKNOWN = 5
    CORRUPT = 6


class UdpTunnel(enum.IntEnum):
    NONE = 0
    VXLAN = 1
    VXLAN_GPE = 2
    GENEVE = 3
    GTP = 4


class TcpFlag(enum.IntFlag):
    """TCP_FLAG_* of bpf/sensor.h; AE is bit 0 of byte 12, here bit 8 as in sensor.packet."""
    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80
    AE = 0x100

# Order of flow_state.tcpflags, named as Arkime's tcpflags.* keys.
TCPFLAG_NAMES = ("syn", "syn-ack", "ack", "psh", "fin", "rst", "urg", "ece", "cwr", "ae")
TCPF_ZERO_LO, TCPF_ZERO_HI = 10, 11
TCPF_COUNT = 12


class FlowKey(ct.Structure):
    _fields_ = [
        ("addr", ct.c_ubyte * 32),
        ("port", ct.c_uint16 * 2),
        ("proto", ct.c_uint8),
        ("family", ct.c_uint8),
        ("vlan", ct.c_uint16, 12),
        ("retired", ct.c_uint16, 4),
    ]


class FlowCounters(ct.Structure):
    _fields_ = [
        ("packets", ct.c_uint64 * 2),
        ("bytes", ct.c_uint64 * 2),
        ("databytes", ct.c_uint64 * 2),
        ("tcpflags", ct.c_uint32 * TCPF_COUNT),
    ]


class FlowState(ct.Structure):
    """struct flow_state. As the kernel keeps it, the counters of the CPU
    that created the flow are apart, in `own`; `folded()` gives the totals."""
    _fields_ = [
        ("packets", ct.c_uint64 * 2),
        ("bytes", ct.c_uint64 * 2),
        ("databytes", ct.c_uint64 * 2),
        ("first_ns", ct.c_uint64),
        ("last_ns", ct.c_uint64),
        ("tcpflags", ct.c_uint32 * TCPF_COUNT),
        ("emitted", ct.c_uint32),
        ("ring_lost", ct.c_uint32),
        ("seq_next", ct.c_uint32 * 2),
        ("payload8", ct.c_ubyte * 16),
        ("payload8_len", ct.c_uint8 * 2),
        ("icmp_type", ct.c_uint8 * ICMP_MAX),
        ("icmp_code", ct.c_uint8 * ICMP_MAX),
        ("icmp_types", ct.c_uint8),
        ("icmp_codes", ct.c_uint8),
        ("vlan", ct.c_uint16 * 2),
        ("undecided_payloads", ct.c_uint16),
        ("verdict", ct.c_uint8),
        ("reason", ct.c_uint8),
        ("client", ct.c_uint8),
        ("payload_seen", ct.c_uint8),
        ("late_select", ct.c_uint8),
        ("flags", ct.c_uint8),
        ("ethertype", ct.c_uint16),
        ("syn_seq", ct.c_uint32),
        ("owner", ct.c_uint32),
        ("own", FlowCounters),
    ]

    def folded(self) -> FlowState:
        """This state with `own` added into the counters of the same names,
        then `own` and `owner` zeroed: what the flow counted on every CPU, as
        one set of counters (the Python mirror's states are always folded)."""
        own = self.own
        for name in ("packets", "bytes", "databytes", "tcpflags"):
            total, part = getattr(self, name), getattr(own, name)
            for i in range(len(total)):
                total[i] += part[i]
        ct.memset(ct.byref(own), 0, ct.sizeof(own))
        self.owner = 0
        return self


def retired_key(key: bytes, retired: int) -> bytes:
    """The raw key under which the kernel keeps an ended connection of `key`'s
    5-tuple (flow_key.retired, 1..REUSE_MAX; 0 is the live flow)."""
    at = FlowKey.retired.offset + 1     # its 4 bits are the top of the u16's high byte (little-endian)
    return key[:at] + bytes(((key[at] & 0x0F) | (retired << 4),)) + key[at + 1:]


class PortKey(ct.Structure):
    _fields_ = [("proto", ct.c_uint8), ("role", ct.c_uint8), ("port", ct.c_uint16)]


class PrefixShape(ct.Structure):
    _fields_ = [
        ("proto", ct.c_uint8),
        ("len", ct.c_uint8),
        ("last_mask", ct.c_uint8),
        ("pad", ct.c_uint8),
        ("offset", ct.c_uint16),
        ("pad2", ct.c_uint16),
    ]


class PrefixKey(ct.Structure):
    _fields_ = [
        ("proto", ct.c_uint8),
        ("len", ct.c_uint8),
        ("offset", ct.c_uint16),
        ("bytes", ct.c_ubyte * PREFIX_MAX),
    ]


class SensorConfig(ct.Structure):
    _fields_ = [
        ("snaplen", ct.c_uint32),
        ("max_undecided_payloads", ct.c_uint32),
        ("emit_undecided", ct.c_uint32),
        ("select_proto", ct.c_uint32 * 8),
        ("rings", ct.c_uint32),
        ("wakeup_bytes", ct.c_uint32),
        ("vlan_key", ct.c_uint32),
    ]


def select_proto_bits(protocols) -> list[int]:
    """sensor_config.select_proto: one bit per IP protocol to select whole."""
    words = [0] * 8
    for proto in protocols:
        words[proto >> 5] |= 1 << (proto & 31)
    return words


class RecordHeader(ct.Structure):
    _fields_ = [
        ("ts_ns", ct.c_uint64),
        ("ifindex", ct.c_uint32),
        ("flow_hash", ct.c_uint32),
        ("wire_len", ct.c_uint32),
        ("caplen", ct.c_uint16),
        ("side", ct.c_uint8),
        ("client", ct.c_uint8),
        ("reason", ct.c_uint8),
        ("verdict", ct.c_uint8),
        ("pad", ct.c_uint8 * 2),
        ("key", FlowKey),
    ]


RECORD_HEADER_SIZE = ct.sizeof(RecordHeader)


@dataclass(frozen=True, slots=True)
class Endpoint:
    ip: str
    port: int


def key_endpoints(key: FlowKey) -> tuple[Endpoint, Endpoint]:
    """The (LO, HI) endpoints of a canonical key, addresses as text."""
    raw = bytes(key.addr)
    if key.family == 4:
        lo, hi = socket.inet_ntop(socket.AF_INET, raw[:4]), socket.inet_ntop(socket.AF_INET, raw[16:20])
    else:
        lo, hi = socket.inet_ntop(socket.AF_INET6, raw[:16]), socket.inet_ntop(socket.AF_INET6, raw[16:])
    return (Endpoint(lo, socket.ntohs(key.port[0])), Endpoint(hi, socket.ntohs(key.port[1])))


def make_key(proto: int, a: tuple[str, int], b: tuple[str, int]) -> FlowKey:
    """Build the canonical key the kernel would build for a flow between a and b."""
    ips = [ipaddress.ip_address(a[0]), ipaddress.ip_address(b[0])]
    family = ips[0].version
    raws = [ip.packed.ljust(16, b"\0") for ip in ips]
    ends = [(raws[0], a[1]), (raws[1], b[1])]
    # The kernel compares the address as two native-endian u64 words, then the
    # port in network byte order as a native u16: reproduce that order.
    def order(end: tuple[bytes, int]) -> tuple[int, int, int]:
        raw, port = end
        return (int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little"),
                socket.htons(port))
    ends.sort(key=order)
    key = FlowKey()
    ct.memmove(key.addr, ends[0][0] + ends[1][0], 32)
    key.port[0], key.port[1] = socket.htons(ends[0][1]), socket.htons(ends[1][1])
    key.proto, key.family = proto, family
    return key
