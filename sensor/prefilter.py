"""The XDP program's pre-filter in pure Python, for reading captures without
root: the same parse, flow table, verdicts, counters and ring records as
bpf/sensor.bpf.c, frame for frame. tests/offline/test_prefilter_agreement.py
holds it to the real program's output.

Sans-I/O: `PythonFlowTable.process(frame, ts_ns)` takes one Ethernet frame and
returns the record the kernel would emit, or None (a flowfilter.FrameFilter).
Times are whatever the caller passes (capture time offline), so
`clock_offset_ns` is 0.

Where this mirror is knowingly not the kernel: the flow and fragment tables
evict the least recently used entry when full (the kernel's LRU hash evicts
approximately) and count each flow evicted (the kernel's count is userspace's
lower bound; the kernel's port-reuse split inserts the retired entry before it
frees the live one, so a full table may evict one more there), and the ring
buffer never fills.
"""
from __future__ import annotations

import ctypes as ct
import struct
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from sensor.flows.accounting import IPPROTO_ESP, payload_databytes
from sensor.flows.ether import ether_flow_key
from sensor.flows.key import VlanKeying
from sensor.kernel.contract import (
    ICMP_MAX, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, MAX_SNAPLEN, PORTED_PROTOCOLS,
    REUSE_MAX, TCPF_COUNT, TCPF_ZERO_HI, TCPF_ZERO_LO, TCPFLAG_NAMES, FlowFlag, FlowKey, FlowState, Reason,
    RecordHeader, Stat, TcpFlag, Verdict, WalkResult, retired_key,
)
from sensor.kernel.flowsession import Attention
from sensor.kernel.program import ProgramOptions, Record
from sensor.kernel.rules import RuleSet
from sensor.walk import DEFAULT_UDP_TUNNELS, walk_frame

FRAG_ENTRIES = 4096      # bpf/sensor.bpf.c FRAG_ENTRIES
TEST_RUN_IFINDEX = 1     # BPF_PROG_TEST_RUN runs on the netns loopback device: ingress_ifindex 1

_U16 = struct.Struct("!H")
_TCP = struct.Struct("!4xIIBBH")              # seq, ack, data offset byte, flags, window
_KEY_TAIL = struct.Struct("<BBH")             # proto, family, keyed VLAN id (retired: 0)
_HASH_WORDS = struct.Struct("<9I")
_RECORD_FIELDS = struct.Struct("<QIIIHBBBB2x")
_RECORD_PAD = bytes(ct.sizeof(RecordHeader) - _RECORD_FIELDS.size - ct.sizeof(FlowKey))
_M32 = 0xFFFFFFFF
_KEY_PROTO = FlowKey.proto.offset
_SYN, _SYN_ACK = int(TcpFlag.SYN), int(TcpFlag.SYN | TcpFlag.ACK)

# Why a frame was not counted on a flow (the kernel's stats index).
NOT_IP, TRUNCATED, IPV6_EXT_LIMIT = Stat.NOT_IP, Stat.TRUNCATED, Stat.IPV6_EXT_LIMIT
_WALK_STATS = {WalkResult.NOT_IP: NOT_IP, WalkResult.TRUNCATED: TRUNCATED, WalkResult.EXT_LIMIT: IPV6_EXT_LIMIT,
               WalkResult.DEPTH_LIMIT: Stat.WALK_DEPTH}
_M32_SIGN = 0x80000000

# tcp flags byte -> the tcpflags[] indexes it counts, as count_tcp_flags() does
# (AE and the zero-window counters depend on more than the flags byte).
_TCPF = {name: i for i, name in enumerate(TCPFLAG_NAMES)}
_FLAG_COUNTERS: tuple[tuple[int, ...], ...] = tuple(
    tuple(_TCPF[name] for name, hit in (
        ("syn-ack", fl & 0x12 == 0x12), ("syn", fl & 0x12 == 0x02),
        ("rst", not fl & 0x02 and fl & 0x04),
        ("ack", not fl & 0x06 and fl & 0x1F == 0x10), ("psh", not fl & 0x06 and fl & 0x08),
        ("fin", not fl & 0x06 and fl & 0x01),
        ("urg", fl & 0x20), ("ece", fl & 0x40), ("cwr", fl & 0x80),
    ) if hit)
    for fl in range(256))


