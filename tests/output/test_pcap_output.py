"""The pcap output and `sessions pcap`: extracted packets against tcpdump's own filter of the source capture."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sensor.capture.pcapfile import read_pcap
from sensor.cli import main
from sensor.output.pcap import PcapSink, parse_pcap_target
from sensor.packet import Packet
from sensor.output.pcap_extract import PcapExtractError, extract

REPO = Path(__file__).resolve().parents[2]
needs_tcpdump = pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed (setup-host)")


def xdpsensor(*args: str, check: bool = True) -> Result:
    done = CliRunner(mix_stderr=False).invoke(main, list(args))
    if check:
        assert done.exit_code == 0, done.stderr + done.output
    return done


def raw_records(path: Path) -> list[bytes]:
    """Every packet of a pcap as its 16-byte header and data, as stored (byte for byte)."""
    data = path.read_bytes()
    out, pos = [], 24
    while pos < len(data):
        caplen = int.from_bytes(data[pos + 8:pos + 12], "little")
        out.append(data[pos:pos + 16 + caplen])
        pos += 16 + caplen
    return out


def tcpdump_filter(source: Path, expression: str, out: Path) -> list[bytes]:
    subprocess.run(["tcpdump", "-r", str(source), "-w", str(out), expression], check=True, capture_output=True)
    return raw_records(out)


def stored_sessions(db: Path) -> list[dict]:
    return json.loads(xdpsensor("sessions", "list", "--db", str(db), "--json", "--limit", "0").stdout)


def flow_filter(session: dict) -> tuple:
    ends = sorted([(session["client_host"], session["client_port"]), (session["server_host"], session["server_port"])])
    return (session["transport"], *ends)


def check_extracts_match_tcpdump(source: Path, db: Path, tmp_path: Path, pcap_dir: Path | None = None) -> int:
    """Every stored session's extract equals tcpdump's filter of `source` for its 5-tuple (sessions
    sharing a 5-tuple, one after the other, together). Returns the packets compared."""
    by_flow: dict[tuple, list[dict]] = defaultdict(list)
    for session in stored_sessions(db):
        by_flow[flow_filter(session)].append(session)
    compared = 0
    for (transport, (a, ap), (b, bp)), sessions in by_flow.items():
        extracted: list[bytes] = []
        for session in sorted(sessions, key=lambda s: s["record"]["packetPos"][1]):
            out = tmp_path / f"{session['id']}.pcap"
            args = ["sessions", "pcap", session["id"], "--db", str(db), "-o", str(out)]
            xdpsensor(*args, *(["--pcap-dir", str(pcap_dir)] if pcap_dir else []))
            extracted += raw_records(out)
        expected = tcpdump_filter(source, f"{transport} and host {a} and host {b} and port {ap} and port {bp}",
                                  tmp_path / "expected.pcap")
        assert extracted == expected, (transport, a, ap, b, bp)
        compared += len(expected)
    return compared


@needs_tcpdump
# One file, or a new file every few packets (and at each of the capture's jumps of years).
@pytest.mark.parametrize("limits", ["max_size=1g&max_age=1e10", "max_size=8k"])
def test_extracted_sessions_equal_tcpdump_filter_of_source(shared_testdata, tmp_path, limits):
    source = shared_testdata / "arkime-pcap" / "modbus.pcap"
    db, pcaps = tmp_path / "s.db", tmp_path / "pcap"
    xdpsensor("read", str(source), "--no-prefilter", "-o", f"pcap:{pcaps}?node=n1&{limits}",
              "-o", f"sqlite:{db}")
    files = sorted(p.name for p in pcaps.iterdir())
    assert all(name.startswith("n1-") and name.endswith(".pcap") for name in files)
    assert (len(files) == 1) == ("max_size=1g" in limits)
    total = check_extracts_match_tcpdump(source, db, tmp_path)
    assert total == len(list(read_pcap(source)))  # every packet of the capture is in one session's extract


@needs_tcpdump
def test_records_carry_arkime_positions(shared_testdata, tmp_path):
    source = shared_testdata / "arkime-pcap" / "http-301-get.pcap"
    db = tmp_path / "s.db"
    xdpsensor("read", str(source), "--no-prefilter", "-o", f"pcap:{tmp_path / 'p'}?node=t1", "-o", f"sqlite:{db}")
    (session,) = stored_sessions(db)
    expected = json.loads(source.with_suffix(".test").read_text())["sessions3"][0]["body"]
    record = session["record"]
    # Arkime's test mode writes one file and leaves the file marker out; the offsets are the same.
    assert record["packetPos"] == [-1, *expected["packetPos"]]
    assert record["packetLen"] == [0, *expected["packetLen"]]
    assert (record["fileId"], record["node"]) == ([1], "t1")


class _Flow:
    def __init__(self, ident: int) -> None:
        self.id = ident


def frame(i: int) -> bytes:
    return bytes([i % 256]) * (60 + i % 40)


def decoded(timestamp: float, wire_len: int) -> Packet:
    """What the pcap output reads of a decoded packet: its time and wire length."""
    return Packet(timestamp, wire_len, (), 4, "10.0.0.1", "10.0.0.2", 17, 64)


def test_rotation_by_age_and_link_type_numbers_files_in_order(tmp_path):
    sink = PcapSink(parse_pcap_target(f"{tmp_path}?node=age&max_age=10"))
    a, b = _Flow(1), _Flow(2)
    sink.packet(a, decoded(1000.0, 60), frame(0), 1)
    sink.packet(b, decoded(1005.0, 61), frame(1), 1)
    sink.packet(a, decoded(1010.5, 62), frame(2), 1)  # 10.5 s after the file's first packet: a new file
    sink.packet(a, decoded(1011.0, 63), frame(3), 101)  # raw IP: a file of its own
    record_a, record_b = {}, {}
    sink.record_saving(a, record_a)
    sink.record_saving(b, record_b)
    sink.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "age-700101-001640-00000001.pcap", "age-700101-001650-00000002.pcap", "age-700101-001651-00000003.pcap"]
    assert record_a["fileId"] == [1, 2, 3] and record_b["fileId"] == [1]
    assert record_a["packetPos"] == [-1, 24, -2, 24, -3, 24]
    assert record_b["packetPos"] == [-1, 24 + 16 + len(frame(0))]
    with open(tmp_path / "x.pcap", "wb") as out:
        with pytest.raises(PcapExtractError, match="link types 1 and 101"):
            extract(record_a, out)
    # A new sink in the same directory numbers on.
    again = PcapSink(parse_pcap_target(f"{tmp_path}?node=age"))
    again.packet(a, decoded(2000.0, 64), frame(4), 1)
    again.close()
    assert any(p.name.endswith("-00000004.pcap") for p in tmp_path.iterdir())


def test_mid_session_records_list_only_their_own_packets(tmp_path):
    sink = PcapSink(parse_pcap_target(f"{tmp_path}?node=m"))
    a = _Flow(7)
    sink.packet(a, decoded(1.0, 60), frame(0), 1)
    first: dict = {}
    sink.record_saving(a, first)
    sink.packet(a, decoded(2.0, 61), frame(1), 1)
    second: dict = {}
    sink.record_saving(a, second)
    sink.close()
    assert first["packetPos"] == [-1, 24] and second["packetPos"] == [-1, 24 + 16 + len(frame(0))]
    out = tmp_path / "second.pcap"
    with open(out, "wb") as f:
        extract(second, f)
    assert [r[16:] for r in raw_records(out)] == [frame(1)]


def test_bad_targets():
    for bad, message in (("", "no directory"), ("d?max_size=12q", "max_size"), ("d?max_age=0", "max_age"),
                         ("d?colour=red", "unknown option"), ("d?node=a/b", "node name"), ("d?max_size=1k", "4k")):
        with pytest.raises(ValueError, match=message):
            parse_pcap_target(bad)


def test_unwritable_directory_is_refused_before_reading(tmp_path, shared_testdata):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    done = xdpsensor("read", str(shared_testdata / "arkime-pcap" / "http-301-get.pcap"), "-o",
                     f"pcap:{blocker}/sub", "-o", f"sqlite:{tmp_path / 's.db'}", check=False)
    assert done.exit_code == 2
    assert "is not a directory" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "s.db").exists()


@needs_tcpdump
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare to mount a small tmpfs in a private mount namespace")
def test_disk_full_counts_unwritten_packets_and_capture_goes_on(shared_testdata, tmp_path):
    source = shared_testdata / "arkime-pcap" / "modbus.pcap"  # 154 kB of packets
    full, kept, db = tmp_path / "full", tmp_path / "kept", tmp_path / "s.db"
    full.mkdir()
    script = (f"mount -t tmpfs -o size=64k xdpsensor-test {full} && "
              f"{sys.executable} -m sensor read {source} --no-prefilter -o 'pcap:{full}?node=f' -o sqlite:{db}; "
              f"rc=$?; cp -r {full} {kept}; exit $rc")
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], cwd=REPO,
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)
    assert done.returncode == 0, done.stderr
    assert "pcap: cannot write" in done.stderr and "No space left on device" in done.stderr
    assert "packet(s) not written" in done.stderr
    sessions = stored_sessions(db)
    assert len(sessions) == 8  # every session recorded though its packets were not all written
    positions = sum(len(s["record"]["packetLen"]) - len(s["record"]["fileId"]) for s in sessions)
    assert 0 < positions < len(list(read_pcap(source)))
    # What the records point at is on disk and is the source's packets.
    source_packets = set(raw_records(source))
    for session in sessions:
        if session["record"]["fileId"]:
            out = tmp_path / "x.pcap"
            xdpsensor("sessions", "pcap", session["id"], "--db", str(db), "-o", str(out), "--pcap-dir", str(kept))
            assert set(raw_records(out)) <= source_packets
