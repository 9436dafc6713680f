"""Raw framer: every read chunk is one frame (ProtoPoke's default, and all UDP)."""

from __future__ import annotations

from sensor.framing.base import Framer
from sensor.models import Frame


class RawFramer(Framer):
    name = "raw"

    def feed(self, data: bytes) -> list[Frame]:
        if not data:
            return []
        return [self._make_frame(bytes(data))]

    @staticmethod
    def check_options() -> None:
        """No options to check."""
