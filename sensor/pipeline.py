"""The userspace pipeline, sans-I/O: frames in, session records out.

frame -> packet -> session table (reassembly) -> plugin runtime -> record,
with the listeners (sensor.hooks: the session registry, the output writer, ...)
called at each step and handed the FinishedSession. The same object serves the live ring buffer and pcap files. When the frames
came through the XDP program, the kernel's whole-flow counters replace the
userspace ones at session end (they include packets never sent up), a
session no plugin still wants is BYPASSED in the kernel, and a flow that
never came up gets its record from the kernel's counters when it ends."""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import count

from sensor.arkime.runtime import PluginRuntime
from sensor.arkime.session import PluginSession
from sensor.flows.ether import EtherSessions, kernel_record
from sensor.flows.events import SessionEnded, SessionStarted, StateChanged
from sensor.flows.session import Session
from sensor.flows.table import FlowOrigin, SessionTable
from sensor.hooks import FinishedSession, ListenerChain, SessionEnding
from sensor.ids import new_id
from sensor.kernel.contract import (
    TCPF_ZERO_HI, TCPF_ZERO_LO, TCPFLAG_NAMES, FlowKey, FlowState, Verdict, key_endpoints, retired_key,
)
from sensor.kernel.flowfilter import FlowFilter
from sensor.kernel.flowrecord import KernelFlowView, kernel_spi
from sensor.kernel.flowsession import Attention, end_reason, flow_session, lump
from sensor.packet import IPPROTO_TCP, LINKTYPE_ETHERNET, NotIp, PacketError, decode_frame
from sensor.prefilter import flow_hash
from sensor.walk import DEFAULT_UDP_TUNNELS

log = logging.getLogger(__name__)

SAVE_EVERY = 480.0  # seconds between mid-session records of a TCP session (Arkime's tcpSaveTimeout)
MAX_PACKETS = 10000  # packets after which a session gets a mid-session record (Arkime's maxPackets)
SAVE_SCAN_EVERY = 10.0  # seconds between looks for TCP sessions due a time-based record
EMIT_BATCH = 256  # kernel-only records handed to the listeners at once


class KernelSaves:
    """A long kernel-only flow's mid-session records so far and the counters they reported,
    which later records leave out (the kernel's counters cover the whole flow)."""

    def __init__(self, session_id: int) -> None:
        self.session_id = session_id
        self.uid = ""           # the first record's session uid: every later record keeps it
        self.count = 0
        self.save_at_ns = 0
        self.reported: FlowState | None = None

    @property
    def packets(self) -> int:
        return self.reported.packets[0] + self.reported.packets[1] if self.reported else 0

    def since(self, state: FlowState) -> FlowState:
        """`state` with the counts already reported taken off."""
        if self.reported is None:
            return state
        left = type(state).from_buffer_copy(state)
        for name in ("packets", "bytes", "databytes"):
            now, before = getattr(left, name), getattr(self.reported, name)
            for side in (0, 1):
                now[side] -= before[side]
        for i in range(len(left.tcpflags)):
            left.tcpflags[i] -= self.reported.tcpflags[i]
        return left

    def taken(self, state: FlowState, next_save_ns: int) -> None:
        """A record reported `state`'s counters; the next time-based one is due at `next_save_ns`."""
        self.count += 1
        self.reported = type(state).from_buffer_copy(state)
        self.save_at_ns = next_save_ns


@dataclass(slots=True)
class PipelineStats:
    frames: int = 0
    undecodable: int = 0
    sessions: int = 0
    records: int = 0
    bypassed: int = 0
    kernel_records: int = 0     # records of flows that never came up, from the kernel's counters
    kernel_expired: int = 0     # kernel flows ended (recorded or, with kernel_records off, forgotten)


