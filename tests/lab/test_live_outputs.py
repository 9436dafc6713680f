"""Live capture with a stuck output and a failing one: the capture and the other outputs go on,
each loss is counted for its output, and stopping writes every finished session."""
from __future__ import annotations

import time

import pytest
from sinks import GatedSink, RaisingSink

from sensor import Sensor
from sensor.config import load_config
from sensor.lab import patience
from sensor.labtraffic import tcp_exchange
from sensor.output import SqliteStore

pytestmark = pytest.mark.lab

PORT, SESSIONS = 7101, 6


@pytest.mark.parametrize("workers", [1, 2])
def test_a_stuck_and_a_failing_output_cost_only_themselves(lab, tmp_path, workers):
    # Only the selected sessions: the lab's own traffic (IPv6 neighbour discovery) has records too by default.
    config = load_config({"ports": [f"tcp:{PORT}"], "timeouts": {"tcp_closing": 0.2}, "flows": "selected"})
    config.workers = workers
    stuck, failing, store = GatedSink(), RaisingSink(), SqliteStore(tmp_path / "s.db")
    sensor = Sensor(config, outputs=[stuck, failing, store])
    errors: list = []
    sensor.api.on_capture_error(errors.append)
    sensor.start(["to-client", "to-server"], netns=lab.sensor)
    try:
        for n in range(SESSIONS):
            assert tcp_exchange(lab, PORT, b"ping %d" % n, b"pong") == b"pong"
        deadline = time.monotonic() + patience(10)
        # (the stuck output's thread may take its first session after the store wrote all: wait for both)
        while time.monotonic() < deadline and (sensor.output_stats()[2].written < SESSIONS
                                               or not stuck.entered.is_set()):
            time.sleep(0.1)
        # Every session ended and reached the store while the stuck output still holds the first.
        assert stuck.entered.is_set() and not stuck.written
        assert sensor.output_stats()[2].written == SESSIONS
    finally:
        stuck.release.set()
        sensor.stop()
        sensor.close()
    stuck_stats, failing_stats, store_stats = sensor.output_stats()
    assert (stuck_stats.written, stuck_stats.lost) == (SESSIONS, 0)  # the queue held them: written at stop
    assert (failing_stats.written, failing_stats.failed) == (0, SESSIONS)
    assert (store_stats.written, store_stats.lost) == (SESSIONS, 0)
    assert sum(int(e.error.split()[0]) for e in errors if e.kind == "output") == SESSIONS
    with SqliteStore(tmp_path / "s.db", readonly=True) as reader:
        ports = sorted(s["server_port"] for s in reader.list_sessions(limit=None))
    assert ports == [PORT] * SESSIONS
