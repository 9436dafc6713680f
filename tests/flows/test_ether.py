"""Non-IP sessions keyed as Arkime keys them (sensor.flows.ether), on frames
crafted with scapy; expectations written from Arkime's rules by hand."""
from __future__ import annotations

from scapy.all import raw
from scapy.layers.inet import IP
from scapy.layers.l2 import ARP, LLC, Dot1Q, Dot3, Ether

from sensor.flows.ether import EtherSessions, classify

A, B, C = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"


def arp(src: str, op: int, psrc: str, pdst: str) -> bytes:
    return raw(Ether(src=src, dst="ff:ff:ff:ff:ff:ff") / ARP(op=op, hwsrc=src, psrc=psrc, pdst=pdst))


def test_arp_is_one_session_per_address_asked_for_or_told() -> None:
    table = EtherSessions()
    for frame in (arp(A, 1, "10.0.0.1", "10.0.0.9"), arp(B, 2, "10.0.0.9", "10.0.0.1"), arp(C, 1, "10.0.0.2", "10.0.0.7")):
        assert table.process(frame, 1.0, len(frame)) == []
    records = sorted(table.close_all(), key=lambda r: -r["source"]["packets"])
    assert [r["source"]["packets"] for r in records] == [2, 1]
    first = records[0]
    assert (first["protocol"], first["ethertype"], first["ipProtocol"]) == (["arp"], 0x0806, 0)
    assert first["source"]["mac"] == [A, B] and first["destination"]["packets"] == 0
    assert first["source"]["bytes"] == first["network"]["bytes"] == 2 * len(arp(A, 1, "10.0.0.1", "10.0.0.9"))


def test_kinds_and_keys() -> None:
    lldp = raw(Ether(src=A, dst="01:80:c2:00:00:0e", type=0x88CC) / (b"\x02\x07" + b"\x00" * 20))
    xid = raw(Dot3(src=A, dst=B) / LLC(dsap=0, ssap=1, ctrl=0xAF) / b"\x81\x01\x00")
    isis = raw(Dot3(src=A, dst=B) / LLC(dsap=0xFE, ssap=0xFE, ctrl=3) / (b"\x83" + b"\x00" * 30))
    stp = raw(Dot3(src=A, dst=B) / LLC(dsap=0x42, ssap=0x42, ctrl=3) / (b"\x00" * 35))
    other = raw(Ether(src=A, dst=B, type=0x88B5) / (b"\x00" * 46))
    bad_arp = raw(Ether(src=A, dst=B, type=0x0806) / (b"\x00" * 10))
    assert classify(lldp)[1:] == ("lldp", 0x88CC)
    assert classify(xid)[1] == "xid"
    assert classify(isis)[1] == "isis"
    assert classify(stp)[1] == "corrupt-ether"
    assert classify(other)[:2] == (("unknown-ether", raw(Ether(src=A, dst=B))[:12], 0x88B5), "unknown-ether")
    assert classify(bad_arp)[1] == "corrupt-ether"
    # Frames the header walk owns make no session here.
    assert classify(raw(Ether() / IP())) is None
    assert classify(raw(Ether(type=0x8847) / (b"\x00" * 30))) is None


def test_vlan_tags_are_skipped_and_recorded() -> None:
    table = EtherSessions()
    frame = raw(Ether(src=A, dst=B) / Dot1Q(vlan=33) / ARP(op=1, psrc="10.0.0.1", pdst="10.0.0.2"))
    table.process(frame, 1.0, len(frame))
    [record] = table.close_all()
    assert record["network"]["vlan"]["id"] == [33] and record["protocol"] == ["arp"]


def test_idle_timeouts_by_kind_against_the_previous_frame() -> None:
    table = EtherSessions()
    other = raw(Ether(src=A, dst=B, type=0x88B5) / (b"\x00" * 46))
    request = arp(A, 1, "10.0.0.1", "10.0.0.9")
    table.process(other, 100.0, 60)
    table.process(request, 100.5, 60)
    # 70 s later: the unknown-ether session (60 s) ended, the ARP one (600 s) did not.
    assert table.process(request, 170.0, 60) == []
    [ended] = table.process(other, 171.0, 60)
    assert (ended["protocol"], ended["xdpsensor"]["endReason"], ended["source"]["packets"]) == (
        ["unknown-ether"], "timeout", 1)
    assert [r["protocol"] for r in table.expire(800.0)] == [["arp"], ["unknown-ether"]]
    # A lone flow resuming after a long silence stays one session (nothing else moved the clock).
    lone = EtherSessions()
    lone.process(other, 1.0, 60)
    lone.process(other, 5000.0, 60)
    [record] = lone.close_all()
    assert record["source"]["packets"] == 2
