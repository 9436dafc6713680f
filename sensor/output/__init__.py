"""Output sinks, the registry of their kinds, and the `-o` choice between them.

A sink receives every FinishedSession (the SPI record, the frames its framer
cut, their decoded messages) on the output writer's thread (`writer.py`), one
call at a time. A sink kind is registered once, under the scheme that names it
in `-o SCHEME:TARGET`, with the file extensions that imply it.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sensor.hooks import FinishedSession
from sensor.output.arkime_bulk import USAGE as ARKIME_USAGE
from sensor.output.arkime_bulk import ArkimeBulkWriter, parse_arkime_target
from sensor.output.jsonlines import JsonLinesWriter
from sensor.output.pcap import USAGE as PCAP_USAGE
from sensor.output.pcap import PcapSink, check_pcap_target
from sensor.output.redis_stream import RedisStreamSink, RedisTarget, parse_redis_target
from sensor.output.sqlite import SqliteStore
from sensor.output.sqlite_schema import StoreError

__all__ = ["DEFAULT_DB", "SINKS", "JsonLinesWriter", "Output", "SinkKind", "SqliteStore", "StoreError", "open_output",
           "follows_packets", "open_outputs", "parse_output_spec", "register_sink"]

DEFAULT_DB = "xdpsensor.db"
"""Where `run` and `read` store sessions when no `-o` is given."""


class Output(Protocol):
    """A sink. Called from one writer thread only; an exception counts the session as failed for this sink."""

    def write(self, finished: FinishedSession) -> None: ...

    def flush(self) -> None:
        """Make everything written so far durable / visible (called when the writer idles and at stop)."""

    def reopen(self) -> None:
        """Reopen files after log rotation (SIGHUP); a sink without files does nothing."""

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SinkKind:
    """How `-o SCHEME:TARGET` opens a sink. `check(target)` raises ValueError for a
    target the sink cannot use, before anything is opened."""

    scheme: str
    open: Callable[[str], Output]
    usage: str  # e.g. "sqlite:PATH (session store)"
    extensions: tuple[str, ...] = ()
    check: Callable[[str], None] | None = None
    local_file: Callable[[str], str | None] | None = None  # the file it writes here (default: the target)
    follows_packets: bool = False  # sees every packet on the capture thread: needs the packets in one process


SINKS: dict[str, SinkKind] = {}
"""Sink kinds by scheme, in registration order."""


def register_sink(kind: SinkKind) -> None:
    """Make `-o kind.scheme:TARGET` (and paths ending in kind.extensions) open `kind.open(TARGET)`."""
    if kind.scheme in SINKS:
        raise ValueError(f"output scheme {kind.scheme!r} is already registered")
    taken = {ext for other in SINKS.values() for ext in other.extensions}
    if taken & set(kind.extensions):
        raise ValueError(f"extensions {sorted(taken & set(kind.extensions))} already name another output kind")
    SINKS[kind.scheme] = kind


def _file_not_stdout(target: str) -> None:
    if target == "-":
        raise ValueError("the sqlite output needs a file, not stdout: write sqlite:PATH, e.g. sqlite:xdpsensor.db")


register_sink(SinkKind("sqlite", SqliteStore, "sqlite:PATH (session store)", (".db", ".sqlite", ".sqlite3"),
                       _file_not_stdout))
register_sink(SinkKind("spi", JsonLinesWriter, "spi:PATH (Arkime SPI JSON lines, - for stdout)", (".jsonl", ".json")))
def _redis_sink_kind(scheme: str, usage: str) -> SinkKind:
    def target(text: str) -> RedisTarget:
        return parse_redis_target(f"{scheme}:{text}")  # the target is what follows "SCHEME:"

    def check(text: str) -> None:
        target(text)

    return SinkKind(scheme, lambda text: RedisStreamSink(target(text)), f"{usage} (Redis stream)", check=check,
                    local_file=lambda text: target(text).spool)


register_sink(_redis_sink_kind("redis", "redis://HOST:PORT/STREAM"))
register_sink(_redis_sink_kind("unix", "unix:///PATH.sock?stream=NAME"))
register_sink(SinkKind("arkime", ArkimeBulkWriter, ARKIME_USAGE, (".ndjson",),
                       check=lambda target: parse_arkime_target(target) and None,
                       local_file=lambda target: parse_arkime_target(target)[0], follows_packets=True))
register_sink(SinkKind("pcap", PcapSink, f"{PCAP_USAGE} (the packets, rotating files)", check=check_pcap_target,
                       local_file=lambda target: None, follows_packets=True))

def local_file(spec: str) -> str | None:
    """The file on this host that output `spec` writes (a Redis stream: its spool), for
    checks before anything opens; "-" for stdout."""
    scheme, target = parse_output_spec(spec)
    kind = SINKS[scheme]
    return kind.local_file(target) if kind.local_file is not None else target


def usage() -> str:
    kinds = ", ".join(kind.usage for kind in SINKS.values())
    extensions = ", ".join(f"{'/'.join(kind.extensions)} ({kind.scheme})" for kind in SINKS.values() if kind.extensions)
    return f"write {kinds}, - (JSON lines to stdout), or a path ending in {extensions}"


def open_output(spec: str) -> Output:
    """Open the output named by `-o`: SCHEME:TARGET, `-`, or a path whose extension names the kind.

    ValueError for a spec it cannot read; the sink's own error (e.g. StoreError) for a target it cannot open."""
    scheme, target = parse_output_spec(spec)
    return SINKS[scheme].open(target)


def open_outputs(specs: Sequence[str]) -> list[Output]:
    """Open every output or none: on a failure the ones opened are closed and
    the files this call created removed, and StoreError says which failed."""
    opened: list[Output] = []
    created: list[Path] = []
    try:
        for spec in specs:
            path = local_file(spec)
            if path is not None and path != "-" and not os.path.lexists(path):
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


def follows_packets(spec: str) -> bool:
    """Whether the `-o` value names a sink that follows packets (pcap, arkime): worker processes
    forward finished sessions only, so such a sink needs the sensor's packets in one process."""
    return SINKS[parse_output_spec(spec)[0]].follows_packets


def parse_output_spec(spec: str) -> tuple[str, str]:
    """(scheme, target) of an `-o` value; ValueError saying what to write instead."""
    if spec == "-":
        return "spi", "-"
    head, sep, tail = spec.partition(":")
    kind = SINKS.get(head) if sep else None
    if kind is not None:
        if not tail:
            raise ValueError(f"output {spec!r} has no path after {head}: ({usage()})")
        if kind.check is not None:
            kind.check(tail)
        return head, tail
    if sep and head[:1].isalpha() and head.isalnum():
        raise ValueError(f"unknown output format {head!r} in {spec!r} (for a path with a colon write "
                         f"./{spec}): {usage()}")
    suffix = Path(spec).suffix.lower()
    scheme = next((kind.scheme for kind in SINKS.values() if suffix in kind.extensions), None)
    if scheme is None:
        raise ValueError(f"cannot tell the output format of {spec!r} from its extension: {usage()}")
    return scheme, spec
