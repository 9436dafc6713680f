"""SensorAPI: ProtoPoke's traffic, framing and decoding API over the passive session registry.

Same names and semantics as ``ProtoPokeAPI`` where a passive sensor has them,
with the fixes ProtoPoke's spec recommends:

- ``set_framer`` validates before anything changes and raises
  ``FramerConfigError`` (ProtoPoke saves a bad config and returns 0); an
  unknown binding raises ``KeyError``. A swap keeps the bytes the old framer
  had not framed yet and continues the sequence numbers; UDP sessions are
  always raw and never counted.
- ``terminate_session`` works from sync and async code alike: called where
  no asyncio loop runs (sync handlers, scripts) it returns the bool at once;
  called from a coroutine (async handlers, ProtoPoke code) it returns an
  awaitable of that bool, as ProtoPoke's ``async def`` does, and the
  termination happens whether or not it is awaited. From any handler, live
  or offline: a session ended from inside its own packet's handlers ends
  once that packet is through. The flow is bypassed in the kernel and its
  later packets start no new session: it is reported once.
- ``decode_frame`` never raises.
- Events: ``on_session_opened`` fires at a session's first packet (a TCP
  session in CONNECTING), and ``on_session_closed`` follows
  ``on_upstream_connection_failed`` (ProtoPoke sends neither for a failed
  connect), so every opened session gets exactly one closed event.

Bindings play the part of ProtoPoke's forwarders: ``forwarder_name`` is
accepted wherever ProtoPoke takes it and means a binding's name.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sensor import gcpolicy
from sensor.bindings import Binding
from sensor.events import EventBus, Handler
from sensor.flows.state import Direction
from sensor.framing import validate_framer_config
from sensor.models import Frame, ParsedField, ParsedMessage
from sensor.protocol import DefinitionDecoder, load_definition_dict, load_definition_file
from sensor.registry import Session, SessionRegistry


class PassthroughDecoder:
    """ProtoPoke's default decoder: the whole frame as one ``raw`` field."""

    protocol_name = "raw"

    def decode(self, frame: Frame) -> ParsedMessage:
        raw = frame.raw_bytes
        field = ParsedField("raw", raw, raw, 0, len(raw), "hex", raw.hex(" ") if raw else "")
        return ParsedMessage.from_frame(frame, self.protocol_name, "raw", [field], f"[{len(raw)} bytes]")


PASSTHROUGH = PassthroughDecoder()


