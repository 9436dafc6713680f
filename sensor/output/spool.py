"""A bounded local file that holds records while a remote sink is unreachable.

One line per record, `SEQ<TAB>JSON`, appended in order; a first line names
the writer (`# xdpsensor spool WRITER`). A sensor restarted on a spool left by
an earlier run takes over that writer's name and sequence, so it can ask the
remote side how much of the spool already arrived.
Records that would take the file past its size limit are not written and are
counted in `overflow`: the caller reports them as lost.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from sensor.errors import SensorError

HEADER = "# xdpsensor spool "


class SpoolError(SensorError):
    """The spool file cannot be used; the message says why."""


class Spool:
    """Append records, read them back in order, and clear the file once replayed."""

    def __init__(self, path: str | Path, max_bytes: int, writer: str) -> None:
        if max_bytes < 1:
            raise ValueError("the spool needs a size limit of at least 1 byte")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.writer = writer  # replaced by the name in a spool left by an earlier run
        self.last_seq = 0  # the last sequence number in the file
        self.overflow = 0  # records refused for lack of room
        self.records = 0  # records now in the file
        self._size = 0
        self._file = None
        self._adopt()

    def _adopt(self) -> None:
        """Take over a spool an earlier run left: its writer, its last sequence number."""
        try:
            with open(self.path, encoding="utf-8") as f:
                first = f.readline()
                if not first.startswith(HEADER):
                    raise SpoolError(f"{self.path} is not an xdpsensor spool: move it aside or pass another path")
                self.writer = first[len(HEADER):].strip()
                for line in f:
                    if line.endswith("\n"):
                        self.records += 1
                        self.last_seq = int(line.partition("\t")[0])
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise SpoolError(f"cannot read the spool {self.path} ({exc}): move it aside or pass another path") from exc
        self._size = self.path.stat().st_size

    def __len__(self) -> int:
        return self.records

    def append(self, seq: int, payload: str) -> bool:
        """Add one record; False (and counted in `overflow`) when it does not fit."""
        line = f"{seq}\t{payload}\n"
        if self._file is None:
            self._open()
        size = len(line.encode("utf-8")) if not line.isascii() else len(line)
        if self._size + size > self.max_bytes:
            self.overflow += 1
            return False
        try:
            self._file.write(line)
            self._file.flush()
        except OSError as exc:
            self.overflow += 1
            raise SpoolError(f"cannot write the spool {self.path}: {exc.strerror}") from exc
        self._size += size
        self.records += 1
        self.last_seq = seq
        return True

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fresh = not self.path.exists() or self.path.stat().st_size == 0
            self._file = open(self.path, "a", encoding="utf-8")
            if fresh:
                header = f"{HEADER}{self.writer}\n"
                self._file.write(header)
                self._file.flush()
                self._size = len(header)
        except OSError as exc:
            raise SpoolError(f"cannot open the spool {self.path}: {exc.strerror}; pass a writable spool path") from exc

    def read(self) -> Iterator[tuple[int, str]]:
        """Every record in the file, oldest first, as (seq, payload)."""
        if self._file is not None:
            self._file.flush()
        try:
            with open(self.path, encoding="utf-8") as f:
                f.readline()
                for line in f:
                    if line.endswith("\n"):  # a line cut by a crash is not a record
                        seq, _, payload = line[:-1].partition("\t")
                        yield int(seq), payload
        except FileNotFoundError:
            return

    def clear(self) -> None:
        """Remove the file: everything in it has arrived."""
        self.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self._size = 0
        self.records = 0

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