def overlay_kernel_counts(session: Session, key: FlowKey, state: FlowState, clock_offset_ns: int) -> None:
    """Replace the session's counters with the kernel's whole-flow ones,
    turning the kernel's LO/HI sides into client/server."""
    lo, _ = key_endpoints(key)
    client = 0 if (lo.ip, lo.port) == (session.client_ip, session.client_port) else 1
    sides = (client, 1 - client)
    session.packets = [state.packets[s] for s in sides]
    session.bytes = [state.bytes[s] for s in sides]
    if "xdp-bypassed" in session.tags or state.late_select:
        # Userspace missed payload (after the bypass, or the other side's before a
        # selection on a later payload); the kernel counted it all, by Arkime's rules.
        session.databytes = [state.databytes[s] for s in sides]
        raw = bytes(state.payload8)
        session.first_payload = [raw[s * 8:s * 8 + state.payload8_len[s]] for s in sides]
    for i, name in enumerate(TCPFLAG_NAMES):
        session.tcpflags[name] = state.tcpflags[i]
    zero = (state.tcpflags[TCPF_ZERO_LO], state.tcpflags[TCPF_ZERO_HI])
    session.tcpflags["srcZero"], session.tcpflags["dstZero"] = zero[client], zero[1 - client]
    session.first_ts = min(session.first_ts, (state.first_ns + clock_offset_ns) / 1e9)
    session.last_ts = max(session.last_ts, (state.last_ns + clock_offset_ns) / 1e9)
    if state.tcpflags[0] or state.tcpflags[1]:
        # The kernel saw the handshake even though it sent only the payload up.
        session.tags.discard("mid-stream")
    if state.late_select:
        session.tags.add("xdp-late-select")


