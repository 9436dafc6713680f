"""The pipeline's hooks, declared once, and the chain that calls them.

A listener is any object with methods named after some of the hooks in
`Listener` (mitmproxy's addons): the session registry, the output writer, a
metrics counter, a test's collector. The pipeline calls them in the order the
listeners were given; every call is guarded, so a listener that raises is
counted and logged and the others, and the capture, go on.

A session's end runs in steps: `session_ending` lets listeners hand over what
they hold (the registry its frames and messages); `record_saving` lets them add
fields to the record just before it is frozen (a pcap writer its `fileId` and
`packetPos`); then every listener gets the same frozen `FinishedSession` in
`session_finished`.
"""
from __future__ import annotations

import logging
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sensor.flows.session import Session
from sensor.models import Frame, ParsedMessage
from sensor.packet import Packet

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SessionEnding:
    """What listeners hand over while a session ends: `frames` and `messages`
    (aligned with the frames, or empty) become the FinishedSession's."""

    frames: list[Frame] = field(default_factory=list)
    messages: list[ParsedMessage | None] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class FinishedSession:
    """A session that is over: its SPI record, its kept frames and their decoded
    messages. The same value goes to every listener and output; do not mutate
    `record` (it may be written by several outputs on other threads)."""

    record: dict[str, Any]
    frames: tuple[Frame, ...] = ()
    messages: tuple[ParsedMessage | None, ...] = ()

    @property
    def session_id(self) -> str:
        return (self.record.get("xdpsensor") or {}).get("sessionId", "")


class Listener(Protocol):
    """Every hook, with its signature. A listener implements any subset.

    All hooks run on the pipeline's thread, with the capture lock held: they
    must not block (slow work belongs behind a queue, as `OutputWriter` does)."""

    def session_opened(self, session: Session) -> None:
        """A session's first packet was seen."""

    def packet(self, session: Session, packet: Packet, frame: bytes, linktype: int) -> None:
        """A packet of `session` reached userspace, after the session table accounted it: decoded
        (its time, wire length, addresses, TTL), the frame as captured and its pcap LINKTYPE."""

    def payload(self, session: Session, direction: int, data: bytes, protocols: frozenset[str]) -> None:
        """Reassembled bytes of one direction (0 = client to server); `protocols` claimed so far."""

    def state_changed(self, session: Session) -> None:
        """A packet changed the session's state without delivering payload."""

    def wants_more(self, session: Session) -> bool:
        """True keeps the session from being bypassed in the kernel."""

    def session_ending(self, session: Session, ending: SessionEnding) -> None:
        """The session is over: flush what you hold for it into `ending`."""

    def record_saving(self, session: Session, record: dict[str, Any]) -> None:
        """A record of `session` is about to be frozen: add top-level fields (fileId, packetPos).
        Runs after the plugins' save hooks, also for a save a plugin deferred."""

    def session_finished(self, finished: FinishedSession) -> None:
        """The session's record is built (possibly later than its end, when a plugin deferred the save)."""

    def sessions_finished(self, batch: Sequence[FinishedSession]) -> None:
        """Several records built at once (a scan of the kernel's flow table): one call for the
        batch. A listener without this hook gets `session_finished` for each of them; one with
        it has `session_finished` too (a record may also finish alone)."""


HOOKS: tuple[str, ...] = tuple(name for name in vars(Listener) if not name.startswith("_"))


class ListenerErrors:
    """Failures of listener calls, by "<Listener class>.<hook>"; the first of each is logged with its traceback."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.total = 0

    def report(self, where: str, exc: Exception) -> None:
        self.total += 1
        self.counts[where] += 1
        if self.counts[where] == 1:
            log.error("listener %s failed (further failures are only counted): %s: %s\n%s", where,
                      type(exc).__name__, exc, "".join(traceback.format_exception(exc)))


Call = tuple[str, Callable[..., Any]]


class ListenerChain:
    """The listeners of one pipeline, in order; one guarded call per listener per hook."""

    def __init__(self, listeners: Sequence[object] = ()) -> None:
        self.listeners = tuple(listeners)
        self.errors = ListenerErrors()
        calls: dict[str, list[Call]] = {hook: [] for hook in HOOKS}
        for listener in self.listeners:
            found = [hook for hook in HOOKS if callable(getattr(listener, hook, None))]
            if not found:
                raise TypeError(f"{listener!r} implements none of the pipeline hooks ({', '.join(HOOKS)})")
            for hook in found:
                calls[hook].append((f"{type(listener).__name__}.{hook}", getattr(listener, hook)))
        self._calls = {hook: tuple(found) for hook, found in calls.items()}
        self.wants_packets = bool(self._calls["packet"])
        # Per listener, its batch hook, or else its one-session hook (a FinishedCollector, a test's listener).
        batch_calls: list[tuple[str, Callable[..., Any], bool]] = []
        for listener in self.listeners:
            for hook in ("sessions_finished", "session_finished"):
                call = getattr(listener, hook, None)
                if callable(call):
                    batch_calls.append((f"{type(listener).__name__}.{hook}", call, hook == "sessions_finished"))
                    break
        self._batch_calls = tuple(batch_calls)

    def session_opened(self, session: Session) -> None:
        self._each("session_opened", session)

    def packet(self, session: Session, packet: Packet, frame: bytes, linktype: int) -> None:
        self._each("packet", session, packet, frame, linktype)

    def payload(self, session: Session, direction: int, data: bytes, protocols: frozenset[str]) -> None:
        self._each("payload", session, direction, data, protocols)

    def state_changed(self, session: Session) -> None:
        self._each("state_changed", session)

    def wants_more(self, session: Session) -> bool:
        """True when any listener wants the session; one that raises counts as not wanting it."""
        for where, call in self._calls["wants_more"]:
            try:
                if call(session):
                    return True
            except Exception as exc:
                self.errors.report(where, exc)
        return False

    def session_ending(self, session: Session, ending: SessionEnding) -> None:
        self._each("session_ending", session, ending)

    def record_saving(self, session: Session, record: dict[str, Any]) -> None:
        self._each("record_saving", session, record)

    def session_finished(self, finished: FinishedSession) -> None:
        self._each("session_finished", finished)

    def sessions_finished(self, batch: Sequence[FinishedSession]) -> None:
        for where, call, whole in self._batch_calls:
            for arg in (batch,) if whole else batch:
                try:
                    call(arg)
                except Exception as exc:
                    self.errors.report(where, exc)

    def _each(self, hook: str, *args: Any) -> None:
        for where, call in self._calls[hook]:
            try:
                call(*args)
            except Exception as exc:
                self.errors.report(where, exc)


class FinishedCollector:
    """A listener that keeps every FinishedSession, and its record (offline `read_records`, tests)."""

    def __init__(self) -> None:
        self.finished: list[FinishedSession] = []
        self.records: list[dict[str, Any]] = []

    def session_finished(self, finished: FinishedSession) -> None:
        self.finished.append(finished)
        self.records.append(finished.record)