@dataclass(slots=True)
class ParsedFrame:
    """What the kernel's parser learns about an IP frame. `key` is the
    canonical flow key as bytes; for a later fragment it is None and
    `frag_key` is how the fragment finds its flow."""
    key: bytes | None
    side: int
    proto: int
    lo_port: int = 0            # host byte order
    hi_port: int = 0
    payload_off: int = 0
    payload_len: int = 0
    tcp_flags: int = 0
    tcp_ae: int = 0
    tcp_window: int = 0
    first_fragment: bool = False
    frag_key: tuple[bytes, bytes, int, int] | None = None   # (sender, receiver, id, proto)
    sender: bytes = b""
    tcp_seq: int = 0
    tcp_ack: int = 0
    icmp: tuple[int, int] | None = None                      # ICMP type, code
    vlan: tuple[int, int] = (0, 0)                           # the first two VLAN ids the walk met
    tunnels: int = 0                                         # Tunnel bits: what the flow came out of


def _l4(frame: bytes, l4_off: int, l4_end: int, proto: int, family: int, src: bytes, dst: bytes,
        vlan: tuple[int, int], first_fragment: bool, frag_id: int, ported: bool = True,
        keyed_vlan: int = 0) -> ParsedFrame | Stat:
    n = len(frame)
    flags = ae = window = seq = ack = 0
    icmp = None
    if not ported:
        payload_off = l4_end
    elif proto == IPPROTO_TCP:
        if l4_off + 20 > n:
            return TRUNCATED
        seq, ack, doff_byte, flags, window = _TCP.unpack_from(frame, l4_off)
        doff = (doff_byte >> 4) * 4
        if doff < 20:
            return TRUNCATED
        ae = doff_byte & 1
        payload_off = l4_off + doff
    elif proto == IPPROTO_UDP:
        if l4_off + 8 > n:
            return TRUNCATED
        payload_off = l4_off + 8
    elif proto == IPPROTO_SCTP:
        if l4_off + 12 > n:
            return TRUNCATED
        payload_off = l4_off + 12
    else:
        payload_off = l4_off
        if (proto == IPPROTO_ICMP or proto == IPPROTO_ICMPV6) and l4_off + 2 <= n:
            icmp = (frame[l4_off], frame[l4_off + 1])
    if ported and proto in PORTED_PROTOCOLS:
        sport_raw, dport_raw = frame[l4_off:l4_off + 2], frame[l4_off + 2:l4_off + 4]
    else:
        sport_raw = dport_raw = b"\0\0"    # keyed by addresses alone
    # canonicalize(): addresses as two native (little-endian) u64 words, then
    # the network-order ports read as native u16s.
    a0, a1 = int.from_bytes(src[:8], "little"), int.from_bytes(dst[:8], "little")
    if a0 != a1:
        swap = a0 > a1
    else:
        b0, b1 = int.from_bytes(src[8:], "little"), int.from_bytes(dst[8:], "little")
        if b0 != b1:
            swap = b0 > b1
        else:
            swap = int.from_bytes(sport_raw, "little") > int.from_bytes(dport_raw, "little")
    tail = _KEY_TAIL.pack(proto, family, keyed_vlan)
    if swap:
        key = dst + src + dport_raw + sport_raw + tail
        lo_raw, hi_raw = dport_raw, sport_raw
    else:
        key = src + dst + sport_raw + dport_raw + tail
        lo_raw, hi_raw = sport_raw, dport_raw
    return ParsedFrame(
        key, int(swap), proto, (lo_raw[0] << 8) | lo_raw[1], (hi_raw[0] << 8) | hi_raw[1],
        payload_off, l4_end - payload_off if l4_end > payload_off else 0, flags, ae, window,
        first_fragment, (src, dst, frag_id, proto) if first_fragment else None, src, seq, ack, icmp, vlan)


