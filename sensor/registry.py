"""The session registry: a ProtoPoke session for every flow, framed and decoded when a binding matches.

It is one of the pipeline's listeners (``sensor.hooks``): flows open, deliver reassembled
bytes (a UDP datagram at a time) and close; the registry turns that into
ProtoPoke ``Session`` objects, cuts frames with the binding's framer (one per
direction; UDP is always one datagram = one frame), decodes them with the
binding's definition and publishes events on the bus.

Binding decisions. Bindings are tried in config order whenever the session is
looked at: port-only bindings match when the session opens; protocol and
classifier bindings once a plugin claimed the protocol or a direction's first
payload matched. Bytes that arrive before the decision are held (up to
``prebind_limit`` bytes) and framed once the session binds, so a protocol
claimed on the server's first reply still frames the client's first request.
The decision ends when both directions have delivered their first payload
(Arkime's classification point) or the held bytes overflow; a protocol claimed
later by a parser does not bind the session.

Output hand-off: ``session_ending()`` flushes the framers and puts the
session's kept frames and messages into the pipeline's ``SessionEnding``, from
which the pipeline builds the FinishedSession every output receives.

Thread safety: listener calls come from the capture thread, API calls may come
from any thread; one re-entrant lock serialises them. Sync event handlers run
under that lock, so they may call the API but must not block.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from sensor import gcpolicy
from sensor.bindings import Binding
from sensor.events import (
    EventBus,
    FrameCapturedEvent,
    SessionClosedEvent,
    SessionOpenedEvent,
    SessionUpdatedEvent,
    UpstreamConnectionFailedEvent,
)
from sensor.flows.session import Session as FlowSession
from sensor.flows.state import Direction, SessionState
from sensor.framing import Framer, FramerSpec, RawFramer, reframe
from sensor.hooks import SessionEnding
from sensor.models import Frame, ParsedMessage
from sensor.protocol import DefinitionDecoder

IPPROTO_TCP = 6
TRANSPORTS = {6: "tcp", 17: "udp", 132: "sctp", 1: "icmp", 58: "icmpv6"}
DIRECTIONS = (Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT)

OPENED, UPDATED, CLOSED = "on_session_opened", "on_session_updated", "on_session_closed"
FRAME, UPSTREAM_FAILED = "on_frame_captured", "on_upstream_connection_failed"


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """ProtoPoke's session metadata. Frozen: the registry replaces it on every change,
    so the object an event carries is a snapshot. Times are packet times."""

    id: str
    client_host: str
    client_port: int
    server_host: str
    server_port: int
    state: SessionState
    created_at: float
    closed_at: float | None = None
    forwarder_name: str = ""  # the binding's name ("" when unbound)
    transport: str = "tcp"

    def closed(self, closed_at: float) -> SessionInfo:
        """This info, CLOSED at `closed_at` (once per session: cheaper than dataclasses.replace)."""
        return SessionInfo(self.id, self.client_host, self.client_port, self.server_host, self.server_port,
                           SessionState.CLOSED, self.created_at, closed_at, self.forwarder_name, self.transport)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "client_host": self.client_host,
            "client_port": self.client_port,
            "server_host": self.server_host,
            "server_port": self.server_port,
            "state": self.state.value,
            "created_at": self.created_at,
            "closed_at": self.closed_at,
            "forwarder_name": self.forwarder_name,
            "transport": self.transport,
        }


class Session:
    """ProtoPoke's Session (``info`` + ``frames``) with what a passive sensor adds.

    ``frames`` holds at most ``max_frames_per_session`` frames in capture order;
    ``messages[i]`` decodes ``frames[i]`` when the binding has a protocol
    definition (else it stays empty). ``frame_count`` counts every frame cut,
    kept or not (ProtoPoke documents it but never had it); ``frames_dropped``
    is the part not kept. ``protocols`` are the Arkime protocols claimed so far.
    Frame timestamps are the packet time at which the frame was cut (for bytes
    held before the session bound: the time it bound), like the session's
    ``created_at``/``closed_at``.
    """

    __slots__ = ("info", "frames", "messages", "frame_count", "frames_dropped", "protocols", "binding")

    def __init__(self, info: SessionInfo) -> None:
        self.info = info
        self.frames: list[Frame] = []
        self.messages: list[ParsedMessage] = []
        self.frame_count = 0
        self.frames_dropped = 0
        self.protocols: frozenset[str] = frozenset()
        self.binding: Binding | None = None

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def state(self) -> SessionState:
        return self.info.state

    # The flat names for the info fields (ProtoPoke reaches them through `info`).
    client_host = property(lambda self: self.info.client_host)
    client_port = property(lambda self: self.info.client_port)
    server_host = property(lambda self: self.info.server_host)
    server_port = property(lambda self: self.info.server_port)
    transport = property(lambda self: self.info.transport)
    created_at = property(lambda self: self.info.created_at)
    closed_at = property(lambda self: self.info.closed_at)

    def frames_for_direction(self, direction: Direction) -> list[Frame]:
        return [frame for frame in self.frames if frame.direction is direction]

    def is_active(self) -> bool:
        """True in every state but CLOSED (ProtoPoke's rule: half-closed sessions are active)."""
        return self.info.state is not SessionState.CLOSED

    def to_dict(self) -> dict[str, Any]:
        """ProtoPoke's ``session_to_dict``: the info fields plus ``frames``."""
        return {**self.info.to_dict(), "frames": [frame.to_dict() for frame in self.frames]}

    def __repr__(self) -> str:
        info = self.info
        return (f"Session({info.id[:8]} {info.transport} {info.client_host}:{info.client_port} -> "
                f"{info.server_host}:{info.server_port} {info.state.value!r} frames={self.frame_count})")


@dataclass(slots=True)
class RegistryStats:
    sessions: int = 0
    bound: int = 0
    frames: int = 0
    frames_dropped: int = 0  # cut and published but not kept (max_frames_per_session)
    prebind_overflows: int = 0  # sessions whose undecided bytes outgrew prebind_limit
    upstream_failures: int = 0


@dataclass(slots=True, eq=False)
class _Tracked:
    """The registry's state for one open flow."""

    flow: FlowSession
    session: Session
    framers: tuple[Framer, Framer] | None = None
    undecided: bool = False
    pending: list[tuple[int, bytes]] = field(default_factory=list)  # (direction, chunk) before binding
    pending_bytes: int = 0
    first_payloads: list[bytes | None] = field(default_factory=lambda: [None, None])
    reported: tuple[int, int, int] = (0, 0, 0)  # frame_count, databytes at the last update event
    last_update: float = 0.0
    terminated: bool = False


def upstream_failure(flow: FlowSession) -> str | None:
    """Why a TCP connection attempt failed, seen passively: the client's SYN got a RST or no SYN-ACK."""
    flags = flow.tcpflags
    if flow.ip_protocol != IPPROTO_TCP or not flags["syn"] or flags["syn-ack"]:
        return None
    if flags["rst"] and flow.packets[1]:
        return "connection refused: the server answered the client's SYN with RST"
    if flags["rst"]:
        return "no SYN-ACK from the server: the client reset the connection attempt"
    return "connection timed out: no SYN-ACK from the server before the session ended"


class SessionListing:
    """Sessions as ``SensorAPI`` lists them: the open ones and the last
    `sessions_kept` closed ones, in the order they opened; and the bindings by
    name. A registry keeps one in each process; with workers, the parent keeps
    one built from their events (sensor.workers.view)."""

    def __init__(self, bindings: Iterable[Binding], sessions_kept: int) -> None:
        self.bindings = list(bindings)
        self.sessions_kept = sessions_kept
        self._lock = threading.RLock()
        self._sessions: dict[str, Session] = {}  # open + kept closed, insertion order
        self._closed: OrderedDict[str, None] = OrderedDict()

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def all_sessions(self) -> list[Session]:
        with self._lock:
            return list(self._sessions.values())

    def active_sessions(self) -> list[Session]:
        with self._lock:
            return [s for s in self._sessions.values() if s.is_active()]

    def binding(self, name: str) -> Binding:
        for binding in self.bindings:
            if binding.name == name:
                return binding
        known = ", ".join(repr(b.name) for b in self.bindings) or "none configured"
        raise KeyError(f"no binding named {name!r}; bindings: {known}")

    def delete(self, session_id: str) -> bool:
        """Remove a session from the listing; a live one is still framed and still reaches the outputs."""
        with self._lock:
            self._closed.pop(session_id, None)
            return self._forget(session_id)

    def _keep_closed(self, session_id: str) -> None:
        """The session closed: it stays listed until `sessions_kept` later ones have closed."""
        if session_id in self._sessions:
            self._closed[session_id] = None
            while len(self._closed) > self.sessions_kept:
                self._forget(self._closed.popitem(last=False)[0])

    def _forget(self, session_id: str) -> bool:
        return self._sessions.pop(session_id, None) is not None


class SessionRegistry(SessionListing):
    """A pipeline listener (``sensor.hooks.Listener``); queried and steered by ``SensorAPI``."""

    def __init__(self, bindings: Iterable[Binding], bus: EventBus, max_frames_per_session: int = 1000,
                 sessions_kept: int = 10_000, update_interval: float = 5.0,
                 prebind_limit: int = 32 * 1024) -> None:
        for name, value in (("max_frames_per_session", max_frames_per_session), ("sessions_kept", sessions_kept),
                            ("prebind_limit", prebind_limit)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        super().__init__(bindings, sessions_kept)
        self.bus = bus
        self.max_frames_per_session = max_frames_per_session
        self.update_interval = update_interval  # seconds of packet time between counter-only updates
        self.prebind_limit = prebind_limit
        self.stats = RegistryStats()
        self._open: dict[int, _Tracked] = {}  # by flows Session.id
        self._open_by_uid: dict[str, _Tracked] = {}

    # -- pipeline hooks ---------------------------------------------------------------
    def session_opened(self, flow: FlowSession) -> None:
        with self._lock:
            info = SessionInfo(flow.uid, flow.client_ip, flow.client_port, flow.server_ip, flow.server_port,
                               flow.state, flow.created_at,
                               transport=TRANSPORTS.get(flow.ip_protocol, str(flow.ip_protocol)))
            session = Session(info)
            tracked = _Tracked(flow, session, last_update=flow.last_ts)
            self._open[flow.id] = tracked
            self._open_by_uid[flow.uid] = tracked
            self._sessions[flow.uid] = session
            self.stats.sessions += 1
            binding = self._first_match(tracked, frozenset()) if self.bindings else None
            if binding is not None:
                self._bind(tracked, binding, announce=False)
            elif self.bindings:
                tracked.undecided = any(
                    b.match.could_match(flow.ip_protocol, flow.client_port, flow.server_port) for b in self.bindings)
            if self.bus.wants(OPENED):
                self.bus.publish(SessionOpenedEvent(session.info))

    def payload(self, flow: FlowSession, direction: int, data: bytes, protocols: frozenset[str]) -> None:
        tracked = self._open.get(flow.id)
        if tracked is None or tracked.terminated:
            return
        with self._lock:
            tracked.session.protocols = protocols
            self._follow_state(tracked)
            if tracked.framers is not None:
                self._feed(tracked, direction, data)
            elif tracked.undecided:
                self._decide(tracked, direction, data, protocols)
            if self.bus.wants(UPDATED) and flow.last_ts - tracked.last_update >= self.update_interval \
                    and self._counters(tracked) != tracked.reported:
                self._announce_update(tracked)

    def state_changed(self, flow: FlowSession) -> None:
        """Announce a state change seen on a packet without payload (a FIN, the handshake's
        last ACK)."""
        tracked = self._open.get(flow.id)
        if tracked is None or tracked.terminated:
            return
        with self._lock:
            self._follow_state(tracked)

    def wants_more(self, flow: FlowSession) -> bool:
        """Bound sessions need every byte; undecided ones may still bind."""
        tracked = self._open.get(flow.id)
        return tracked is not None and not tracked.terminated and (tracked.framers is not None or tracked.undecided)

    def session_ending(self, flow: FlowSession, ending: SessionEnding) -> None:
        """Finalise the session (unless terminated already) and hand its kept frames and messages over."""
        with self._lock:
            tracked = self._open.pop(flow.id, None)
            if tracked is None:
                return
            del self._open_by_uid[flow.uid]
            if not tracked.terminated:
                self._finalise(tracked, flow.closed_at if flow.closed_at is not None else flow.last_ts)
            ending.frames, ending.messages = tracked.session.frames, tracked.session.messages

    # -- control (SensorAPI) ---------------------------------------------------------------
    def terminate(self, session_id: str) -> bool:
        """Finalise a live session now (flush, CLOSED, closed event); its later bytes are ignored."""
        with self._lock:
            tracked = self._open_by_uid.get(session_id)
            if tracked is None or tracked.terminated:
                return False
            tracked.terminated = True
            self._finalise(tracked, tracked.flow.last_ts)
            return True

    def swap_framer(self, spec: FramerSpec, binding_name: str | None = None) -> int:
        """Give the binding (every binding when None) a new framer, live TCP sessions included.

        Each live direction hands its unframed bytes to the new framer, which
        frames them and continues the numbering; returns the sessions swapped.
        Bytes a custom script keeps in its own ``state`` cannot be handed over.
        """
        with self._lock:
            targets = self.bindings if binding_name is None else [self.binding(binding_name)]
            for binding in targets:
                binding.framer = spec
            swapped = 0
            for tracked in self._open.values():
                session = tracked.session
                if tracked.framers is None or tracked.terminated or session.binding not in targets \
                        or tracked.flow.ip_protocol != IPPROTO_TCP:
                    continue
                old, new = tracked.framers, spec.create_pair(session.id)
                tracked.framers = new
                for index in (0, 1):
                    for frame in reframe(old[index], new[index]):
                        self._capture(tracked, frame)
                swapped += 1
            return swapped

    def set_decoder(self, binding_name: str, decoder: DefinitionDecoder) -> int:
        """Decode the binding's frames with a new definition from now on; live sessions' kept
        frames are decoded again so messages stay aligned. Returns the live sessions re-decoded."""
        with self._lock:
            binding = self.binding(binding_name)
            binding.decoder = decoder
            redecoded = 0
            for tracked in self._open.values():
                session = tracked.session
                if session.binding is binding and not tracked.terminated:
                    with gcpolicy.paused():
                        session.messages = [decoder.decode(frame) for frame in session.frames]
                    redecoded += 1
            return redecoded

    # -- internals -----------------------------------------------------------------------
    def _follow_state(self, tracked: _Tracked) -> None:
        state = tracked.flow.state
        session = tracked.session
        if state is not session.info.state:
            session.info = replace(session.info, state=state)
            self._announce_update(tracked)

    def _first_match(self, tracked: _Tracked, protocols: frozenset[str]) -> Binding | None:
        flow = tracked.flow
        firsts = (tracked.first_payloads[0], tracked.first_payloads[1])
        for binding in self.bindings:
            if binding.match.matches(flow.ip_protocol, flow.client_port, flow.server_port, protocols, firsts):
                return binding
        return None

    def _decide(self, tracked: _Tracked, direction: int, data: bytes, protocols: frozenset[str]) -> None:
        firsts = tracked.first_payloads
        if firsts[direction] is None:
            firsts[direction] = data
        tracked.pending.append((direction, data))
        tracked.pending_bytes += len(data)
        binding = self._first_match(tracked, protocols)
        if binding is not None:
            self._bind(tracked, binding, announce=True)
        elif firsts[0] is not None and firsts[1] is not None:
            self._give_up(tracked)
        elif tracked.pending_bytes > self.prebind_limit:
            self.stats.prebind_overflows += 1
            self._give_up(tracked)

    @staticmethod
    def _give_up(tracked: _Tracked) -> None:
        """The decision is over (bound or not): drop what was held for it."""
        tracked.undecided = False
        tracked.pending = []
        tracked.pending_bytes = 0
        tracked.first_payloads = [None, None]

    def _bind(self, tracked: _Tracked, binding: Binding, announce: bool) -> None:
        session = tracked.session
        session.binding = binding
        session.info = replace(session.info, forwarder_name=binding.name)
        if tracked.flow.ip_protocol == IPPROTO_TCP:
            tracked.framers = binding.framer.create_pair(session.id)
        else:
            tracked.framers = (RawFramer(session.id, DIRECTIONS[0]), RawFramer(session.id, DIRECTIONS[1]))
        self.stats.bound += 1
        pending = tracked.pending
        self._give_up(tracked)
        if announce:
            self._announce_update(tracked)
        for direction, chunk in pending:
            self._feed(tracked, direction, chunk)

    def _feed(self, tracked: _Tracked, direction: int, data: bytes) -> None:
        assert tracked.framers is not None
        for frame in tracked.framers[direction].feed(data):
            self._capture(tracked, frame)

    def _capture(self, tracked: _Tracked, frame: Frame) -> None:
        """Count, keep (within the bound), decode and publish one frame."""
        frame.timestamp = tracked.flow.last_ts  # capture time is packet time here, as for the session
        session = tracked.session
        session.frame_count += 1
        self.stats.frames += 1
        assert session.binding is not None
        decoder = session.binding.decoder
        keep = len(session.frames) < self.max_frames_per_session
        announce = self.bus.wants(FRAME)
        message = decoder.decode(frame) if decoder is not None and (keep or announce) else None
        if keep:
            session.frames.append(frame)
            if message is not None:
                session.messages.append(message)
        else:
            session.frames_dropped += 1
            self.stats.frames_dropped += 1
        if announce:
            self.bus.publish(FrameCapturedEvent(frame, session.info, message))

    def _counters(self, tracked: _Tracked) -> tuple[int, int, int]:
        databytes = tracked.flow.databytes
        return tracked.session.frame_count, databytes[0], databytes[1]

    def _announce_update(self, tracked: _Tracked) -> None:
        counters = self._counters(tracked)
        tracked.reported = counters
        tracked.last_update = tracked.flow.last_ts
        if self.bus.wants(UPDATED):
            self.bus.publish(SessionUpdatedEvent(tracked.session.info, counters[0], counters[1:]))

    def _finalise(self, tracked: _Tracked, closed_at: float) -> None:
        """Flush the framers, mark CLOSED, publish (upstream failure and) closed."""
        session, flow = tracked.session, tracked.flow
        if tracked.framers is not None:
            for framer in tracked.framers:
                for frame in framer.flush():
                    self._capture(tracked, frame)
        info = session.info = session.info.closed(closed_at)
        failure = upstream_failure(flow)
        if failure is not None:
            self.stats.upstream_failures += 1
            if self.bus.wants(UPSTREAM_FAILED):
                self.bus.publish(UpstreamConnectionFailedEvent(
                    info.forwarder_name, info.client_host, info.client_port, info.server_host, info.server_port,
                    failure, info.id))
        if self.bus.wants(CLOSED):
            counters = self._counters(tracked)
            self.bus.publish(SessionClosedEvent(info, counters[0], counters[1:]))
        self._keep_closed(info.id)
