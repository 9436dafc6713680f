"""Session writers and the `-o` choice between them.

Every output takes the finished SPI record of a session, with the frames its
framer cut and their decoded messages (aligned with the frames, None where not
decoded); writers that keep only the record ignore the rest.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from sensor.models import Frame, ParsedMessage
from sensor.output.jsonlines import JsonLinesWriter
from sensor.output.sqlite import SqliteStore
from sensor.output.sqlite_schema import StoreError

__all__ = ["DEFAULT_DB", "JsonLinesWriter", "Output", "SqliteStore", "StoreError", "open_output", "open_outputs",
           "parse_output_spec"]

DEFAULT_DB = "xdpsensor.db"
"""Where `run` and `read` store sessions when no `-o` is given."""

FORMATS = ("sqlite", "spi")
EXTENSIONS = {".db": "sqlite", ".sqlite": "sqlite", ".sqlite3": "sqlite", ".jsonl": "spi", ".json": "spi"}
USAGE = ("write sqlite:PATH (session store), spi:PATH (Arkime SPI JSON lines), - (JSON lines to stdout), "
         "or a path ending in .db/.sqlite (store) or .jsonl/.json (JSON lines)")


class Output(Protocol):
    """What the pipeline hands each finished session to."""

    def write(self, record: dict, frames: Sequence[Frame] = (),
              messages: Sequence[ParsedMessage | None] = ()) -> None: ...

    def close(self) -> None: ...


def open_output(spec: str) -> Output:
    """Open the output named by `-o`: FORMAT:PATH, `-`, or a path whose extension names the format.

    ValueError for a spec it cannot read; StoreError for a file that is not a usable store."""
    fmt, path = parse_output_spec(spec)
    if fmt == "sqlite":
        return SqliteStore(path)
    return JsonLinesWriter(path)


def open_outputs(specs: Sequence[str]) -> list[Output]:
    """Open every output or none: on a failure the ones opened are closed and
    the files this call created removed, and StoreError says which failed."""
    opened: list[Output] = []
    created: list[Path] = []
    try:
        for spec in specs:
            _, path = parse_output_spec(spec)
            if path != "-" and not os.path.lexists(path):
                created += [Path(path + suffix) for suffix in ("", "-wal", "-shm")]
            opened.append(open_output(spec))
    except (OSError, StoreError) as e:
        for output in opened:
            output.close()
        for path in created:
            path.unlink(missing_ok=True)
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise StoreError(f"cannot open output {spec!r}: {reason}") from None
    return opened


def parse_output_spec(spec: str) -> tuple[str, str]:
    """(format, path) of an `-o` value; ValueError saying what to write instead."""
    if spec == "-":
        return "spi", "-"
    head, sep, tail = spec.partition(":")
    if sep and head in FORMATS:
        if not tail:
            raise ValueError(f"output {spec!r} has no path after {head}: ({USAGE})")
        if head == "sqlite" and tail == "-":
            raise ValueError("the sqlite output needs a file, not stdout: write sqlite:PATH, e.g. sqlite:xdpsensor.db")
        return head, tail
    if sep and head[:1].isalpha() and head.isalnum():
        raise ValueError(f"unknown output format {head!r} in {spec!r} (for a path with a colon write "
                         f"./{spec}): {USAGE}")
    fmt = EXTENSIONS.get(Path(spec).suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the output format of {spec!r} from its extension: {USAGE}")
    return fmt, spec
