"""Sessions built from the kernel's flow table alone (sans-I/O).

A flow no rule selected never sends a packet up, yet the kernel counted all
of it: per-side packets, bytes, Arkime's databytes and TCP flags, the first
payload bytes, the distinct ICMP types and codes. When such a flow ends (TCP
closed as Arkime closes it, or idle by Arkime's per-protocol timeouts), this
turns its entry into the `Session` the plugin runtime renders as an SPI
record, exactly as a session built from packets."""
from __future__ import annotations

import functools
from collections.abc import Iterable

from sensor.flows.accounting import LUMPED_PROTOCOLS, has_session_type
from sensor.flows.ether import idle_timeout
from sensor.flows.key import community_id
from sensor.flows.session import Session
from sensor.flows.state import SessionState
from sensor.flows.table import FlowTimeouts
from sensor.kernel.contract import (
    IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, TCPF_ZERO_HI, TCPF_ZERO_LO, TCPFLAG_NAMES, EtherKind, FlowFlag,
    FlowKey, FlowState, key_endpoints,
)

_CLOSED_BOTH = FlowFlag.FIN_LO | FlowFlag.FIN_HI


def closing_reason(key: FlowKey, state: FlowState) -> str | None:
    """"rst" or "fin" once a TCP flow is closed as Arkime closes it (a RST, or
    a FIN from each side), else None: it then ends after the closing timeout."""
    return _closing(key.proto, state.flags)


def _closing(proto: int, flags: int) -> str | None:
    if proto != IPPROTO_TCP:
        return None
    if flags & FlowFlag.RST:
        return "rst"
    if flags & _CLOSED_BOTH == _CLOSED_BOTH:
        return "fin"
    return None


def _idle_limit_ns(proto: int, flags: int, timeouts: FlowTimeouts) -> int:
    return int(timeouts.seconds(proto, _closing(proto, flags) is not None) * 1e9)


def _ether_idle_ns(kind: int) -> int:
    """A non-IP flow's idle timeout (key.family 0, key.proto its EtherKind)."""
    return idle_timeout(EtherKind(kind)) * 1_000_000_000


def idle_limit_ns(key: FlowKey, state: FlowState, timeouts: FlowTimeouts) -> int:
    """How long the flow may stay without packets, by Arkime's per-protocol timeouts."""
    if key.family == 0:
        return _ether_idle_ns(key.proto)
    return _idle_limit_ns(key.proto, state.flags, timeouts)


def end_reason(key: FlowKey, state: FlowState, now_ns: int, timeouts: FlowTimeouts) -> str | None:
    """Why the flow has ended at `now_ns` (the table's clock), or None while it may go on."""
    if now_ns - state.last_ns <= idle_limit_ns(key, state, timeouts):
        return None
    return closing_reason(key, state) or "timeout"


@functools.lru_cache(maxsize=4)
def _idle_limits_ns(timeouts: FlowTimeouts) -> tuple[int, ...]:
    """Idle timeout by key.proto (0-255) for an expiry pass: worked out once per
    set of timeouts, not on every pass. key.proto of a non-IP flow is its
    EtherKind: the shorter of the two timeouts serves both."""
    kinds = {int(kind): _ether_idle_ns(kind) for kind in EtherKind}
    return tuple(min(_idle_limit_ns(proto, 0, timeouts), kinds.get(proto, 1 << 62)) for proto in range(256))


class Attention:
    """Which flows an expiry pass at `now_ns` must look at: those that ended,
    or may be due a mid-session record (`packets` in all, or TCP spanning
    `span_ns`; 0: no time-based records). A cheap test on a few raw fields,
    so that a table of a million flows is read without building a million
    objects; it never leaves out a flow `end_reason` or a mid-session check
    would take."""

    __slots__ = ("packets", "span_ns", "_idle_before", "_closed_before")

    def __init__(self, now_ns: int, timeouts: FlowTimeouts, packets: int, span_ns: int) -> None:
        self.packets, self.span_ns = packets, span_ns
        # A flow has ended when its last packet is before these (by protocol; closed TCP apart).
        self._idle_before = [now_ns - limit for limit in _idle_limits_ns(timeouts)]
        self._closed_before = now_ns - int(timeouts.tcp_closing * 1e9)

    def wants(self, proto: int, flags: int, packets: int, first_ns: int, last_ns: int) -> bool:
        if last_ns < self._idle_before[proto] or packets >= self.packets or proto in LUMPED_PROTOCOLS:
            return True     # (an IGMP or PIM flow ends with all the others of its protocol: see lump)
        if proto != IPPROTO_TCP:
            return False
        if _closing(proto, flags) is not None and last_ns < self._closed_before:
            return True
        return self.span_ns > 0 and last_ns - first_ns >= self.span_ns


