"""`run` as a service, against real traffic in the lab: Prometheus metrics scraped
over HTTP, the status line and SIGUSR1's counters in the log, SIGHUP reloading the
rules (a bad config refused, the old kept) with no session lost, and a sensor that
notices another one took its hook with --force."""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sensor.lab import patience
from sensor.labtraffic import udp_exchange, wait_attached
from tests.lab.sensorproc import SensorProcess

pytestmark = pytest.mark.lab


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line and not line.startswith("#")}


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_metrics_signals_and_reload(lab, tmp_path):
    out, config, port = tmp_path / "out.jsonl", tmp_path / "sensor.yaml", free_port()
    config.write_text(f"flows: selected\nports: [udp:5353]\nstatus_interval: 1\nmetrics: 127.0.0.1:{port}\n")
    sensor = SensorProcess(lab, "-c", str(config), "--no-default-plugins", "-o", str(out))
    try:
        assert wait_attached(lab)
        sensor.wait_for("attached:")
        assert udp_exchange(lab, 5353, [b"q1", b"q2"], b"a") == 2
        sensor.wait_for("status: seen")  # stderr is a pipe: a status line every status_interval
        deadline = time.monotonic() + patience(10)
        while time.monotonic() < deadline and scrape(port).get("xdpsensor_frames_total", 0) < 4:
            time.sleep(0.2)
        metrics = scrape(port)
        assert metrics['xdpsensor_kernel_packets_total{counter="emitted"}'] == 4
        assert metrics['xdpsensor_kernel_packets_total{counter="selected"}'] == 1
        assert metrics["xdpsensor_frames_total"] == 4 and metrics["xdpsensor_sessions_total"] == 1
        assert metrics["xdpsensor_open_sessions"] == 1 and metrics["xdpsensor_ring_drops_total"] == 0
        assert "process_resident_memory_bytes" in metrics

        assert sensor.counter("kernel.emitted") == 4  # SIGUSR1's dump

        config.write_text(f"flows: selected\nports: [udp:6000]\nstatus_interval: 1\nmetrics: 127.0.0.1:{port}\n")
        sensor.proc.send_signal(signal.SIGHUP)
        sensor.wait_for("SIGHUP: config reloaded: 2 port")  # one table entry per end
        assert udp_exchange(lab, 6000, [b"new rule"], b"a") == 1
        assert udp_exchange(lab, 5353, [b"old rule"], b"a") == 1   # no longer selected

        config.write_text("ports: [udp:99999]\n")
        sensor.proc.send_signal(signal.SIGHUP)
        assert "PROTO:PORT" in sensor.wait_for("SIGHUP: config refused, the running one is kept")
        assert udp_exchange(lab, 6000, [b"still"], b"a") == 1
    finally:
        code = sensor.stop()
    assert code == 0, sensor.stderr
    ports = sorted((r["destination"]["port"], r["source"]["packets"]) for r in records(out))
    # The session open across both SIGHUPs is kept whole; 5353's second flow was not selected any more.
    assert ports == [(5353, 2), (6000, 1), (6000, 1)], sensor.stderr


def test_a_sensor_whose_hook_is_taken_says_so_flushes_and_fails(lab, tmp_path):
    first = SensorProcess(lab, "--no-default-plugins", "--flows", "selected", "--port", "udp:5353",
                          "-o", str(tmp_path / "a.jsonl"))
    try:
        assert wait_attached(lab)
        first.wait_for("attached:")
        assert udp_exchange(lab, 5353, [b"before"], b"a") == 1
        second = subprocess.run([sys.executable, "-m", "sensor", "run", "--netns", lab.sensor, "-i", "to-client",
                                 "--force", "--no-default-plugins", "--duration", "1",
                                 "-o", str(tmp_path / "b.jsonl")], capture_output=True, text=True, timeout=patience(60))
        assert second.returncode == 0, second.stderr
        first.wait_for("taken off to-client", timeout=30)
        first.proc.wait(timeout=patience(60))  # it stops by itself: flush, then exit
    finally:
        code = first.stop()
    assert code == 2
    assert [r["destination"]["port"] for r in records(tmp_path / "a.jsonl")] == [5353]  # flushed
