"""The session table: packets in, session events out (sans-I/O, packet time only).

Arkime's rules, kept:
- Direction: the sender of a SYN without ACK is the client; when a SYN-ACK is
  the first packet, its destination is the client; otherwise (TCP picked up
  mid-stream, UDP, ICMP, ...) the first packet's source is the client.
- Time is packet time. Timeouts are idle times measured from the last packet:
  TCP 480 s, UDP 60 s, SCTP 60 s, ICMP 10 s; a session marked for close ends
  after `tcp_closing` (5 s) without packets. Like Arkime's packet thread, the
  table checks a packet's session against the clock of the *previous* packet:
  a packet never times out its own session, only `expire(now)` or the packets
  of other flows in between do. (Reading a file, Arkime keeps a flow that
  resumes after a long silence in one session when nothing else was seen.)
- A session's lastPacket is the time of its last packet processed, not the
  latest time seen (captures are not always in time order).
- TCP close (Arkime's tcp.c): a session is marked for close when both sides'
  FINs have been acknowledged, or by a RST carrying exactly the sequence
  number expected next in its direction. A RST ahead of that is only counted;
  one behind it counts as its side having closed. A new SYN (without ACK) on a
  session that has seen a FIN or RST ends it at once and starts a new session
  (port reuse), unless it repeats the client's initial sequence number (a late
  copy of the first SYN).
- TCP flag counts (Arkime's tcp.c): srcZero/dstZero count zero-window packets
  that are not RST; urg/ece/cwr/ae count every packet with the bit; a SYN counts
  `syn`, a SYN+ACK counts `syn-ack`, and neither counts anything else; a RST at
  or ahead of the expected sequence number counts `rst` and nothing else;
  otherwise rst/fin/psh count their bit and `ack` counts packets whose only
  flag among FIN/SYN/RST/PSH/ACK is ACK, payload or not.
- databytes and first_payload: TCP counts in-order reassembled bytes of streams
  whose start is known (a SYN or SYN-ACK was seen: after a SYN alone, the
  server's stream starts at its first packet), not data carried on a SYN. UDP
  counts every datagram's payload and keeps the first 8 bytes of a direction's
  first non-empty datagram; SCTP keeps the first 8 bytes of the first message
  a DATA chunk begins.

Choices of ours:
- VLAN ids are not part of the key (Arkime's default) unless `vlan_key` says how
  (sensor.flows.key.VlanKeying: Arkime's sessionIdTracking=vlan); `Session.vlan`
  collects every VLAN id the session's packets carried.
- IP fragments are reassembled first (sensor.flows.defrag, Arkime's way): a
  datagram reaches its session once, whole, as one packet; fragments that
  never make a whole datagram reach no session (`defrag.stats` counts them).
- PayloadDelivered is emitted for TCP (reassembled) and UDP (per datagram);
  other protocols only count databytes.
- TCP picked up mid-stream (no SYN or SYN-ACK seen) is reassembled from its
  first payload, delivered to the plugins and tagged `mid-stream`; as in
  Arkime (which delivers nothing for such streams) its bytes are not counted
  in databytes/first_payload, so the SPI record stays Arkime's.
"""
from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count

from sensor.flows.accounting import LONG_IDLE_PROTOCOLS, LUMPED_PROTOCOLS, has_session_type, payload_databytes
from sensor.flows.defrag import DefragLimits, Defragmenter
from sensor.flows.events import EndReason, FlowEvent, PayloadDelivered, SessionEnded, SessionStarted, StateChanged
from sensor.flows.key import FlowKey, VlanKeying, community_id
from sensor.flows.reassembly import SEQ_MASK, TcpReassembler
from sensor.flows.session import FIRST_PAYLOAD_BYTES, OUTER_PACKETS, OuterSeen, Session
from sensor.flows.state import SessionState, StateTrigger
from sensor.packet import (
    IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP,
    TCP_ACK, TCP_AE, TCP_CWR, TCP_ECE, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG, Packet,
)