def lump(flows: Iterable[tuple[FlowKey, FlowState]]) -> list[tuple[FlowKey, FlowState, list[FlowKey]]]:
    """(key, state, member keys) per session: each flow its own, but all IP flows
    of IGMP or of PIM (LUMPED_PROTOCOLS) make one, as in Arkime: the earliest's
    key and client, every packet on its side, the latest packet's time."""
    out: list[tuple[FlowKey, FlowState, list[FlowKey]]] = []
    groups: dict[int, list[tuple[FlowKey, FlowState]]] = {}
    for key, state in flows:
        if key.family and key.proto in LUMPED_PROTOCOLS:     # (family 0: proto is an EtherKind)
            groups.setdefault(key.proto, []).append((key, state))
        else:
            out.append((key, state, [key]))
    for members in groups.values():
        members.sort(key=lambda member: member[1].first_ns)
        key, first = members[0]
        state = FlowState.from_buffer_copy(first)
        state.packets[state.client] = sum(s.packets[0] + s.packets[1] for _, s in members)
        state.bytes[state.client] = sum(s.bytes[0] + s.bytes[1] for _, s in members)
        state.packets[1 - state.client] = state.bytes[1 - state.client] = 0
        state.last_ns = max(s.last_ns for _, s in members)
        out.append((key, state, [k for k, _ in members]))
    return out


def flow_session(key: FlowKey, state: FlowState, session_id: int, clock_offset_ns: int) -> Session:
    """The session of a kernel flow; `clock_offset_ns` turns the table's times into epoch time."""
    lo, hi = key_endpoints(key)
    client, server = (lo, hi) if state.client == 0 else (hi, lo)
    sides = (state.client, 1 - state.client)       # client -> server first, as Session indexes
    proto = key.proto
    first, last = (state.first_ns + clock_offset_ns) / 1e9, (state.last_ns + clock_offset_ns) / 1e9
    typed = has_session_type(proto, lo.port, hi.port)
    if not typed:
        cid = ""
    elif proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        # Community ID hashes the first message's type and code in place of ports.
        if state.icmp_types:
            cid = community_id(client.ip, server.ip, state.icmp_type[0], state.icmp_code[0], proto)
        else:
            cid = community_id(client.ip, server.ip, None, None, proto)
    else:
        cid = community_id(client.ip, server.ip, client.port, server.port, proto)
    vlan = tuple(v for v in state.vlan if v)
    session = Session(
        session_id, (proto, (), lo.ip, lo.port, hi.ip, hi.port), proto, key.family, client.ip, server.ip,
        client.port, server.port, vlan, first, last, cid, SessionState.CLOSED, first, closed_at=last,
    )
    if typed:
        session.packets = [state.packets[s] for s in sides]
        session.bytes = [state.bytes[s] for s in sides]
        session.databytes = [state.databytes[s] for s in sides]     # Arkime's, as the kernel counts them
    else:   # Arkime's "other" session: no direction, no databytes
        session.packets = [state.packets[0] + state.packets[1], 0]
        session.bytes = [state.bytes[0] + state.bytes[1], 0]
    raw = bytes(state.payload8)
    session.first_payload = [raw[s * 8:s * 8 + state.payload8_len[s]] for s in sides]
    # The kernel keeps the first ICMP_MAX distinct types and codes (Arkime lists every one).
    session.icmp_types.update(state.icmp_type[:state.icmp_types])
    session.icmp_codes.update(state.icmp_code[:state.icmp_codes])
    if proto == IPPROTO_TCP:
        for i, name in enumerate(TCPFLAG_NAMES):
            session.tcpflags[name] = state.tcpflags[i]
        zero = (state.tcpflags[TCPF_ZERO_LO], state.tcpflags[TCPF_ZERO_HI])
        session.tcpflags["srcZero"], session.tcpflags["dstZero"] = zero[sides[0]], zero[sides[1]]
    return session
