"""plugins/modbus.py: Arkime's own Modbus captures, and frames built from the Modbus spec."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from scapy.all import IP, TCP, Ether, wrpcap

from sensor.offline import read_records

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "modbus.py"


def _sorted_text(value):
    """tests.pl leaves single values bare and sorted multi-values as strings: compare sorted text."""
    if isinstance(value, dict):
        return {key: _sorted_text(item) for key, item in value.items()}
    return sorted(str(item) for item in (value if isinstance(value, list) else [value]))


def _plugin_view(bodies, protocol):
    """Per session (4-tuple and first packet): the protocol claim and its field group.

    Arkime's empty linked segments (no packets) are left out: they come from
    its session saving, not from the parser."""
    view = {}
    for body in bodies:
        if body["network"]["packets"] == 0:
            continue
        claimed = protocol in body.get("protocol", ())
        if claimed or protocol in body:
            key = (body["source"]["ip"], body["source"]["port"], body["destination"]["ip"],
                   body["destination"]["port"], body["firstPacket"])
            view[key] = (claimed, _sorted_text(body.get(protocol, {})))
    return view


@pytest.mark.parametrize("capture", ["modbus", "arkime_synthetic"])
def test_fields_match_arkime_on_its_captures(shared_testdata, capture):
    pcap = shared_testdata / "arkime-pcap" / f"{capture}.pcap"
    expected = [s["body"] for s in json.loads(pcap.with_suffix(".test").read_text())["sessions3"]]
    ours = read_records([pcap], plugins=[PLUGIN])
    assert _plugin_view(ours, "modbus") == _plugin_view(expected, "modbus")


def conversation(tmp_path, segments, client_port=40001, server_port=502):
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


def adu(transaction_id, unit_id, pdu):
    """MBAP header (length = unit id + PDU) and PDU."""
    return transaction_id.to_bytes(2, "big") + b"\x00\x00" + (len(pdu) + 1).to_bytes(2, "big") + bytes([unit_id]) + pdu


def test_spec_transactions_including_an_exception_and_split_frames(tmp_path):
    # Modbus Application Protocol V1.1b3: the Read Holding Registers example
    # (registers 108-110), the Read Coils example, and exception code 02.
    write_single = adu(3, 0x11, bytes.fromhex("06 0001 0003"))
    record = conversation(tmp_path, [
        (0, adu(1, 0x11, bytes.fromhex("03 006B 0003"))),
        (1, adu(1, 0x11, bytes.fromhex("03 06 022B 0000 0064"))),
        (0, adu(2, 0x11, bytes.fromhex("01 0013 0013"))),
        (1, adu(2, 0x11, bytes.fromhex("81 02"))),
        (0, write_single[:5]),  # one request over two segments
        (0, write_single[5:]),
        (1, write_single),  # the echo
        (0, adu(4, 0x11, bytes.fromhex("05 00AC FF00")) + adu(5, 0x11, bytes.fromhex("0F 0013 000A 02 CD01"))),
        (1, adu(4, 0x11, bytes.fromhex("05 00AC FF00")) + adu(5, 0x11, bytes.fromhex("0F 0013 000A"))),
    ])
    assert "modbus" in record["protocol"]
    assert record["modbus"] == {
        "transactionid": [1, 2, 3, 4, 5], "transactionidCnt": 5,
        "funccode": [1, 3, 5, 6, 15], "funccodeCnt": 5,
        "exccode": [2], "exccodeCnt": 1,
        "unitid": [0x11], "protocolid": [0],
    }


def test_exception_without_its_code_adds_none(tmp_path):
    record = conversation(tmp_path, [
        (0, adu(1, 1, bytes.fromhex("03 0000 0001"))),
        (1, adu(1, 1, b"\x83")),  # length 2: the exception code is missing
    ])
    assert "exccode" not in record["modbus"]


def test_server_that_opens_the_connection_still_has_its_responses_read_as_responses(tmp_path):
    # Arkime keys the roles on port 502: here the 502 side sent the SYN.
    record = conversation(tmp_path, [
        (0, adu(7, 1, b"\x84\x02")),
        (1, adu(7, 1, bytes.fromhex("04 0010 0002"))),
    ], client_port=502, server_port=40001)
    assert record["modbus"]["exccode"] == [2]
    assert record["modbus"]["funccode"] == [4] and record["modbus"]["transactionid"] == [7]


@pytest.mark.parametrize("payload", [
    b"GET / HTTP/1.1\r\nHost: plc\r\n\r\n",
    adu(1, 1, bytes.fromhex("03 006B 0003")) + b"\x00",  # length field does not match the chunk
    b"\x00\x01\x00\x07\x00\x06\x01\x03\x00\x6b\x00\x03",  # protocol id 7
])
def test_other_traffic_on_port_502_is_not_modbus(tmp_path, payload):
    record = conversation(tmp_path, [(0, payload), (1, b"HTTP/1.1 400 Bad Request\r\n\r\n")])
    assert "modbus" not in record["protocol"] and "modbus" not in record
