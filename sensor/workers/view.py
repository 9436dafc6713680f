"""The parent's view of the sessions of every worker, built from the events
the workers forward (opened, frame captured, updated, closed). `SensorAPI`
queries it as it queries a `SessionRegistry`; calls that change sessions go
to the worker that owns the session (`terminate`) or to every worker
(`swap_framer`, `set_decoder`), through the pool's `ask`."""
from __future__ import annotations

from collections.abc import Callable, Iterable

from sensor.bindings import Binding
from sensor.events import EventBus, FrameCapturedEvent, SessionClosedEvent, SessionOpenedEvent, SessionUpdatedEvent
from sensor.framing import FramerSpec
from sensor.protocol import DefinitionDecoder
from sensor.registry import Session, SessionInfo, SessionListing

Ask = Callable[[int | None, str, tuple], list]   # (worker or None for all, command, args) -> replies


class WorkerSessions(SessionListing):
    """Sessions as the workers report them, newest last; closed ones kept up
    to `sessions_kept`, frames up to `max_frames_per_session` each."""

    def __init__(self, bindings: Iterable[Binding], bus: EventBus, ask: Ask,
                 max_frames_per_session: int = 1000, sessions_kept: int = 10_000) -> None:
        super().__init__(bindings, sessions_kept)
        self.bus = bus
        self.max_frames_per_session = max_frames_per_session
        self._ask = ask
        self._by_name = {b.name: b for b in self.bindings}
        self._owner: dict[str, int] = {}

    # -- fed by the pool --------------------------------------------------------------------
    def apply(self, worker: int, event: object) -> None:
        """Follow one event of `worker`'s (before the parent's bus publishes it)."""
        with self._lock:
            if isinstance(event, SessionOpenedEvent):
                self._sessions[event.session.id] = self._session(event.session)
                self._owner[event.session.id] = worker
                return
            session = self._sessions.get(getattr(event, "session", None) and event.session.id)
            if session is None:
                return
            if isinstance(event, FrameCapturedEvent):
                session.frame_count += 1
                if len(session.frames) < self.max_frames_per_session:
                    session.frames.append(event.frame)
                    if event.message is not None:
                        session.messages.append(event.message)
                else:
                    session.frames_dropped += 1
            elif isinstance(event, (SessionUpdatedEvent, SessionClosedEvent)):
                self._follow(session, event.session)
                session.frame_count = event.frame_count
                if isinstance(event, SessionClosedEvent):
                    self._keep_closed(session.id)

    def lost(self, worker: int) -> int:
        """`worker` died: its open sessions will never finish. Forget them; how many."""
        with self._lock:
            gone = [uid for uid, owner in self._owner.items()
                    if owner == worker and self._sessions[uid].is_active()]
            for uid in gone:
                self._forget(uid)
            return len(gone)

    def _session(self, info: SessionInfo) -> Session:
        session = Session(info)
        session.binding = self._by_name.get(info.forwarder_name)
        return session

    def _follow(self, session: Session, info: SessionInfo) -> None:
        session.info = info
        session.binding = self._by_name.get(info.forwarder_name)

    def _forget(self, session_id: str) -> bool:
        self._owner.pop(session_id, None)
        return super()._forget(session_id)

    # -- what SensorAPI asks of a registry beyond the listing ---------------------------------
    def owner(self, session_id: str) -> int | None:
        return self._owner.get(session_id)

    def terminate(self, session_id: str) -> bool:
        """The owning worker already finalised it (Sensor's terminate callback asked it to)."""
        return False

    def swap_framer(self, spec: FramerSpec, binding_name: str | None = None) -> int:
        targets = self.bindings if binding_name is None else [self.binding(binding_name)]
        for binding in targets:
            binding.framer = spec
        return sum(self._ask(None, "swap_framer", (spec, binding_name)))

    def set_decoder(self, binding_name: str, decoder: DefinitionDecoder) -> int:
        self.binding(binding_name).decoder = decoder
        # The definition crosses the pipe; each worker compiles its own decoder.
        return sum(self._ask(None, "set_decoder", (binding_name, decoder.definition)))
