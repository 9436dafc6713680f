"""The framer contract: one instance per direction per session turns chunks into frames."""

from __future__ import annotations

from typing import ClassVar

from sensor.errors import SensorError
from sensor.flows.state import Direction
from sensor.models import Frame


class FramerConfigError(SensorError, ValueError):
    """A framer name, kwarg or script is unusable; raised before anything is swapped."""


class Framer:
    """Base framer: holds the unemitted bytes of one direction and numbers its frames.

    Subclasses implement ``feed``; ``flush`` (end of direction) emits whatever is
    buffered as one last, possibly incomplete, frame.
    """

    name: ClassVar[str] = "framer"

    def __init__(self, session_id: str, direction: Direction) -> None:
        self.session_id = session_id
        self.direction = direction
        self.sequence_number = 0
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        raise NotImplementedError

    def flush(self) -> list[Frame]:
        if not self._buffer:
            return []
        raw = bytes(self._buffer)
        self._buffer.clear()
        return [self._make_frame(raw)]

    def reset(self) -> None:
        """Forget buffered bytes and restart numbering at 0."""
        self._buffer.clear()
        self.sequence_number = 0

    def take_buffered(self) -> bytes:
        """Remove and return the bytes received but not yet emitted in a frame."""
        raw = bytes(self._buffer)
        self._buffer.clear()
        return raw

    def next_sequence(self) -> int:
        """Take the next sequence number (ProtoPoke's helper for framer subclasses)."""
        number = self.sequence_number
        self.sequence_number = number + 1
        return number

    def _make_frame(self, raw: bytes) -> Frame:
        return Frame.create(self.session_id, self.direction, raw, self.next_sequence(), self.name)


def reframe(old: Framer, new: Framer) -> list[Frame]:
    """Hand a live direction from ``old`` to ``new`` without losing bytes.

    The old framer's unemitted bytes are fed to the new one (whose frames are
    returned, to be processed like any other) and numbering continues where the
    old framer stopped, so sequence numbers never repeat within a direction.
    ProtoPoke drops the buffer and restarts at 0 instead.
    """
    new.sequence_number = old.sequence_number
    pending = old.take_buffered()
    return new.feed(pending) if pending else []
