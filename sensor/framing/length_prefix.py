"""Length-prefix framer: an unsigned length field says how long each frame is."""

from __future__ import annotations

import struct

from sensor.flows.state import Direction
from sensor.framing.base import Framer, FramerConfigError
from sensor.models import Frame

SIXTEEN_MIB = 16 * 1024 * 1024
_FORMATS = {1: "B", 2: "H", 4: "I", 8: "Q"}
_ORDERS = {"big": ">", "little": "<"}


class LengthPrefixFramer(Framer):
    """Frames laid out as ``[prefix_offset bytes][length L][L + length_add bytes]``.

    Frames are emitted whole, header included. A negative payload or a frame
    larger than ``max_frame_size`` means the stream is not what the config
    says: the whole buffer goes out as one frame and framing restarts on the
    next read (ProtoPoke's recovery, kept).
    """

    name = "length_prefix"

    def __init__(
        self,
        session_id: str,
        direction: Direction,
        prefix_length: int = 4,
        byte_order: str = "big",
        prefix_offset: int = 0,
        length_add: int = 0,
        max_frame_size: int = SIXTEEN_MIB,
    ) -> None:
        super().__init__(session_id, direction)
        self.check_options(prefix_length, byte_order, prefix_offset, length_add, max_frame_size)
        self._length = struct.Struct(_ORDERS[byte_order] + _FORMATS[prefix_length])
        self._prefix_offset = prefix_offset
        self._header = prefix_offset + prefix_length
        self._length_add = length_add
        self._max_frame_size = max_frame_size

    @staticmethod
    def check_options(
        prefix_length: int = 4,
        byte_order: str = "big",
        prefix_offset: int = 0,
        length_add: int = 0,
        max_frame_size: int = SIXTEEN_MIB,
    ) -> None:
        if prefix_length not in _FORMATS:
            raise FramerConfigError(f"prefix_length must be one of 1, 2, 4, 8; got {prefix_length}")
        if byte_order not in _ORDERS:
            raise FramerConfigError(f"byte_order must be 'big' or 'little'; got {byte_order!r}")
        if prefix_offset < 0:
            raise FramerConfigError(f"prefix_offset must be >= 0; got {prefix_offset}")
        if max_frame_size <= 0:
            raise FramerConfigError(f"max_frame_size must be > 0; got {max_frame_size}")

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buffer
        buf += data
        frames: list[Frame] = []
        header = self._header
        unpack_from = self._length.unpack_from
        start = 0
        available = len(buf)
        while available - start >= header:
            payload = unpack_from(buf, start + self._prefix_offset)[0] + self._length_add
            total = header + payload
            if payload < 0 or total > self._max_frame_size:
                frames.append(self._make_frame(bytes(buf[start:])))
                start = available
                break
            if available - start < total:
                break
            frames.append(self._make_frame(bytes(buf[start : start + total])))
            start += total
        if start:
            del buf[:start]
        return frames
