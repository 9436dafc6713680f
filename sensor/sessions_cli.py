"""`xdpsensor sessions`: query the session store while the sensor writes it, or afterwards."""
from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import click

from sensor.flows.state import Direction
from sensor.output import DEFAULT_DB
from sensor.output.pcap_extract import PcapExtractError, extract
from sensor.output.sqlite import DEFAULT_LIST_LIMIT, SqliteStore, canonical_address
from sensor.output.sqlite_schema import StoreError
from sensor.output.terminal import frame_header, hexdump, message_lines, session_details, session_table
from sensor.protocol import DefinitionDecoder, ProtocolDefinitionError, load_definition_file

_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_DIRECTIONS = {"c2s": Direction.CLIENT_TO_SERVER, "s2c": Direction.SERVER_TO_CLIENT}


def parse_time(text: str, now: float) -> float:
    """Epoch seconds from an age (30m, 2h, 7d: that long before `now`), epoch seconds,
    or ISO 8601 (UTC unless it carries an offset, like the times `sessions` prints)."""
    value = text.strip()
    age = _AGE.fullmatch(value)
    if age:
        return now - float(age[1]) * _AGE_UNITS[age[2]]
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{text!r} is not a time: give ISO 8601 (2024-05-01T12:00, UTC unless an offset is given), "
                         f"epoch seconds, or an age like 30m, 2h, 7d") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


