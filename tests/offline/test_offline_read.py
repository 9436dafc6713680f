"""`xdpsensor read` behind a pre-filter: link types reach the program as
Ethernet, whole-flow counts are Arkime's (checked against its .test JSON),
the kernel and Python filters give identical records, and the unfiltered read
keeps the sessions the filters drop."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Ether
from scapy.packet import Raw

from sensor.arkime.runtime import PluginRuntime
from sensor.capture.pcapfile import read_pcap
from sensor.flows.table import SessionTable
from sensor.hooks import FinishedCollector
from sensor.kernel.contract import IPPROTO_UDP, Stat, make_key
from sensor.kernel.program import ProgramOptions, SensorProgram
from sensor.kernel.rules import RuleSet
from sensor.offline import CaptureFilter, TestRunTable, ethernet_frame, read_records, replay
from sensor.pipeline import Pipeline
from sensor.prefilter import PythonFlowTable

REPO = Path(__file__).resolve().parents[2]
MACS = bytes(12)
UDP_V4 = bytes(IP(src="10.1.0.1", dst="10.2.0.1") / UDP(sport=40000, dport=53) / Raw(b"q"))
UDP_V6 = bytes(IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=40000, dport=53) / Raw(b"q"))


def rules(*ports: str, prefixes: tuple[str, ...] = ()) -> RuleSet:
    return RuleSet().add_specs(ports, prefixes)


def python_filter(*ports: str) -> PythonFlowTable:
    return PythonFlowTable(rules(*ports), ProgramOptions())


# -- link types -----------------------------------------------------------------------

@pytest.mark.parametrize("linktype,data,ethertype,ip", [
    (1, b"\x02" * 12 + b"\x08\x00" + UDP_V4, None, None),
    (101, UDP_V4, b"\x08\x00", UDP_V4),
    (101, UDP_V6, b"\x86\xdd", UDP_V6),
    (12, UDP_V4, b"\x08\x00", UDP_V4),
    (228, UDP_V4, b"\x08\x00", UDP_V4),
    (229, UDP_V6, b"\x86\xdd", UDP_V6),
    (113, bytes(CookedLinux(proto=0x0800) / Raw(UDP_V4)), b"\x08\x00", UDP_V4),
    (276, bytes(CookedLinuxV2(proto=0x86DD) / Raw(UDP_V6)), b"\x86\xdd", UDP_V6),
    (0, struct.pack("<I", 2) + UDP_V4, b"\x08\x00", UDP_V4),       # BSD loopback, little-endian host
    (0, struct.pack(">I", 30) + UDP_V6, b"\x86\xdd", UDP_V6),      # big-endian host, macOS AF_INET6
    (108, struct.pack(">I", 2) + UDP_V4, b"\x08\x00", UDP_V4),     # OpenBSD loop: network order
])
def test_other_link_types_reach_the_program_as_ethernet(linktype, data, ethertype, ip):
    frame = ethernet_frame(linktype, data)
    if ethertype is None:
        assert frame == data
        return
    assert frame == MACS + ethertype + ip
    table = python_filter("udp:53")
    assert table.process(frame, 1) is not None
    ends = (("10.1.0.1", 40000), ("10.2.0.1", 53)) if ip is UDP_V4 else (("fd00::1", 40000), ("fd00::2", 53))
    assert table.flow(make_key(IPPROTO_UDP, *ends)) is not None


@pytest.mark.parametrize("linktype,data", [
    (127, b"\x00" * 40),          # radiotap: no Ethernet equivalent
    (113, b"\x00" * 15),          # SLL header cut short
    (276, b"\x00" * 19),
    (0, b"\x02\x00"),
])
def test_frames_without_an_ethernet_form_are_not_filterable(linktype, data):
    assert ethernet_frame(linktype, data) is None


def test_raw_frames_that_are_not_ip_are_given_as_not_ip():
    frame = ethernet_frame(101, b"\x50" + bytes(30))
    table = python_filter("udp:53")
    assert table.process(frame, 1) is None and table.stats()[Stat.NOT_IP] == 1


# -- against Arkime's expected sessions -------------------------------------------------

def core(body: dict) -> tuple:
    src, dst = body["source"], body["destination"]
    return (src["ip"], src["port"], dst["ip"], dst["port"], src["packets"], dst["packets"], src["bytes"],
            dst["bytes"], body["firstPacket"], body["lastPacket"], json.dumps(body.get("tcpflags"), sort_keys=True))


def arkime(pcaps: Path, *names: str) -> list[tuple]:
    return sorted(core(doc["body"]) for name in names
                  for doc in json.loads((pcaps / f"{name}.test").read_text())["sessions3"])


@pytest.fixture
def pcaps(shared_testdata) -> Path:
    return shared_testdata / "arkime-pcap"


@pytest.mark.parametrize("name,port", [
    ("adb", "tcp:5555"),                    # raw IPv4 (228): the program sees 14 bytes more per frame
    ("tls-alpn-h2", "tcp:443"),             # BSD loopback (0): 10 bytes more
    ("http-empty-useragent", "tcp:9200"),   # loopback over IPv6
    ("twovlan", "tcp:80"),
])
def test_whole_flow_counts_through_the_python_filter_are_arkimes(pcaps, name, port):
    got = sorted(core(r) for r in read_records([pcaps / f"{name}.pcap"], frame_filter=python_filter(port)))
    assert got == arkime(pcaps, name)


def test_a_prefix_selected_flow_counts_and_times_the_handshake_it_did_not_send(pcaps):
    """Selected at the GET, the handshake before it never reached userspace;
    the flow table's counts and capture times still make Arkime's session."""
    table = PythonFlowTable(rules(prefixes=("tcp:0:GET ",)), ProgramOptions())
    [record] = read_records([pcaps / "http-301-get.pcap"], frame_filter=table)
    assert record["xdpsensor"]["delivered"] < record["network"]["packets"]
    assert [core(record)] == arkime(pcaps, "http-301-get")


def write_snapped_pcap(path: Path, frames: list[bytes], snaplen: int) -> None:
    """A pcap whose records keep `snaplen` bytes of each frame and its wire length."""
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, 1))
        for i, frame in enumerate(frames):
            kept = frame[:snaplen]
            out.write(struct.pack("<IIII", 1_700_000_000 + i, 0, len(kept), len(frame)) + kept)


def test_snapped_captures_count_wire_bytes_like_the_unfiltered_read(tmp_path):
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    c, s = IP(src="10.1.0.1", dst="10.2.0.1"), IP(src="10.2.0.1", dst="10.1.0.1")
    frames = [bytes(eth / c / TCP(sport=40000, dport=80, flags="S", seq=10)),
              bytes(eth / s / TCP(sport=80, dport=40000, flags="SA", seq=50, ack=11)),
              bytes(eth / c / TCP(sport=40000, dport=80, flags="PA", seq=11, ack=51) / Raw(b"G" * 900)),
              bytes(eth / s / TCP(sport=80, dport=40000, flags="PA", seq=51, ack=911) / Raw(b"H" * 1400))]
    pcap = tmp_path / "snapped.pcap"
    write_snapped_pcap(pcap, frames, snaplen=96)
    [filtered] = read_records([pcap], frame_filter=python_filter("tcp:80"))
    [unfiltered] = read_records([pcap])
    assert filtered["source"]["bytes"] == len(frames[0]) + len(frames[2]) == unfiltered["source"]["bytes"]
    assert filtered["destination"]["bytes"] == len(frames[1]) + len(frames[3]) == unfiltered["destination"]["bytes"]


SELECTED = ("dns-udp", "http-301-get")
DROPPED = ("ssh2", "mysql-allow")


def test_the_filter_records_unselected_flows_from_its_counters_and_no_prefilter_reads_all(pcaps):
    files = [pcaps / f"{name}.pcap" for name in SELECTED + DROPPED]
    selected_only = sorted(core(r) for r in read_records(
        files, frame_filter=python_filter("udp:53", "tcp:80"), kernel_records=False))
    every_flow = sorted(core(r) for r in read_records(files, frame_filter=python_filter("udp:53", "tcp:80")))
    unfiltered = sorted(core(r) for r in read_records(files))
    assert selected_only == arkime(pcaps, *SELECTED)
    assert every_flow == unfiltered == arkime(pcaps, *SELECTED, *DROPPED)


def test_bypass_offline_keeps_whole_flow_counts(pcaps):
    """No plugin wants the sessions: each is bypassed at its first payload,
    its later frames never reach userspace, the counts still cover them."""
    table = python_filter("tcp:80")
    capture_filter = CaptureFilter(table)
    collected = FinishedCollector()
    records = collected.records
    pipeline = Pipeline(PluginRuntime(), SessionTable(), [collected], kernel=capture_filter, bypass=True)
    summary = replay([pcaps / "http-301-get.pcap"], pipeline, capture_filter)
    assert pipeline.stats.bypassed == 1
    assert summary.delivered < summary.frames
    assert summary.filter_stats[Stat.BYPASSED_PKTS] == summary.frames - summary.delivered
    assert [core(r) for r in records] == arkime(pcaps, "http-301-get")
    assert "xdp-bypassed" in records[0]["tags"]


def test_replay_reports_progress_through_the_files(pcaps):
    files = [pcaps / "dns-udp.pcap", pcaps / "http-301-get.pcap"]
    total = sum(f.stat().st_size for f in files)
    seen: list[tuple[int, int]] = []
    pipeline = Pipeline(PluginRuntime(), SessionTable())
    summary = replay(files, pipeline, None, on_progress=lambda done, all_: seen.append((done, all_)))
    assert seen[-1] == (total, total)
    assert all(all_ == total for _, all_ in seen)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert summary.delivered == summary.frames > 0


def test_replay_reads_through_the_filter_the_pipeline_was_built_with(pcaps):
    """The composition root builds one CaptureFilter for Pipeline(kernel=...)
    and replay: the pipeline reads counts through that capture view."""
    capture_filter = CaptureFilter(python_filter("tcp:5555"))
    collected = FinishedCollector()
    records = collected.records
    pipeline = Pipeline(PluginRuntime(), SessionTable(), [collected], kernel=capture_filter)
    summary = replay([pcaps / "adb.pcap"], pipeline, capture_filter)
    assert pipeline.kernel is capture_filter
    assert [core(r) for r in records] == arkime(pcaps, "adb")
    assert (summary.prefilter, summary.records, summary.frames) == ("python", 1, 13)
    assert summary.lines()[1].startswith("pre-filter (python): 1 flows, selected 1")


def test_replay_refuses_a_pipeline_without_the_filter():
    capture_filter = CaptureFilter(python_filter("tcp:80"))
    pipeline = Pipeline(PluginRuntime(), SessionTable())
    with pytest.raises(ValueError, match="kernel=frame_filter"):
        replay([], pipeline, capture_filter)


# -- kernel and Python filters give the same records -------------------------------------

KERNEL_SET = ("adb", "tls-alpn-h2", "http-empty-useragent", "twovlan", "v6-http", "socks5-http-302-frag",
              "ipv6-in-ipv4", "dns-udp", "dns-tcp", "http-301-get", "ssh2", "mysql-allow", "postgres-good",
              "padded-udp", "tcp-reassembly-synthetic", "mongo", "tls13", "radius", "bt-udp", "bigendian",
              "smtp-html", "aerospike", "long-session", "gtp-iphone")
KERNEL_PORTS = ("tcp:80", "tcp:443", "udp:53", "tcp:53", "tcp:5555", "tcp:9200", "tcp:22", "udp:1812",
                "tcp:3000", "tcp:1080", "tcp:8000")


def comparable(records: list[dict]) -> list[str]:
    """Records as sorted JSON, without the per-run session uuid (and the rootId made of it)."""
    out = []
    for record in records:
        record = dict(record, xdpsensor={k: v for k, v in record["xdpsensor"].items() if k != "sessionId"})
        record.pop("rootId", None)
        out.append(json.dumps(record, sort_keys=True, default=str))
    return sorted(out)


@pytest.fixture
def program():
    prog = SensorProgram(ProgramOptions())
    prog.set_rules(rules(*KERNEL_PORTS))
    yield prog
    prog.close()


@pytest.mark.kernel
@pytest.mark.parametrize("bypass", [False, True], ids=["plain", "bypass"])
def test_kernel_and_python_filters_give_identical_records(pcaps, program, bypass):
    files = [pcaps / f"{name}.pcap" for name in KERNEL_SET if (pcaps / f"{name}.pcap").exists()]
    plugins = [REPO / "plugins"]
    kernel = comparable(read_records(files, plugins, frame_filter=program, bypass=bypass))
    python = comparable(read_records(files, plugins, frame_filter=PythonFlowTable(rules(*KERNEL_PORTS)),
                                     bypass=bypass))
    unfiltered = comparable(read_records(files, plugins))
    assert len(kernel) > 20
    assert kernel == python
    assert len(unfiltered) > 20
    python_selected = read_records(files, plugins, frame_filter=PythonFlowTable(rules(*KERNEL_PORTS)),
                                   bypass=bypass, kernel_records=False)
    assert len(python_selected) < len(kernel)  # flows the ports leave out have their records from the counters


@pytest.mark.kernel
def test_kernel_filter_times_are_capture_times(pcaps, program):
    """The program stamps flows with its own clock; the test-run table turns
    them back into the capture's, so a session selected at its GET still
    starts at its SYN, as in Arkime."""
    program.set_rules(rules(prefixes=("tcp:0:GET ",)))
    [record] = read_records([pcaps / "http-301-get.pcap"], frame_filter=TestRunTable(program))
    assert record["xdpsensor"]["delivered"] < record["network"]["packets"]
    assert [core(record)] == arkime(pcaps, "http-301-get")


@pytest.mark.kernel
def test_forgetting_clock_marks_keeps_every_flow_time(pcaps, program):
    """The test-run table forgets the clock marks no flow refers to; the
    times it still gives must not change."""
    files = [pcaps / f"{name}.pcap" for name in KERNEL_SET if (pcaps / f"{name}.pcap").exists()]
    table = TestRunTable(program, keep_every=8)
    kernel = comparable(read_records(files, frame_filter=table))
    frames = sum(1 for f in files for _ in read_pcap(f))
    assert table.clock_marks < frames / 2   # it did forget
    assert kernel == comparable(read_records(files, frame_filter=PythonFlowTable(rules(*KERNEL_PORTS))))
