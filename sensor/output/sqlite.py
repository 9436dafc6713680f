"""The embedded session store: one SQLite file of sessions, their frames and decoded messages.

The sensor writes it, `xdpsensor sessions` (or any SQLite client) reads it at
the same time: WAL mode lets readers see every committed session without
waiting for the writer. What it returns has ProtoPoke's shapes (SessionInfo,
Frame and ParsedMessage `to_dict` keys) plus the Arkime SPI record.
"""
from __future__ import annotations

import ipaddress
import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sensor.arkime.session import TRANSPORTS
from sensor.errors import SessionsLost
from sensor.flows.state import Direction, SessionState
from sensor.hooks import FinishedSession
from sensor.models import Frame, new_id
from sensor.output.sqlite_schema import StoreError, connect_reader, connect_writer

DEFAULT_MAX_FRAMES = 1000
DEFAULT_BATCH = 8192  # sessions per transaction at most: in a flood, fewer larger commits cost less per row
DEFAULT_MAX_DELAY = 1.0  # seconds a queued session may wait for its commit
DEFAULT_LIST_LIMIT = 100
MAX_CANDIDATES = 10  # ids listed when a prefix is ambiguous

_DIRECTION_CODES = {Direction.CLIENT_TO_SERVER: "c2s", Direction.SERVER_TO_CLIENT: "s2c"}
_DIRECTIONS = {code: direction for direction, code in _DIRECTION_CODES.items()}

_SESSION_COLUMNS = ("id", "client_host", "client_port", "server_host", "server_port", "transport", "protocols",
                    "first_packet", "last_packet", "state", "end_reason", "packets", "bytes", "data_bytes",
                    "frame_count", "frames_dropped", "record")
_SELECT_SESSIONS = f"SELECT {', '.join(_SESSION_COLUMNS)} FROM sessions"
_SUMMARY_COLUMNS = tuple(c for c in _SESSION_COLUMNS if c not in ("id", "frame_count", "frames_dropped"))
_INSERT = (f"INSERT INTO sessions ({', '.join(_SESSION_COLUMNS)}) "
           f"VALUES ({', '.join('?' * len(_SESSION_COLUMNS))}) ON CONFLICT (id) DO UPDATE SET ")
_UPSERT = _INSERT + ", ".join(f"{c} = excluded.{c}" for c in _SUMMARY_COLUMNS)
_FRAME_COUNT, _FRAMES_DROPPED = _SESSION_COLUMNS.index("frame_count"), _SESSION_COLUMNS.index("frames_dropped")
_EMPTY: dict = {}
_CLOSED = SessionState.CLOSED.value
_encode = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
_UPSERT_COUNTED = _UPSERT + ", frame_count = excluded.frame_count, frames_dropped = excluded.frames_dropped"


class BatchNotStored(StoreError, SessionsLost):
    """A commit failed: every session queued for it is lost."""


class AmbiguousSessionId(StoreError):
    """A session id prefix matches several sessions."""

    def __init__(self, prefix: str, candidates: list[str]) -> None:
        self.prefix = prefix
        self.candidates = candidates
        more = " (and more)" if len(candidates) > MAX_CANDIDATES else ""
        listed = ", ".join(candidates[:MAX_CANDIDATES])
        super().__init__(f"session id {prefix!r} is ambiguous: it matches {listed}{more}; give more characters")


