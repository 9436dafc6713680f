"""Mid-session records of long sessions (Arkime's tcpSaveTimeout / maxPackets), linked by rootId."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from capturelib import Capture

from sensor.arkime.runtime import PluginRuntime
from sensor.flows.table import SessionTable
from sensor.hooks import FinishedCollector
from sensor.kernel.program import ProgramOptions, SensorProgram
from sensor.kernel.rules import RuleSet
from sensor.offline import CaptureFilter, replay
from sensor.output.pcap import PcapSink
from sensor.output.pcap_extract import extract
from sensor.pipeline import Pipeline
from sensor.prefilter import PythonFlowTable

COUNTED = (("source", "packets"), ("source", "bytes"), ("destination", "packets"), ("destination", "bytes"),
           ("network", "packets"), ("network", "bytes"), ("client", "bytes"), ("server", "bytes"))


def records_of(pcap: Path, listeners=(), kernel=None, **limits) -> list[dict]:
    collector = FinishedCollector()
    kernel = CaptureFilter(kernel) if kernel is not None else None
    replay([pcap], Pipeline(PluginRuntime(), SessionTable(), [*listeners, collector], kernel=kernel, **limits),
           kernel)
    return collector.records


def counters(record: dict) -> dict:
    return {f"{a}.{b}": record[a][b] for a, b in COUNTED} | {"tcpflags": record["tcpflags"],
                                                               "firstPacket": record["firstPacket"],
                                                               "lastPacket": record["lastPacket"]}


def arkime_segments(shared_testdata: Path, name: str) -> list[dict]:
    return [s["body"] for s in json.loads((shared_testdata / "arkime-pcap" / f"{name}.test").read_text())["sessions3"]]


def check_like_arkime(records: list[dict], expected: list[dict]) -> None:
    assert [counters(r) for r in records] == [counters(e) for e in expected]
    root = records[0]["rootId"]
    assert all(r["rootId"] == root for r in records)  # linked, as Arkime's are (its rootId is "SET" in tests)
    assert len({r["xdpsensor"]["sessionId"] for r in records}) == len(records)
    assert records[-1]["xdpsensor"]["sessionId"] == root  # the final record keeps the session's id


def test_long_session_saved_as_arkime_saves_it(shared_testdata):
    # Three packets, 908 s of silence, then a request and a reset: Arkime writes the session
    # when the request arrives past its 480 s save time, then the reset in a second record.
    records = records_of(shared_testdata / "arkime-pcap" / "long-session.pcap")
    check_like_arkime(records, arkime_segments(shared_testdata, "long-session"))
    assert records[0]["xdpsensor"]["midSave"] == 1


@pytest.mark.kernel
def test_long_session_through_the_kernel_counts_each_packet_once(shared_testdata):
    # The kernel's whole-flow counters replace ours at every record: earlier records' share is taken off.
    program = SensorProgram(ProgramOptions())
    try:
        rules = RuleSet()
        rules.add_specs(["tcp:80"], [])
        program.set_rules(rules)
        records = records_of(shared_testdata / "arkime-pcap" / "long-session.pcap", kernel=program)
    finally:
        program.close()
    check_like_arkime(records, arkime_segments(shared_testdata, "long-session"))


def test_save_every_zero_keeps_one_record(shared_testdata):
    (record,) = records_of(shared_testdata / "arkime-pcap" / "long-session.pcap", save_every=0)
    assert "rootId" not in record and record["network"]["packets"] == 5


def test_max_packets_splits_a_flow_and_each_record_lists_its_own_packets(tmp_path):
    capture = Capture()
    for i in range(25):
        capture.udp(("10.1.0.1", 4000), ("10.1.0.2", 9999), f"datagram {i}".encode())
    pcap = capture.write(tmp_path / "udp.pcap")
    sink = PcapSink(f"{tmp_path / 'p'}?node=mp")
    records = records_of(pcap, [sink], max_packets=10)
    sink.close()
    assert [r["network"]["packets"] for r in records] == [10, 10, 5]
    assert [r["totDataBytes"] for r in records] == [sum(len(f"datagram {i}") for i in range(a, b))
                                                     for a, b in ((0, 10), (10, 20), (20, 25))]
    assert len({r["rootId"] for r in records}) == 1
    sent = [frame for _, frame in capture.frames]
    for record, (a, b) in zip(records, ((0, 10), (10, 20), (20, 25))):
        out = tmp_path / "part.pcap"
        with open(out, "wb") as f:
            assert extract(record, f) == b - a
        data = out.read_bytes()[24:]
        frames, pos = [], 0
        while pos < len(data):
            caplen = int.from_bytes(data[pos + 8:pos + 12], "little")
            frames.append(data[pos + 16:pos + 16 + caplen])
            pos += 16 + caplen
        assert frames == sent[a:b]


def long_unselected_tcp(tmp_path: Path) -> tuple[Path, list[tuple[float, bytes]]]:
    """A TCP connection that talks every 100 s for 1,000 s, then closes."""
    cap = Capture()
    conv = cap.tcp(("10.1.0.1", 40100), ("10.2.0.1", 4444)).handshake()
    for i in range(11):
        cap.clock += 100
        conv.send("c", b"tick %d" % i)
        conv.send("s", b"tock")
    conv.close()
    return cap.write(tmp_path / "long.pcap"), cap.frames


@pytest.mark.parametrize("kind", ["python", pytest.param("kernel", marks=pytest.mark.kernel)])
def test_a_long_kernel_only_flow_gets_linked_mid_session_records(tmp_path, kind):
    pcap, frames = long_unselected_tcp(tmp_path)
    table = PythonFlowTable(RuleSet()) if kind == "python" else SensorProgram(ProgramOptions())
    try:
        records = records_of(pcap, kernel=table, save_every=300)
    finally:
        if kind == "kernel":
            table.close()
    assert all(r["xdpsensor"]["delivered"] == 0 for r in records)   # nothing crossed: the counters made them
    assert len(records) >= 3                                         # 1,000 s at one record per 300 s
    root = records[0]["rootId"]
    assert all(r["rootId"] == root for r in records)
    assert records[-1]["xdpsensor"]["sessionId"] == root
    assert len({r["xdpsensor"]["sessionId"] for r in records}) == len(records)
    # Each packet is counted in exactly one record: the sums are the capture's own.
    assert sum(r["network"]["packets"] for r in records) == len(frames)
    assert sum(r["network"]["bytes"] for r in records) == sum(len(f) for _, f in frames)