def parse_frame(frame: bytes, udp_tunnels: Mapping[int, int] = DEFAULT_UDP_TUNNELS,
                vlan_key: VlanKeying | None = None) -> ParsedFrame | Stat:
    """Parse like parse_frame() in bpf/sensor.bpf.c: the header walk
    (sensor.walk, bpf/parse.h) to the innermost IP packet, then TCP, UDP or
    SCTP ports, ICMP type and code, or nothing for other protocols.
    Returns the kernel's stats index when the frame is on no flow."""
    result, w = walk_frame(frame, udp_tunnels)
    vlan = (w.vlan[0], w.vlan[1])
    keyed = vlan_key.key_of(vlan) if vlan_key is not None else 0     # the key's VLAN id (cfg->vlan_key)
    if result == WalkResult.LATER_FRAGMENT:
        return ParsedFrame(None, 0, w.proto, payload_off=w.l4_off, payload_len=max(w.l4_end - w.l4_off, 0),
                           frag_key=(w.src, w.dst, w.frag_id, w.proto), sender=w.src, vlan=vlan, tunnels=w.tunnels)
    if result == WalkResult.NOT_IP and w.family:
        # A tunnel with no IP packet inside: its IP header's flow, by addresses alone (Arkime's corrupt-ip).
        p = _l4(frame, w.l4_off, w.l4_off, w.proto, w.family, w.src, w.dst, vlan, False, w.frag_id, ported=False,
                keyed_vlan=keyed)
    elif result != WalkResult.FLOW:
        return _WALK_STATS[result]
    else:
        p = _l4(frame, w.l4_off, w.l4_end, w.proto, w.family, w.src, w.dst, vlan, w.first_fragment, w.frag_id,
                keyed_vlan=keyed)
    if isinstance(p, ParsedFrame):
        p.tunnels = w.tunnels
    return p


def flow_hash(key: bytes) -> int:
    """flow_hash() of bpf/sensor.bpf.c: symmetric because the key is canonical."""
    h = key[36]  # proto
    for w in _HASH_WORDS.unpack_from(key):
        h ^= (w + 0x9E3779B9 + ((h << 6) & _M32) + (h >> 2)) & _M32
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _M32
    h ^= h >> 16
    return h


class _Flow:
    """struct flow_state as plain Python ints (ctypes fields are slow to bump)."""
    __slots__ = ("packets", "bytes", "databytes", "first_ns", "last_ns", "tcpflags", "emitted",
                 "undecided_payloads", "verdict", "reason", "client", "payload_seen", "late_select", "hash",
                 "seq_next", "payload8", "icmp_type", "icmp_code", "vlan", "flags", "ethertype", "syn_seq")

    def __init__(self, first_ns: int, client: int, verdict: int, reason: int, hash_: int) -> None:
        self.packets = [0, 0]
        self.bytes = [0, 0]
        self.databytes = [0, 0]
        self.first_ns = first_ns
        self.last_ns = first_ns
        self.tcpflags = [0] * TCPF_COUNT
        self.emitted = 0
        self.undecided_payloads = 0
        self.verdict = verdict
        self.reason = reason
        self.client = client
        self.payload_seen = 0
        self.late_select = 0
        self.hash = hash_
        self.seq_next = [0, 0]
        self.payload8 = [b"", b""]
        self.icmp_type: list[int] = []
        self.icmp_code: list[int] = []
        self.vlan = [0, 0]
        self.flags = 0
        self.ethertype = 0
        self.syn_seq = 0

    def state(self) -> FlowState:
        s = FlowState()
        s.packets[:], s.bytes[:], s.databytes[:] = self.packets, self.bytes, self.databytes
        s.first_ns, s.last_ns = self.first_ns, self.last_ns
        s.tcpflags[:] = self.tcpflags
        s.emitted, s.undecided_payloads = self.emitted, self.undecided_payloads
        s.verdict, s.reason, s.client = self.verdict, self.reason, self.client
        s.payload_seen, s.late_select = self.payload_seen, self.late_select
        s.seq_next[:], s.vlan[:], s.flags = self.seq_next, self.vlan, self.flags
        s.icmp_types, s.icmp_codes = len(self.icmp_type), len(self.icmp_code)
        s.icmp_type[:s.icmp_types], s.icmp_code[:s.icmp_codes] = self.icmp_type, self.icmp_code
        s.ethertype, s.syn_seq = self.ethertype, self.syn_seq
        for side, kept in enumerate(self.payload8):
            ct.memmove(ct.addressof(s.payload8) + side * 8, kept, len(kept))
            s.payload8_len[side] = len(kept)
        return s


