"""One JSON object per line (Arkime SPI session bodies), to a file or stdout."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TextIO

from sensor.hooks import FinishedSession


class JsonLinesWriter:
    """Writes each record as one line; `-` means standard output. Lines are
    flushed as written so a reader (or a killed sensor) loses nothing."""

    def __init__(self, path: str) -> None:
        self.path = path
        if path != "-":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._out = self._open()
        self.written = 0

    def _open(self) -> TextIO:
        return sys.stdout if self.path == "-" else open(self.path, "a", encoding="utf-8")

    def write(self, finished: FinishedSession) -> None:
        """Write the record; frames and messages are not part of an SPI line."""
        self._out.write(json.dumps(finished.record, separators=(",", ":")) + "\n")
        self._out.flush()
        self.written += 1

    def flush(self) -> None:
        """Nothing held: every line is flushed as it is written."""

    def reopen(self) -> None:
        """Start writing to a new file at the same path (after log rotation moved the old one)."""
        if self._out is not sys.stdout:
            self._out.close()
            self._out = self._open()

    def close(self) -> None:
        if self._out is not sys.stdout:
            self._out.close()
