"""The bundled plugins on live traffic: Arkime's test captures, rewritten to
the lab's addresses and replayed across it with tcpreplay, give the sensor
(the CLI with its default plugins) the same sessions, protocols, plugin fields
and counters as an offline read of the original captures."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from sensor.lab import patience
from sensor.labreplay import prepare, replay, rewrite_frame
from sensor.labtraffic import wait_attached
from sensor.offline import read_records

BUNDLED_PLUGINS = Path(__file__).resolve().parents[2] / "plugins"

# Small IPv4 captures, each one plain session of a protocol a bundled plugin claims.
CAPTURES = [
    ("ssh2.pcap", "ssh"),
    ("http-simple-get.pcap", "http"),
    ("dns-mx.pcap", "dns"),
    ("openssl-tls1_2.pcap", "tls"),
    ("smtp-originating.pcap", "smtp"),
    ("postgres-good.pcap", "postgresql"),
]

ATTACH_TRIES = 30  # one second each; a sensor that exits (bad rules, bad plugin) is noticed at once

# Keys of every session record; any other top-level key is a plugin's field group.
CORE_KEYS = {"client", "server", "source", "destination", "network", "ipProtocol", "protocol", "protocolCnt",
             "tcpflags", "totDataBytes", "srcPayload8", "dstPayload8", "tags", "tagsCnt", "firstPacket",
             "lastPacket", "length", "packetRange", "xdpsensor"}
# Wall-clock times differ between a replay and the capture; xdpsensor.* is the
# sensor's own bookkeeping, like its xdp-* tags.
NOT_COMPARED = {"firstPacket", "lastPacket", "length", "packetRange", "xdpsensor"}


@dataclass(frozen=True)
class Replayed:
    """One capture read offline and replayed live, records keyed by session."""
    offline: dict[tuple[int, int, int], dict]
    live: dict[tuple[int, int, int], dict]
    sensor_log: str


def lab_noise(record: dict) -> bool:
    """The lab's own ARP, IPv6 neighbour discovery and multicast listener reports: every flow has
    a record, theirs too, but they are not in the replayed capture."""
    return record["ipProtocol"] == 0 or record["ipProtocol"] == 58 and any(
        record[side]["ip"].startswith(("fe80:", "ff02:", "::")) for side in ("source", "destination"))


def session_key(record: dict) -> tuple[int, int, int]:
    return record["ipProtocol"], record["source"]["port"], record["destination"]["port"]


def with_lab_addresses(record: dict, mapping: dict[str, str]) -> dict:
    mapped = dict(record)
    for side in ("source", "destination"):
        mapped[side] = {**record[side], "ip": mapping[record[side]["ip"]]}
    return mapped


def core_view(record: dict) -> dict:
    """What the issue asks to match: protocols, plugin fields, endpoints with
    packets and bytes per side, TCP flag counts."""
    return {
        "protocol": record["protocol"],
        "plugin fields": {k: v for k, v in record.items() if k not in CORE_KEYS},
        "source": record["source"],
        "destination": record["destination"],
        "network": {k: record["network"][k] for k in ("packets", "bytes")},
        "ipProtocol": record["ipProtocol"],
        "tcpflags": record.get("tcpflags"),
    }


def full_view(record: dict, bypassed: bool) -> dict:
    """Every field a replay can keep: no times, no community id (a hash of the
    addresses), no sensor bookkeeping. A session bypassed in the kernel has no
    first-payload bytes past the bypass, which lands when userspace gets to it:
    its srcPayload8/dstPayload8 are not compared."""
    kept = {k: v for k, v in record.items() if k not in NOT_COMPARED}
    if bypassed:
        kept.pop("srcPayload8", None)
        kept.pop("dstPayload8", None)
    kept["network"] = {k: v for k, v in record["network"].items() if k != "community_id"}
    tags = [t for t in record.get("tags", []) if not t.startswith("xdp-")]
    kept.pop("tags", None)
    kept.pop("tagsCnt", None)
    if tags:
        kept["tags"], kept["tagsCnt"] = tags, len(tags)
    return kept


def run_sensor_during_replay(lab, lab_pcap: Path, out: Path) -> tuple[int, str]:
    """The sensor as a user runs it (bundled plugins, SPI JSON lines), attached
    while the capture is replayed, then stopped with SIGINT; returns the frames
    sent and the sensor's stderr."""
    cmd = [sys.executable, "-m", "sensor", "run", "--netns", lab.sensor, "-i", "to-client", "-i", "to-server",
           "-o", str(out), "--duration", "60"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        attached = False
        for _ in range(ATTACH_TRIES):
            attached = wait_attached(lab, timeout=1.0)
            if attached or proc.poll() is not None:
                break
        if not attached:
            proc.kill()
            pytest.fail("sensor did not attach: " + proc.communicate()[1])
        sent = replay(lab, lab_pcap)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=patience(30))
    assert proc.returncode == 0, err
    return sent, err


