"""Delimiter and line framers: cut the stream after every occurrence of a byte string."""

from __future__ import annotations

from sensor.flows.state import Direction
from sensor.framing.base import Framer, FramerConfigError
from sensor.models import Frame

ONE_MIB = 1024 * 1024


class DelimiterFramer(Framer):
    """Emits one frame per delimiter (kept in the frame unless told otherwise).

    When the bytes after the last delimiter grow past ``max_frame_size`` the
    whole buffer goes out as one frame, so a wrong delimiter cannot eat memory.
    """

    name = "delimiter"

    def __init__(
        self,
        session_id: str,
        direction: Direction,
        delimiter: bytes = b"\n",
        include_delimiter: bool = True,
        max_frame_size: int = ONE_MIB,
    ) -> None:
        super().__init__(session_id, direction)
        DelimiterFramer.check_options(delimiter, include_delimiter, max_frame_size)
        self._delimiter = bytes(delimiter)
        self._include_delimiter = include_delimiter
        self._max_frame_size = max_frame_size

    @staticmethod
    def check_options(
        delimiter: bytes = b"\n", include_delimiter: bool = True, max_frame_size: int = ONE_MIB
    ) -> None:
        if not delimiter:
            raise FramerConfigError("delimiter must be a non-empty byte string, e.g. b'\\r\\n' or '0x0d0a'")
        if max_frame_size <= 0:
            raise FramerConfigError(f"max_frame_size must be > 0, got {max_frame_size}")

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buffer
        delimiter = self._delimiter
        width = len(delimiter)
        # The old buffer holds no delimiter, but its tail may start one that `data` completes.
        search_from = max(0, len(buf) - width + 1)
        buf += data
        frames: list[Frame] = []
        start = 0
        while (found := buf.find(delimiter, search_from)) >= 0:
            end = found + width
            frames.append(self._make_frame(bytes(buf[start : end if self._include_delimiter else found])))
            start = search_from = end
        if start:
            del buf[:start]
        if len(buf) > self._max_frame_size:
            frames.append(self._make_frame(bytes(buf)))
            buf.clear()
        return frames


class LineFramer(DelimiterFramer):
    """Splits on ``\\n`` only, so CRLF lines keep their ``\\r\\n``."""

    name = "line"

    def __init__(
        self,
        session_id: str,
        direction: Direction,
        include_delimiter: bool = True,
        max_frame_size: int = ONE_MIB,
    ) -> None:
        super().__init__(session_id, direction, b"\n", include_delimiter, max_frame_size)

    @staticmethod
    def check_options(include_delimiter: bool = True, max_frame_size: int = ONE_MIB) -> None:
        DelimiterFramer.check_options(b"\n", include_delimiter, max_frame_size)
