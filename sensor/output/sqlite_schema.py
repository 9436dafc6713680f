"""The session store's tables, its version, and opening a file as a store.

The version lives in SQLite's `user_version`; a file of another version is
refused rather than migrated, so an old sensor never half-writes a newer layout.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

from sensor.errors import SensorError

SCHEMA_VERSION = 1
WRITER_CACHE_KIB = 64 * 1024

# Times are Arkime's milliseconds since the epoch; directions are c2s/s2c.
# `frame_no` orders a session's frames as they were captured, across both directions.
SCHEMA = """
CREATE TABLE sessions (
    id             TEXT PRIMARY KEY,
    client_host    TEXT,
    client_port    INTEGER,
    server_host    TEXT,
    server_port    INTEGER,
    transport      TEXT NOT NULL,
    protocols      TEXT NOT NULL,
    first_packet   INTEGER,
    last_packet    INTEGER,
    state          TEXT NOT NULL,
    end_reason     TEXT,
    packets        INTEGER,
    bytes          INTEGER,
    data_bytes     INTEGER,
    frame_count    INTEGER NOT NULL,
    frames_dropped INTEGER NOT NULL,
    record         TEXT NOT NULL
);
CREATE INDEX sessions_by_first_packet ON sessions (first_packet);
CREATE INDEX sessions_by_client_host ON sessions (client_host);
CREATE INDEX sessions_by_server_host ON sessions (server_host);
CREATE INDEX sessions_by_client_port ON sessions (client_port);
CREATE INDEX sessions_by_server_port ON sessions (server_port);

CREATE TABLE session_protocols (
    protocol   TEXT NOT NULL,
    session_id TEXT NOT NULL REFERENCES sessions (id),
    PRIMARY KEY (protocol, session_id)
) WITHOUT ROWID;

CREATE TABLE frames (
    frame_no   INTEGER PRIMARY KEY,
    id         TEXT NOT NULL,
    session_id TEXT NOT NULL REFERENCES sessions (id),
    direction  TEXT NOT NULL CHECK (direction IN ('c2s', 's2c')),
    seq        INTEGER NOT NULL,
    timestamp  REAL NOT NULL,
    raw_bytes  BLOB NOT NULL,
    framer     TEXT NOT NULL
);
CREATE INDEX frames_by_session ON frames (session_id, frame_no);

CREATE TABLE messages (
    frame_no      INTEGER PRIMARY KEY REFERENCES frames (frame_no),
    id            TEXT NOT NULL,
    protocol_name TEXT NOT NULL,
    message_type  TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    fields        TEXT NOT NULL,
    error         TEXT
);
"""


class StoreError(SensorError):
    """The session store cannot be used; the message says why and what to do."""


class StoreMissingError(StoreError):
    """No store at the path a reader was given."""


class SchemaVersionError(StoreError):
    """The file is a store of another schema version."""


def connect_writer(path: str | Path) -> sqlite3.Connection:
    """Open (creating if needed) a store for writing: WAL, so readers never wait on the sensor."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def prepare() -> None:
        conn.execute("PRAGMA busy_timeout = 5000")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(f"{path}: SQLite refused WAL mode (got {mode!r}); put the store on a local filesystem")
        # In WAL mode NORMAL loses no committed transaction when the process dies (only on power loss).
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")  # the indexes' pages stay in memory in floods
        _check_or_create(conn, path)

    return _prepared(conn, path, prepare, "pass another -o/--db path")


def connect_reader(path: str | Path) -> sqlite3.Connection:
    """Open an existing store read-only; it may be written by a running sensor at the same time."""
    if not Path(path).is_file():
        raise StoreMissingError(
            f"no session store at {path}: run `xdpsensor run` or `xdpsensor read` first, or pass --db PATH")
    conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, check_same_thread=False)

    def prepare() -> None:
        conn.execute("PRAGMA busy_timeout = 5000")
        _check_version(conn, path)

    return _prepared(conn, path, prepare, "pass another --db path")


def _prepared(conn: sqlite3.Connection, path: str | Path, prepare, fix: str) -> sqlite3.Connection:
    """Run `prepare`; on failure close the connection and say what the file is not."""
    try:
        prepare()
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(f"{path} is not an SQLite session store ({exc}): {fix}") from exc
    except StoreError:
        conn.close()
        raise
    return conn


def _check_or_create(conn: sqlite3.Connection, path: str | Path) -> None:
    conn.execute("BEGIN IMMEDIATE")  # two sensors starting on one new file must not both create it
    try:
        if _table_count(conn) == 0:
            # statement by statement: executescript would commit the open transaction
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        else:
            _check_version(conn, path)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _check_version(conn: sqlite3.Connection, path: str | Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version == 0:
        raise StoreError(f"{path} is an SQLite database but not an xdpsensor session store: pass another path")
    raise SchemaVersionError(
        f"{path} holds session store schema version {version}, this xdpsensor uses version {SCHEMA_VERSION}: "
        f"use the xdpsensor that wrote it, or pass a new path (move the old file aside)")


def _table_count(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