class Pipeline:
    """Feed frames (with the kernel flow key when they came from XDP); the
    listeners, in order, see sessions open, packets, payload and the end, and
    get every finished session as one frozen FinishedSession. With
    `kernel_records`, the flows that never came up get theirs too
    (`expire_kernel`, `close`); `shard` (index, count) limits those to the
    flows whose records go to ring `index` of `count` (one worker's share)."""

    def __init__(self, runtime: PluginRuntime, table: SessionTable, listeners: Sequence[object] = (),
                 kernel: FlowFilter | None = None, bypass: bool = False,
                 save_every: float = SAVE_EVERY, max_packets: int = MAX_PACKETS, kernel_records: bool = True,
                 shard: tuple[int, int] | None = None, udp_tunnels: Mapping[int, int] = DEFAULT_UDP_TUNNELS) -> None:
        self.runtime = runtime
        self.save_every = save_every  # 0: no time-based mid-session records
        self.max_packets = max_packets
        self.udp_tunnels = udp_tunnels   # UDP destination port -> the tunnel the decoder takes apart
        self.hooks = ListenerChain(listeners)
        self.table = table
        self.ether = EtherSessions()   # sessions of frames that carry no IP packet (ARP, LLDP, ...)
        self.kernel = kernel
        self.bypass = bypass and kernel is not None
        self.stats = PipelineStats()
        self._plugin_states: dict[int, PluginSession] = {}  # by Session.id
        self._kernel_keys: dict[int, FlowKey] = {}
        self._tracked: Counter[bytes] = Counter()   # kernel keys of the sessions open here
        self._pending_key: bytes | None = None
        self._delivered: dict[bytes, int] = {}
        # by sessionId: ended, not saved yet (no SessionEnding: a kernel-only flow's)
        self._deferred: dict[str, tuple[Session | KernelFlowView, SessionEnding | None]] = {}
        self._feeding = False                # inside feed: listeners and handlers may call terminate
        self._terminating: list[Session] = []  # ... which then waits for the packet to be done
        # Long sessions, by Session.id: records saved so far, next time-based save, and the
        # kernel's whole-flow counts already reported (they are subtracted from later records).
        self._mid_saves: dict[int, int] = {}
        self._save_at: dict[int, float] = {}
        self._saved_counts: dict[int, tuple[list[int], list[int], list[int], dict[str, int]]] = {}
        self._next_save_scan = 0.0
        self.kernel_records = kernel_records
        self.shard = shard
        self._kernel_ids = count(1)
        self._kernel_saves: dict[tuple[bytes, int], KernelSaves] = {}  # kernel-only flows with mid-session records
        self._batch: list[FinishedSession] = []     # kernel-only records of the scan under way

    def feed(self, frame: bytes, timestamp: float, kernel_key: bytes | None = None,
             linktype: int = LINKTYPE_ETHERNET, wire_len: int | None = None) -> None:
        """One frame; `kernel_key` is the raw FlowKey of the record it came in
        (bytes: the ctypes key is built only when a flow needs it)."""
        self._feeding = True
        try:
            self._feed(frame, timestamp, kernel_key, linktype, wire_len)
        finally:
            self._feeding = False
            if self._terminating:
                self._terminate_requested()

    def _feed(self, frame: bytes, timestamp: float, kernel_key: bytes | None,
              linktype: int, wire_len: int | None) -> None:
        self.stats.frames += 1
        try:
            packet = decode_frame(frame, timestamp, linktype, wire_len, self.udp_tunnels)
        except NotIp as e:
            ended = self.ether.process(frame, timestamp, wire_len or len(frame)) \
                if linktype == LINKTYPE_ETHERNET else None
            if ended is None:
                self.stats.undecodable += 1
                log.debug("frame not decodable: %s", e)
            for record in ended or ():
                self.emit(record)
            return
        except PacketError as e:
            self.stats.undecodable += 1
            log.debug("frame not decodable: %s", e)
            return
        self._pending_key = kernel_key
        origin = None
        if kernel_key is not None:
            delivered = self._delivered.get(kernel_key, 0) + 1
            self._delivered[kernel_key] = delivered
            if delivered == 1:
                origin = self._origin(FlowKey.from_buffer_copy(kernel_key))
        hooks = self.hooks
        for event in self.table.process_raw(packet, origin):
            if type(event) is tuple:  # a PayloadDelivered, the most frequent event: handled here
                session, direction, data = event
                plugin_state = self._plugin_states[session.id]
                self.runtime.deliver(plugin_state, direction, data)
                hooks.payload(session, direction, data, self.runtime.protocols(plugin_state.handle))
                if self.bypass and not self.runtime.wants_more(plugin_state.handle) \
                        and not hooks.wants_more(session):
                    self._bypass(session)
            else:
                self._handle(event)
        session = self.table.last_session
        if session is not None:
            if hooks.wants_packets:
                hooks.packet(session, packet, frame, linktype)
            if session.packets[0] + session.packets[1] >= self.max_packets or (
                    self.save_every and packet.ip_protocol == IPPROTO_TCP
                    and timestamp >= self._save_at.get(session.id, session.first_ts + self.save_every)):
                self.save_mid(session, timestamp)

    def _origin(self, key: FlowKey) -> FlowOrigin | None:
        """The kernel's view of a flow's start: it holds back the handshake of a
        flow selected on its first payload, so only it knows who opened it."""
        state = self.kernel.flow(key) if self.kernel is not None else None
        if state is None:
            return None
        client = key_endpoints(key)[1 if state.client else 0]
        return FlowOrigin((client.ip, client.port), bool(state.tcpflags[0] or state.tcpflags[1]))

    def expire(self, now: float) -> None:
        for event in self.table.expire(now):
            self._handle(event)
        for record in self.ether.expire(now):
            self.emit(record)
        self._finish_deferred(force=False)
        if self.save_every and now >= self._next_save_scan:
            # A session's own packets trigger its time-based records (as Arkime's do, after the
            # packet); a bypassed one sends none up, so it is looked for here.
            self._next_save_scan = now + min(self.save_every, SAVE_SCAN_EVERY)
            for session in [s for s in self.table if s.ip_protocol == IPPROTO_TCP and "xdp-bypassed" in s.tags
                            and now >= self._save_at.get(s.id, s.first_ts + self.save_every)]:
                self.save_mid(session, now)

    def expire_kernel(self, now_ns: int) -> None:
        """End the kernel flows that never came up and are over at `now_ns` (the
        kernel table's clock): each gets its record (with `kernel_records`) and
        leaves the table, so the next packet of its 5-tuple starts a new flow."""
        if self.kernel is None:
            return
        timeouts, ended = self.table.timeouts, []
        attention = Attention(now_ns, timeouts, self.max_packets, round(self.save_every * 1e9))
        for key, state, members in lump(self._kernel_only(attention)):
            reason = end_reason(key, state, now_ns, timeouts)
            if reason is not None:
                ended.extend(members)
                if state.verdict != Verdict.BYPASSED:   # a bypassed flow's session had its record
                    self._record_kernel_flow(key, state, reason)
            elif state.verdict != Verdict.BYPASSED and self._kernel_save_due(key, state):
                self._save_kernel_mid(key, state)
        self._emit_batch()
        self.kernel.delete_flows(ended)
        self.stats.kernel_expired += len(ended)
        self._finish_deferred(force=False)

    def _kernel_only(self, attention: Attention | None = None) -> list[tuple[FlowKey, FlowState]]:
        """Kernel flows of this pipeline's shard that no session here stands for (those `attention` wants)."""
        tracked, shard = self._tracked, self.shard
        return [(k, s) for k, s in self.kernel.flows(attention) if bytes(k) not in tracked
                and (shard is None or flow_hash(bytes(k)) % shard[1] == shard[0])]

    @staticmethod
    def _saves_key(key: FlowKey, state: FlowState) -> tuple[bytes, int]:
        """A kernel-only flow's entry in `_kernel_saves`: its live key and first packet's
        time, which stay when the kernel retires the connection on port reuse (FlowKey.retired)."""
        return retired_key(bytes(key), 0), state.first_ns

    def _kernel_save_due(self, key: FlowKey, state: FlowState) -> bool:
        """Whether a long kernel-only flow gets a mid-session record now: `max_packets` since
        its last record, or (TCP) a packet `save_every` seconds on, as selected sessions get theirs."""
        if not self.kernel_records or key.family == 0:
            return False
        saves = self._kernel_saves.get(self._saves_key(key, state))
        packets = state.packets[0] + state.packets[1] - (saves.packets if saves else 0)
        if packets >= self.max_packets:
            return True
        save_at = saves.save_at_ns if saves else state.first_ns + round(self.save_every * 1e9)
        # As Arkime's, on a packet past the save time: an idle flow gets no empty record.
        return bool(self.save_every) and key.proto == IPPROTO_TCP and state.last_ns >= save_at

    def _save_kernel_mid(self, key: FlowKey, state: FlowState) -> None:
        """A mid-session record of a kernel-only flow: its counts since the last record, linked
        to the flow's later records by `rootId` (ids `ID-k`, the final record keeps `ID`)."""
        saves = self._kernel_saves.setdefault(self._saves_key(key, state), KernelSaves(next(self._kernel_ids)))
        session = flow_session(key, saves.since(state), saves.session_id, self.kernel.clock_offset_ns)
        session.uid = saves.uid = saves.uid or session.uid
        handle = self.runtime.session_started(session)
        record = self.runtime.session_ended(handle, final=False)
        self.runtime.discard(handle)
        saves.taken(state, state.last_ns + round(self.save_every * 1e9))
        record["rootId"] = session.uid
        record["xdpsensor"] = {"sessionId": f"{session.uid}-{saves.count}", "midSave": saves.count,
                               "delivered": 0}
        self.stats.kernel_records += 1
        self.emit(record)

    def _record_kernel_flow(self, key: FlowKey, state: FlowState, reason: str) -> None:
        """A flow's record from the kernel's counters, through the plugins' save hooks like any."""
        saves = self._kernel_saves.pop(self._saves_key(key, state), None)
        if not self.kernel_records:
            return
        if key.family == 0:     # a non-IP flow: no plugin sees those (as EtherSessions' records)
            self.stats.kernel_records += 1
            self._emit_batched(kernel_record(key, state, reason, self.kernel.clock_offset_ns))
            return
        # The record straight from the counters: plugins' save hooks see it through a view of it,
        # and it is rendered again only if one of them adds a field (not the case in a flood).
        rendered = kernel_spi(key, saves.since(state) if saves else state, self.kernel.clock_offset_ns)
        session = KernelFlowView(saves.session_id, saves.uid, rendered) if saves else \
            KernelFlowView(next(self._kernel_ids), new_id(), rendered)
        handle = self.runtime.session_started(session, rendered)
        extra: dict = {"xdpsensor": {"endReason": reason, "sessionId": session.uid, "delivered": 0}}
        if state.ring_lost:
            extra["xdpsensor"]["ringLost"] = state.ring_lost
        if saves:
            extra["rootId"] = session.uid
        record = self.runtime.session_ended(handle, extra=extra)
        self.stats.kernel_records += 1
        if record is None:
            self._deferred[session.uid] = (session, None)
        else:
            self._emit_batched(record)

    def close(self) -> None:
        """End every session (shutdown / end of capture), the kernel's own flows
        included, and finish deferred saves."""
        kernel_only = self._kernel_only() if self.kernel is not None and self.kernel_records else []
        for event in self.table.close_all():
            self._handle(event)
        for key, state, _ in lump(kernel_only):
            if state.verdict != Verdict.BYPASSED:
                self._record_kernel_flow(key, state, "shutdown")
        self._emit_batch()
        for record in self.ether.close_all():
            self.emit(record)
        self._finish_deferred(force=True)

    def _handle(self, event: SessionStarted | SessionEnded | StateChanged) -> None:
        """Every event but PayloadDelivered, which `feed` handles itself."""
        session = event.session
        if isinstance(event, SessionStarted):
            self.stats.sessions += 1
            self._plugin_states[session.id] = self.runtime.state(self.runtime.session_started(session))
            if self._pending_key is not None:
                self._kernel_keys[session.id] = FlowKey.from_buffer_copy(self._pending_key)
                self._tracked[self._pending_key] += 1
            self.hooks.session_opened(session)
        elif isinstance(event, SessionEnded):
            self._end(session, event.reason)
        elif isinstance(event, StateChanged):
            self.hooks.state_changed(session)

    def terminate(self, uid: str) -> bool:
        """End a live session now; a kernel-fed one is bypassed first, so the
        kernel keeps counting it without sending it up."""
        session = next((s for s in self.table if s.uid == uid), None)
        if session is None or session in self._terminating:
            return session is not None
        if self._feeding:
            # A listener or event handler inside this packet: end the session once the packet is done
            # with it, not under the plugin and listener calls still to come.
            self._terminating.append(session)
            return True
        self._bypass(session)
        self._handle(self.table.terminate(session))
        return True

    def _terminate_requested(self) -> None:
        pending, self._terminating = self._terminating, []
        for session in pending:
            if session.closed_at is None:  # the packet itself may have ended it
                self._bypass(session)
                self._handle(self.table.terminate(session))

    def _bypass(self, session: Session) -> None:
        key = self._kernel_keys.get(session.id)
        if key is not None and "xdp-bypassed" not in session.tags:
            self.kernel.set_verdict(key, Verdict.BYPASSED)
            session.tags.add("xdp-bypassed")
            self.stats.bypassed += 1

    def _end(self, session: Session, reason: str) -> None:
        key = self._kernel_keys.pop(session.id, None)
        delivered = None
        ring_lost = 0
        if key is not None and self.kernel is not None:
            raw = bytes(key)
            self._tracked[raw] -= 1
            if self._tracked[raw] <= 0:
                del self._tracked[raw]
            delivered = self._delivered.pop(raw, 0)
            state = self.kernel.flow(key)
            if state is not None:
                overlay_kernel_counts(session, key, state, self.kernel.clock_offset_ns)
                self._subtract_saved(session)
                ring_lost = state.ring_lost
            if reason not in ("shutdown", "terminated"):
                # The next connection on this 5-tuple starts as a fresh flow.
                self.kernel.delete_flow(key)
        handle = self._plugin_states.pop(session.id).handle
        ending = SessionEnding()
        self.hooks.session_ending(session, ending)
        ours = {"endReason": reason, "sessionId": session.uid}
        if delivered is not None:
            ours["delivered"] = delivered
        if ring_lost:
            ours["ringLost"] = ring_lost    # packets the kernel counted that never came up: the ring was full
        extra = {"xdpsensor": ours}
        self._save_at.pop(session.id, None)
        self._saved_counts.pop(session.id, None)
        if self._mid_saves.pop(session.id, 0):
            extra["rootId"] = session.uid
        record = self.runtime.session_ended(handle, extra=extra)
        if record is None:  # a plugin holds the save (incref): the record comes out of drain_deferred
            self._deferred[session.uid] = (session, ending)
        else:
            self._finish(session, record, ending)

    def _finish_deferred(self, force: bool) -> None:
        for record in self.runtime.drain_deferred(force=force):
            session, ending = self._deferred.pop(record["xdpsensor"]["sessionId"])
            if ending is None:
                self.emit(record)
            else:
                self._finish(session, record, ending)

    def save_mid(self, session: Session, now: float) -> None:
        """A mid-session record, as Arkime's `arkime_session_mid_save`: the session so far,
        then its packet, byte and TCP flag counters start again. Records of a session with
        mid-session saves are linked by `rootId` (the session's id, which its final record
        keeps); the k-th mid-session record's id is `ID-k`."""
        state = self._plugin_states.get(session.id)
        if state is None:
            return
        key = self._kernel_keys.get(session.id)
        kernel_state = self.kernel.flow(key) if key is not None and self.kernel is not None else None
        if kernel_state is not None:
            overlay_kernel_counts(session, key, kernel_state, self.kernel.clock_offset_ns)
            totals = (list(session.packets), list(session.bytes), list(session.databytes), dict(session.tcpflags))
            self._subtract_saved(session)
            self._saved_counts[session.id] = totals
        count = self._mid_saves[session.id] = self._mid_saves.get(session.id, 0) + 1
        record = self.runtime.session_ended(state.handle, final=False)
        record["rootId"] = session.uid
        record["xdpsensor"] = {"sessionId": f"{session.uid}-{count}", "midSave": count,
                               "state": session.state.value}
        self._finish(session, record, SessionEnding())
        for counts in (session.packets, session.bytes, session.databytes):
            counts[:] = (0, 0)
        for name in session.tcpflags:
            session.tcpflags[name] = 0
        self._save_at[session.id] = now + self.save_every

    def _subtract_saved(self, session: Session) -> None:
        """Turn the kernel's whole-flow counts into those since the last mid-session record."""
        saved = self._saved_counts.get(session.id)
        if saved is None:
            return
        # The kernel's data bytes replace ours only once the flow is bypassed (overlay_kernel_counts).
        overlaid = (session.packets, session.bytes, session.databytes if "xdp-bypassed" in session.tags else None)
        for counts, before in zip(overlaid, saved):
            if counts is not None:
                counts[0] -= before[0]
                counts[1] -= before[1]
        for name, before in saved[3].items():
            session.tcpflags[name] -= before

    def emit(self, record: dict) -> None:
        """Hand a record built outside the session table (a kernel-only flow) to the listeners."""
        self.stats.records += 1
        self.hooks.session_finished(FinishedSession(record))

    def _emit_batched(self, record: dict) -> None:
        """`emit` for a scan of the kernel's table: the listeners get its records EMIT_BATCH at a
        time (an output queues a batch as one item), at the latest when the scan is over."""
        self.stats.records += 1
        self._batch.append(FinishedSession(record))
        if len(self._batch) >= EMIT_BATCH:
            self._emit_batch()

    def _emit_batch(self) -> None:
        batch, self._batch = self._batch, []
        if batch:
            self.hooks.sessions_finished(batch)

    def _finish(self, session: Session, record: dict, ending: SessionEnding) -> None:
        self.hooks.record_saving(session, record)
        self.stats.records += 1
        self.hooks.session_finished(FinishedSession(record, tuple(ending.frames), tuple(ending.messages)))