class SqliteStore:
    """Writer and reader of one store file.

    Writing: `write` queues one session; `flush` commits every queued session
    in one transaction (a commit per session caps the store near 5k sessions/s,
    one per batch lets it keep up with floods). A batch is flushed when it
    reaches `batch_size` sessions or when a write finds the oldest queued one
    older than `max_delay` seconds; a writer thread also calls `flush` when it
    runs idle. A killed sensor loses at most the queued batch. Only the first
    `max_frames_per_session` frames of a session are kept, the rest are counted
    in `frames_dropped`. `readonly=True` opens an existing store for queries.
    The object may be handed between threads but used by one at a time.
    """

    def __init__(self, path: str | Path, max_frames_per_session: int = DEFAULT_MAX_FRAMES,
                 batch_size: int = DEFAULT_BATCH, max_delay: float = DEFAULT_MAX_DELAY, *,
                 readonly: bool = False) -> None:
        if max_frames_per_session < 0 or batch_size < 1 or max_delay < 0:
            raise ValueError("max_frames_per_session and max_delay must be >= 0 and batch_size >= 1")
        self.path = str(path)
        self.max_frames_per_session = max_frames_per_session
        self.batch_size = batch_size
        self.max_delay = max_delay
        self._conn = connect_reader(path) if readonly else connect_writer(path)
        self._batch: list[_QueuedSession] = []
        self._batch_started = 0.0
        self.written = 0  # sessions committed
        self.failed = 0  # sessions lost to a failed commit
        self.frames_written = 0
        self.frames_dropped = 0

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------
    def write(self, finished: FinishedSession) -> None:
        """Queue one finished session (checked now, committed by `flush`). Writing a
        session id again updates its summary and appends its frames within the
        same per-session bound."""
        record, frames, messages = finished.record, finished.frames, finished.messages
        if messages and len(messages) != len(frames):
            raise ValueError(f"{len(messages)} messages for {len(frames)} frames: messages must align with frames")
        row = session_values(record)
        frame_rows = [(f.id, row[0], _DIRECTION_CODES[f.direction], f.sequence_number, f.timestamp,
                       bytes(f.raw_bytes), f.framer_name) for f in frames]
        message_rows = [None if m is None else (
            m.id, m.protocol_name, m.message_type, m.display_name,
            json.dumps([f.to_dict() for f in m.fields], separators=(",", ":")), m.error) for m in messages]
        if not self._batch:
            self._batch_started = time.monotonic()
        self._batch.append(_QueuedSession(row, record.get("protocol") or (), frame_rows, message_rows))
        if len(self._batch) >= self.batch_size or time.monotonic() - self._batch_started >= self.max_delay:
            self.flush()

    def flush(self) -> None:
        """Commit every queued session: visible to readers and durable. On failure the
        batch is rolled back, counted in `failed`, and StoreError says why."""
        batch, self._batch = self._batch, []
        if not batch:
            return
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            kept = dropped = 0
            plain: list[tuple] = []  # consecutive sessions without frames: one executemany
            for queued in batch:
                if not queued.frames:
                    plain.append(queued.row)
                    continue
                self._upsert(plain)
                plain = []
                k, d = self._write_with_frames(queued)
                kept, dropped = kept + k, dropped + d
            self._upsert(plain)
            conn.executemany("INSERT OR IGNORE INTO session_protocols (protocol, session_id) VALUES (?, ?)",
                             [(protocol, q.row[0]) for q in batch for protocol in q.protocols])
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self.failed += len(batch)
            raise BatchNotStored(f"{self.path}: {len(batch)} session(s) not stored ({exc})", len(batch)) from exc
        self.written += len(batch)
        self.frames_written += kept
        self.frames_dropped += dropped

    def reopen(self) -> None:
        """Nothing to do: a store is not rotated like a log (SQLite keeps its file open)."""

    def close(self) -> None:
        """Commit what is queued and release the file."""
        if self._conn is None:
            return
        try:
            self.flush()
        finally:
            self._conn.close()
            self._conn = None

    def _upsert(self, rows: list[tuple]) -> None:
        """Insert sessions without frames, or update the summary of ones stored before
        (their stored frame counts stay)."""
        if rows:
            self._conn.executemany(_UPSERT, rows)

    def _write_with_frames(self, queued: _QueuedSession) -> tuple[int, int]:
        conn = self._conn
        row = queued.row
        sid = row[0]
        existing = conn.execute("SELECT frame_count, frames_dropped FROM sessions WHERE id = ?", (sid,)).fetchone()
        stored, dropped_before = existing if existing else (0, 0)
        kept = queued.frames[:max(0, self.max_frames_per_session - stored)]
        dropped = len(queued.frames) - len(kept)
        counted = list(row)
        counted[_FRAME_COUNT], counted[_FRAMES_DROPPED] = stored + len(kept), dropped_before + dropped
        conn.execute(_UPSERT_COUNTED, counted)
        if kept:
            # We hold the write lock, so numbering on from the largest frame_no is race-free.
            first_no = (conn.execute("SELECT max(frame_no) FROM frames").fetchone()[0] or 0) + 1
            conn.executemany(
                "INSERT INTO frames (frame_no, id, session_id, direction, seq, timestamp, raw_bytes, framer) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [(first_no + i, *f) for i, f in enumerate(kept)])
            conn.executemany(
                "INSERT INTO messages (frame_no, id, protocol_name, message_type, display_name, fields, error) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(first_no + i, *m) for i, m in enumerate(queued.messages[:len(kept)]) if m is not None])
        return len(kept), dropped

    # -- reading ------------------------------------------------------------------
    def list_sessions(self, protocol: str | None = None, address: str | None = None, port: int | None = None,
                      since: float | None = None, until: float | None = None,
                      limit: int | None = DEFAULT_LIST_LIMIT) -> list[dict[str, Any]]:
        """Sessions, newest first. `address`/`port` match either end; `since`/`until`
        (epoch seconds) keep sessions with any packet in that span; `limit` None = all."""
        where: list[str] = []
        args: list[Any] = []
        if protocol:
            where.append("id IN (SELECT session_id FROM session_protocols WHERE protocol = ?)")
            args.append(protocol.lower())
        if address:
            where.append("(client_host = ? OR server_host = ?)")
            args += [canonical_address(address)] * 2
        if port is not None:
            where.append("(client_port = ? OR server_port = ?)")
            args += [port, port]
        if since is not None:
            where.append("last_packet >= ?")
            args.append(since * 1000)
        if until is not None:
            where.append("first_packet <= ?")
            args.append(until * 1000)
        sql = _SELECT_SESSIONS + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY first_packet DESC, id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [session_dict(row) for row in self._conn.execute(sql, args)]

    def resolve_session_id(self, id_or_prefix: str) -> str | None:
        """The full id a unique prefix stands for; None if no session matches."""
        prefix = id_or_prefix.strip().lower()
        if not prefix:
            raise StoreError("empty session id: give an id or its first characters (see `xdpsensor sessions list`)")
        # A range on the primary key: LIKE would scan (it is case-insensitive).
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        ids = [r[0] for r in self._conn.execute(
            "SELECT id FROM sessions WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
            (prefix, upper, MAX_CANDIDATES + 1))]
        if prefix in ids:
            return prefix
        if len(ids) > 1:
            raise AmbiguousSessionId(id_or_prefix, ids)
        return ids[0] if ids else None

    def get_session(self, id_or_prefix: str) -> dict[str, Any] | None:
        """One session by id or unique prefix; None if none matches."""
        sid = self.resolve_session_id(id_or_prefix)
        if sid is None:
            return None
        return session_dict(self._conn.execute(_SELECT_SESSIONS + " WHERE id = ?", (sid,)).fetchone())

    def load_frames(self, session_id: str, direction: Direction | None = None) -> list[Frame]:
        """A session's stored frames in capture order, as Frame objects (to decode them again)."""
        sql = "SELECT id, session_id, direction, raw_bytes, timestamp, seq, framer FROM frames WHERE session_id = ?"
        args: list[Any] = [session_id]
        if direction is not None:
            sql += " AND direction = ?"
            args.append(_DIRECTION_CODES[direction])
        return [Frame(fid, sid, _DIRECTIONS[code], raw, ts, seq, framer)
                for fid, sid, code, raw, ts, seq, framer in self._conn.execute(sql + " ORDER BY frame_no", args)]

    def get_frames(self, session_id: str, direction: Direction | None = None) -> list[dict[str, Any]]:
        """A session's frames as ProtoPoke Frame dicts; [] for an unknown id."""
        return [frame.to_dict() for frame in self.load_frames(session_id, direction)]

    def get_messages(self, session_id: str) -> list[dict[str, Any]]:
        """The decoded messages stored with a session's frames, as ProtoPoke ParsedMessage dicts."""
        rows = self._conn.execute(
            "SELECT m.id, f.id, m.protocol_name, m.message_type, m.fields, m.display_name, m.error "
            "FROM messages m JOIN frames f USING (frame_no) WHERE f.session_id = ? ORDER BY frame_no",
            (session_id,))
        return [{"id": mid, "frame_id": fid, "protocol_name": protocol, "message_type": mtype,
                 "fields": json.loads(fields), "display_name": display, "error": error}
                for mid, fid, protocol, mtype, fields, display, error in rows]


@dataclass(slots=True)
class _QueuedSession:
    """A written session waiting for its batch's commit: the sessions row, and its
    frames and messages as table rows (frame numbers are given at commit)."""

    row: tuple
    protocols: Sequence[str]
    frames: list[tuple]
    messages: list[tuple | None]


def session_values(record: dict) -> tuple:
    """The sessions-table row of an SPI record, in `_SESSION_COLUMNS` order (frame
    counts 0: the writer counts stored frames)."""
    meta = record.get("xdpsensor") or _EMPTY
    source = record.get("source") or _EMPTY
    destination = record.get("destination") or _EMPTY
    network = record.get("network") or _EMPTY
    ip_protocol = record.get("ipProtocol")
    return (
        meta.get("sessionId") or new_id(),
        source.get("ip"),
        source.get("port"),
        destination.get("ip"),
        destination.get("port"),
        TRANSPORTS.get(ip_protocol, str(ip_protocol)),
        _encode(record.get("protocol") or []),
        record.get("firstPacket"),
        record.get("lastPacket"),
        # A stored session has ended; the sensor may record a finer final state.
        meta.get("state", _CLOSED),
        meta.get("endReason"),
        network.get("packets"),
        network.get("bytes"),
        record.get("totDataBytes"),
        0,
        0,
        _encode(record),
    )


def session_dict(row: Sequence[Any]) -> dict[str, Any]:
    """A sessions row as ProtoPoke's SessionInfo.to_dict, plus the store's own columns."""
    s = dict(zip(_SESSION_COLUMNS, row))
    return {
        "id": s["id"],
        "client_host": s["client_host"],
        "client_port": s["client_port"],
        "server_host": s["server_host"],
        "server_port": s["server_port"],
        "state": s["state"],
        "created_at": _seconds(s["first_packet"]),
        "closed_at": _seconds(s["last_packet"]),
        "forwarder_name": "",  # ProtoPoke's key; a passive sensor has no forwarder
        "transport": s["transport"],
        "frame_count": s["frame_count"],
        "frames_dropped": s["frames_dropped"],
        "protocols": json.loads(s["protocols"]),
        "end_reason": s["end_reason"],
        "packets": s["packets"],
        "bytes": s["bytes"],
        "data_bytes": s["data_bytes"],
        "record": json.loads(s["record"]),
    }


def canonical_address(text: str) -> str:
    """An IP address written the way SPI records write it (compressed IPv6)."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address: give one like 10.0.0.1 or 2001:db8::1") from None


def _seconds(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000