class PythonFlowTable:
    """The kernel program's flow table and decisions for one rule set.
    Rule lookups are built once here: the per-packet path is dict/set hits."""

    clock_offset_ns = 0     # first_ns/last_ns are the caller's (capture) times

    def __init__(self, rules: RuleSet, options: ProgramOptions = ProgramOptions(),
                 ifindex: int = TEST_RUN_IFINDEX) -> None:
        shapes = rules.shapes()  # validates like SensorProgram.set_rules
        self.options = options
        self.ifindex = ifindex
        self._caplen = min(options.snaplen, MAX_SNAPLEN)
        self._select_all = frozenset(rules.select_all)
        self._ports = {(r.proto, int(r.role), r.port) for r in rules.ports}
        # The kernel's prefix key has no mask: shapes differing only in mask share keys.
        keys: dict[tuple[int, int, int], set[bytes]] = {}
        for proto, offset, length, masked in rules.prefix_keys():
            keys.setdefault((proto, offset, length), set()).add(masked)
        self._shapes: dict[int, list[tuple[int, int, int, frozenset[bytes]]]] = {}
        for s in shapes:
            self._shapes.setdefault(s.proto, []).append(
                (s.offset, s.length, s.last_mask, frozenset(keys.get((s.proto, s.offset, s.length), ()))))
        self._flows: OrderedDict[bytes, _Flow] = OrderedDict()
        self._frags: OrderedDict[tuple[bytes, bytes, int, int], bytes] = OrderedDict()
        self._stats = [0] * len(Stat)

    # -- the program ----------------------------------------------------------------
    def process(self, frame: bytes, ts_ns: int) -> Record | None:
        """Run the program on one Ethernet frame at time `ts_ns`; the record it
        would write to the ring buffer, or None."""
        stats = self._stats
        stats[Stat.SEEN] += 1
        p = parse_frame(frame, self.options.udp_tunnels, self.options.vlan_key)
        if not isinstance(p, ParsedFrame):
            stats[p] += 1
            if p == NOT_IP:
                self._count_ether_flow(frame, ts_ns)
            return None
        if p.tunnels:
            stats[Stat.TUNNELLED] += 1
        if p.key is None:
            return self._later_fragment(frame, p, ts_ns)
        stats[Stat.PARSED] += 1
        if p.proto != IPPROTO_TCP and p.proto != IPPROTO_UDP:
            stats[Stat.OTHER_L4] += 1
        key, side, n = p.key, p.side, len(frame)
        flows = self._flows
        f = flows.get(key)
        if f is not None and p.tcp_flags & _SYN_ACK == _SYN and p.proto == IPPROTO_TCP \
                and self._reuses_ports(f, p) and self._retire(key, f):
            f = None
        if f is None:
            f = self._new_flow(p, ts_ns)
        else:
            flows.move_to_end(key)
        f.packets[side] += 1
        f.bytes[side] += n
        f.last_ns = ts_ns
        if p.proto == IPPROTO_TCP:
            self._count_tcp_flags(f, p, side)
            self._track_tcp(frame, f, p, side)
        else:
            self._track_other(frame, f, p, side)
        if p.first_fragment:
            self._remember(p.frag_key, key)
        if p.vlan[0]:
            self._note_vlans(f, p.vlan)

        verdict, reason = f.verdict, f.reason
        if p.payload_len > 0 and verdict == Verdict.UNDECIDED:
            bit = 1 << side
            if not f.payload_seen & bit:
                if self._prefix_selected(frame, p):
                    verdict, reason = Verdict.SELECTED, Reason.PREFIX
                    # the other side's first payload already went by unsent
                    f.late_select = int(f.payload_seen & (bit ^ 3) != 0)
                    f.reason, f.verdict = reason, verdict
                    stats[Stat.SELECTED] += 1
                f.payload_seen |= bit
            if verdict == Verdict.UNDECIDED:
                f.undecided_payloads = (f.undecided_payloads + 1) & 0xFFFF
                if f.payload_seen == 3 or f.undecided_payloads >= self.options.max_undecided_payloads:
                    f.verdict = Verdict.IGNORED
                    stats[Stat.IGNORED] += 1
                if self.options.emit_undecided and f.undecided_payloads <= 2:
                    return self._emit(frame, ts_ns, key, f, side, Reason.UNDECIDED, Verdict.UNDECIDED)
                return None
        if verdict == Verdict.SELECTED:
            f.emitted = (f.emitted + 1) & _M32
            return self._emit(frame, ts_ns, key, f, side, reason, verdict)
        if verdict == Verdict.BYPASSED:
            stats[Stat.BYPASSED_PKTS] += 1
        return None

    def _new_flow(self, p: ParsedFrame, ts_ns: int) -> _Flow:
        # Arkime's direction rule: a SYN-ACK's receiver is the client, otherwise the sender.
        client = p.side ^ 1 if p.proto == IPPROTO_TCP and p.tcp_flags & 0x12 == 0x12 else p.side
        verdict, reason = Verdict.UNDECIDED, Reason.NONE
        if p.proto in self._select_all:
            verdict, reason = Verdict.SELECTED, Reason.ALL
        elif p.proto in PORTED_PROTOCOLS:
            client_port, server_port = (p.lo_port, p.hi_port) if client == 0 else (p.hi_port, p.lo_port)
            if (p.proto, 1, server_port) in self._ports or (p.proto, 0, client_port) in self._ports:
                verdict, reason = Verdict.SELECTED, Reason.PORT
        if verdict == Verdict.SELECTED:
            self._stats[Stat.SELECTED] += 1
        f = self._insert(p.key, _Flow(ts_ns, client, verdict, reason, flow_hash(p.key)))
        if p.proto == IPPROTO_TCP and p.tcp_flags & _SYN:     # the client's ISN (a SYN-ACK acks it)
            f.syn_seq = (p.tcp_ack - 1) & _M32 if p.tcp_flags & _SYN_ACK == _SYN_ACK else p.tcp_seq
        return f

    def _reuses_ports(self, f: _Flow, p: ParsedFrame) -> bool:
        """reuses_ports() for a SYN without ACK: Arkime's port reuse, on a flow nothing came up from."""
        if p.tcp_seq == f.syn_seq:
            return False
        if not f.tcpflags[_TCPF["fin"]] and not f.tcpflags[_TCPF["rst"]]:
            return False
        if f.verdict != Verdict.IGNORED and f.verdict != Verdict.UNDECIDED:
            return False
        return not (self.options.emit_undecided and f.undecided_payloads)

    def _retire(self, key: bytes, f: _Flow) -> bool:
        """retire(): the ended connection moves to its 5-tuple's first free retired key."""
        flows = self._flows
        for retired in range(1, REUSE_MAX + 1):
            old = retired_key(key, retired)
            if old not in flows:
                del flows[key]
                flows[old] = f
                return True
        return False

    def _insert(self, key: bytes, f: _Flow) -> _Flow:
        if len(self._flows) >= self.options.flow_entries:
            self._flows.popitem(last=False)
            self._stats[Stat.FLOW_EVICTED] += 1
        self._flows[key] = f
        self._stats[Stat.FLOW_NEW] += 1
        return f

    @staticmethod
    def _note_vlans(f: _Flow, vlan: tuple[int, int]) -> None:
        """note_vlan(): the first two distinct VLAN ids."""
        for vid in vlan:
            if vid and vid not in f.vlan and 0 in f.vlan:
                f.vlan[f.vlan.index(0)] = vid

    def _count_ether_flow(self, frame: bytes, ts_ns: int) -> None:
        """count_ether_flow(): a frame with no IP packet counts on its non-IP flow, never selected."""
        found = ether_flow_key(frame)
        if found is None:
            return
        key, ethertype, vlan = found
        f = self._flows.get(key)
        if f is None:
            f = self._insert(key, _Flow(ts_ns, 0, Verdict.IGNORED, Reason.NONE, flow_hash(key)))
            f.ethertype = ethertype
        else:
            self._flows.move_to_end(key)
        f.packets[0] += 1
        f.bytes[0] += len(frame)
        f.last_ns = ts_ns
        self._note_vlans(f, vlan)

    @staticmethod
    def _count_tcp_flags(f: _Flow, p: ParsedFrame, side: int) -> None:
        counters = f.tcpflags
        for i in _FLAG_COUNTERS[p.tcp_flags]:
            counters[i] += 1
        if p.tcp_ae:
            counters[_TCPF["ae"]] += 1
        if p.tcp_window == 0 and not p.tcp_flags & 0x04:
            counters[TCPF_ZERO_LO if side == 0 else TCPF_ZERO_HI] += 1

    @staticmethod
    def _keep_payload8(frame: bytes, f: _Flow, side: int, off: int, avail: int) -> None:
        """keep_payload8(): up to 8 first payload bytes per side; nothing when
        bpf_xdp_load_bytes would fail (past the frame)."""
        kept = f.payload8[side]
        want = min(8 - len(kept), avail)
        if want > 0 and off + want <= len(frame):
            f.payload8[side] = kept + frame[off:off + want]

    def _track_tcp(self, frame: bytes, f: _Flow, p: ParsedFrame, side: int) -> None:
        """track_tcp(): Arkime's in-order databytes once a stream's start is known, FIN/RST for the close."""
        fl, known = p.tcp_flags, FlowFlag.SEQ_HI if side else FlowFlag.SEQ_LO
        if fl & 0x02:
            f.seq_next[side] = (p.tcp_seq + 1) & _M32
            f.flags |= known | FlowFlag.HANDSHAKE
            if fl & 0x10:
                f.seq_next[side ^ 1] = p.tcp_ack
                f.flags |= FlowFlag.SEQ_LO | FlowFlag.SEQ_HI
            return
        if fl & 0x04:
            f.flags |= FlowFlag.RST
            return
        if fl & 0x01:
            f.flags |= FlowFlag.FIN_HI if side else FlowFlag.FIN_LO
        if not f.flags & known:
            if not f.flags & FlowFlag.HANDSHAKE:
                return
            f.seq_next[side] = p.tcp_seq
            f.flags |= known
        behind = (f.seq_next[side] - p.tcp_seq) & _M32
        if behind & _M32_SIGN or behind >= p.payload_len:
            return
        fresh = p.payload_len - behind
        f.seq_next[side] = (p.tcp_seq + p.payload_len) & _M32
        f.databytes[side] += fresh
        self._keep_payload8(frame, f, side, p.payload_off + behind, fresh)

    def _track_other(self, frame: bytes, f: _Flow, p: ParsedFrame, side: int) -> None:
        """track_other(): its databytes, a side's first payload bytes, its ICMP type and code to the sets."""
        f.databytes[side] += payload_databytes(p.proto, p.payload_len, len(frame) - p.payload_off - p.payload_len)
        if p.icmp is not None:
            icmp_type, icmp_code = p.icmp
            if icmp_type not in f.icmp_type and len(f.icmp_type) < ICMP_MAX:
                f.icmp_type.append(icmp_type)
            if icmp_code not in f.icmp_code and len(f.icmp_code) < ICMP_MAX:
                f.icmp_code.append(icmp_code)
        if f.payload8[side] or not p.payload_len:
            return
        off = p.payload_off
        if p.proto == IPPROTO_UDP:
            self._keep_payload8(frame, f, side, off, p.payload_len)
        elif p.proto == IPPROTO_SCTP and off + 4 <= len(frame) and frame[off] == 0 and frame[off + 1] & 0x02:
            length = min(_U16.unpack_from(frame, off + 2)[0], p.payload_len)
            if length > 16:
                self._keep_payload8(frame, f, side, off + 16, length - 16)

    def _prefix_selected(self, frame: bytes, p: ParsedFrame) -> bool:
        for offset, length, last_mask, keys in self._shapes.get(p.proto, ()):
            if offset + length > p.payload_len:
                continue
            start = p.payload_off + offset
            if start + length > len(frame):   # bpf_xdp_load_bytes fails past the frame
                continue
            window = frame[start:start + length]
            if last_mask != 0xFF:
                window = window[:-1] + bytes((window[-1] & last_mask,))
            if window in keys:
                return True
        return False

    def _remember(self, frag_key: tuple[bytes, bytes, int, int], key: bytes) -> None:
        frags = self._frags
        frags[frag_key] = key
        frags.move_to_end(frag_key)
        if len(frags) > FRAG_ENTRIES:
            frags.popitem(last=False)

    def _later_fragment(self, frame: bytes, p: ParsedFrame, ts_ns: int) -> Record | None:
        """Later fragments carry no ports: count and emit them on the flow their
        first fragment established, or count them as orphans; a datagram counts
        as Arkime counts it reassembled (handle_later_fragment())."""
        key = self._frags.get(p.frag_key)
        f = self._flows.get(key) if key is not None else None
        if f is None:
            self._stats[Stat.FRAG_ORPHAN] += 1
            return None
        self._frags.move_to_end(p.frag_key)
        self._flows.move_to_end(key)
        self._stats[Stat.FRAG_FOLLOWED] += 1
        side = 0 if key[:16] == p.sender else 1
        f.bytes[side] += p.payload_len
        if p.proto == IPPROTO_ESP:      # its header was in the first fragment
            f.databytes[side] += p.payload_len
        elif p.proto != IPPROTO_TCP:
            f.databytes[side] += payload_databytes(p.proto, p.payload_len)
        elif f.flags & (FlowFlag.SEQ_HI if side else FlowFlag.SEQ_LO):
            f.seq_next[side] = (f.seq_next[side] + p.payload_len) & _M32
            f.databytes[side] += p.payload_len
            self._keep_payload8(frame, f, side, p.payload_off, p.payload_len)
        f.last_ns = ts_ns
        if f.verdict == Verdict.SELECTED:
            f.emitted = (f.emitted + 1) & _M32
            return self._emit(frame, ts_ns, key, f, side, Reason.FRAGMENT, f.verdict)
        return None

    def _emit(self, frame: bytes, ts_ns: int, key: bytes, f: _Flow, side: int, reason: int,
              verdict: int) -> Record:
        wire_len = len(frame)
        caplen = min(wire_len, self._caplen)
        raw = _RECORD_FIELDS.pack(ts_ns, self.ifindex, f.hash, wire_len, caplen, side, f.client, reason,
                                  verdict) + key + _RECORD_PAD
        self._stats[Stat.EMITTED] += 1
        return Record(RecordHeader.from_buffer_copy(raw), frame[:caplen])

    # -- the maps, as SensorProgram exposes them (flowfilter.FlowFilter) -------------
    def flow(self, key: FlowKey) -> FlowState | None:
        f = self._flows.get(bytes(key))
        return None if f is None else f.state()

    def flows(self, attention: Attention | None = None) -> Iterator[tuple[FlowKey, FlowState]]:
        for raw, f in list(self._flows.items()):
            if attention is None or attention.wants(raw[_KEY_PROTO], f.flags, f.packets[0] + f.packets[1],
                                                    f.first_ns, f.last_ns):
                yield FlowKey.from_buffer_copy(raw), f.state()

    def set_verdict(self, key: FlowKey, verdict: Verdict) -> bool:
        """Like SensorProgram.set_verdict: False if the flow is gone."""
        f = self._flows.get(bytes(key))
        if f is None:
            return False
        f.verdict = int(verdict)
        return True

    def delete_flow(self, key: FlowKey) -> None:
        self._flows.pop(bytes(key), None)

    def delete_flows(self, keys: Sequence[FlowKey]) -> None:
        for key in keys:
            self._flows.pop(bytes(key), None)

    def stats(self) -> dict[Stat, int]:
        return {stat: self._stats[stat] for stat in Stat}
