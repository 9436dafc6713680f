"""What Arkime counts of an IP protocol beyond packets and bytes.

Arkime has a session type of its own for TCP, UDP, SCTP, ICMP/ICMPv6 and ESP,
and gives those sessions databytes and a Community ID. Every other IP
protocol (IGMP, OSPF, PIM, GRE, AH, IP-in-IP, ...) is its "other" session:
no databytes, no Community ID, and every packet counted on the side of the
session's first sender (capture/db.c, capture/packet.c, capture/parsers/*.c).
Arkime keeps all IGMP in one session, and all PIM in another, whatever
their addresses."""
from __future__ import annotations

from sensor.packet import IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP

IPPROTO_IGMP, IPPROTO_ESP, IPPROTO_PIM = 2, 50, 103
ESP_HEADER = 8   # SPI and sequence number: not in Arkime's databytes
LUMPED_PROTOCOLS = frozenset((IPPROTO_IGMP, IPPROTO_PIM))
# Arkime's espTimeout and its IGMP and PIM sessions' idle timeout: ten minutes.
LONG_IDLE_PROTOCOLS = frozenset((IPPROTO_IGMP, IPPROTO_ESP, IPPROTO_PIM))
_ARKIME_SESSION_TYPES = frozenset((IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ESP, IPPROTO_ICMPV6,
                                   IPPROTO_SCTP))


def has_session_type(proto: int, sport: int, dport: int) -> bool:
    """Whether Arkime gives this flow a direction, databytes and a Community ID:
    its IP protocol has a session type, and a UDP flow has ports: one with
    neither is a UDP tunnel's outer header with no IP packet inside (ARP in
    VXLAN), which Arkime files as an "other" session."""
    if not sport and not dport and proto == IPPROTO_UDP:
        return False
    return proto in _ARKIME_SESSION_TYPES


def payload_databytes(proto: int, payload_len: int, trailer: int = 0) -> int:
    """The databytes a packet of any protocol but TCP adds, given its payload
    (what follows the UDP/SCTP header, or the IP header) and `trailer`, the
    frame's bytes past its IP packet (Ethernet padding): Arkime counts ICMP to
    the end of the frame (pktlen - payloadOffset). The kernel counts the same."""
    if proto == IPPROTO_ESP:
        return payload_len - ESP_HEADER if payload_len >= ESP_HEADER else 0
    if proto == IPPROTO_ICMP or proto == IPPROTO_ICMPV6:
        return payload_len + trailer
    return payload_len if proto in _ARKIME_SESSION_TYPES else 0
