"""Fixtures of the output tests: real records from captures (Arkime's and scapy-built) and a definition file."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from output_inputs import GREETING

from sensor.offline import read_records

REDIS_PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "redis.py"


@pytest.fixture
def greeting_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "greeting.yaml"
    path.write_text(yaml.safe_dump(GREETING), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def http_record(shared_testdata: Path) -> dict:
    """The one session of Arkime's http-301-get.pcap, through our pipeline."""
    pcap = shared_testdata / "arkime-pcap" / "http-301-get.pcap"
    if not pcap.is_file():
        pytest.skip(f"{pcap} is absent")
    (record,) = read_records([pcap])
    return record


@pytest.fixture(scope="session")
def redis_record(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A Redis session built with scapy, read by the pipeline with the bundled redis plugin (so protocol redis)."""
    from scapy.all import IP, TCP, Ether, wrpcap

    client, server, cport, sport = "192.0.2.10", "192.0.2.20", 51000, 6379
    request, reply = b"*1\r\n$4\r\nPING\r\n", b"+PONG\r\n"

    macs = {client: "02:00:00:00:00:01", server: "02:00:00:00:00:02"}

    def pkt(src, dst, sp, dp, flags, seq, ack, data=b""):
        # Explicit MACs: without them scapy looks up routes and ARPs.
        return (Ether(src=macs[src], dst=macs[dst]) / IP(src=src, dst=dst)
                / TCP(sport=sp, dport=dp, flags=flags, seq=seq, ack=ack) / data)

    c, s = 1000, 5000
    packets = [
        pkt(client, server, cport, sport, "S", c, 0),
        pkt(server, client, sport, cport, "SA", s, c + 1),
        pkt(client, server, cport, sport, "A", c + 1, s + 1),
        pkt(client, server, cport, sport, "PA", c + 1, s + 1, request),
        pkt(server, client, sport, cport, "PA", s + 1, c + 1 + len(request), reply),
        pkt(client, server, cport, sport, "FA", c + 1 + len(request), s + 1 + len(reply)),
        pkt(server, client, sport, cport, "FA", s + 1 + len(reply), c + 2 + len(request)),
        pkt(client, server, cport, sport, "A", c + 2 + len(request), s + 2 + len(reply)),
    ]
    for i, p in enumerate(packets):
        p.time = 1_600_000_000 + i * 0.01
    path = tmp_path_factory.mktemp("redis") / "redis.pcap"
    wrpcap(str(path), packets)
    (record,) = read_records([path], [REDIS_PLUGIN])
    return record
