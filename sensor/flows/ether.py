"""Sessions of Ethernet frames that carry no IP packet, keyed as Arkime keys
them (sans-I/O, packet time only), rendered as Arkime's non-IP session
records: `ipProtocol` 0, the `ethertype` of the first frame, MAC addresses,
every frame counted on the source side, the protocol in `protocol`.

Arkime's keys (its capture/parsers and mprotocol.c, with every unknown
ethertype saved, as its test configuration does):
- ARP (Ethernet/IPv4, request or reply): one session per IPv4 address, the
  target's for a request and the sender's for a reply (`arp`);
- LLDP, IS-IS (802.3 LLC fe fe 03 0x83) and 802.2 XID: one session each;
- another ethertype: the MAC pair and the ethertype (`unknown-ether`);
- an 802.3 frame Arkime cannot read, or a malformed ARP: the MAC pair as the
  frame has it (`corrupt-ether`).
Ethertypes the header walk takes apart (IP, MPLS, PPPoE, ERSPAN, NSH, Cisco
metadata...) make no session here: such a frame that carries no IP packet is
only counted.

The kernel keys the same flows (bpf/ether.h: `ether_flow_key` is its key
for a frame) and counts them without their frames coming up;
`kernel_record` renders such a flow as the record `EtherSessions` makes.

A session ends after Arkime's idle timeout for its kind (600 s for ARP, LLDP,
IS-IS and XID, 60 s for the others), checked as Arkime does: by whole
seconds, against the time of the previous frame (a frame never times out its
own session: in a file where nothing else happens, Arkime keeps one session
across a long silence) or of `expire(now)`.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from sensor.ids import new_id
from sensor.kernel.contract import EtherKind, FlowKey, FlowState
from sensor.walk import (
    ETHERTYPE_CISCO_METADATA, ETHERTYPE_ERSPAN, ETHERTYPE_ERSPAN3, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_MPLS,
    ETHERTYPE_NSH, ETHERTYPE_PPP, ETHERTYPE_PPPOE, ETHERTYPE_TEB, ETHERTYPE_VLAN,
)

ETHERTYPE_ARP = 0x0806
ETHERTYPE_LLDP = 0x88CC
VLAN_TAGS_MAX = 8           # Arkime's bound on stacked VLAN tags
# Arkime's idle timeouts (seconds of packet time) by protocol; 60 for the others.
IDLE_TIMEOUTS = {"arp": 600, "lldp": 600, "isis": 600, "xid": 600}
_WALKED = frozenset((ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_PPPOE, ETHERTYPE_PPP, ETHERTYPE_ERSPAN,
                     ETHERTYPE_ERSPAN3, ETHERTYPE_TEB, ETHERTYPE_NSH, ETHERTYPE_CISCO_METADATA, *ETHERTYPE_MPLS))
_ARP_ETH_IPV4 = b"\x00\x01\x08\x00\x06\x04\x00"
_TPIDS = (b"\x81\x00", b"\x88\xa8")
# Arkime's protocol name of each kind of non-IP flow (the kernel's key.proto).
KIND_PROTOCOLS = {EtherKind.ARP: "arp", EtherKind.LLDP: "lldp", EtherKind.ISIS: "isis", EtherKind.XID: "xid",
                  EtherKind.UNKNOWN: "unknown-ether", EtherKind.CORRUPT: "corrupt-ether"}
_KINDS = {name: kind for kind, name in KIND_PROTOCOLS.items()}


def classify(frame: bytes) -> tuple[tuple, str, int] | None:
    """(session key, protocol name, ethertype field) of a non-IP Ethernet
    frame, or None when it makes no session."""
    n = 12
    tags = 0
    while n + 2 <= len(frame) and frame[n:n + 2] in _TPIDS:
        tags += 1
        if tags > VLAN_TAGS_MAX:
            return None
        n += 4
    if n + 2 > len(frame):
        return None
    ethertype = (frame[n] << 8) | frame[n + 1]
    data = frame[n + 2:]
    corrupt = (("corrupt-ether", frame[:12]), "corrupt-ether", ethertype)
    if ethertype <= 1500:
        if len(data) < 3 or ethertype > len(data):
            return corrupt
        if len(data) >= 3 and data[2] & 0xEF == 0xAF:
            return ("xid",), "xid", ethertype
        if data[:3] == b"\xfe\xfe\x03" and len(data) > 3 and data[3] == 0x83:
            return ("isis",), "isis", ethertype
        return corrupt
    if ethertype in _WALKED or ethertype in ETHERTYPE_VLAN:
        return None
    if ethertype == ETHERTYPE_ARP:
        if len(data) < 28 or data[:7] != _ARP_ETH_IPV4 or data[7] not in (1, 2):
            return corrupt
        address = data[24:28] if data[7] == 1 else data[14:18]
        return ("arp", address), "arp", ethertype
    if ethertype == ETHERTYPE_LLDP:
        return ("lldp",), "lldp", ethertype
    return ("unknown-ether", frame[:12], ethertype), "unknown-ether", ethertype


def vlan_ids(frame: bytes) -> list[int]:
    """The VLAN ids of a frame's tags, outermost first."""
    ids, n = [], 12
    while frame[n:n + 2] in _TPIDS and n + 4 <= len(frame):
        ids.append(((frame[n + 2] << 8) | frame[n + 3]) & 0x0FFF)
        n += 4
    return ids


