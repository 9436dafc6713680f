"""PluginRuntime: the sans-I/O dispatcher between the session layer and output.

The session layer calls `session_started`, `payload` (in-order reassembled data
per direction) and `session_ended`; the runtime runs the plugins' classifiers,
parsers and save hooks with Arkime's semantics and returns SPI records. One
runtime per worker process, like Arkime's one interpreter per packet thread."""
from __future__ import annotations

import logging
from types import ModuleType
from typing import Any, Callable

from .budget import CallbackBudget, PluginTimeout
from .callbacks import PLUGIN_FAILURES, CallbackErrors
from .classify import TCP, UDP, Classifier, ClassifierTables, OffloadRules
from .errors import ArkimeHandleError
from .fields import FieldRegistry
from .session import TRANSPORTS, ParserBuf, Parser, PluginSession
from .spi import render_spi
from .view import SessionView

log = logging.getLogger(__name__)

MAX_PARSERS_PER_SESSION = 31  # Arkime drops further parsers with a warning
_HANDLE_BASE = 0x7F3A_0000_0000  # handles look like the C pointers Arkime hands out
_HANDLE_STEP = 0x40

Callback = Callable[..., Any]


class PluginRuntime:
    """Plugin registrations plus the live sessions' plugin state."""

    def __init__(self, *, config_prefix: str = "/opt/arkime",
                 disabled_fields: frozenset[str] = frozenset(), time_budget: float = 0.0) -> None:
        """`time_budget`: seconds one delivery or save may spend in plugin code before the
        callback is interrupted and its session bypassed (0: no budget; see budget.py)."""
        self.fields = FieldRegistry(disabled_fields)
        self.budget = CallbackBudget(time_budget) if time_budget > 0 else None
        self.classifiers = ClassifierTables()
        self.pre_save_hooks: list[Callback] = []
        self.save_hooks: list[Callback] = []
        self.ethernet_callbacks: dict[int, Callback] = {}  # never run: see modules.py
        self.ip_callbacks: dict[int, Callback] = {}
        self.errors = CallbackErrors()
        self.dispatching = False  # True inside a callback: field_define is refused
        self._keys: set[str] = set()
        self._sessions: dict[int, PluginSession] = {}
        self._bufs: dict[int, ParserBuf] = {}
        self._next_handle = _HANDLE_BASE
        self._deferred: list[dict] = []
        from .modules import build_modules  # modules call back into this object
        self.modules: dict[str, ModuleType] = build_modules(self, config_prefix)

    # -- registration (called by the arkime module) -------------------------------
    def claim_key(self, key: str) -> bool:
        """Arkime dedupes registrations by "<name>:<cb.__name__>"; False for a repeat."""
        if key in self._keys:
            log.info("arkime registration %r repeated: dropped, as Arkime does", key)
            return False
        self._keys.add(key)
        return True

    def add_byte_classifier(self, ip_proto: int, c: Classifier) -> None:
        self.classifiers.add_bytes(ip_proto, c)

    def add_port_classifier(self, c: Classifier, port: int, kind: int) -> None:
        self.classifiers.add_port(c, port, kind)

    def add_ppid_classifier(self, c: Classifier, ppid: int) -> None:
        self.classifiers.add_ppid(c, ppid)

    def offload_rules(self) -> OffloadRules:
        """Port and byte-prefix rules for the kernel pre-classifier."""
        return self.classifiers.offload_rules()

    # -- handles --------------------------------------------------------------------
    def _new_handle(self) -> int:
        self._next_handle += _HANDLE_STEP
        return self._next_handle

    def state(self, handle: object) -> PluginSession:
        """The live session behind a handle; TypeError/ValueError like Arkime's checks."""
        st = self._sessions.get(handle) if type(handle) is int else None
        if st is not None:
            return st
        raise _bad_handle(handle, "session")

    def parser_buf(self, handle: object) -> ParserBuf:
        pb = self._bufs.get(handle) if type(handle) is int else None
        if pb is not None:
            return pb
        raise _bad_handle(handle, "parser buffer")

    # -- per-session plugin calls -------------------------------------------------
    def add_parser(self, st: PluginSession, cb: Callback, buffered: bool) -> None:
        if any(p is not None and p.cb is cb for p in st.parsers):
            return
        if st.live_parsers() >= MAX_PARSERS_PER_SESSION:
            log.warning("session %d: more than %d parsers, %r dropped", st.view.id,
                        MAX_PARSERS_PER_SESSION, cb)
            return
        buf = None
        if buffered:
            buf = ParserBuf(self._new_handle())
            self._bufs[buf.handle] = buf
        st.parsers.append(Parser(cb, buf))

    def incref(self, st: PluginSession) -> None:
        st.refcount += 1

    def decref(self, st: PluginSession) -> None:
        """Drop one outstanding reference; the deferred final save happens at 0."""
        if st.refcount <= 0:
            log.warning("session %d: decref without incref ignored", st.view.id)
            return
        st.refcount -= 1
        if st.refcount == 0 and st.ending:
            self._deferred.append(self._finish(st))

    # -- the session layer's side ---------------------------------------------------
    def session_started(self, view: SessionView, rendered: dict | None = None) -> int:
        """Register a session; returns the opaque handle plugins will see. `rendered`:
        the session's record as `render_spi` gives it with no plugin field (a kernel-only
        flow's, built from its counters); the final save returns it as it is unless a
        plugin added a field or tag."""
        st = PluginSession(self._new_handle(), view, rendered=rendered)
        transport = TRANSPORTS.get(view.ip_protocol)
        if transport:
            st.values[self.fields.protocols.pos] = {transport: None}
        self._sessions[st.handle] = st
        return st.handle

    def payload(self, handle: int, which: int, data: bytes, *, sctp_ppid: int | None = None
                ) -> None:
        """Feed one in-order chunk (TCP segment data, UDP datagram, SCTP message).

        Classifiers run first on a direction's first chunk (and again on TCP when
        parsers have consumed every byte so far), then the session's parsers."""
        st = self._sessions.get(handle) if type(handle) is int else None
        if st is None:
            raise _bad_handle(handle, "session")
        if which not in (0, 1):
            raise ValueError(f"which must be 0 or 1, not {which!r}")
        self.deliver(st, which, data, sctp_ppid)

    def deliver(self, st: PluginSession, which: int, data: bytes, sctp_ppid: int | None = None) -> None:
        """`payload` for a caller that holds the live session's state (`state(handle)`)
        and passes a valid `which`: the pipeline, once per chunk, skips the checks."""
        n = len(data)
        if not n or st.silenced:
            return
        if type(data) is not bytes:
            data = bytes(data)
        prev, self.dispatching = self.dispatching, True
        try:
            total = st.total[which]
            if n >= 2 and total == st.consumed[which] and (
                    total == 0 or st.view.ip_protocol == TCP):
                self._classify(st, which, data, n, sctp_ppid)
            parsers = st.parsers  # parsers registered meanwhile are appended and run too
            handle = st.handle
            budget = self.budget
            dead = False
            for i, p in enumerate(parsers):  # the parsers run here, not in a method: once per chunk
                if p is None:
                    continue
                if p.buf is None:
                    mv = memoryview(data)
                    try:
                        if budget is None:  # _guarded inlined: this runs for every chunk
                            rc = p.cb(handle, mv, n, which)
                        else:
                            rc = self._guarded(st, "parser", _cb_name(p.cb), p.cb, handle, mv, n, which)
                    except PLUGIN_FAILURES as exc:  # counts as -1: the parser is unregistered
                        self._failed(st, "parser", _cb_name(p.cb), p.cb, exc)
                        rc = -1
                    finally:
                        try:
                            mv.release()
                        except BufferError:  # the plugin kept a derived buffer; the bytes are immutable
                            pass
                else:
                    rc = self._run_buffered(st, p, which, data)
                if st.silenced:
                    break
                if not isinstance(rc, int) or rc == 0:
                    continue
                if rc == -1:
                    parsers[i] = None
                    if p.buf is not None:
                        self._bufs.pop(p.buf.handle, None)
                    dead = True
                elif rc > 0:
                    st.consumed[which] += rc
                    if rc >= n:
                        break
            if dead and not st.silenced:
                st.parsers = [p for p in parsers if p is not None]
        finally:
            self.dispatching = prev
            st.total[which] += n

    def protocols(self, handle: int) -> frozenset[str]:
        """The protocols claimed so far (`add_protocol`), transport included."""
        return frozenset(self.state(handle).values.get(self.fields.protocols.pos) or ())

    def wants_more(self, handle: int) -> bool:
        """False when no parser is left and no classifier can still fire, so the
        kernel may stop sending this flow (it keeps counting it)."""
        st = self.state(handle)
        if st.ending or st.silenced:
            return False
        if st.parsers:
            return True
        v = st.view
        table = self.classifiers.by_proto.get(v.ip_protocol)
        if table is None:
            return False
        for which in (0, 1):
            total = st.total[which]
            if total == st.consumed[which] and (total == 0 or v.ip_protocol == TCP):
                if table.may_fire(v.client_port, v.server_port, _bytes_allowed(v)):
                    return True
        return False

    def session_ended(self, handle: int, final: bool = True, extra: dict | None = None) -> dict | None:
        """Run pre_save then save hooks and return the SPI record.

        `final=False` is a mid-save: the record is returned and non-linked fields
        are cleared, the session lives on. A final save waits while a plugin holds
        an `incref`; it then returns None and the record comes out of
        `drain_deferred` once `decref` brings the count back to 0. `extra` keys
        are added to the final record, deferred or not."""
        st = self.state(handle)
        if extra:
            st.extra.update(extra)
        flag = 1 if final else 0
        if not final:
            self._run_hooks(self.pre_save_hooks, st, flag, "pre_save")
            self._run_hooks(self.save_hooks, st, flag, "save")
            record = render_spi(st.view, self.fields, st.values)
            for pos in [p for p in st.values if not self.fields.by_pos[p].linked]:
                del st.values[pos]
            return record
        if st.ending:
            return None
        self._run_hooks(self.pre_save_hooks, st, flag, "pre_save")
        st.ending = True
        if st.refcount > 0:
            return None
        return self._finish(st)

    def discard(self, handle: int) -> None:
        """Forget a session without a final save: a kernel flow's mid-session record was
        taken from a throwaway session, and the flow's next record starts a fresh one."""
        st = self._sessions.pop(handle)
        for p in st.parsers:
            if p is not None and p.buf is not None:
                self._bufs.pop(p.buf.handle, None)

    def close(self) -> None:
        """Stop the time budget's watchdog."""
        if self.budget is not None:
            self.budget.close()

    def drain_deferred(self, force: bool = False) -> list[dict]:
        """Records whose final save was deferred by incref and has now happened.

        `force=True` (shutdown) also saves sessions still waiting for a decref."""
        if force:
            for st in [s for s in self._sessions.values() if s.ending and s.refcount > 0]:
                log.warning("session %d saved at shutdown with %d outstanding increfs",
                            st.view.id, st.refcount)
                st.refcount = 0
                self._deferred.append(self._finish(st))
        out, self._deferred = self._deferred, []
        return out

    def active_sessions(self) -> int:
        return len(self._sessions)

    # -- internals ------------------------------------------------------------------
    def _finish(self, st: PluginSession) -> dict:
        self._run_hooks(self.save_hooks, st, 1, "save")
        if st.rendered is not None and not st.view.tags and self._untouched(st):
            record = st.rendered
        else:
            record = render_spi(st.view, self.fields, st.values)
        record.update(st.extra)
        del self._sessions[st.handle]
        for p in st.parsers:
            if p is not None and p.buf is not None:
                self._bufs.pop(p.buf.handle, None)
        st.parsers.clear()
        st.attrs.clear()
        return record

    def _untouched(self, st: PluginSession) -> bool:
        """No plugin field on the session: its values are only what session_started gave it."""
        values = st.values
        if not values:
            return True
        transport = values.get(self.fields.protocols.pos)
        return len(values) == 1 and transport is not None and transport.keys() == {
            TRANSPORTS.get(st.view.ip_protocol)}

    def _run_hooks(self, hooks: list[Callback], st: PluginSession, final: int, kind: str) -> None:
        prev, self.dispatching = self.dispatching, True
        try:
            for cb in hooks:
                self._guarded(st, kind, getattr(cb, "__name__", repr(cb)), cb, st.handle, final)
        finally:
            self.dispatching = prev

    def _guarded(self, st: PluginSession, kind: str, name: str, cb: Callback, *args: Any) -> Any:
        """cb(*args) with its failure reported (and -1 returned), within the time budget if any.
        The budget's exception can land in the callback or in the first `leave` only, both
        inside the outer `try`; by the second `leave` nothing can be pending any more."""
        budget = self.budget
        try:
            try:
                if budget is not None:
                    budget.enter()
                return cb(*args)
            finally:
                if budget is not None:
                    budget.leave()
        except PLUGIN_FAILURES as exc:  # a plugin bug must not stop the sensor
            if budget is not None:
                budget.leave()
            self._failed(st, kind, name, cb, exc)
            return -1

    def _failed(self, st: PluginSession, kind: str, name: str, cb: Callback | None, exc: BaseException) -> None:
        """Report a callback failure; one that ran out of time also silences its session
        (no more classifiers or parsers), so the pipeline bypasses the flow."""
        self.errors.report(kind, name, cb, exc)
        if isinstance(exc, PluginTimeout) and not st.silenced:
            st.silenced = True
            st.parsers = []
            st.view.tags.add("plugin-timeout")

    def _classify(self, st: PluginSession, which: int, data: bytes, n: int,
                  ppid: int | None) -> None:
        v = st.view
        table = self.classifiers.by_proto.get(v.ip_protocol)
        if table is None:
            return
        handle = st.handle
        for c in table.select(data, v.client_port, v.server_port, _bytes_allowed(v), ppid):
            mv = memoryview(data)
            try:
                self._guarded(st, "classify", c.name, c.cb, handle, mv, n, which)
            finally:
                _release(mv)
            if st.silenced:
                return

    def _run_buffered(self, st: PluginSession, p: Parser, which: int, data: bytes) -> int:
        """Accumulate into the parser's buffer and show it the whole buffer.

        Only -1 (or an exception) matters in the return: buffered parsers manage
        their bytes with parser_buf_del/skip instead of reporting consumption."""
        pb = p.buf
        assert pb is not None
        pb.add(which, data)
        buf = pb.bufs[which]
        if not buf:
            return 0
        base = memoryview(buf)
        mv = base.toreadonly()
        try:
            rc = self._guarded(st, "parser_buf", _cb_name(p.cb), p.cb, st.handle, pb.handle, mv, which)
        finally:
            _release(mv)
            _release(base)
        return -1 if rc == -1 and isinstance(rc, int) else 0


def _bytes_allowed(v: SessionView) -> bool:
    # Arkime never runs UDP byte classifiers when either port is 53.
    return not (v.ip_protocol == UDP and (v.client_port == 53 or v.server_port == 53))


def _release(mv: memoryview) -> None:
    try:
        mv.release()
    except BufferError:  # the plugin kept a derived buffer; the bytes are immutable anyway
        pass


def _cb_name(cb: Callback) -> str:
    return getattr(cb, "__qualname__", None) or repr(cb)


def _bad_handle(handle: object, what: str) -> Exception:
    if not isinstance(handle, int):
        return TypeError(f"an Arkime {what} handle must be an int, not {type(handle).__name__}")
    if handle == 0:
        return ArkimeHandleError(f"Invalid Arkime handle: 0 is not a {what}")
    return ArkimeHandleError(f"Invalid Arkime handle: {handle:#x} is not a live {what}")


