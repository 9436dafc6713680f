"""The conformance normaliser, matcher, comparison and report on small hand-made sessions."""
from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct
from pathlib import Path

import pytest
from scapy.all import raw
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from sensor.capture.pcapfile import write_pcap
from sensor.conformance import ConformanceError, run_conformance, shipped_protocols
from sensor.conformance.compare import MISSING, core_differences, flatten_objects, protocol_field_differences
from sensor.conformance.match import match_sessions
from sensor.conformance.normalise import merge_segments, normalise_body, strip_enrichment, undo_test_rules
from sensor.conformance.scope import (
    DHCP, ICMP, IN_SCOPE, NON_IP, OTHER_LINK, SCTP, TUNNEL, actual_category, expected_category,
)

ETHERNET = frozenset({1})


def session(src: str, sport: int, dst: str, dport: int, first: int, last: int | None = None, proto: int = 6,
            **extra: object) -> dict:
    body = {"ipProtocol": proto, "firstPacket": first, "lastPacket": first if last is None else last,
            "source": {"ip": src, "port": sport, "bytes": 100, "packets": 1},
            "destination": {"ip": dst, "port": dport, "bytes": 0, "packets": 0}}
    body.update(extra)
    return body


# -- normalise -------------------------------------------------------------------------
def test_arrays_sorted_like_tests_pl() -> None:
    body = {"@timestamp": 1700000000000, "rootId": "abc", "tags": ["b", "a"], "packetPos": [90, 24],
            "http": {"statuscode": [404, 1000], "method": ["POST", "GET"]}, "srcTTL": [64, 128],
            "network": {"vlan": {"id": [200, 30]}}, "cert": [{"remainingDays": -20}, {"remainingDays": 3}],
            "source": {"ip": "2001:0db8:0000:0000:0000:0000:0000:0001"}}
    out = normalise_body(body)
    assert (out["@timestamp"], out["rootId"], out["tags"], out["packetPos"]) == ("SET", "SET", ["a", "b"], [90, 24])
    assert out["http"] == {"statuscode": [404, 1000], "method": ["GET", "POST"]}  # numeric, then text order
    assert out["srcTTL"] == [128, 64]  # Perl's default sort compares as strings
    assert out["network"]["vlan"]["id"] == [30, 200]
    assert [c["remainingDays"] for c in out["cert"]] == [-1, 1]  # cert keeps its order, days fold to a sign
    assert out["source"]["ip"] == "2001:db8::1"


def test_enrichment_is_stripped() -> None:
    body = {"source": {"ip": "10.0.0.1", "geo": {"country_iso_code": "RU"}, "as": {"number": 0}, "mac": ["x"],
                       "mac-cnt": 1, "bytes": 5},
            "srcOui": ["Apple"], "dstRIR": "ARIN", "tags": ["srcip"], "test": {"ip": ["10.0.0.1"]},
            "http": {"xffIp": ["1.2.3.4"], "xffGEO": ["US"], "xffASN": ["AS1"], "xffRIR": ["ARIN"]},
            "dns": [{"host": ["a"], "ASN": ["AS1"]}]}
    assert strip_enrichment(body) == {"source": {"ip": "10.0.0.1", "bytes": 5}, "http": {"xffIp": ["1.2.3.4"]},
                                      "dns": [{"host": ["a"]}]}


def test_protocols_added_by_test_rules_are_dropped() -> None:
    body = session("10.0.0.1", 1, "10.0.0.2", 443, 1, protocol=["tcp", "tls", "tlsrulestest"], protocolCnt=3)
    out = undo_test_rules(body)
    assert (out["protocol"], out["protocolCnt"], body["protocol"]) == (["tcp", "tls"], 2,
                                                                      ["tcp", "tls", "tlsrulestest"])


def test_flip_rule_is_undone() -> None:
    flipped = session("192.168.25.150", 49749, "68.178.213.61", 80, 1, tags=["flip test"])
    out = undo_test_rules(flipped)
    assert (out["source"]["ip"], out["source"]["port"], out["destination"]["ip"], out["destination"]["port"]) == (
        "68.178.213.61", 80, "192.168.25.150", 49749)
    assert out["source"]["bytes"] == 100  # counters stay where Arkime wrote them


def test_mid_save_segments_are_joined() -> None:
    first = session("10.0.0.1", 1, "10.0.0.2", 80, 1000, 5000, segmentCnt=1, protocol=["tcp"],
                    client={"bytes": 5}, server={"bytes": 0}, network={"bytes": 100, "packets": 1},
                    tcpflags={"syn": 1, "ack": 0}, srcPayload8="47455420")
    second = session("10.0.0.1", 1, "10.0.0.2", 80, 1000, 9000, segmentCnt=2, protocol=["http", "tcp"],
                     client={"bytes": 0}, server={"bytes": 7}, network={"bytes": 60, "packets": 1},
                     tcpflags={"syn": 0, "ack": 2})
    second["source"] = {"ip": "10.0.0.1", "port": 1, "bytes": 0, "packets": 0}
    second["destination"] = {"ip": "10.0.0.2", "port": 80, "bytes": 60, "packets": 1}
    other = session("10.0.0.3", 2, "10.0.0.2", 80, 1000)
    (joined, kept), merged = merge_segments([first, other, second])
    assert merged == 1 and kept is other
    assert (joined["lastPacket"], joined["segmentCnt"], joined["protocol"]) == (9000, 2, ["http", "tcp"])
    assert (joined["source"]["bytes"], joined["destination"]["bytes"], joined["network"]) == (
        100, 60, {"bytes": 160, "packets": 2})
    assert (joined["client"], joined["server"], joined["tcpflags"]) == ({"bytes": 5}, {"bytes": 7},
                                                                       {"syn": 1, "ack": 2})
    assert joined["srcPayload8"] == "47455420"