def ether_flow_key(frame: bytes) -> tuple[bytes, int, tuple[int, int]] | None:
    """ether_key() of bpf/ether.h: the kernel's flow key of a non-IP frame (as
    bytes), its ethertype and its first two VLAN ids; None when it makes no flow."""
    found = classify(frame)
    if found is None:
        return None
    key, protocol, ethertype = found
    kind = _KINDS[protocol]
    ident = key[1] if len(key) > 1 else b""
    port = ethertype.to_bytes(2, "big") if kind == EtherKind.UNKNOWN else b"\0\0"
    ids = vlan_ids(frame)[:2] + [0, 0]
    return ident.ljust(32, b"\0") + port + bytes((0, 0, kind, 0, 0, 0)), ethertype, (ids[0], ids[1])


def kernel_record(key: FlowKey, state: FlowState, end_reason: str, clock_offset_ns: int) -> dict:
    """The record of a non-IP flow the kernel counted (key.family 0), as
    EtherSessions makes it; `clock_offset_ns` turns the table's times into
    epoch time. MACs are known only where they key the flow."""
    session = _EtherSession(KIND_PROTOCOLS[EtherKind(key.proto)], state.ethertype,
                            (state.first_ns + clock_offset_ns) / 1e9, (state.last_ns + clock_offset_ns) / 1e9,
                            state.packets[0], state.bytes[0])
    if key.proto in (EtherKind.UNKNOWN, EtherKind.CORRUPT):
        macs = bytes(key.addr[:12])
        session.dst_macs.add(macs[:6].hex(":"))
        session.src_macs.add(macs[6:].hex(":"))
    session.vlans.update(v for v in state.vlan if v)
    return _record(session, end_reason)


def idle_timeout(kind: EtherKind) -> int:
    """Arkime's idle timeout, in seconds, of a kind of non-IP flow."""
    return IDLE_TIMEOUTS.get(KIND_PROTOCOLS[kind], 60)


@dataclass(slots=True)
class _EtherSession:
    protocol: str
    ethertype: int
    first_ts: float
    last_ts: float
    packets: int = 0
    bytes: int = 0
    src_macs: set[str] = field(default_factory=set)
    dst_macs: set[str] = field(default_factory=set)
    vlans: set[int] = field(default_factory=set)

    def idle_after(self, now: float) -> bool:
        """Arkime's check: lastPacket seconds + timeout < now's seconds."""
        return int(self.last_ts) + IDLE_TIMEOUTS.get(self.protocol, 60) < int(now)


class EtherSessions:
    """The non-IP sessions of a capture or a link; records come out when a
    session has been idle its timeout, or at close."""

    def __init__(self, max_sessions: int = 10_000) -> None:
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[tuple, _EtherSession] = OrderedDict()   # least recently seen first
        self._clock = float("-inf")     # the previous frame's time

    def __len__(self) -> int:
        return len(self._sessions)

    def process(self, frame: bytes, timestamp: float, wire_len: int) -> list[dict] | None:
        """Account one Ethernet frame that carries no IP packet: the records of
        sessions it pushed out of a full table, or None when it makes no session."""
        found = classify(frame)
        if found is None:
            return None
        key, protocol, ethertype = found
        session = self._sessions.get(key)
        ended = []
        clock, self._clock = self._clock, timestamp
        if session is not None and session.idle_after(clock):
            ended.append(_record(self._sessions.pop(key), "timeout"))
            session = None
        if session is None:
            if len(self._sessions) >= self.max_sessions:
                ended.append(_record(self._sessions.popitem(last=False)[1], "evicted"))
            session = self._sessions[key] = _EtherSession(protocol, ethertype, timestamp, timestamp)
        else:
            self._sessions.move_to_end(key)
            session.last_ts = max(session.last_ts, timestamp)
        session.packets += 1
        session.bytes += wire_len
        session.dst_macs.add(frame[0:6].hex(":"))
        session.src_macs.add(frame[6:12].hex(":"))
        session.vlans.update(vlan_ids(frame))
        return ended

    def expire(self, now: float) -> list[dict]:
        due = [key for key, s in self._sessions.items() if s.idle_after(now)]
        return [_record(self._sessions.pop(key), "timeout") for key in due]

    def close_all(self) -> list[dict]:
        records = [_record(s, "shutdown") for s in self._sessions.values()]
        self._sessions.clear()
        return records


def _ms(ts: float) -> int:
    return round(ts * 1_000_000) // 1000


def _record(s: _EtherSession, end_reason: str) -> dict:
    first, last = _ms(s.first_ts), _ms(s.last_ts)
    network: dict = {"bytes": s.bytes, "packets": s.packets}
    if s.vlans:
        network["vlan"] = {"id": sorted(s.vlans), "id-cnt": len(s.vlans)}
    source: dict = {"bytes": s.bytes, "packets": s.packets}
    destination: dict = {"bytes": 0, "packets": 0}
    for side, macs in ((source, s.src_macs), (destination, s.dst_macs)):
        if macs:
            side["mac"], side["mac-cnt"] = sorted(macs), len(macs)
    return {
        "client": {"bytes": 0},
        "destination": destination,
        "ethertype": s.ethertype,
        "firstPacket": first,
        "ipProtocol": 0,
        "lastPacket": last,
        "length": last - first,
        "network": network,
        "packetRange": {"gte": first, "lte": last},
        "protocol": [s.protocol],
        "protocolCnt": 1,
        "server": {"bytes": 0},
        "source": source,
        "totDataBytes": 0,
        "xdpsensor": {"endReason": end_reason, "sessionId": new_id()},
    }
