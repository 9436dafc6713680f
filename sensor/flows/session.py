"""One bidirectional flow and the counters Arkime's session record needs.

Per-direction lists are indexed like Arkime's `which`: 0 client->server,
1 server->client. The attribute names are a contract with the plugin runtime
(`sensor.arkime.view.SessionView`) and the output writers: do not rename them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sensor.flows.accounting import has_session_type
from sensor.flows.key import FlowKey
from sensor.flows.reassembly import TcpReassembler
from sensor.flows.state import EndReason, SessionState, StateTrigger, next_state
from sensor.ids import new_id
from sensor.packet import Outer

FIRST_PAYLOAD_BYTES = 8  # what srcPayload8/dstPayload8 keep

TCPFLAG_KEYS = ("syn", "syn-ack", "ack", "psh", "fin", "rst", "urg", "ece", "cwr", "ae", "srcZero", "dstZero")


def _zero_tcpflags() -> dict[str, int]:
    return dict.fromkeys(TCPFLAG_KEYS, 0)


OUTER_PACKETS = 10  # Arkime takes the outer fields of a session's first 10 packets per direction


@dataclass(slots=True)
class OuterSeen:
    """Arkime's outer fields of a tunnelled session: the tunnels it came out
    of, and every outer address and network id of its first packets."""

    tunnels: int = 0
    src_ips: set[str] = field(default_factory=set)
    dst_ips: set[str] = field(default_factory=set)
    src_macs: set[str] = field(default_factory=set)
    dst_macs: set[str] = field(default_factory=set)
    vnis: set[int] = field(default_factory=set)

    def add(self, outer: Outer) -> None:
        self.tunnels |= outer.tunnels
        if outer.src_ip:
            self.src_ips.add(outer.src_ip)
            self.dst_ips.add(outer.dst_ip)
        if outer.src_mac:
            self.src_macs.add(outer.src_mac)
            self.dst_macs.add(outer.dst_mac)
        if outer.vni:
            self.vnis.add(outer.vni)


@dataclass(slots=True, eq=False)
class Session:
    """Mutable flow state owned by a `SessionTable`; times are packet time (seconds)."""

    id: int
    key: FlowKey
    ip_protocol: int
    ip_version: int
    client_ip: str
    server_ip: str
    client_port: int
    server_port: int
    vlan: tuple[int, ...]  # every VLAN id seen, in order of first appearance
    first_ts: float
    last_ts: float
    community_id: str
    state: SessionState
    created_at: float
    closed_at: float | None = None
    packets: list[int] = field(default_factory=lambda: [0, 0])
    bytes: list[int] = field(default_factory=lambda: [0, 0])  # frame bytes (wire length)
    databytes: list[int] = field(default_factory=lambda: [0, 0])  # L4 payload; TCP: in-order reassembled
    tcpflags: dict[str, int] = field(default_factory=_zero_tcpflags)
    first_payload: list[bytes] = field(default_factory=lambda: [b"", b""])
    icmp_types: set[int] = field(default_factory=set)  # ICMP/ICMPv6: every type and code seen (icmp.type)
    icmp_codes: set[int] = field(default_factory=set)
    tags: set[str] = field(default_factory=set)
    outer: OuterSeen | None = None  # set when the session's packets came out of a tunnel
    # TCP only: one reassembler per direction, created with the session.
    streams: tuple[TcpReassembler, TcpReassembler] | None = None
    # Set when Arkime would mark the session for close: both FINs acknowledged
    # ("fin"), or a RST at exactly the expected sequence number ("rst"). The
    # session then ends after the short closing timeout instead of the idle one.
    closing_reason: EndReason | None = None
    # TCP only: per direction, 0, FIN_SENT once that side sent a FIN, FIN_ACKED once
    # the other side acknowledged it (Arkime's tcpState).
    fin_state: list[int] = field(default_factory=lambda: [0, 0])
    # TCP only: a SYN or SYN-ACK was seen, so stream offsets are known (Arkime's
    # haveTcpSession). Data of a stream picked up without one is delivered to
    # plugins but, like Arkime, not counted in databytes/first_payload.
    handshake_seen: bool = False
    # Stable across processes (store, API, records); `id` is the table's counter.
    uid: str = field(default_factory=new_id)

    def direction_of(self, src_ip: str, src_port: int) -> int:
        """0 when a packet from (src_ip, src_port) goes client->server, else 1;
        always 0 in a session of a protocol Arkime gives no direction."""
        if not has_session_type(self.ip_protocol, self.client_port, self.server_port):
            return 0
        return 0 if src_ip == self.client_ip and src_port == self.client_port else 1

    def trigger(self, trigger: StateTrigger) -> None:
        """Move along the state table (`sensor.flows.state`)."""
        self.state = next_state(self.state, trigger)
