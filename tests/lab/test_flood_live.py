"""A live flood of one-packet UDP flows, more than the kernel's table holds
(65,536 flows): every flow the program made is either recorded in the store,
counted as evicted by the full table, or counted as shed by the output. No
rule selects the flood, so every record is built from the kernel's counters.
With Arkime's UDP timeout (60 s) no flood flow ends before the sensor stops:
the table overflows whenever its scans run, and the stop records what it holds."""
from __future__ import annotations

import re
import signal
import sqlite3

import pytest

from sensor.lab import patience
from sensor.labtraffic import udp_flood
from tests.lab.test_live import start_sensor

pytestmark = pytest.mark.lab

FLOWS = 70_000          # 3.5 s at RATE; the table holds 65,536
RATE = 20_000
SPORTS, DPORTS = (20000, 59999), (20000, 21008)   # both step per packet: 40,000 x 1,009 pairs, none repeated


def counted(err: str, pattern: str) -> int:
    found = re.search(pattern, err)
    assert found, f"{pattern!r} not in the sensor's summary:\n{err}"
    return int(found.group(1))


def test_every_flow_of_a_flood_is_recorded_or_counted(lab, tmp_path):
    db, config = tmp_path / "flood.db", tmp_path / "sensor.yaml"
    config.write_text("output_queue: 100000\n")     # the stop's burst of records fits the queue
    proc = start_sensor(lab, db, "-c", str(config), "--no-default-plugins")
    try:
        udp_flood(lab, FLOWS, RATE, SPORTS, DPORTS)
    finally:
        proc.send_signal(signal.SIGINT)
        # Bounded: the stop waits at most 30 s for the store, then counts what it could not write.
        _, err = proc.communicate(timeout=patience(120))
    assert proc.returncode == 0, err
    created = counted(err, r"flows (\d+) \(selected")
    evicted = counted(err, r"evicted by a full table (\d+)")
    records = counted(err, r"wrote (\d+) session records")
    shed = sum(int(n) for n in re.findall(r"(\d+) session\(s\) not written", err))
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT count(*) FROM sessions").fetchone()[0]
        flood = conn.execute("SELECT count(*) FROM sessions WHERE transport = 'udp' AND client_host = ? "
                             "AND server_port BETWEEN ? AND ?", (lab.client_ip, *DPORTS)).fetchone()[0]
    assert evicted > 0, err                 # the flood outran the table: evictions happened, and were counted
    assert 0 < flood <= FLOWS and flood + evicted >= created - (stored - flood), err
    # Every flow the program made: a record (stored or shed by the output, counted) or an eviction.
    assert (records, created) == (stored + shed, records + evicted), err
