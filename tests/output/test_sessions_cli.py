"""`xdpsensor sessions` against real store files, driven through click's CliRunner."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from click.testing import CliRunner
from output_inputs import C2S, HELLO, S2C, finished, greeting_exchange, spi_record

from sensor.models import Frame
from sensor.output.sqlite import SqliteStore
from sensor.sessions_cli import parse_time, sessions

RAW_ONLY = "abcdef01-0000-4000-8000-000000000000"  # frames, no messages
TWIN_A = "abcdef02-0000-4000-8000-000000000000"
BINARY = bytes(range(256))[::7] + b"\x00" * 5 + b"tail"  # 46 bytes: three hexdump lines, the last partial


@pytest.fixture
def db(tmp_path, redis_record):
    """A store: the scapy-built redis session with decoded frames, a session with raw frames, one without."""
    path = tmp_path / "s.db"
    sid = redis_record["xdpsensor"]["sessionId"]
    with SqliteStore(path) as store:
        store.write(finished(redis_record, *greeting_exchange(sid)))
        store.write(finished(spi_record(RAW_ONLY, first_ms=1_500_000_000_000, sport=7000),
                    [Frame.create(RAW_ONLY, C2S, HELLO, 0), Frame.create(RAW_ONLY, S2C, BINARY, 0)]))
        store.write(finished(spi_record(TWIN_A, first_ms=1_400_000_000_000, protocols=("udp",), ip_protocol=17)))
    return path


def run(*args: str):
    return CliRunner(mix_stderr=False).invoke(sessions, list(args))


def test_list_table_has_aligned_rows(db, redis_record):
    result = run("list", "--db", str(db))
    assert result.exit_code == 0, result.stderr
    header, *rows = result.output.splitlines()
    assert header.split()[:3] == ["ID", "FIRST", "(UTC)"]
    assert len(rows) == 3
    redis_row = rows[0]  # newest first: 2020 > 2017 > 2014
    sid = redis_record["xdpsensor"]["sessionId"]
    assert redis_row.split() == [sid[:8], "2020-09-13", "12:26:40.000", "0.070s", "tcp", "192.0.2.10:51000",
                                 "192.0.2.20:6379", "tcp,redis", "8", "453", "2", redis_record["xdpsensor"]["endReason"]]
    for column in ("CLIENT", "SERVER", "PROTOCOLS", "END"):  # left-aligned columns start under their header
        start = header.index(column)
        assert all(row[start - 2:start] == "  " and row[start] != " " for row in rows)
    for column in ("PACKETS", "FRAMES"):  # numbers end under the end of their header
        end = header.index(column) + len(column)
        assert all(row[end - 1].isdigit() and row[end:end + 1] in ("", " ") for row in rows)


def test_list_json_and_filters(db, redis_record):
    result = run("list", "--db", str(db), "--json")
    assert result.exit_code == 0
    listed = json.loads(result.output)
    assert [s["id"] for s in listed] == [redis_record["xdpsensor"]["sessionId"], RAW_ONLY, TWIN_A]
    assert listed[0]["record"] == redis_record

    def ids(*options):
        out = run("list", "--db", str(db), "--json", *options)
        assert out.exit_code == 0, out.output + out.stderr
        return [s["id"] for s in json.loads(out.output)]

    assert ids("--protocol", "redis") == [redis_record["xdpsensor"]["sessionId"]]
    assert ids("--protocol", "udp") == [TWIN_A]
    assert ids("--port", "7000") == [RAW_ONLY]
    assert ids("--address", "192.0.2.20") == [redis_record["xdpsensor"]["sessionId"]]
    assert ids("--since", "2016-01-01") == [redis_record["xdpsensor"]["sessionId"], RAW_ONLY]
    assert ids("--until", "1450000000") == [TWIN_A]
    assert ids("--limit", "1") == [redis_record["xdpsensor"]["sessionId"]]
    assert len(ids("--limit", "0")) == 3


def test_list_nothing_matches(db):
    result = run("list", "--db", str(db), "--protocol", "smb")
    assert result.exit_code == 0 and result.output == "" and "no sessions match" in result.stderr


def test_missing_store_says_run_first(tmp_path):
    for args in (["list"], ["show", "abc"], ["frames", "abc"], ["decode", "abc"]):
        result = run(*args, "--db", str(tmp_path / "none.db"))
        assert result.exit_code == 2
        assert "xdpsensor run" in result.stderr and "--db" in result.stderr
    assert not (tmp_path / "none.db").exists()


def test_show_by_prefix(db, redis_record):
    sid = redis_record["xdpsensor"]["sessionId"]
    result = run("show", "--db", str(db), sid[:6])
    assert result.exit_code == 0, result.stderr
    lines = result.output.splitlines()
    assert lines[0].split() == ["id:", sid]
    assert "client:       192.0.2.10:51000" in lines and "protocols:    tcp, redis" in lines
    record_at = lines.index("record:")
    assert json.loads("\n".join(lines[record_at + 1:])) == redis_record
    as_json = json.loads(run("show", "--db", str(db), "--json", sid[:6]).output)
    assert as_json["id"] == sid and as_json["record"] == redis_record


def test_ambiguous_and_unknown_ids(db):
    result = run("show", "--db", str(db), "abcdef0")
    assert result.exit_code == 2
    assert RAW_ONLY in result.stderr and TWIN_A in result.stderr and "ambiguous" in result.stderr
    result = run("frames", "--db", str(db), "99")
    assert result.exit_code == 2 and "no session '99'" in result.stderr and "sessions list" in result.stderr


def test_frames_hexdump(db):
    result = run("frames", "--db", str(db), "abcdef01")
    assert result.exit_code == 0, result.stderr
    lines = result.output.splitlines()
    assert lines[0].startswith("#0 c2s seq 0 8 B raw ")
    assert lines[1] == "  00000000  01 00 05 61 6c 69 63 65                           |...alice|"
    assert lines[2].startswith("#1 s2c seq 0 46 B raw ")
    assert len(lines) == 6
    only = run("frames", "--db", str(db), "--direction", "s2c", "abcdef01").output.splitlines()
    assert only == lines[2:]
    as_json = json.loads(run("frames", "--db", str(db), "--json", "abcdef01").output)
    assert [bytes.fromhex(f["raw_bytes"]) for f in as_json] == [HELLO, BINARY]


@pytest.mark.skipif(shutil.which("hexdump") is None, reason="hexdump(1) not installed")
def test_frames_hexdump_matches_hexdump_c(db):
    lines = run("frames", "--db", str(db), "--direction", "s2c", "abcdef01").output.splitlines()
    reference = subprocess.run(["hexdump", "-C"], input=BINARY, capture_output=True, check=True).stdout
    assert [line[2:] for line in lines[1:]] == reference.decode().splitlines()[:-1]  # less the final offset


def test_frames_of_session_without_frames(db):
    result = run("frames", "--db", str(db), TWIN_A)
    assert result.exit_code == 0 and result.output == "" and "no stored frames" in result.stderr


def test_decode_stored_messages(db, redis_record):
    result = run("decode", "--db", str(db), redis_record["xdpsensor"]["sessionId"][:8])
    assert result.exit_code == 0, result.stderr
    lines = [line.split() for line in result.output.splitlines()]
    assert ["Greeting", "Hello", "[8B]", "Hello"] in lines
    assert ["opcode", "0x01", "0", "1"] in lines
    assert ["name_len", "5", "1", "2"] in lines
    assert ["name", "alice", "3", "5"] in lines
    assert ["status", "ok", "1", "1"] in lines
    as_json = json.loads(run("decode", "--db", str(db), "--json", redis_record["xdpsensor"]["sessionId"]).output)
    assert [m["message_type"] for m in as_json] == ["Hello", "Ack"]


def test_decode_now_with_a_definition_file(db, greeting_yaml):
    stored = run("decode", "--db", str(db), RAW_ONLY)
    assert stored.exit_code == 0 and "--protocol" in stored.stderr
    result = run("decode", "--db", str(db), "--protocol", str(greeting_yaml), RAW_ONLY)
    assert result.exit_code == 0, result.stderr
    lines = [line.split() for line in result.output.splitlines()]
    assert ["name", "alice", "3", "5"] in lines
    assert any(line[:2] == ["Greeting", "<unknown>"] for line in lines)  # BINARY matches no message
    assert any(line[:1] == ["error:"] for line in lines)
    as_json = json.loads(run("decode", "--db", str(db), "--json", "--protocol", str(greeting_yaml), RAW_ONLY).output)
    assert [(m["message_type"], m["fields"][-1]["value"]) for m in as_json] == [("Hello", "alice"),
                                                                              ("<unknown>", BINARY.hex())]


def test_decode_with_a_broken_definition(db, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("protocol:\n  messages: []\n")  # no name
    result = run("decode", "--db", str(db), "--protocol", str(bad), RAW_ONLY)
    assert result.exit_code == 2 and "bad.yaml" in result.stderr


@pytest.mark.parametrize("text, expected", [
    ("1385394928.5", 1385394928.5),
    ("2013-11-25T15:55:28", 1385394928.0),  # UTC unless told otherwise
    ("2013-11-25 16:55:28+01:00", 1385394928.0),
    ("2013-11-25", 1385337600.0),
    ("90s", 1_000_000 - 90),
    ("30m", 1_000_000 - 1800),
    ("2h", 1_000_000 - 7200),
    ("1.5d", 1_000_000 - 129600),
])
def test_parse_time(text, expected):
    assert parse_time(text, now=1_000_000) == expected


def test_bad_time_option(db):
    result = run("list", "--db", str(db), "--since", "last tuesday")
    assert result.exit_code == 2 and "not a time" in result.stderr


def test_list_while_a_writer_holds_an_open_batch(tmp_path):
    path = tmp_path / "live.db"
    committed = [f"{i:08x}-0000-4000-8000-000000000000" for i in range(3)]
    writer = SqliteStore(path, batch_size=3)
    try:
        for sid in committed:
            writer.write(finished(spi_record(sid)))
        writer.write(finished(spi_record("ffffffff-0000-4000-8000-000000000000")))  # open batch, write lock held
        result = run("list", "--db", str(path), "--json")
        assert result.exit_code == 0, result.stderr
        assert sorted(s["id"] for s in json.loads(result.output)) == committed
    finally:
        writer.close()
    assert len(json.loads(run("list", "--db", str(path), "--json").output)) == 4
