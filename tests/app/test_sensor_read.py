"""Sensor and `xdpsensor read` end to end: a capture built here, the bundled
plugins and bindings, the real store, the events, the command line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from capturelib import Capture
from click.testing import CliRunner

from sensor import Direction, Sensor
from sensor.cli import main
from sensor.config import BUNDLED_PROTOCOLS
from sensor.output.sqlite import SqliteStore

CLIENT, PLC = ("10.0.0.1", 40000), ("10.0.0.2", 502)
HTTP_CLIENT, WEB = ("10.0.0.1", 40001), ("10.0.0.3", 80)
# Modbus/TCP: read holding registers 0-1 (unit 1), answered 42 and 7 (Modbus spec's layout).
READ_REQUEST = bytes.fromhex("000100000006010300000002")
READ_REPLY = bytes.fromhex("000100000007010304002a0007")
GET = b"GET /index.html HTTP/1.1\r\nHost: web.example\r\nUser-Agent: t\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"


@pytest.fixture
def pcap(tmp_path: Path) -> Path:
    capture = Capture()
    # The request arrives in two segments: the binding's framer must join them.
    capture.tcp(CLIENT, PLC).handshake().send("c", READ_REQUEST[:5], READ_REQUEST[5:]) \
        .send("s", READ_REPLY).close()
    capture.tcp(HTTP_CLIENT, WEB).handshake().send("c", GET).send("s", OK).close()
    capture.udp(("10.0.0.1", 5000), ("10.0.0.4", 9999), b"nobody wants this")
    return capture.write(tmp_path / "plant.pcap")


def bindings_config() -> dict:
    return {"bindings": [{"name": "modbus", "match": {"ports": ["tcp:502"]}, "framer": "length_prefix",
                          "framer_kwargs": {"prefix_length": 2, "byte_order": "big", "prefix_offset": 4,
                                            "length_add": 0, "max_frame_size": 260},
                          "protocol_definition": str(BUNDLED_PROTOCOLS / "modbus.yaml")}]}


def by_protocol(records: list[dict]) -> dict[str, dict]:
    return {next(p for p in r["protocol"] if p not in ("tcp", "udp")): r
            for r in records if set(r["protocol"]) - {"tcp", "udp"}}


class Collect:
    def __init__(self) -> None:
        self.records: list[dict] = []
        self.frames: dict[str, list] = {}

    def write(self, finished) -> None:
        self.records.append(finished.record)
        self.frames[finished.session_id] = list(zip(finished.frames, finished.messages))

    def flush(self) -> None:
        pass

    reopen = close = flush


def test_read_frames_and_decodes_a_bound_session(pcap):
    out = Collect()
    events: list[str] = []
    sensor = Sensor(bindings_config(), outputs=[out])
    for name in ("on_session_opened", "on_frame_captured", "on_session_closed"):
        sensor.api.event_bus.subscribe(name, lambda e, name=name: events.append(name))
    sensor.read_pcap(pcap, prefilter="none")
    sensor.close()

    records = by_protocol(out.records)
    assert set(records) == {"modbus", "http"}
    assert records["http"]["http"]["method"] == ["GET"]
    modbus = records["modbus"]
    pairs = out.frames[modbus["xdpsensor"]["sessionId"]]
    assert [(f.direction, f.raw_bytes) for f, _ in pairs] == [
        (Direction.CLIENT_TO_SERVER, READ_REQUEST), (Direction.SERVER_TO_CLIENT, READ_REPLY)]
    request, reply = (message for _, message in pairs)
    assert request.message_type == "Read Holding Registers Request"
    assert reply.message_type == "Read Holding Registers Response"
    fields = reply.as_dict()
    assert (fields["transaction_id"], fields["function_code"], fields["byte_count"]) == (1, 3, 4)
    assert [register.children[0].value for register in fields["registers"]] == [42, 7]
    # One opened and one closed per session, frames in between.
    assert events.count("on_session_opened") == events.count("on_session_closed") == 3
    assert events.index("on_frame_captured") > events.index("on_session_opened")

    session = sensor.api.get_session(modbus["xdpsensor"]["sessionId"])
    assert session is not None and session.server_port == 502 and session.frame_count == 2


def test_prefilter_keeps_only_what_plugins_or_bindings_want(pcap):
    seen = {}
    for mode, flows in (("none", "all"), ("python", "all"), ("python", "selected")):
        out = Collect()
        with Sensor({**bindings_config(), "flows": flows}, outputs=[out]) as sensor:
            sensor.read_pcap(pcap, prefilter=mode)
        seen[mode, flows] = out.records
    ports = {mode: sorted(r["destination"]["port"] for r in recs) for mode, recs in seen.items()}
    assert ports["none", "all"] == ports["python", "all"] == [80, 502, 9999]
    assert ports["python", "selected"] == [80, 502]  # nothing selects udp/9999
    [unselected] = [r for r in seen["python", "all"] if r["destination"]["port"] == 9999]
    assert unselected["xdpsensor"]["delivered"] == 0  # its record comes from the filter's counters
    # Whole-flow counts are the same whichever way the packets came.
    by_port = {mode: {r["destination"]["port"]: r for r in recs} for mode, recs in seen.items()}
    for port in (80, 502, 9999):
        a, b = by_port["none", "all"][port], by_port["python", "all"][port]
        assert (a["source"]["packets"], a["destination"]["bytes"]) == (b["source"]["packets"], b["destination"]["bytes"])
        assert a["protocol"] == b["protocol"]


@pytest.mark.kernel
def test_kernel_prefilter_gives_the_python_prefilter_records(pcap):
    def records(mode: str) -> list[dict]:
        out = Collect()
        with Sensor(bindings_config(), outputs=[out]) as sensor:
            sensor.read_pcap(pcap, prefilter=mode)
        for r in out.records:
            del r["xdpsensor"]["sessionId"]
        return sorted(out.records, key=lambda r: r["destination"]["port"])
    assert records("kernel") == records("python")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_read_command_writes_the_store_and_sessions_reads_it(pcap, tmp_path, workers):
    db = tmp_path / "s.db"
    config = tmp_path / "sensor.yaml"
    config.write_text(json.dumps(bindings_config()))  # JSON is YAML
    runner = CliRunner()
    result = runner.invoke(main, ["read", str(pcap), "-c", str(config), "--prefilter", "python", "-o", str(db),
                                  "--workers", workers])
    assert result.exit_code == 0, result.output
    store = SqliteStore(str(db), readonly=True)
    try:
        sessions = store.list_sessions(protocol="modbus")
        assert len(sessions) == 1
        messages = store.get_messages(sessions[0]["id"])
        assert [m["message_type"] for m in messages] == ["Read Holding Registers Request",
                                                         "Read Holding Registers Response"]
    finally:
        store.close()
    shown = runner.invoke(main, ["sessions", "decode", sessions[0]["id"][:8], "--db", str(db)])
    assert shown.exit_code == 0 and "Modbus" in shown.output, shown.output


def test_a_broken_plugin_is_reported_and_the_read_goes_on(pcap, tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("import arkime\n\ndef oops(:\n")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(main, ["read", str(pcap), "-p", str(broken), "--prefilter", "python", "-o", str(out)])
    assert result.exit_code == 0
    assert f"{broken}:3" in result.output and "SyntaxError" in result.output
    assert len(out.read_text().splitlines()) == 3  # every flow


@pytest.mark.parametrize("args, words", [
    (["-o", "x.txt"], ["x.txt"]),
    (["--port", "udp:99999"], ["PROTO:PORT"]),
    (["-c", "MISSING"], ["MISSING"]),
])
def test_bad_options_are_named(pcap, args, words):
    result = CliRunner().invoke(main, ["read", str(pcap), *args])
    assert result.exit_code == 2
    for word in words:
        assert word in result.output


def test_plugin_failures_reach_on_capture_error(pcap, tmp_path):
    failing = tmp_path / "failing.py"
    failing.write_text(
        "import arkime\n\n\ndef classify(session, data, remaining, which):\n    raise RuntimeError('boom')\n\n\n"
        "arkime.register_tcp_classifier('failing', 0, b'GET', classify)\n")
    errors = []
    sensor = Sensor({"plugins": [str(failing)], "default_plugins": False}, outputs=[Collect()])
    sensor.api.event_bus.subscribe("on_capture_error", errors.append)
    sensor.read_pcap(pcap, prefilter="none")
    sensor.close()
    assert [e.kind for e in errors] == ["plugin"]
    assert "1 plugin callback error" in errors[0].error
