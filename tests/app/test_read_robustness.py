"""`read` on bad days: a capture cut short, a link type nobody reads, a stop
request, a FIFO. What was read is flushed, the reason is said, and the exit
status tells a script the read was not complete."""
from __future__ import annotations

import os
import struct
import threading
from pathlib import Path

from capturelib import Capture
from click.testing import CliRunner

from sensor import Sensor
from sensor.cli import main
from sensor.output import JsonLinesWriter


def conversations(first_port: int, count: int) -> Capture:
    """`count` TCP requests, each answered but left open (no FIN): only a flush ends them."""
    capture = Capture()
    for i in range(count):
        capture.tcp(("10.0.0.1", first_port + i), ("10.0.0.2", 80)).handshake() \
            .send("c", b"GET / HTTP/1.1\r\n\r\n").send("s", b"HTTP/1.1 200 OK\r\n\r\n")
    return capture


def ports(out: Path) -> list[int]:
    import json
    return sorted(json.loads(line)["source"]["port"] for line in out.read_text().splitlines())


def test_a_capture_cut_short_is_flushed_and_the_next_file_read(tmp_path):
    cut = conversations(41000, 3).write(tmp_path / "cut.pcap")
    data = cut.read_bytes()
    cut.write_bytes(data[:len(data) - 7])  # inside the last record
    whole = conversations(42000, 2).write(tmp_path / "whole.pcap")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(main, ["read", str(cut), str(whole), "--no-default-plugins", "--no-prefilter",
                                       "-o", str(out)])
    assert result.exit_code == 1
    assert f"broken capture: {cut}: record 14" in result.output  # 5 frames per conversation, the 15th cut
    assert ports(out) == [41000, 41001, 41002, 42000, 42001]


def test_a_capture_of_an_unknown_link_type_says_so_and_fails(tmp_path):
    path = tmp_path / "radio.pcap"
    frame = bytes(40)
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 127)
                     + struct.pack("<IIII", 1, 0, len(frame), len(frame)) + frame)
    result = CliRunner().invoke(main, ["read", str(path), "--prefilter", "python", "-o", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 1
    assert "none of the 1 frames could be read: link type(s) 127 not supported" in result.output


def test_a_stop_request_flushes_every_session_read_so_far(tmp_path):
    pcap = conversations(43000, 200).write(tmp_path / "many.pcap")  # 1000 frames
    out = tmp_path / "out.jsonl"
    stop = threading.Event()
    sensor = Sensor({"default_plugins": False}, outputs=[JsonLinesWriter(str(out))])
    opened: list[str] = []

    def on_opened(event) -> None:
        opened.append(event.session.id)
        if len(opened) == 60:
            stop.set()
    sensor.api.on_session_opened(on_opened)
    summary = sensor.read_pcap(pcap, "none", stop=stop)
    sensor.close()
    assert summary.interrupted and not summary.complete
    assert 60 <= summary.sessions < 200
    assert summary.records == summary.sessions == len(ports(out)) == len(opened)


def test_a_fifo_is_read_once_a_writer_comes(tmp_path):
    pcap = conversations(44000, 2).write(tmp_path / "two.pcap")
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(pcap.read_bytes()), daemon=True)
    writer.start()
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(main, ["read", str(fifo), "--no-default-plugins", "--no-prefilter",
                                       "-o", str(out)])
    writer.join(timeout=10)
    assert result.exit_code == 0, result.output
    assert f"{fifo} is a FIFO: waiting for a writer" in result.output
    assert ports(out) == [44000, 44001]


def test_an_output_that_fails_does_not_starve_the_others_and_the_status_says_so(tmp_path):
    pcap = conversations(45000, 3).write(tmp_path / "three.pcap")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(main, ["read", str(pcap), "--no-default-plugins", "--no-prefilter",
                                       "-o", "spi:/dev/full", "-o", str(out)])
    assert result.exit_code == 1
    assert "output spi:/dev/full: 3 session(s) not written" in result.output
    assert ports(out) == [45000, 45001, 45002]
