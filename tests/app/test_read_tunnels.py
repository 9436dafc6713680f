"""`xdpsensor read --udp-tunnels`: the UDP ports taken apart are the user's,
in the pre-filter and the decoder alike; a bad list is refused in one line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from scapy.layers.inet import UDP

from sensor.capture.pcapfile import write_pcap
from sensor.cli import main
from tests import tunnelframes as tf


@pytest.fixture
def pcap(tmp_path: Path) -> Path:
    """The crafted VXLAN frame, moved to UDP port 9999."""
    frame = bytes(tf.outer_ip(UDP(sport=1, dport=9999) / tf.frames()["vxlan"][0][42:]))
    path = tmp_path / "vxlan9999.pcap"
    write_pcap(path, [(1.0, frame)])
    return path


@pytest.mark.parametrize("prefilter", ["python", "none"])
@pytest.mark.parametrize("spec,port", [(None, 9999), ("vxlan:9999", tf.INNER_DPORT)])
def test_the_udp_tunnel_list_decides_what_is_taken_apart(pcap, tmp_path, prefilter, spec, port):
    out = tmp_path / f"{prefilter}-{port}.jsonl"
    args = ["read", str(pcap), "--no-default-plugins", "-o", str(out), "--port", "udp:9999", "--port", "tcp:8080"]
    args += ["--prefilter", "python"] if prefilter == "python" else ["--no-prefilter"]
    if spec:
        args += ["--udp-tunnels", spec]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["destination"]["port"] == port
    assert ("vxlan" in record["protocol"]) == (spec is not None)


def test_a_bad_udp_tunnel_list_is_refused(pcap, tmp_path):
    result = CliRunner().invoke(main, ["read", str(pcap), "--udp-tunnels", "vxlan:nope", "-o", str(tmp_path / "x.jsonl")])
    assert result.exit_code != 0
    assert "udp_tunnels" in result.output and "NAME:PORT" in result.output