class SensorAPI:
    """The library face of the sensor.

    Whoever runs the pipeline supplies ``terminate(session_id) -> bool``, which
    ends the flow there and stops the kernel sending it, and ``lock``, held
    while the pipeline is fed: calls that change sessions take it, so they never
    interleave with a packet (it must be re-entrant: sync event handlers run
    with it held and may call the API).
    """

    def __init__(self, registry: SessionRegistry, terminate: Callable[[str], bool] | None = None,
                 lock: threading.RLock | None = None) -> None:
        self._registry = registry
        self._terminate = terminate
        self._lock = lock if lock is not None else threading.RLock()
        self._decoder: DefinitionDecoder | None = None  # set by set_protocol_* without a binding

    def follow(self, registry: SessionRegistry) -> None:
        """Answer from `registry` from now on: the workers' session view when
        the sensor runs worker processes (sensor.workers.view)."""
        self._registry = registry

    @property
    def event_bus(self) -> EventBus:
        return self._registry.bus

    @property
    def bindings(self) -> list[Binding]:
        return self._registry.bindings

    # -- events (ProtoPoke's helpers; remove a handler with event_bus.unsubscribe) ----------
    def on_session_opened(self, handler: Handler) -> None:
        self.event_bus.subscribe("on_session_opened", handler)

    def on_session_closed(self, handler: Handler) -> None:
        self.event_bus.subscribe("on_session_closed", handler)

    def on_session_updated(self, handler: Handler) -> None:
        self.event_bus.subscribe("on_session_updated", handler)

    def on_frame_captured(self, handler: Handler) -> None:
        self.event_bus.subscribe("on_frame_captured", handler)

    def on_upstream_connection_failed(self, handler: Handler) -> None:
        self.event_bus.subscribe("on_upstream_connection_failed", handler)

    def on_capture_error(self, handler: Handler) -> None:
        self.event_bus.subscribe("on_capture_error", handler)

    # -- traffic -------------------------------------------------------------------------
    def list_sessions(self) -> list[Session]:
        """Live sessions and the most recent closed ones, oldest first; live objects."""
        return self._registry.all_sessions()

    def list_active_sessions(self) -> list[Session]:
        return self._registry.active_sessions()

    def get_session(self, session_id: str) -> Session | None:
        return self._registry.get(session_id)

    def get_frames(self, session_id: str, direction: Direction | str | None = None) -> list[Frame]:
        """Kept frames in capture order; unfiltered returns the live list (no copy), [] if unknown."""
        session = self._registry.get(session_id)
        if session is None:
            return []
        if direction is None:
            return session.frames
        return session.frames_for_direction(Direction(direction))

    def terminate_session(self, session_id: str) -> bool | Awaitable[bool]:
        """End a live session now: the runner's callback bypasses it, the registry finalises it
        (frames flushed, CLOSED, closed event). False if unknown, already closed or refused.
        Inside a running asyncio loop the bool comes as an awaitable (see the module's notes)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return self._terminate_now(session_id)
        result = loop.create_future()
        if self._lock.acquire(blocking=False):  # free, or this thread holds it (a handler inside a packet)
            try:
                result.set_result(self._terminate_now(session_id))
            finally:
                self._lock.release()
            return result
        # The capture thread is inside a packet: wait for the lock off the loop, never blocking it.
        return asyncio.ensure_future(asyncio.to_thread(self._terminate_now, session_id))

    def _terminate_now(self, session_id: str) -> bool:
        with self._lock:
            session = self._registry.get(session_id)
            if session is None or not session.is_active():
                return False
            if self._terminate is not None and not self._terminate(session_id):
                return False
            self._registry.terminate(session_id)  # False when the callback already ended it through the pipeline
            return True

    def delete_session(self, session_id: str) -> bool:
        """Remove the registry entry only; a live session goes on being captured."""
        with self._lock:
            return self._registry.delete(session_id)

    @staticmethod
    def session_to_dict(session: Session) -> dict[str, Any]:
        return session.to_dict()

    # -- framing -------------------------------------------------------------------------
    def set_framer(self, framer_name: str, framer_kwargs: dict[str, Any] | None = None,
                   custom_framer_path: str | Path | None = None, forwarder_name: str | None = None,
                   binding: str | None = None) -> int:
        """Hot-swap the framer of one binding (all when neither name is given); returns
        the live TCP sessions re-framed. Raises before any change if the config is bad."""
        if forwarder_name is not None and binding is not None and forwarder_name != binding:
            raise ValueError(f"forwarder_name={forwarder_name!r} and binding={binding!r} disagree; give one of them")
        spec = validate_framer_config(framer_name, framer_kwargs, custom_framer_path)
        with self._lock:
            return self._registry.swap_framer(spec, binding if binding is not None else forwarder_name)

    # -- decoding ------------------------------------------------------------------------
    def set_protocol_file(self, path: str | Path, binding: str | None = None) -> None:
        """Load a .yaml/.yml/.json definition (FileNotFoundError, ValueError on bad input).

        Without ``binding`` it becomes the decoder of ``decode_frame`` and
        ``decode_session_frames`` for every frame (ProtoPoke's global decoder);
        with one, that binding decodes its frames with it from now on.
        """
        self._install(DefinitionDecoder(load_definition_file(path)), binding)

    def set_protocol_dict(self, raw: dict[str, Any], binding: str | None = None) -> None:
        """As ``set_protocol_file``, from an already-parsed mapping (ValueError on bad input)."""
        self._install(DefinitionDecoder(load_definition_dict(raw)), binding)

    def _install(self, decoder: DefinitionDecoder, binding: str | None) -> None:
        if binding is None:
            self._decoder = decoder
        else:
            with self._lock:
                self._registry.set_decoder(binding, decoder)

    def decode_frame(self, frame: Frame) -> ParsedMessage:
        """Decode with the API's definition if one was set, else the session's binding's, else passthrough."""
        if self._decoder is not None:
            return self._decoder.decode(frame)
        session = self._registry.get(frame.session_id)
        decoder = session.binding.decoder if session is not None and session.binding is not None else None
        return (decoder or PASSTHROUGH).decode(frame)

    def decode_session_frames(self, session_id: str, direction: Direction | str | None = None) -> list[ParsedMessage]:
        """Every kept frame decoded again, with the cyclic GC paused (see sensor.gcpolicy)."""
        with gcpolicy.paused():
            return [self.decode_frame(frame) for frame in self.get_frames(session_id, direction)]