@pytest.fixture(scope="module", params=CAPTURES, ids=[name for name, _ in CAPTURES])
def replayed(request, lab, shared_testdata, tmp_path_factory) -> Replayed:
    """Each capture replayed once; the tests below compare different parts."""
    name, protocol = request.param
    pcap = shared_testdata / "arkime-pcap" / name
    if not pcap.is_file():
        pytest.skip(f"{pcap} is absent")
    offline = read_records([pcap], plugins=[BUNDLED_PLUGINS])
    if not any(protocol in rec["protocol"] for rec in offline):
        pytest.skip(f"no bundled plugin classifies {name} as {protocol} yet")
    workdir = tmp_path_factory.mktemp(pcap.stem)
    lab_pcap, mapping = prepare(pcap, offline, lab, workdir)
    out = workdir / "live.jsonl"
    sent, log = run_sensor_during_replay(lab, lab_pcap, out)
    assert sent == sum(rec["network"]["packets"] for rec in offline)
    live = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    live = [r for r in live if not lab_noise(r)]
    return Replayed({session_key(r): with_lab_addresses(r, mapping) for r in offline},
                    {session_key(r): r for r in live}, log)


@pytest.mark.parametrize("l4,padding", [
    (TCP(sport=40000, dport=22, flags="PA", seq=7) / b"SSH-2.0-x\r\n", b""),
    (TCP(sport=40000, dport=22, flags="A"), b"\x00" * 6),   # a padded 60-byte Ethernet frame
    (UDP(sport=5353, dport=53) / b"query", b""),
    (UDP(sport=5353, dport=53, chksum=0) / b"no checksum", b""),
])
def test_rewrite_changes_only_macs_addresses_and_their_checksums(l4, padding):
    mapping = {"192.0.2.1": "10.77.1.2", "198.51.100.7": "10.77.2.2"}
    macs = dict(src="02:00:00:00:00:01", dst="02:77:00:00:00:fe")
    original = bytes(Ether(src="00:11:22:33:44:55", dst="66:77:88:99:aa:bb") /
                     IP(src="198.51.100.7", dst="192.0.2.1", id=9) / l4) + padding
    # scapy computes every length and checksum afresh: the independent truth.
    expected = bytes(Ether(**macs) / IP(src="10.77.2.2", dst="10.77.1.2", id=9) / l4) + padding
    assert rewrite_frame(original, mapping, macs["src"], macs["dst"]) == expected


@pytest.mark.lab
def test_live_sessions_have_the_offline_protocols_fields_and_counters(replayed):
    assert sorted(replayed.live) == sorted(replayed.offline), replayed.sensor_log
    for key, expected in replayed.offline.items():
        assert core_view(replayed.live[key]) == core_view(expected), key


@pytest.mark.lab
def test_live_sessions_match_the_offline_records_in_every_kept_field(replayed):
    assert sorted(replayed.live) == sorted(replayed.offline), replayed.sensor_log
    for key, expected in replayed.offline.items():
        live = replayed.live[key]
        bypassed = "xdp-bypassed" in live.get("tags", [])
        assert full_view(live, bypassed) == full_view(expected, bypassed), key
