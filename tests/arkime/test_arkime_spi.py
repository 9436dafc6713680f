"""SPI record rendering (spec d), checked against Arkime's own expected JSON."""
import json
from pathlib import Path

import pytest

from sensor.arkime.fields import FieldRegistry
from sensor.arkime.spi import render_spi

ARKIME_PCAP = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "arkime-pcap"
CORE = ("firstPacket", "lastPacket", "length", "packetRange", "ipProtocol", "client", "server",
        "totDataBytes", "tcpflags", "srcPayload8", "dstPayload8", "protocolCnt")

AEROSPIKE_VIEWS = [
    dict(client_ip="10.0.0.1", server_ip="10.0.0.2", client_port=53226, server_port=3000,
         vlan=(50,), first_ts=1466097898.472, last_ts=1466097973.153, packets=[7, 3],
         bytes=[588, 198], databytes=[86, 0],
         tcpflags={"syn": 1, "syn-ack": 1, "ack": 3, "psh": 2, "fin": 1, "rst": 2, "urg": 0,
                   "ece": 2, "cwr": 1, "ae": 0, "srcZero": 0, "dstZero": 0},
         first_payload=[bytes.fromhex("0201000000000023"), b""],
         community_id="1:hqeHY06nR5NH3ELRiceo1VcM3Fk="),
    dict(client_ip="10.0.0.4", server_ip="10.0.0.3", client_port=43178, server_port=3000,
         vlan=(50,), first_ts=1466101718.441, last_ts=1466101718.908, packets=[6, 5],
         bytes=[450, 444], databytes=[22, 86],
         tcpflags={"syn": 1, "syn-ack": 1, "ack": 5, "psh": 2, "fin": 2, "rst": 0, "urg": 0,
                   "ece": 0, "cwr": 0, "ae": 0, "srcZero": 0, "dstZero": 0},
         first_payload=[bytes.fromhex("020100000000000e0000"), bytes.fromhex("020100000000004e")],
         community_id="1:2ymV9tUsaCl3adnJMWUN+YlTL6k="),
]


def _render(view, reg=None, values=None):
    reg = reg or FieldRegistry()
    return render_spi(view, reg, values or {})


@pytest.mark.skipif(not (ARKIME_PCAP / "aerospike.test").exists(),
                    reason="../shared/testdata/arkime-pcap/aerospike.test not present")
def test_core_fields_match_arkime_expected_json(view_cls):
    expected = [s["body"] for s in
                json.loads((ARKIME_PCAP / "aerospike.test").read_text())["sessions3"]]
    reg = FieldRegistry()
    for kw, want in zip(AEROSPIKE_VIEWS, expected, strict=True):
        values = {reg.protocols.pos: {"tcp": None, "aerospike": None}}
        got = render_spi(view_cls(**kw), reg, values)
        for key in CORE:
            assert got.get(key) == want.get(key), key
        assert sorted(got["protocol"]) == want["protocol"]
        assert got["network"] == want["network"]
        for side in ("source", "destination"):
            core = {k: want[side][k] for k in ("ip", "port", "bytes", "packets")}
            assert got[side] == core


def test_custom_fields_nest_by_db_prefix_with_cnt(view_cls):
    reg = FieldRegistry()
    py = reg.define("test.python", "kind:lotermfield;db:test.python")
    top = reg.define("flatfield", "kind:integer;db:flatfield;count:true")
    values = {py: {"my value": None}, top: {3: None, 1: None},
              reg.position("http.statuscode"): {12345: None},
              reg.position("mac.src"): {"00:11:22:33:44:55": None}}
    rec = render_spi(view_cls(), reg, values)
    assert rec["test"] == {"python": ["my value"]}
    assert rec["flatfield"] == [1, 3] and rec["flatfieldCnt"] == 2
    assert rec["http"] == {"statuscode": [12345], "statuscodeCnt": 1}
    assert rec["source"]["mac"] == ["00:11:22:33:44:55"] and rec["source"]["mac-cnt"] == 1


def test_transport_first_then_sorted_protocols_and_tags(view_cls):
    reg = FieldRegistry()
    values = {reg.protocols.pos: {"udp": None, "zz": None, "dns": None},
              reg.tags.pos: {"b": None}}
    rec = render_spi(view_cls(ip_protocol=17, tags={"a"}), reg, values)
    assert rec["protocol"] == ["udp", "dns", "zz"] and rec["protocolCnt"] == 3
    assert rec["tags"] == ["a", "b"] and rec["tagsCnt"] == 2
    assert "tcpflags" not in rec  # TCP only


def test_optional_parts_absent_when_empty(view_cls):
    rec = _render(view_cls(first_payload=[b"", b""], community_id="", vlan=()))
    for key in ("srcPayload8", "dstPayload8", "tags"):
        assert key not in rec
    assert rec["network"] == {"packets": 10, "bytes": 786}
    assert rec["protocol"] == ["tcp"]  # the transport is always there
    assert "protocol" not in _render(view_cls(ip_protocol=0))


def test_output_is_deterministic_and_sorted(view_cls):
    reg = FieldRegistry()
    a = render_spi(view_cls(), reg, {reg.position("host.http"): {"b": None, "a": None}})
    b = render_spi(view_cls(), reg, {reg.position("host.http"): {"a": None, "b": None}})
    assert json.dumps(a) == json.dumps(b)
    assert list(a) == sorted(a) and list(a["source"]) == sorted(a["source"])
    assert a["http"]["host"] == ["a", "b"]


def test_millisecond_timestamps_truncate(view_cls):
    rec = _render(view_cls(first_ts=1385394928.4829, last_ts=1385394928.6081))
    assert (rec["firstPacket"], rec["lastPacket"], rec["length"]) == (
        1385394928482, 1385394928608, 126)