# -- match -----------------------------------------------------------------------------
def test_match_ignores_direction_and_pairs_reused_tuples_by_time() -> None:
    expected = [session("10.0.0.1", 1234, "10.0.0.2", 80, 1000), session("10.0.0.1", 1234, "10.0.0.2", 80, 9000),
                session("10.0.0.9", 53, "10.0.0.1", 999, 50, proto=17)]
    actual = [session("10.0.0.2", 80, "10.0.0.1", 1234, 9001), session("10.0.0.1", 1234, "10.0.0.2", 80, 1000),
              session("10.0.0.7", 7, "10.0.0.8", 8, 1)]
    m = match_sessions(expected, actual)
    assert (m.pairs, m.missing, m.extra) == ([(0, 1), (1, 0)], [2], [2])


def test_match_falls_back_to_community_id() -> None:
    cid = {"community_id": "1:same"}
    expected = [session("::ffff:10.0.0.1", 5, "::ffff:10.0.0.2", 6, 7, network=cid)]
    actual = [session("10.0.0.1", 5, "10.0.0.2", 6, 7, network=cid)]
    assert match_sessions(expected, actual).pairs == [(0, 0)]


def test_non_ip_sessions_never_match() -> None:
    arp = {"ipProtocol": 0, "firstPacket": 1, "source": {"bytes": 60, "packets": 1}}
    m = match_sessions([arp], [])
    assert (m.pairs, m.missing) == ([], [0])


# -- compare ---------------------------------------------------------------------------
def test_core_differences_name_the_field() -> None:
    expected = session("10.0.0.1", 1, "10.0.0.2", 80, 1000, tcpflags={"syn": 1, "ack": 3},
                       client={"bytes": 10}, srcPayload8="4745")
    actual = session("10.0.0.1", 1, "10.0.0.2", 80, 1000, tcpflags={"syn": 1, "ack": 3, "urg": 0},
                     client={"bytes": 12})
    diffs = core_differences(expected, actual)
    assert [(d.path, d.expected, d.actual) for d in diffs] == [("client.bytes", 10, 12),
                                                               ("srcPayload8", "4745", MISSING)]


def test_dns_objects_compare_with_flat_plugin_fields() -> None:
    arkime = {"protocol": ["dns", "udp"], "dnsCnt": 2,
              "dns": [{"host": ["a.example"], "hostCnt": 1, "opcode": "QUERY", "ASN": ["AS1"]},
                      {"host": ["b.example", "a.example"], "hostCnt": 2, "opcode": "QUERY"}]}
    plugin = {"protocol": ["dns", "udp"], "dns": {"host": ["a.example", "b.example"], "hostCnt": 2,
                                                  "opcode": ["QUERY"]}}
    assert flatten_objects(arkime["dns"])["host"] == ["a.example", "b.example"]
    assert protocol_field_differences(arkime, plugin, "dns") == (3, [])
    plugin["dns"]["opcode"] = ["STATUS"]
    compared, diffs = protocol_field_differences(arkime, plugin, "dns")
    assert (compared, [d.path for d in diffs]) == (3, ["dns.opcode"])


def test_smtp_fields_live_in_the_email_group() -> None:
    arkime = {"email": {"subject": ["hi"], "subjectCnt": 1}}
    assert protocol_field_differences(arkime, {}, "smtp")[0] == 2


# -- scope -----------------------------------------------------------------------------
@pytest.mark.parametrize("body, linktypes, category", [
    (session("10.0.0.1", 1, "10.0.0.2", 80, 1, protocol=["http", "tcp"], ethertype=2048), ETHERNET, IN_SCOPE),
    (session("10.0.0.1", 1, "10.0.0.2", 80, 1), frozenset({101}), IN_SCOPE),
    (session("10.0.0.1", 1, "10.0.0.2", 80, 1), frozenset({127}), OTHER_LINK),
    (session("10.0.0.1", 0, "10.0.0.2", 0, 1, proto=1, protocol=["gre", "icmp"]), ETHERNET, TUNNEL),
    (session("10.0.0.1", 1, "10.0.0.2", 80, 1, ethertype=0x8847), ETHERNET, TUNNEL),
    (session("10.0.0.1", 40000, "10.0.0.2", 4789, 1, proto=17), ETHERNET, TUNNEL),
    (session("0.0.0.0", 68, "255.255.255.255", 67, 1, proto=17, protocol=["dhcp", "udp"]), ETHERNET, DHCP),
    (session("10.0.0.1", 1, "10.0.0.2", 2, 1, proto=132), ETHERNET, SCTP),
    (session("10.0.0.1", 0, "10.0.0.2", 0, 1, proto=58), ETHERNET, ICMP),
    ({"ipProtocol": 0, "protocol": ["arp"]}, ETHERNET, NON_IP),
])
def test_expected_categories(body: dict, linktypes: frozenset, category: str) -> None:
    assert expected_category(body, linktypes) == category


