"""The SQLite session store on real files: round trips, bounds, WAL readers, versions, filters, prefixes."""
from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from output_inputs import ACK, C2S, HELLO, S2C, finished, greeting_exchange, spi_record

from sensor.models import Frame
from sensor.output.sqlite import AmbiguousSessionId, SqliteStore
from sensor.output.sqlite_schema import SCHEMA_VERSION, SchemaVersionError, StoreError, StoreMissingError

REPO = Path(__file__).resolve().parents[2]


def reader(path: Path) -> SqliteStore:
    return SqliteStore(path, readonly=True)


def test_real_record_round_trip_matches_arkime_expectation(tmp_path, shared_testdata, http_record):
    db = tmp_path / "s.db"
    with SqliteStore(db) as store:
        store.write(finished(http_record))
    expected = json.loads((shared_testdata / "arkime-pcap" / "http-301-get.test").read_text())["sessions3"][0]["body"]
    sid = http_record["xdpsensor"]["sessionId"]
    with reader(db) as store:
        (listed,) = store.list_sessions()
        got = store.get_session(sid)
    assert listed == got
    assert got["id"] == sid
    assert (got["client_host"], got["client_port"]) == (expected["source"]["ip"], expected["source"]["port"])
    assert (got["server_host"], got["server_port"]) == (expected["destination"]["ip"], expected["destination"]["port"])
    assert got["transport"] == "tcp"
    assert got["created_at"] == expected["firstPacket"] / 1000
    assert got["closed_at"] == expected["lastPacket"] / 1000
    assert (got["packets"], got["bytes"]) == (expected["network"]["packets"], expected["network"]["bytes"])
    assert got["data_bytes"] == expected["totDataBytes"]
    assert got["state"] == "closed" and got["end_reason"] == http_record["xdpsensor"]["endReason"]
    assert got["record"] == http_record  # the whole SPI record comes back unchanged
    assert (got["frame_count"], got["frames_dropped"]) == (0, 0)


def test_protopoke_session_keys(tmp_path):
    db = tmp_path / "s.db"
    with SqliteStore(db) as store:
        store.write(finished(spi_record("11111111-0000-4000-8000-000000000000")))
    with reader(db) as store:
        got = store.get_session("11111111-0000-4000-8000-000000000000")
    # SessionInfo.to_dict keys (ProtoPoke spec section 1), plus the store's own.
    assert {"id", "client_host", "client_port", "server_host", "server_port", "state", "created_at",
            "closed_at", "forwarder_name", "transport"} <= set(got)
    assert {"frame_count", "protocols", "record"} <= set(got)
    json.dumps(got)  # JSON-safe as returned


def test_built_session_with_frames_and_messages(tmp_path, redis_record):
    db = tmp_path / "s.db"
    sid = redis_record["xdpsensor"]["sessionId"]
    frames, messages = greeting_exchange(sid)
    with SqliteStore(db) as store:
        store.write(finished(redis_record, frames, messages))
    with reader(db) as store:
        assert store.get_session(sid)["protocols"] == ["tcp", "redis"]
        stored = store.get_frames(sid)
        decoded = store.get_messages(sid)
        only_s2c = store.get_frames(sid, S2C)
    assert [(f["direction"], f["sequence_number"], f["raw_bytes"], f["raw_bytes_len"]) for f in stored] == [
        ("client_to_server", 0, HELLO.hex(), 8), ("server_to_client", 0, ACK.hex(), 2)]
    assert [f["id"] for f in stored] == [f.id for f in frames]
    assert all(f["session_id"] == sid and f["framer_name"] == "raw" for f in stored)
    assert [f["raw_bytes"] for f in only_s2c] == [ACK.hex()]
    assert [m["message_type"] for m in decoded] == ["Hello", "Ack"]
    assert [m["frame_id"] for m in decoded] == [f.id for f in frames]
    hello, ack = decoded
    assert [(f["name"], f["value"], f["offset"], f["size"]) for f in hello["fields"]] == [
        ("opcode", 1, 0, 1), ("name_len", 5, 1, 2), ("name", "alice", 3, 5)]
    assert ack["fields"][1]["display_value"] == "ok"
    assert hello["protocol_name"] == "Greeting" and hello["error"] is None


def test_load_frames_rebuilds_frames(tmp_path):
    sid = str(uuid.uuid4())
    frames = [Frame.create(sid, C2S, b"\x00\xffbinary", 0, "length_prefix")]
    db = tmp_path / "s.db"
    with SqliteStore(db) as store:
        store.write(finished(spi_record(sid), frames))
    with reader(db) as store:
        (back,) = store.load_frames(sid)
    assert back == frames[0]


