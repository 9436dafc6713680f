"""One JSON object per line (Arkime SPI session bodies), to a file or stdout."""
from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from sensor.models import Frame, ParsedMessage


class JsonLinesWriter:
    """Writes each record as one line; `-` means standard output. Lines are
    flushed as written so a reader (or a killed sensor) loses nothing."""

    def __init__(self, path: str) -> None:
        self.path = path
        if path == "-":
            self._out: TextIO = sys.stdout
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._out = open(path, "a", encoding="utf-8")
        self.written = 0

    def write(self, record: dict, frames: Sequence[Frame] = (),
              messages: Sequence[ParsedMessage | None] = ()) -> None:
        """Write the record; frames and messages are not part of an SPI line."""
        self._out.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._out.flush()
        self.written += 1

    def close(self) -> None:
        if self._out is not sys.stdout:
            self._out.close()
