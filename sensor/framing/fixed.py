"""Fixed-size framer: every frame is exactly ``size`` bytes (not in ProtoPoke)."""

from __future__ import annotations

from sensor.flows.state import Direction
from sensor.framing.base import Framer, FramerConfigError
from sensor.models import Frame


class FixedSizeFramer(Framer):
    """Cuts the stream into ``size``-byte frames; ``flush`` emits the short remainder."""

    name = "fixed"

    def __init__(self, session_id: str, direction: Direction, size: int) -> None:
        super().__init__(session_id, direction)
        self.check_options(size)
        self._size = size

    @staticmethod
    def check_options(size: int) -> None:
        if size <= 0:
            raise FramerConfigError(f"size must be > 0; got {size}")

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buffer
        buf += data
        size = self._size
        whole = len(buf) - len(buf) % size
        frames = [self._make_frame(bytes(buf[start : start + size])) for start in range(0, whole, size)]
        if whole:
            del buf[:whole]
        return frames
