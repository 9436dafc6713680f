"""plugins/mysql.py: Arkime's own MySQL captures, and handshakes built from the protocol docs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from scapy.all import IP, TCP, Ether, wrpcap

from sensor.offline import read_records

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "mysql.py"


def _sorted_text(value):
    """tests.pl leaves single values bare and sorted multi-values as strings: compare sorted text."""
    if isinstance(value, dict):
        return {key: _sorted_text(item) for key, item in value.items()}
    return sorted(str(item) for item in (value if isinstance(value, list) else [value]))


def _plugin_view(bodies):
    """Per session: the mysql claim and field group (Arkime's empty linked segments left out)."""
    view = {}
    for body in bodies:
        if body["network"]["packets"] == 0:
            continue
        claimed = "mysql" in body.get("protocol", ())
        if claimed or "mysql" in body:
            key = (body["source"]["ip"], body["source"]["port"], body["destination"]["ip"],
                   body["destination"]["port"], body["firstPacket"])
            view[key] = (claimed, _sorted_text(body.get("mysql", {})))
    return view


@pytest.mark.parametrize("capture", ["mysql-allow", "mysql-deny", "mysql-tls", "no-syn-ack", "arkime_synthetic"])
def test_fields_match_arkime_on_its_captures(shared_testdata, capture):
    pcap = shared_testdata / "arkime-pcap" / f"{capture}.pcap"
    expected = [s["body"] for s in json.loads(pcap.with_suffix(".test").read_text())["sessions3"]]
    ours = read_records([pcap], plugins=[PLUGIN])
    assert _plugin_view(ours) == _plugin_view(expected)


def conversation(tmp_path, segments, client_port=40001, server_port=3306):
    """The SPI record of one TCP connection: handshake, each (direction, payload) as a segment, FINs."""
    ends = [("10.1.0.1", client_port, "10.1.0.2", server_port), ("10.1.0.2", server_port, "10.1.0.1", client_port)]
    seq = [1000, 5000]

    def segment(which, flags, payload=b""):
        src, sport, dst, dport = ends[which]
        ack = seq[1 - which] if "A" in flags else 0
        tcp = TCP(sport=sport, dport=dport, flags=flags, seq=seq[which], ack=ack)
        packet = Ether() / IP(src=src, dst=dst) / tcp / payload
        seq[which] += len(payload) + ("S" in flags or "F" in flags)
        return packet

    packets = [segment(0, "S"), segment(1, "SA"), segment(0, "A")]
    packets += [segment(which, "PA", payload) for which, payload in segments]
    packets += [segment(0, "FA"), segment(1, "FA"), segment(0, "A")]
    for index, packet in enumerate(packets):
        packet.time = 1_700_000_000 + index / 100
    wrpcap(str(tmp_path / "conversation.pcap"), packets)
    [record] = read_records([tmp_path / "conversation.pcap"], plugins=[PLUGIN])
    return record


def packet(sequence_id, payload):
    """A MySQL packet: 3-byte little-endian payload length, sequence id, payload."""
    return len(payload).to_bytes(3, "little") + bytes([sequence_id]) + payload


CLIENT_PROTOCOL_41, CLIENT_SSL, CLIENT_SECURE_CONNECTION, CLIENT_PLUGIN_AUTH = 0x200, 0x800, 0x8000, 0x80000


def greeting(version=b"8.0.36"):
    """Protocol::HandshakeV10."""
    capabilities = CLIENT_PROTOCOL_41 | CLIENT_SSL | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH
    return packet(0, b"\x0a" + version + b"\x00" + (7).to_bytes(4, "little") + b"abcdefgh\x00"
                  + (capabilities & 0xFFFF).to_bytes(2, "little") + b"\xff" + b"\x02\x00"
                  + (capabilities >> 16).to_bytes(2, "little") + b"\x15" + bytes(10) + b"ijklmnopqrst\x00"
                  + b"caching_sha2_password\x00")


def login(user, ssl=False):
    """Protocol::HandshakeResponse41 (or, with ssl, the SSLRequest that precedes TLS)."""
    capabilities = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH | (CLIENT_SSL if ssl else 0)
    fixed = capabilities.to_bytes(4, "little") + (1 << 24).to_bytes(4, "little") + b"\xff" + bytes(23)
    if ssl:
        return packet(1, fixed)
    return packet(1, fixed + user + b"\x00" + b"\x14" + bytes(range(20)) + b"caching_sha2_password\x00")


def test_login_fields(tmp_path):
    ok = packet(2, b"\x00\x00\x00\x02\x00\x00\x00")
    record = conversation(tmp_path, [(1, greeting()), (0, login(b"Admin")), (1, ok)])
    assert "mysql" in record["protocol"]
    assert record["mysql"] == {"version": ["8.0.36"], "user": ["admin"]}  # lower-cased as in Arkime


def test_ssl_login_has_the_version_but_no_user(tmp_path):
    client_hello = bytes.fromhex("16030100a5010000a10303") + bytes(160)
    record = conversation(tmp_path, [(1, greeting(b"5.7.16")), (0, login(b"", ssl=True)), (0, client_hello)])
    assert record["mysql"] == {"version": ["5.7.16"]}


@pytest.mark.parametrize("segments", [
    [(1, greeting(b"8.0\x01bad")), (0, login(b"admin"))],  # version not printable
    [(1, greeting()), (0, login(b"ad\x07min"))],  # user name not printable
    [(1, greeting()), (0, packet(9, bytes(40)))],  # not the login's sequence id
    [(0, greeting()), (1, login(b"admin"))],  # the greeting must come from the server
])
def test_other_exchanges_are_not_mysql(tmp_path, segments):
    record = conversation(tmp_path, segments)
    assert "mysql" not in record["protocol"] and "mysql" not in record
