"""plugins/postgresql.py: Arkime's own PostgreSQL captures, and startup packets built from the protocol docs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from scapy.all import IP, TCP, Ether, wrpcap

from sensor.offline import read_records

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "postgresql.py"


def _sorted_text(value):
    """tests.pl leaves single values bare and sorted multi-values as strings: compare sorted text."""
    if isinstance(value, dict):
        return {key: _sorted_text(item) for key, item in value.items()}
    return sorted(str(item) for item in (value if isinstance(value, list) else [value]))


def _plugin_view(bodies):
    """Per session: the postgresql claim and field group (Arkime's empty linked segments left out)."""
    view = {}
    for body in bodies:
        if body["network"]["packets"] == 0:
            continue
        claimed = "postgresql" in body.get("protocol", ())
        if claimed or "postgresql" in body:
            key = (body["source"]["ip"], body["source"]["port"], body["destination"]["ip"],
                   body["destination"]["port"], body["firstPacket"])
            view[key] = (claimed, _sorted_text(body.get("postgresql", {})))
    return view


@pytest.mark.parametrize("capture", ["postgres-good", "postgres-badpass", "postgres-no-sslrequest", "arkime_synthetic"])
def test_fields_match_arkime_on_its_captures(shared_testdata, capture):
    pcap = shared_testdata / "arkime-pcap" / f"{capture}.pcap"
    expected = [s["body"] for s in json.loads(pcap.with_suffix(".test").read_text())["sessions3"]]
    ours = read_records([pcap], plugins=[PLUGIN])
    assert _plugin_view(ours) == _plugin_view(expected)


def conversation(tmp_path, segments, client_port=40001, server_port=5432):
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


def startup(**parameters):
    """StartupMessage (protocol 3.0): Int32 length, Int32 196608, name/value C strings, a final NUL."""
    body = (196608).to_bytes(4, "big") + b"".join(
        k.encode() + b"\x00" + v.encode() + b"\x00" for k, v in parameters.items()) + b"\x00"
    return (len(body) + 4).to_bytes(4, "big") + body


SSL_REQUEST = (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")
AUTH_OK = b"R" + (8).to_bytes(4, "big") + (0).to_bytes(4, "big")


def test_startup_message_fields(tmp_path):
    record = conversation(tmp_path, [(0, startup(user="Alice", database="shop", application_name="psql",
                                                 client_encoding="UTF8")), (1, AUTH_OK)])
    assert "postgresql" in record["protocol"]
    assert record["postgresql"] == {"user": ["Alice"], "db": ["shop"], "app": ["psql"]}


def test_ssl_refused_then_startup(tmp_path):
    record = conversation(tmp_path, [(0, SSL_REQUEST), (1, b"N"), (0, startup(user="bob", database="bob")),
                                     (1, AUTH_OK)])
    assert record["postgresql"] == {"user": ["bob"], "db": ["bob"]}


def test_ssl_accepted_claims_the_session_without_fields(tmp_path):
    client_hello = bytes.fromhex("16030100a5010000a10303") + bytes(160)
    record = conversation(tmp_path, [(0, SSL_REQUEST), (1, b"S"), (0, client_hello)])
    assert "postgresql" in record["protocol"] and "postgresql" not in record


def test_startup_without_user_is_not_claimed(tmp_path):
    # Arkime claims the session on the user parameter (or an SSLRequest), not on the shape alone
    record = conversation(tmp_path, [(0, startup(database="shop"))])
    assert "postgresql" not in record["protocol"]
    assert record["postgresql"] == {"db": ["shop"]}


@pytest.mark.parametrize("payload", [
    (20).to_bytes(4, "big") + (131072).to_bytes(4, "big") + b"user\x00x\x00\x00" + bytes(3),  # protocol 2
    b"\x00\x00\x00\x00binary junk that starts with zeros",
])
def test_other_payloads_are_not_postgresql(tmp_path, payload):
    record = conversation(tmp_path, [(0, payload)])
    assert "postgresql" not in record["protocol"] and "postgresql" not in record
