"""The output writer: sinks behind bounded queues, losses counted per sink, nothing lost at close."""
from __future__ import annotations

import json
import threading

import pytest
from capturelib import Capture
from output_inputs import finished, spi_record
from sinks import GatedSink, RaisingSink

from sensor.app import Sensor
from sensor.output import SINKS, SinkKind, SqliteStore, open_output, parse_output_spec, register_sink
from sensor.output.jsonlines import JsonLinesWriter
from sensor.output.writer import OutputWriter

SESSIONS = 40


def sid(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


def test_a_slow_and_a_failing_sink_cost_only_themselves(tmp_path):
    slow, failing = GatedSink(), RaisingSink()
    store = SqliteStore(tmp_path / "s.db")
    writer = OutputWriter([slow, failing, store], ["slow", "failing", "sqlite"], capacity=SESSIONS)
    slow_capacity = 5
    writer._sinks[0].queue.maxsize = slow_capacity  # the slow sink's queue is the small one
    writer.session_finished(finished(spi_record(sid(0))))
    assert slow.entered.wait(30)  # the slow sink now holds session 0 and takes nothing more
    for i in range(1, SESSIONS):
        writer.session_finished(finished(spi_record(sid(i))))  # never waits: capture goes on
    assert writer.flush(timeout=0) is False  # the slow sink has not got there
    slow.release.set()
    assert writer.close()

    stats = {s.name: s for s in writer.stats()}
    assert (stats["slow"].written, stats["slow"].dropped, stats["slow"].failed) == (
        1 + slow_capacity, SESSIONS - 1 - slow_capacity, 0)
    assert slow.written == [sid(i) for i in range(1 + slow_capacity)]
    assert (stats["failing"].written, stats["failing"].failed, stats["failing"].lost) == (0, SESSIONS, SESSIONS)
    assert (stats["sqlite"].written, stats["sqlite"].lost) == (SESSIONS, 0)
    with SqliteStore(tmp_path / "s.db", readonly=True) as reader:
        assert sorted(s["id"] for s in reader.list_sessions(limit=None)) == [sid(i) for i in range(SESSIONS)]
    assert slow.closed and failing.closed


def test_block_when_full_waits_and_loses_nothing(tmp_path):
    slow = GatedSink()
    writer = OutputWriter([slow], capacity=1, block_when_full=True)
    feeder = threading.Thread(target=lambda: [writer.session_finished(finished(spi_record(sid(i))))
                                              for i in range(SESSIONS)])
    feeder.start()
    assert slow.entered.wait(30)
    slow.release.set()
    feeder.join()
    writer.close()
    assert slow.written == [sid(i) for i in range(SESSIONS)]
    assert writer.stats()[0].lost == 0


def test_a_sink_still_stuck_at_close_is_left_with_its_queue_counted_as_dropped():
    stuck = GatedSink()
    writer = OutputWriter([stuck], ["stuck"])
    for i in range(4):
        writer.session_finished(finished(spi_record(sid(i))))
    assert stuck.entered.wait(30)  # holds session 0; sessions 1-3 wait in its queue
    assert writer.close(timeout=0.1) is False
    stats = writer.stats()[0]
    assert (stats.written, stats.dropped, stats.failed) == (0, 3, 0)
    stuck.release.set()  # let its thread finish the write it is in


def test_close_writes_everything_queued_first(tmp_path):
    path = tmp_path / "records.jsonl"
    writer = OutputWriter([JsonLinesWriter(str(path))])
    for i in range(SESSIONS):
        writer.session_finished(finished(spi_record(sid(i))))
    writer.close()
    assert [json.loads(line)["xdpsensor"]["sessionId"] for line in path.read_text().splitlines()] == [
        sid(i) for i in range(SESSIONS)]


def test_reopen_follows_log_rotation(tmp_path):
    path, rotated = tmp_path / "records.jsonl", tmp_path / "records.jsonl.1"
    writer = OutputWriter([JsonLinesWriter(str(path))])
    writer.session_finished(finished(spi_record(sid(1))))
    assert writer.flush()
    path.rename(rotated)
    writer.reopen()
    writer.session_finished(finished(spi_record(sid(2))))
    writer.close()
    assert [json.loads(line)["xdpsensor"]["sessionId"] for line in rotated.read_text().splitlines()] == [sid(1)]
    assert [json.loads(line)["xdpsensor"]["sessionId"] for line in path.read_text().splitlines()] == [sid(2)]


def test_sensor_reports_a_failing_output_and_still_fills_the_others(tmp_path):
    capture = Capture()
    for port in range(40000, 40005):
        capture.tcp(("10.0.0.1", port), ("10.0.0.2", 80)).handshake().send("c", b"GET /\r\n").close()
    pcap = capture.write(tmp_path / "five.pcap")
    failing = RaisingSink()
    db = tmp_path / "s.db"
    sensor = Sensor({}, outputs=[failing, open_output(str(db))])
    errors: list = []
    sensor.api.on_capture_error(errors.append)
    summary = sensor.read_pcap(pcap, prefilter="none")
    sensor.close()
    assert summary.records == 5
    lost = [s.lost for s in sensor.output_stats()]
    assert lost == [5, 0]
    assert [e.kind for e in errors] == ["output"] and errors[0].error.startswith("5 session(s) not written")
    with SqliteStore(db, readonly=True) as reader:
        assert len(reader.list_sessions(limit=None)) == 5


def test_a_sink_kind_is_registered_once_by_scheme(tmp_path):
    kind = SinkKind("lines", JsonLinesWriter, "lines:PATH (test)", (".lines",))
    register_sink(kind)
    try:
        assert parse_output_spec("x.lines") == ("lines", "x.lines")
        assert isinstance(open_output(f"lines:{tmp_path / 'a'}"), JsonLinesWriter)
        with pytest.raises(ValueError, match="already registered"):
            register_sink(kind)
        with pytest.raises(ValueError, match="already name another"):
            register_sink(SinkKind("other", JsonLinesWriter, "other:PATH", (".db",)))
    finally:
        del SINKS["lines"]


def test_a_full_disk_is_one_line_and_the_other_outputs_go_on(tmp_path):
    """`-o spi:/dev/full`: every write fails with ENOSPC. The log says so in one line per kind of
    failure (no traceback), the store still gets every session, the loss is counted and the exit
    status says the read was not complete."""
    import subprocess
    import sys
    capture = Capture()
    for port in range(40000, 40006):
        capture.tcp(("10.0.0.1", port), ("10.0.0.2", 80)).handshake().send("c", b"GET /\r\n").close()
    pcap = capture.write(tmp_path / "six.pcap")
    db = tmp_path / "s.db"
    run = subprocess.run([sys.executable, "-m", "sensor", "read", str(pcap), "--no-default-plugins",
                          "--no-prefilter", "-o", "spi:/dev/full", "-o", f"sqlite:{db}"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    full = [line for line in run.stderr.splitlines() if "No space left on device" in line]
    assert len(full) == 2
    assert full[0].startswith("output spi:/dev/full: writing session ")
    assert full[0].endswith(" failed (further failures are only counted): No space left on device")
    assert full[1] == "output spi:/dev/full: close failed (further failures are only counted): No space left on device"
    assert "output spi:/dev/full: 6 session(s) not written (0 shed: its queue was full; 6 failed: see above)" \
        in run.stderr
    with SqliteStore(db, readonly=True) as reader:
        assert len(reader.list_sessions(limit=None)) == 6


def test_a_batch_whose_commit_fails_is_counted_whole(tmp_path):
    """The store accepts sessions into a batch and commits them together: when the commit fails
    (here another connection holds the file's write lock), every session of the batch is counted
    as failed, not only the one being written, and none of them as written."""
    import sqlite3
    db = tmp_path / "s.db"
    store = SqliteStore(db)
    store._conn.execute("PRAGMA busy_timeout = 50")  # give up on the lock at once
    writer = OutputWriter([store], ["sqlite"])
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    for i in range(10):
        writer.session_finished(finished(spi_record(sid(i))))
    writer.flush()
    blocker.execute("ROLLBACK")
    blocker.close()
    for i in range(10, 15):
        writer.session_finished(finished(spi_record(sid(i))))
    writer.close()
    stats = writer.stats()[0]
    assert (stats.written, stats.failed) == (5, 10)
    with SqliteStore(db, readonly=True) as reader:
        assert sorted(s["id"] for s in reader.list_sessions(limit=None)) == [sid(i) for i in range(10, 15)]


def test_the_output_queue_is_configured(tmp_path):
    """`output_queue`: how many finished sessions wait per output before a live sensor sheds them."""
    sensor = Sensor({"output_queue": 7}, outputs=[JsonLinesWriter(str(tmp_path / "o.jsonl"))])
    try:
        assert [sink.queue.maxsize for sink in sensor.writer._sinks] == [7]
    finally:
        sensor.close()
