"""Outputs for tests: one that keeps every record, one stuck until released, one that always fails."""
from __future__ import annotations

import threading


class RecordSink:
    def __init__(self) -> None:
        self.records: list[dict] = []

    def write(self, finished) -> None:
        self.records.append(finished.record)

    def flush(self) -> None:
        pass

    reopen = close = flush


class GatedSink:
    """Blocks inside its first write until released: the slowest output there is."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.written: list[str] = []
        self.closed = False

    def write(self, finished) -> None:
        self.entered.set()
        self.release.wait()
        self.written.append(finished.session_id)

    def flush(self) -> None:
        pass

    reopen = flush

    def close(self) -> None:
        self.closed = True


class RaisingSink(GatedSink):
    def write(self, finished) -> None:
        raise OSError("disk on fire")