_ACK_ONLY_MASK = TCP_FIN | TCP_SYN | TCP_RST | TCP_PSH | TCP_ACK
_SYN_ACK = TCP_SYN | TCP_ACK
# Flags that send a TCP packet down the general path; ACK and PSH alone take the fast one.
_CONTROL_FLAGS = TCP_SYN | TCP_FIN | TCP_RST | TCP_URG | TCP_ECE | TCP_CWR | TCP_AE
_CONNECTING = SessionState.CONNECTING

# A PayloadDelivered's fields, as `process_raw` returns them.
RawPayload = tuple[Session, int, bytes]

# Session.fin_state values (Arkime's tcpState): that side sent a FIN; its FIN was acknowledged.
FIN_SENT, FIN_ACKED = 1, 2


def arkime_seq_diff(a: int, b: int) -> int:
    """Arkime's tcp_sequence_diff (b - a, with its wrap rules, quirks included):
    a RST is judged with it against a sequence number that may still be 0."""
    if a > 0xC0000000 and b < 0x40000000:
        return a + 0x100000000 - b
    if b > 0xC0000000 and a < 0x40000000:
        return a - b - 0x100000000
    return b - a


def _opens_new_connection(session: Session, packet: Packet) -> bool:
    """A SYN on a session that saw a FIN or RST, and is not the client's original
    SYN (seen or implied by the SYN-ACK): port reuse."""
    if packet.ip_protocol != IPPROTO_TCP or packet.tcp_flags & (TCP_SYN | TCP_ACK) != TCP_SYN:
        return False
    if session.closing_reason is None and not any(session.fin_state) and not session.tcpflags["rst"]:
        return False
    if session.streams is None:
        return True
    client_stream = session.streams[0]
    return (session.direction_of(packet.src_ip, packet.src_port) != 0
            or not client_stream.started
            or (packet.seq + 1) & SEQ_MASK != client_stream.start_seq)


_SCTP_CHUNK = struct.Struct("!BBH")
_SCTP_DATA, _SCTP_DATA_HEADER, _SCTP_FLAG_BEGIN = 0, 16, 0x02


def _sctp_first_message_bytes(chunks: bytes) -> bytes:
    """The first bytes of the first message that begins in these SCTP chunks (a DATA
    chunk with the B flag): Arkime's srcPayload8/dstPayload8 for SCTP."""
    pos = 0
    while pos + 4 <= len(chunks):
        kind, flags, length = _SCTP_CHUNK.unpack_from(chunks, pos)
        if length < 4:
            break
        if kind == _SCTP_DATA and flags & _SCTP_FLAG_BEGIN and length > _SCTP_DATA_HEADER:
            return chunks[pos + _SCTP_DATA_HEADER:pos + min(length, _SCTP_DATA_HEADER + FIRST_PAYLOAD_BYTES)]
        pos += (length + 3) & ~3
    return b""


@dataclass(frozen=True, slots=True)
class FlowOrigin:
    """What was seen of a flow before its first packet reached the table."""

    client: tuple[str, int]  # (ip, port) of the side that opened it
    handshake_seen: bool     # a SYN or SYN-ACK passed: the streams' starts are known


@dataclass(frozen=True, slots=True)
class FlowTimeouts:
    """Idle timeouts in seconds of packet time (Arkime's defaults)."""

    tcp: float = 480.0
    tcp_closing: float = 5.0
    udp: float = 60.0
    sctp: float = 60.0
    icmp: float = 10.0
    other: float = 60.0
    esp_igmp_pim: float = 600.0

    def idle(self, session: Session) -> float:
        """How long `session` may stay without packets before it ends."""
        return self.seconds(session.ip_protocol, session.closing_reason is not None)

    def seconds(self, proto: int, closing: bool = False) -> float:
        """The idle timeout of a flow of IP protocol `proto` (`closing`: a TCP flow Arkime closes)."""
        if closing:
            return self.tcp_closing
        if proto == IPPROTO_TCP:
            return self.tcp
        if proto == IPPROTO_UDP:
            return self.udp
        if proto == IPPROTO_SCTP:
            return self.sctp
        if proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
            return self.icmp
        return self.esp_igmp_pim if proto in LONG_IDLE_PROTOCOLS else self.other


