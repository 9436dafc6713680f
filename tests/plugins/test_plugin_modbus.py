"""plugins/modbus.py: Arkime's own Modbus captures, and frames built from the Modbus spec."""
from __future__ import annotations

from functools import partial

import pytest
from plugin_testlib import PLUGINS, claim_and_group, conversation_record, ours_and_expected
from spec_frames import adu

PLUGIN = PLUGINS / "modbus.py"


@pytest.mark.parametrize("capture", ["modbus", "arkime_synthetic"])
def test_fields_match_arkime_on_its_captures(shared_testdata, capture):
    ours, expected = ours_and_expected(shared_testdata, capture, PLUGIN, claim_and_group("modbus"))
    assert ours == expected


conversation = partial(conversation_record, plugins=(PLUGIN,), server_port=502)


def test_spec_transactions_including_an_exception_and_split_frames(tmp_path):
    # Modbus Application Protocol V1.1b3: the Read Holding Registers example
    # (registers 108-110), the Read Coils example, and exception code 02.
    write_single = adu(bytes.fromhex("06 0001 0003"), 3)
    record = conversation(tmp_path, [
        (0, adu(bytes.fromhex("03 006B 0003"), 1)),
        (1, adu(bytes.fromhex("03 06 022B 0000 0064"), 1)),
        (0, adu(bytes.fromhex("01 0013 0013"), 2)),
        (1, adu(bytes.fromhex("81 02"), 2)),
        (0, write_single[:5]),  # one request over two segments
        (0, write_single[5:]),
        (1, write_single),  # the echo
        (0, adu(bytes.fromhex("05 00AC FF00"), 4) + adu(bytes.fromhex("0F 0013 000A 02 CD01"), 5)),
        (1, adu(bytes.fromhex("05 00AC FF00"), 4) + adu(bytes.fromhex("0F 0013 000A"), 5)),
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
        (0, adu(bytes.fromhex("03 0000 0001"), 1, 1)),
        (1, adu(b"\x83", 1, 1)),  # length 2: the exception code is missing
    ])
    assert "exccode" not in record["modbus"]


def test_server_that_opens_the_connection_still_has_its_responses_read_as_responses(tmp_path):
    # Arkime keys the roles on port 502: here the 502 side sent the SYN.
    record = conversation(tmp_path, [
        (0, adu(b"\x84\x02", 7, 1)),
        (1, adu(bytes.fromhex("04 0010 0002"), 7, 1)),
    ], client_port=502, server_port=40001)
    assert record["modbus"]["exccode"] == [2]
    assert record["modbus"]["funccode"] == [4] and record["modbus"]["transactionid"] == [7]


@pytest.mark.parametrize("payload", [
    b"GET / HTTP/1.1\r\nHost: plc\r\n\r\n",
    adu(bytes.fromhex("03 006B 0003"), 1, 1) + b"\x00",  # length field does not match the chunk
    b"\x00\x01\x00\x07\x00\x06\x01\x03\x00\x6b\x00\x03",  # protocol id 7
])
def test_other_traffic_on_port_502_is_not_modbus(tmp_path, payload):
    record = conversation(tmp_path, [(0, payload), (1, b"HTTP/1.1 400 Bad Request\r\n\r\n")])
    assert "modbus" not in record["protocol"] and "modbus" not in record