def test_frames_bounded_per_session_and_counted(tmp_path):
    sid = str(uuid.uuid4())
    frames = [Frame.create(sid, C2S if i % 2 == 0 else S2C, bytes([i]) * 3, i // 2) for i in range(5)]
    hello, ack = greeting_exchange(sid)[1]
    messages = [hello, None, ack, hello, ack]
    db = tmp_path / "s.db"
    with SqliteStore(db, max_frames_per_session=3) as store:
        store.write(finished(spi_record(sid), frames, messages))
        store.flush()  # counted when committed
        assert (store.frames_written, store.frames_dropped) == (3, 2)
    with reader(db) as store:
        session = store.get_session(sid)
        stored = store.get_frames(sid)
        decoded = store.get_messages(sid)
    assert (session["frame_count"], session["frames_dropped"]) == (3, 2)
    assert [f["raw_bytes"] for f in stored] == ["000000", "010101", "020202"]  # the first three, in order
    assert [m["frame_id"] for m in decoded] == [frames[0].id, frames[2].id]  # frame 1 had no message


def test_same_session_written_again_updates_and_appends_within_bound(tmp_path):
    sid = str(uuid.uuid4())
    db = tmp_path / "s.db"
    with SqliteStore(db, max_frames_per_session=3) as store:
        store.write(finished(spi_record(sid, packets=4), [Frame.create(sid, C2S, b"a", 0), Frame.create(sid, C2S, b"b", 1)]))
        store.write(finished(spi_record(sid, packets=10), [Frame.create(sid, C2S, b"c", 2), Frame.create(sid, C2S, b"d", 3)]))
    with reader(db) as store:
        session = store.get_session(sid)
        assert [f["raw_bytes"] for f in store.get_frames(sid)] == [b"a".hex(), b"b".hex(), b"c".hex()]
    assert session["packets"] == 10
    assert (session["frame_count"], session["frames_dropped"]) == (3, 1)


def test_misaligned_messages_rejected(tmp_path):
    sid = str(uuid.uuid4())
    frames, messages = greeting_exchange(sid)
    with SqliteStore(tmp_path / "s.db") as store:
        with pytest.raises(ValueError, match="2 messages for 3 frames"):
            store.write(finished(spi_record(sid), frames[:1] + frames, messages))


def test_failed_session_leaves_the_rest_of_its_batch(tmp_path):
    good = [str(uuid.uuid4()) for _ in range(2)]
    bad = str(uuid.uuid4())
    broken = Frame(str(uuid.uuid4()), bad, "client_to_server", b"x", 0.0, 0)  # a str, not a Direction
    db = tmp_path / "s.db"
    with SqliteStore(db, batch_size=3) as store:
        store.write(finished(spi_record(good[0])))
        with pytest.raises(KeyError):
            store.write(finished(spi_record(bad), [broken]))  # fails after its session row was inserted
        store.write(finished(spi_record(good[1])))
    with reader(db) as store:
        assert sorted(s["id"] for s in store.list_sessions()) == sorted(good)
        assert store.get_frames(bad) == []


def test_record_without_session_id_or_ports(tmp_path):
    record = spi_record("x", cport=None, sport=None, ip_protocol=1, protocols=("icmp",))
    del record["xdpsensor"]
    db = tmp_path / "s.db"
    with SqliteStore(db) as store:
        store.write(finished(record))
    with reader(db) as store:
        (got,) = store.list_sessions()
    assert uuid.UUID(got["id"]).version == 4
    assert (got["client_port"], got["server_port"], got["transport"]) == (None, None, "icmp")
    assert got["end_reason"] is None


def test_wal_reader_sees_committed_batches_while_writer_holds_one_open(tmp_path):
    db = tmp_path / "s.db"
    writer = SqliteStore(db, batch_size=4)
    first = [str(uuid.uuid4()) for _ in range(4)]
    for sid in first:
        writer.write(finished(spi_record(sid)))  # the 4th write commits the batch
    for _ in range(3):
        writer.write(finished(spi_record(str(uuid.uuid4()))))  # an open batch, write lock held
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()
    with reader(db) as store:
        assert sorted(s["id"] for s in store.list_sessions(limit=None)) == sorted(first)
        writer.close()
        assert len(store.list_sessions(limit=None)) == 7  # the same reader sees the closing commit


def test_killed_writer_loses_only_the_open_batch(tmp_path):
    db = tmp_path / "s.db"
    script = textwrap.dedent(f"""
        import os, signal, sys, uuid
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from output_inputs import finished, spi_record
        from sensor.output.sqlite import SqliteStore
        store = SqliteStore({str(db)!r}, batch_size=5)
        for _ in range(12):
            store.write(finished(spi_record(str(uuid.uuid4()))))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    with reader(db) as store:
        assert len(store.list_sessions(limit=None)) == 10  # two committed batches of 5; 2 lost
    with SqliteStore(db) as store:  # and the file is still a writable store
        store.write(finished(spi_record(str(uuid.uuid4()))))


def test_other_schema_version_refused(tmp_path):
    db = tmp_path / "s.db"
    SqliteStore(db).close()
    raw = sqlite3.connect(db)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 6}")
    raw.close()
    for readonly in (False, True):
        with pytest.raises(SchemaVersionError, match=f"version {SCHEMA_VERSION + 6}.*version {SCHEMA_VERSION}"):
            SqliteStore(db, readonly=readonly)


def test_foreign_database_and_non_database_refused(tmp_path):
    other = tmp_path / "other.db"
    raw = sqlite3.connect(other)
    raw.execute("CREATE TABLE t (x)")
    raw.close()
    with pytest.raises(StoreError, match="not an xdpsensor session store"):
        SqliteStore(other)
    text = tmp_path / "notes.db"
    text.write_text("these are not the pages you are looking for\n" * 100)
    for readonly in (False, True):
        with pytest.raises(StoreError, match="not an SQLite session store"):
            SqliteStore(text, readonly=readonly)


def test_reader_of_missing_store_says_what_to_do(tmp_path):
    with pytest.raises(StoreMissingError, match="xdpsensor run.*--db"):
        SqliteStore(tmp_path / "absent.db", readonly=True)
    assert not (tmp_path / "absent.db").exists()


@pytest.fixture
def filtered(tmp_path):
    """Five sessions; times in ms, spans [first, last]."""
    db = tmp_path / "s.db"
    records = {
        "a": spi_record("a" * 8 + "-0000-4000-8000-000000000000", client="10.0.0.1", cport=40001, server="10.0.0.9",
                        sport=80, first_ms=1000_000, last_ms=1005_000, protocols=("tcp", "http")),
        "b": spi_record("b" * 8 + "-0000-4000-8000-000000000000", client="10.0.0.2", cport=40002, server="10.0.0.9",
                        sport=6379, first_ms=2000_000, last_ms=2001_000, protocols=("tcp", "redis")),
        "c": spi_record("c" * 8 + "-0000-4000-8000-000000000000", client="10.0.0.9", cport=53, server="10.0.0.3",
                        sport=5353, first_ms=3000_000, last_ms=3000_000, protocols=("udp", "dns"), ip_protocol=17),
        "d": spi_record("d" * 8 + "-0000-4000-8000-000000000000", client="2001:db8::1", cport=40004,
                        server="2001:db8::2", sport=443, first_ms=4000_000, last_ms=9000_000, protocols=("tcp",)),
        "e": spi_record("e" * 8 + "-0000-4000-8000-000000000000", client="10.0.0.5", cport=40005, server="10.0.0.6",
                        sport=80, first_ms=10000_000, last_ms=10000_500, protocols=("tcp", "http")),
    }
    with SqliteStore(db) as store:
        for record in records.values():
            store.write(finished(record))
    with reader(db) as store:
        yield store


def names(sessions):
    return [s["id"][0] for s in sessions]


def test_list_newest_first_with_limit(filtered):
    assert names(filtered.list_sessions(limit=None)) == ["e", "d", "c", "b", "a"]
    assert names(filtered.list_sessions(limit=2)) == ["e", "d"]


@pytest.mark.parametrize("query, expected", [
    ({"protocol": "http"}, ["e", "a"]),
    ({"protocol": "HTTP"}, ["e", "a"]),
    ({"protocol": "udp"}, ["c"]),
    ({"protocol": "smb"}, []),
    ({"address": "10.0.0.9"}, ["c", "b", "a"]),  # client or server
    ({"address": "2001:0db8:0000::0002"}, ["d"]),  # written another way
    ({"port": 80}, ["e", "a"]),
    ({"port": 53}, ["c"]),  # a client port counts too
    ({"since": 3000.0}, ["e", "d", "c"]),  # any packet at or after: d started before but ran on
    ({"until": 2000.5}, ["b", "a"]),
    ({"since": 5000.0, "until": 6000.0}, ["d"]),  # spans the window without a packet in it... started before
    ({"protocol": "http", "port": 80, "since": 1004.0}, ["e", "a"]),
    ({"protocol": "http", "address": "10.0.0.9"}, ["a"]),
])
def test_list_filters(filtered, query, expected):
    assert names(filtered.list_sessions(limit=None, **query)) == expected


def test_list_address_must_be_an_ip(filtered):
    with pytest.raises(ValueError, match="not an IP address"):
        filtered.list_sessions(address="example.com")


def test_prefix_ids(tmp_path):
    ids = ["abcd1111-0000-4000-8000-000000000000", "abcd2222-0000-4000-8000-000000000000",
           "abce0000-0000-4000-8000-000000000000"]
    db = tmp_path / "s.db"
    with SqliteStore(db) as store:
        for sid in ids:
            store.write(finished(spi_record(sid)))
    with reader(db) as store:
        assert store.resolve_session_id("abcd1") == ids[0]
        assert store.resolve_session_id("ABCE") == ids[2]
        assert store.get_session("abcd2")["id"] == ids[1]
        assert store.get_session(ids[0])["id"] == ids[0]
        assert store.get_session("ff") is None
        with pytest.raises(AmbiguousSessionId) as info:
            store.get_session("abcd")
        assert info.value.candidates == ids[:2]
        assert ids[0] in str(info.value) and ids[1] in str(info.value)
        with pytest.raises(StoreError, match="empty session id"):
            store.get_session(" ")
        assert store.get_frames("no-such-session") == [] and store.get_messages("no-such-session") == []