def test_our_outer_tunnel_flows_are_not_in_scope() -> None:
    assert actual_category(session("10.0.0.1", 0, "10.0.0.2", 0, 1, proto=47), ETHERNET) == TUNNEL
    assert actual_category(session("10.0.0.1", 5, "10.0.0.2", 6081, 1, proto=17), ETHERNET) == TUNNEL
    assert actual_category(session("10.0.0.1", 5, "10.0.0.2", 53, 1, proto=17), ETHERNET) == IN_SCOPE


# -- shipped protocols ------------------------------------------------------------------
def test_shipped_protocols_are_read_from_add_protocol_calls(tmp_path: Path) -> None:
    (tmp_path / "one.py").write_text(
        'import arkime_session\nNAME = "bar"\n\ndef classify(s, d, n, w):\n'
        '    arkime_session.add_protocol(s, "foo")\n    arkime_session.add_protocol(s, NAME)\n')
    (tmp_path / "broken.py").write_text("def (:\n")
    assert shipped_protocols([tmp_path]) == {"foo", "bar"}


# -- run over a hand-made corpus ---------------------------------------------------------
def _dns_exchange(directory: Path, expected_body: dict) -> None:
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    query = raw(eth / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5353, dport=53) / b"query!")
    answer = raw(eth / IP(src="10.0.0.2", dst="10.0.0.1") / UDP(sport=53, dport=5353) / b"answer!!!")
    write_pcap(directory / "dns.pcap", [(1700000000.0005, query), (1700000000.25, answer)])
    (directory / "dns.test").write_text(json.dumps({"sessions3": [{"body": expected_body}]}))


def _community_id_udp(lo: str, lo_port: int, hi: str, hi_port: int) -> str:
    """Community ID v1 written out from the spec (seed 0, smaller endpoint first)."""
    data = struct.pack("!H", 0) + socket.inet_aton(lo) + socket.inet_aton(hi) + struct.pack("!BxHH", 17, lo_port,
                                                                                            hi_port)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode()


def _arkime_body() -> dict:
    """What Arkime writes for the exchange above, computed by hand: frames of 14+20+8
    header bytes plus payload; times truncated to ms; community id of the 5-tuple."""
    return {"@timestamp": 1, "ipProtocol": 17, "firstPacket": 1700000000000, "lastPacket": 1700000000250,
            "source": {"ip": "10.0.0.1", "port": 5353, "bytes": 48, "packets": 1, "geo": {"x": 1}},
            "destination": {"ip": "10.0.0.2", "port": 53, "bytes": 51, "packets": 1},
            "network": {"bytes": 99, "packets": 2,
                        "community_id": _community_id_udp("10.0.0.1", 5353, "10.0.0.2", 53)},
            "client": {"bytes": 6}, "server": {"bytes": 9}, "protocol": ["udp"],
            "srcPayload8": b"query!".hex(), "dstPayload8": b"answer!!".hex()}


def test_run_on_a_hand_made_capture(tmp_path: Path) -> None:
    _dns_exchange(tmp_path, _arkime_body())
    (tmp_path / "orphan.pcap").write_bytes(b"")
    report = run_conformance(tmp_path)
    (capture,) = report.captures
    assert (capture.in_scope.expected, capture.in_scope.matched, capture.core_agree) == (1, 1, 1)
    assert (report.core_agreement, report.skipped) == (1.0, ["orphan.pcap"])
    assert report.to_dict()["totals"]["coreAgree"] == 1
    assert "dns" in report.table()


def test_run_reports_a_wrong_count_by_field(tmp_path: Path) -> None:
    body = _arkime_body()
    body["destination"]["bytes"] = 50
    _dns_exchange(tmp_path, body)
    report = run_conformance(tmp_path)
    assert (report.core_agreement, dict(report.core_field_mismatches())) == (0.0, {"destination.bytes": 1})
    (difference,) = report.differences()
    assert "destination.bytes expected 50 got 51" in difference.describe()


def test_unusable_corpus_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConformanceError, match="not a directory"):
        run_conformance(tmp_path / "nowhere")
    with pytest.raises(ConformanceError, match="no \\*.pcap"):
        run_conformance(tmp_path)
    _dns_exchange(tmp_path, {})
    (tmp_path / "dns.test").write_text("{not json")
    with pytest.raises(ConformanceError, match="dns.test"):
        run_conformance(tmp_path)
