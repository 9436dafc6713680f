"""Which sessions count toward the conformance targets.

In scope: sessions Arkime keys on plain IPv4/IPv6 TCP or UDP, carried over
Ethernet (with or without VLAN tags) or another plain-IP link type (raw IP,
Linux cooked, BSD loopback). Everything else is counted and
reported on its own: DHCP (Arkime keys it on the client's MAC address or the
DHCPv6 transaction id, so a request and its replies form one session whatever
their addresses), tunnelled traffic (Arkime decapsulates GRE, GTP, VXLAN,
Geneve, ERSPAN, MPLS, PPPoE, NSH, IP-in-IP and keys the inner flow; we key the
outer one), SCTP, ICMP, other IP protocols (ESP, AH, OSPF, ...; corrupt IP),
non-IP frames (ARP, LLDP, ...), and captures of other link types (802.11
radiotap, frame relay, NFLOG).
"""
from __future__ import annotations

from sensor.packet import (
    LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2,
    LINKTYPE_NULL, LINKTYPE_RAW, LINKTYPE_RAW_OPENBSD,
)

IN_SCOPE = "tcp/udp"
DHCP = "dhcp"
TUNNEL = "tunnel"
SCTP = "sctp"
ICMP = "icmp"
OTHER_IP = "other-ip"
NON_IP = "non-ip"
OTHER_LINK = "other-link"
CATEGORIES = (IN_SCOPE, DHCP, TUNNEL, SCTP, ICMP, OTHER_IP, NON_IP, OTHER_LINK)

# Link types that carry plain Ethernet or IP frames. Fixed here, not taken from the
# decoder, so that teaching the decoder a new link type does not move the target.
PLAIN_IP_LINKTYPES = frozenset((
    LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_RAW_OPENBSD, LINKTYPE_IPV4, LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_NULL,
))

# Protocol names Arkime adds when it took a packet out of an encapsulation.
TUNNEL_PROTOCOLS = frozenset(("gre", "gtp", "vxlan", "vxlan-gpe", "geneve", "erspan", "mpls",
                              "pppoe", "ppp", "nsh"))
# Keys Arkime writes on sessions it found inside a tunnel.
_TUNNEL_KEYS = ("srcOuterIp", "dstOuterIp", "vni")
# Ethertypes a plain IP session has (absent: a link type without ethertype, e.g. raw IP).
_PLAIN_ETHERTYPES = (None, 0x0800, 0x86DD)
# IP protocols that carry another packet, and the UDP ports of the tunnels Arkime
# decapsulates: our sessions with them are the outer flows Arkime never reports.
TUNNEL_IP_PROTOCOLS = frozenset((4, 41, 47, 97, 115, 137))
TUNNEL_UDP_PORTS = frozenset((2152, 4789, 4790, 6081))
# Arkime keys DHCP by the client's MAC and DHCPv6 by transaction id, not by 5-tuple.
DHCP_PROTOCOLS = frozenset(("dhcp", "dhcpv6"))
DHCP_UDP_PORTS = frozenset((67, 68, 546, 547))


def expected_category(body: dict, linktypes: frozenset[int]) -> str:
    """The category of one of Arkime's sessions (a normalised `.test` body)."""
    if not linktypes <= PLAIN_IP_LINKTYPES:
        return OTHER_LINK
    proto = body.get("ipProtocol", 0)
    if not proto:
        return NON_IP
    protocols = set(body.get("protocol") or ())
    if (protocols & TUNNEL_PROTOCOLS or any(k in body for k in _TUNNEL_KEYS)
            or body.get("ethertype") not in _PLAIN_ETHERTYPES or _on_tunnel_port(body)):
        return TUNNEL
    if proto == 17 and protocols & DHCP_PROTOCOLS:
        return DHCP
    return _ip_category(proto, protocols)


def actual_category(record: dict, linktypes: frozenset[int]) -> str:
    """The category of one of our records, for sessions Arkime did not report."""
    if not linktypes <= PLAIN_IP_LINKTYPES:
        return OTHER_LINK
    proto = record.get("ipProtocol", 0)
    if not proto:
        return NON_IP
    if proto in TUNNEL_IP_PROTOCOLS:
        return TUNNEL
    if _on_tunnel_port(record):
        return TUNNEL
    ports = {record.get("source", {}).get("port"), record.get("destination", {}).get("port")}
    if proto == 17 and ports & DHCP_UDP_PORTS:
        return DHCP
    return _ip_category(proto, set(record.get("protocol") or ()))


def _on_tunnel_port(body: dict) -> bool:
    """A UDP session on a port Arkime decapsulates: what reaches it is what was not a tunnel packet."""
    ports = {(body.get("source") or {}).get("port"), (body.get("destination") or {}).get("port")}
    return body.get("ipProtocol") == 17 and bool(ports & TUNNEL_UDP_PORTS)


def _ip_category(proto: int, protocols: set[str]) -> str:
    if "corrupt-ip" in protocols or "unknown-ip" in protocols:
        return OTHER_IP
    if proto in (6, 17):
        return IN_SCOPE
    if proto == 132:
        return SCTP
    if proto in (1, 58):
        return ICMP
    return OTHER_IP
