"""`vlan_key` / `vlan_collapse` in the config (Arkime's sessionIdTracking=vlan and
[vlan-vni-collapse]): flows on different VLANs are different sessions, except the
VLANs collapsed into one id; in the pre-filter and the session table alike."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import Dot1Q, Ether

from sensor.capture.pcapfile import write_pcap
from sensor.cli import main

C, S = "10.7.0.1", "10.7.0.2"


@pytest.fixture
def pcap(tmp_path: Path) -> Path:
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    frames = [eth / Dot1Q(vlan=30) / IP(src=C, dst=S) / ICMP(type=8),      # a ping on VLAN 30,
              eth / Dot1Q(vlan=40) / IP(src=S, dst=C) / ICMP(type=0),      # its reply on VLAN 40
              eth / Dot1Q(vlan=50) / IP(src=C, dst=S) / UDP(sport=1000, dport=2000) / b"a",
              eth / IP(src=S, dst=C) / UDP(sport=2000, dport=1000) / b"b"]  # VLAN 50 collapsed to untagged
    path = tmp_path / "vlans.pcap"
    write_pcap(path, [(1.0 + i / 10, bytes(f)) for i, f in enumerate(frames)])
    return path


@pytest.mark.parametrize("prefilter", ["python", "none"])
@pytest.mark.parametrize("config,sessions", [
    ("vlan_key: true\nvlan_collapse: {0: [50]}\n", [(1, (30,)), (1, (40,)), (17, (50,))]),
    ("vlan_key: false\n", [(1, (30, 40)), (17, (50,))]),
])
def test_sessions_are_keyed_on_their_first_vlan_when_configured(pcap, tmp_path, prefilter, config, sessions):
    (tmp_path / "c.yaml").write_text(config)
    out = tmp_path / "out.jsonl"
    args = ["read", str(pcap), "-c", str(tmp_path / "c.yaml"), "--no-default-plugins", "-o", str(out)]
    args += ["--prefilter", "python"] if prefilter == "python" else ["--no-prefilter"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted((r["ipProtocol"], tuple(r["network"]["vlan"]["id"])) for r in records) == sessions