class TimeParam(click.ParamType):
    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_time(value, time.time())
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _address(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return canonical_address(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _fail(message: str) -> NoReturn:
    click.echo(f"xdpsensor: {message}", err=True)
    sys.exit(2)


def _emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


@contextmanager
def _store(db: str) -> Iterator[SqliteStore]:
    try:
        store = SqliteStore(db, readonly=True)
    except StoreError as exc:
        _fail(str(exc))
    with store:
        yield store


def _session_id(store: SqliteStore, id_or_prefix: str) -> str:
    try:
        sid = store.resolve_session_id(id_or_prefix)
    except StoreError as exc:
        _fail(str(exc))
    if sid is None:
        _fail(f"no session {id_or_prefix!r} in {store.path}: see `xdpsensor sessions list --db {store.path}`")
    return sid


_db = click.option("--db", default=DEFAULT_DB, show_default=True, type=click.Path(dir_okay=False),
                   help="session store written by `xdpsensor run`/`read`")
_json = click.option("--json", "as_json", is_flag=True, help="print JSON instead of text")
_id = click.argument("session_id", metavar="ID")


@click.group("sessions")
def sessions() -> None:
    """Query stored sessions, their frames and decoded messages (IDs may be unique prefixes)."""


@sessions.command("list")
@_db
@_json
@click.option("--protocol", help="only sessions Arkime tagged with this protocol (e.g. http, redis, udp)")
@click.option("--address", callback=_address, help="only sessions with this IP at either end")
@click.option("--port", type=click.IntRange(0, 65535), help="only sessions with this port at either end")
@click.option("--since", type=TimeParam(), help="only sessions with packets at or after TIME (ISO UTC, epoch, or 2h)")
@click.option("--until", type=TimeParam(), help="only sessions with packets at or before TIME")
@click.option("--limit", type=click.IntRange(min=0), default=DEFAULT_LIST_LIMIT, show_default=True,
              help="newest sessions shown (0: all)")
def list_command(db: str, as_json: bool, protocol: str | None, address: str | None, port: int | None,
                 since: float | None, until: float | None, limit: int) -> None:
    """Sessions, newest first."""
    with _store(db) as store:
        found = store.list_sessions(protocol, address, port, since, until, limit or None)
    if as_json:
        _emit_json(found)
    elif not found:
        click.echo("no sessions match", err=True)
    else:
        click.echo("\n".join(session_table(found)))


@sessions.command("show")
@_db
@_json
@_id
def show_command(db: str, as_json: bool, session_id: str) -> None:
    """One session: endpoints, counters and its whole SPI record."""
    with _store(db) as store:
        session = store.get_session(_session_id(store, session_id))
    if as_json:
        _emit_json(session)
        return
    click.echo("\n".join(session_details(session)))
    click.echo("record:")
    click.echo(json.dumps(session["record"], indent=2, sort_keys=True))


@sessions.command("frames")
@_db
@_json
@click.option("--direction", type=click.Choice(sorted(_DIRECTIONS)), help="only one direction")
@_id
def frames_command(db: str, as_json: bool, direction: str | None, session_id: str) -> None:
    """A session's stored frames in capture order, as hex dumps (#N is the position in the session)."""
    with _store(db) as store:
        sid = _session_id(store, session_id)
        frames = store.get_frames(sid)
    wanted = [(i, f) for i, f in enumerate(frames)
              if direction is None or f["direction"] == _DIRECTIONS[direction].value]
    if as_json:
        _emit_json([f for _, f in wanted])
        return
    if not frames:
        click.echo(f"session {sid} has no stored frames (frames are kept when a framer is bound to a session)",
                   err=True)
    for i, frame in wanted:
        click.echo(frame_header(i, frame))
        click.echo("\n".join("  " + line for line in hexdump(bytes.fromhex(frame["raw_bytes"]))))


@sessions.command("decode")
@_db
@_json
@click.option("--protocol", "definition_file", type=click.Path(exists=True, dir_okay=False),
              help="decode the stored frames now with this protocol definition (.yaml/.yml/.json)")
@_id
def decode_command(db: str, as_json: bool, definition_file: str | None, session_id: str) -> None:
    """Decoded messages field by field: those stored with the session, or decoded now with --protocol."""
    with _store(db) as store:
        sid = _session_id(store, session_id)
        frames = store.load_frames(sid)
        if definition_file is None:
            messages = store.get_messages(sid)
        else:
            decoder = _load_decoder(definition_file)
            messages = [decoder.decode(frame).to_dict() for frame in frames]
    if as_json:
        _emit_json(messages)
        return
    if not messages:
        hint = (f"decode its {len(frames)} frames now with --protocol FILE.yaml" if frames
                else "it has no stored frames either")
        click.echo(f"session {sid} has no stored decoded messages: {hint}", err=True)
    position = {frame.id: i for i, frame in enumerate(frames)}
    frame_dicts = {frame.id: frame.to_dict() for frame in frames}
    for message in messages:
        index = position[message["frame_id"]]
        click.echo(frame_header(index, frame_dicts[message["frame_id"]]))
        click.echo("\n".join("  " + line for line in message_lines(message)))


def _load_decoder(path: str) -> DefinitionDecoder:
    try:
        return DefinitionDecoder(load_definition_file(path))
    except (ProtocolDefinitionError, FileNotFoundError) as exc:
        _fail(str(exc))


@sessions.command("pcap")
@_db
@click.option("-o", "--output", "out_path", required=True, type=click.Path(dir_okay=False),
              help="pcap file to write (- for stdout)")
@click.option("--pcap-dir", type=click.Path(file_okay=False),
              help="where the pcap output's files are now (default: the directory the record names)")
@_id
def pcap_command(db: str, out_path: str, pcap_dir: str | None, session_id: str) -> None:
    """A session's packets, read back from the pcap output (-o pcap:DIR) by the record's packetPos."""
    with _store(db) as store:
        session = store.get_session(_session_id(store, session_id))
    record = session["record"]
    try:
        if out_path == "-":
            count = extract(record, sys.stdout.buffer, pcap_dir)
        else:
            with open(out_path, "wb") as out:
                count = extract(record, out, pcap_dir)
    except PcapExtractError as exc:
        if out_path != "-":
            Path(out_path).unlink(missing_ok=True)
        _fail(f"session {session['id']}: {exc}")
    click.echo(f"{count} packet(s) of session {session['id']} written to {out_path}", err=True)