class SessionTable:
    """Bounded table of open sessions, fed one decoded packet at a time."""

    def __init__(
        self,
        timeouts: FlowTimeouts = FlowTimeouts(),
        max_sessions: int = 100_000,
        max_ooo_segments: int = 256,
        max_ooo_bytes: int = 1 << 20,
        defrag: DefragLimits = DefragLimits(),
        vlan_key: VlanKeying | None = None,
    ) -> None:
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, got {max_sessions}")
        self.timeouts = timeouts
        self.max_sessions = max_sessions
        self.max_ooo_segments = max_ooo_segments
        self.max_ooo_bytes = max_ooo_bytes
        self.defrag = Defragmenter(defrag)
        self.vlan_key = vlan_key
        self.evicted = 0
        self.last_session: Session | None = None  # the session of the last packet processed (None: none)
        self.muted_packets = 0  # packets of terminated flows, swallowed
        # Least recently seen first: eviction pops from the front, expiry scans from it.
        self._sessions: OrderedDict[FlowKey, Session] = OrderedDict()
        # Terminated flows -> (last packet time, idle timeout): their later packets start no session.
        self._muted: OrderedDict[FlowKey, tuple[float, float]] = OrderedDict()
        self._ids = count(1)
        self._clock = float("-inf")  # time of the previous packet: Arkime's lastPacketSecs
        self._min_timeout = min(timeouts.tcp, timeouts.tcp_closing, timeouts.udp,
                                timeouts.sctp, timeouts.icmp, timeouts.other)

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[Session]:
        """Open sessions, least recently seen first."""
        return iter(self._sessions.values())

    def get(self, key: FlowKey) -> Session | None:
        return self._sessions.get(key)

    def process(self, packet: Packet, origin: FlowOrigin | None = None) -> list[FlowEvent]:
        """Account one packet; return what happened, in order. `origin` says what
        an earlier stage saw of the flow before this packet (the kernel keeps the
        handshake): it decides the client of a session this packet creates."""
        events = self.process_raw(packet, origin)
        for i, event in enumerate(events):
            if type(event) is tuple:
                events[i] = PayloadDelivered(*event)
        return events

    def process_raw(self, packet: Packet, origin: FlowOrigin | None = None) -> list[FlowEvent | RawPayload]:
        """`process`, with each PayloadDelivered left as its (session, direction_index,
        data) tuple: making the event object costs more than the rest of a packet's
        accounting, and the pipeline only unpacks it."""
        if packet.is_fragment:
            packet = self.defrag.add(packet)
            if packet is None:
                self.last_session = None
                return []
        events: list[FlowEvent | RawPayload] = []
        src_ip, src_port, dst_ip, dst_port = packet.src_ip, packet.src_port, packet.dst_ip, packet.dst_port
        vlan = packet.vlan
        keyed = () if self.vlan_key is None else (self.vlan_key.key_of(vlan),)
        # flow_key(packet, self.vlan_key), inlined: this runs for every packet.
        if src_ip < dst_ip or (src_ip == dst_ip and src_port <= dst_port):
            key = (packet.ip_protocol, keyed, src_ip, src_port, dst_ip, dst_port)
        else:
            key = (packet.ip_protocol, keyed, dst_ip, dst_port, src_ip, src_port)
        if packet.ip_protocol in LUMPED_PROTOCOLS:
            key = (packet.ip_protocol, (), "", 0, "", 0)
        ts = packet.timestamp
        flags = packet.tcp_flags
        if self._muted and key in self._muted and self._still_muted(key, ts, flags):
            self.last_session = None
            return events
        sessions = self._sessions
        session = sessions.get(key)
        clock = self._clock
        self._clock = ts
        if session is not None:
            # Only a session idle for the shortest timeout, or a SYN, can end here: skip the rest.
            if clock > session.last_ts + self._min_timeout or flags & _SYN_ACK == TCP_SYN:
                ended = self._end_before(session, packet, clock)
                if ended is not None:
                    events.append(ended)
                    session = None
        if session is None:
            if len(sessions) >= self.max_sessions:
                events.append(self._evict_oldest(ts))
            session = self._create(key, packet, origin)
            events.append(SessionStarted(session))
        else:
            sessions.move_to_end(key)
            session.last_ts = ts
            if vlan and vlan != session.vlan:
                session.vlan += tuple(v for v in vlan if v not in session.vlan)
        self.last_session = session
        direction = 0 if src_port == session.client_port and src_ip == session.client_ip else 1
        if direction and not has_session_type(packet.ip_protocol, src_port, dst_port):
            direction = 0   # Arkime gives its "other" sessions no direction
        session.packets[direction] += 1
        if packet.outer is not None and session.packets[direction] <= OUTER_PACKETS:
            if session.outer is None:
                session.outer = OuterSeen()
            session.outer.add(packet.outer)
        session.bytes[direction] += packet.frame_len
        proto = packet.ip_protocol
        if proto == IPPROTO_TCP:
            # Arkime's tcp_packet_process, step by step: flag counts, close state, reassembly.
            counts = session.tcpflags
            if not packet.window and not flags & TCP_RST:
                counts["dstZero" if direction else "srcZero"] += 1
            if flags & _CONTROL_FLAGS or session.state is _CONNECTING:
                if not self._tcp_control(session, packet, flags, direction, events):
                    return events
            elif flags & TCP_PSH:  # an ACK/PSH segment of an established session: the common case
                counts["psh"] += 1
            elif flags & TCP_ACK:
                counts["ack"] += 1
            stream = session.streams[direction]
            if stream.incomplete:
                return events
            if not stream.started and session.handshake_seen and not counts["syn-ack"]:
                stream.start(packet.seq)  # SYN seen, SYN-ACK missed: this side starts here
            if flags & (TCP_ACK | TCP_RST):
                fin_state = session.fin_state
                if fin_state[1 - direction] == FIN_SENT:
                    fin_state[1 - direction] = FIN_ACKED
                    if fin_state[direction] == FIN_ACKED:
                        self._mark_closing(session, "fin")
                        return events  # Arkime takes no data from the packet that completes the close
            if flags & TCP_RST:
                return events
            payload = packet.payload
            if payload:
                seq = packet.seq
                if seq == stream.next_seq and stream.started and not stream.queued_bytes:
                    # TcpReassembler.feed's common case, inlined: exactly the next bytes, nothing waiting.
                    stream.next_seq = (seq + len(payload)) & SEQ_MASK
                    chunks = (payload,)
                else:
                    chunks = stream.feed(seq, payload)
                if session.handshake_seen:  # the stream offsets are known: count the bytes
                    databytes, kept = session.databytes, session.first_payload
                    for chunk in chunks:
                        databytes[direction] += len(chunk)
                        if len(kept[direction]) < FIRST_PAYLOAD_BYTES:
                            kept[direction] += chunk[:FIRST_PAYLOAD_BYTES - len(kept[direction])]
                        events.append((session, direction, chunk))
                else:
                    for chunk in chunks:
                        events.append((session, direction, chunk))
                if stream.incomplete:
                    session.tags.add("incomplete-tcp")
        elif proto == IPPROTO_UDP:
            payload = packet.payload
            if payload:
                session.databytes[direction] += len(payload)
                if not session.first_payload[direction]:
                    session.first_payload[direction] = payload[:FIRST_PAYLOAD_BYTES]
                events.append((session, direction, payload))
        elif proto == IPPROTO_SCTP:
            session.databytes[direction] += len(packet.payload)
            if not session.first_payload[direction]:
                session.first_payload[direction] = _sctp_first_message_bytes(packet.payload)
        else:
            payload = packet.payload
            session.databytes[direction] += payload_databytes(proto, len(payload), packet.trailer)
            if proto in (IPPROTO_ICMP, IPPROTO_ICMPV6) and len(payload) >= 2:
                session.icmp_types.add(payload[0])
                session.icmp_codes.add(payload[1])
        return events

    def expire(self, now: float) -> list[SessionEnded]:
        """End the sessions idle for longer than their timeout at packet time `now`."""
        due: list[Session] = []
        for session in self._sessions.values():
            if session.last_ts > now:
                continue  # from a later time (an earlier capture file): not due, and no guide to the rest
            if session.last_ts + self._min_timeout > now:
                break  # sessions further on were seen more recently: none can be due
            if self._deadline(session) <= now:
                due.append(session)
        return [self._end(s, s.closing_reason or "timeout", self._deadline(s)) for s in due]

    def terminate(self, session: Session) -> SessionEnded:
        """End one open session now (an API caller's decision). The flow's
        later packets are swallowed (counted in `muted_packets`) until it has
        been idle for its timeout or a new connection reuses its ports, so it
        is reported once, not again as a mid-stream session."""
        self._muted[session.key] = (session.last_ts, self.timeouts.idle(session))
        if len(self._muted) > self.max_sessions:
            self._muted.popitem(last=False)
        return self._end(session, "terminated", session.last_ts)

    def _still_muted(self, key: FlowKey, ts: float, flags: int) -> bool:
        last, idle = self._muted[key]
        if ts > last + idle or flags & _SYN_ACK == TCP_SYN:
            del self._muted[key]
            return False
        self._muted[key] = (max(last, ts), idle)
        self._muted.move_to_end(key)
        self.muted_packets += 1
        return True

    def close_all(self) -> list[SessionEnded]:
        """End every session (shutdown, end of capture), least recently seen first."""
        return [self._end(s, "shutdown", s.last_ts) for s in list(self._sessions.values())]

    def _deadline(self, session: Session) -> float:
        return session.last_ts + self.timeouts.idle(session)

    def _end_before(self, session: Session, packet: Packet, clock: float) -> SessionEnded | None:
        """End an existing session that `packet` cannot belong to: timed out at `clock`
        (the previous packet's time), or a port reuse."""
        deadline = self._deadline(session)
        if clock > deadline:
            return self._end(session, session.closing_reason or "timeout", deadline)
        if _opens_new_connection(session, packet):
            reason = session.closing_reason or ("rst" if session.tcpflags["rst"] else "fin")
            return self._end(session, reason, packet.timestamp)
        return None

    def _end(self, session: Session, reason: EndReason, closed_at: float) -> SessionEnded:
        del self._sessions[session.key]
        if session.streams is not None:
            for stream in session.streams:
                stream.flush()
        session.trigger(StateTrigger.ENDED)
        session.closed_at = closed_at
        return SessionEnded(session, reason)

    def _evict_oldest(self, now: float) -> SessionEnded:
        oldest = next(iter(self._sessions.values()))
        self.evicted += 1
        return self._end(oldest, "evicted", now)

    def _create(self, key: FlowKey, packet: Packet, origin: FlowOrigin | None) -> Session:
        proto = packet.ip_protocol
        flags = packet.tcp_flags
        is_tcp = proto == IPPROTO_TCP
        src, dst = (packet.src_ip, packet.src_port), (packet.dst_ip, packet.dst_port)
        if origin is not None:
            client, server = (src, dst) if origin.client == src else (dst, src)
        elif is_tcp and flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK:
            client, server = (packet.dst_ip, packet.dst_port), (packet.src_ip, packet.src_port)
        else:
            client, server = (packet.src_ip, packet.src_port), (packet.dst_ip, packet.dst_port)
        if not has_session_type(proto, packet.src_port, packet.dst_port):
            cid = ""
        elif proto in (IPPROTO_ICMP, IPPROTO_ICMPV6) and len(packet.payload) >= 2:
            # Community ID hashes ICMP type and code in place of ports.
            cid = community_id(packet.src_ip, packet.dst_ip, packet.payload[0], packet.payload[1], proto)
        else:
            cid = community_id(client[0], server[0], client[1], server[1], proto)
        state = SessionState.CONNECTING if is_tcp and flags & TCP_SYN else SessionState.ACTIVE
        ts = packet.timestamp
        session = Session(
            next(self._ids), key, proto, packet.ip_version, client[0], server[0], client[1], server[1],
            packet.vlan, ts, ts, cid, state, ts,
        )
        if is_tcp:
            session.streams = (
                TcpReassembler(self.max_ooo_segments, self.max_ooo_bytes),
                TcpReassembler(self.max_ooo_segments, self.max_ooo_bytes),
            )
            if origin is not None and origin.handshake_seen:
                session.handshake_seen = True
            elif not flags & TCP_SYN:
                session.tags.add("mid-stream")
        self._sessions[key] = session
        return session

    def _tcp_control(self, session: Session, packet: Packet, flags: int, direction: int,
                     events: list[FlowEvent | RawPayload]) -> bool:
        """The flag steps of a TCP packet that is not a plain ACK/PSH of an established
        session: rare flag counts, state, SYN, RST, FIN. False when the packet stops
        here; True when it goes on to the close check and reassembly."""
        counts = session.tcpflags
        if flags & (TCP_URG | TCP_ECE | TCP_CWR | TCP_AE):
            for bit, name in ((TCP_URG, "urg"), (TCP_ECE, "ece"), (TCP_CWR, "cwr"), (TCP_AE, "ae")):
                if flags & bit:
                    counts[name] += 1
        before = session.state
        self._advance_tcp_state(session, flags, direction)
        if session.state is not before:
            events.append(StateChanged(session))
        streams = session.streams
        assert streams is not None, "TCP sessions get their streams when created"
        stream = streams[direction]
        if flags & TCP_SYN:
            if flags & TCP_ACK:
                counts["syn-ack"] += 1
                # The SYN-ACK acknowledges the client's SYN: the client stream starts there.
                streams[1 - direction].start(packet.ack)
            else:
                counts["syn"] += 1
            session.handshake_seen = True
            # Data on a SYN (TCP Fast Open) reaches the plugins; Arkime counts none of it.
            for chunk in stream.feed(packet.seq, packet.payload, syn=True):
                events.append((session, direction, chunk))
            return False
        if flags & TCP_RST:
            counts["rst"] += 1
            expected = stream.next_seq if session.handshake_seen and stream.started else 0
            behind = arkime_seq_diff(packet.seq, expected)  # > 0: the RST is behind the stream
            if behind <= 0:
                if behind == 0:
                    self._mark_closing(session, "rst")
                return False
            session.fin_state[direction] = FIN_ACKED
        if flags & TCP_FIN:
            counts["fin"] += 1
            session.fin_state[direction] = FIN_SENT
        if flags & _ACK_ONLY_MASK == TCP_ACK:
            counts["ack"] += 1
        if flags & TCP_PSH:
            counts["psh"] += 1
        return True

    @staticmethod
    def _mark_closing(session: Session, reason: EndReason) -> None:
        if session.closing_reason is None:
            session.closing_reason = reason

    @staticmethod
    def _advance_tcp_state(session: Session, flags: int, direction: int) -> None:
        """ProtoPoke's session states, from the flags alone (closing is Arkime's business above)."""
        if flags & TCP_RST:
            session.trigger(StateTrigger.RESET)
            return
        if not flags & TCP_SYN and session.state is SessionState.CONNECTING:  # skip the table lookup when settled
            session.trigger(StateTrigger.ESTABLISHED)
        if flags & TCP_FIN:
            session.trigger(StateTrigger.SERVER_FIN if direction else StateTrigger.CLIENT_FIN)
