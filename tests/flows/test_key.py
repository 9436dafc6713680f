"""Community ID v1 against the published baseline of the Corelight spec, and flow keys."""
from __future__ import annotations

import pytest

from sensor.flows.key import VlanKeying, community_id, flow_key
from sensor.packet import Packet

# (proto, saddr, daddr, sport, dport, seed, expected) from community-id-spec/baseline.
SPEC_VECTORS = [
    (6, "128.232.110.120", "66.35.250.204", 34855, 80, 0, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
    (6, "66.35.250.204", "128.232.110.120", 80, 34855, 0, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
    (17, "8.8.8.8", "192.168.1.52", 53, 54585, 0, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="),
    (17, "192.168.1.52", "8.8.8.8", 54585, 53, 0, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="),
    (6, "2001:470:e5bf:dead:4957:2174:e82c:4887", "2607:f8b0:400c:c03::1a", 63943, 25, 0,
     "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4="),
    (132, "192.168.170.8", "192.168.170.56", 7, 7, 0, "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs="),
    (46, "10.1.12.1", "10.1.12.2", None, None, 0, "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw="),
    (46, "10.1.12.2", "10.1.12.1", None, None, 0, "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw="),
    (1, "192.168.0.89", "192.168.0.1", 8, 0, 0, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="),
    (1, "192.168.0.1", "192.168.0.89", 0, 8, 0, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="),
    (1, "10.0.0.1", "10.0.0.2", 11, 0, 0, "1:YHxtAirCG//0OzkcVAukqKQN9xM="),
    (58, "fe80::200:86ff:fe05:80da", "fe80::260:97ff:fe07:69ea", 135, 136, 0, "1:dGHyGvjMfljg6Bppwm3bg0LO8TY="),
    (58, "fe80::260:97ff:fe07:69ea", "fe80::200:86ff:fe05:80da", 136, 135, 0, "1:dGHyGvjMfljg6Bppwm3bg0LO8TY="),
    (58, "fe80::260:97ff:fe07:69ea", "fe80::200:86ff:fe05:80da", 135, 136, 0, "1:zavyT/cezQr1fmImYCwYnMXbgck="),
    (58, "3ffe:501:1800:2345::2", "3ffe:507:0:1:200:86ff:fe05:80da", 3, 0, 0, "1:2ObVBgIn28oZvibYZhZMBgh7WdQ="),
    (58, "fe80::200:86ff:fe05:80da", "ff02::2", 133, 134, 0, "1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0="),
    (6, "128.232.110.120", "66.35.250.204", 34855, 80, 1, "1:3V71V58M3Ksw/yuFALMcW0LAHvc="),
    (17, "8.8.8.8", "192.168.1.52", 53, 54585, 1, "1:Q9We8WO3piVF8yEQBNJF4uiSVrI="),
    (1, "192.168.0.89", "192.168.0.1", 8, 0, 1, "1:03g6IloqVBdcZlPyX8r0hgoE7kA="),
]


@pytest.mark.parametrize(("proto", "saddr", "daddr", "sport", "dport", "seed", "expected"), SPEC_VECTORS)
def test_spec_baseline(proto: int, saddr: str, daddr: str, sport: int | None, dport: int | None,
                       seed: int, expected: str) -> None:
    assert community_id(saddr, daddr, sport, dport, proto, seed) == expected


def test_one_way_icmp_is_not_symmetric() -> None:
    # Destination unreachable (type 3) has no counterpart: the direction stays in the hash.
    assert community_id("10.0.0.1", "10.0.0.2", 3, 1, 1) != community_id("10.0.0.2", "10.0.0.1", 3, 1, 1)


def _packet(src: str, sport: int, dst: str, dport: int, vlan: tuple[int, ...] = ()) -> Packet:
    return Packet(0.0, 60, vlan, 4, src, dst, 6, 64, sport, dport)


def test_flow_key_is_direction_free() -> None:
    forward = flow_key(_packet("10.0.0.9", 1000, "10.0.0.10", 80))
    backward = flow_key(_packet("10.0.0.10", 80, "10.0.0.9", 1000))
    assert forward == backward == (6, (), "10.0.0.10", 80, "10.0.0.9", 1000)


def test_flow_key_separates_ports_and_optionally_vlans() -> None:
    assert flow_key(_packet("1.1.1.1", 1, "2.2.2.2", 2)) != flow_key(_packet("1.1.1.1", 1, "2.2.2.2", 3))
    tagged, other = _packet("1.1.1.1", 1, "2.2.2.2", 2, (10,)), _packet("1.1.1.1", 1, "2.2.2.2", 2, (20,))
    assert flow_key(tagged) == flow_key(other)
    assert flow_key(tagged, VlanKeying()) != flow_key(other, VlanKeying())
    assert flow_key(tagged, VlanKeying({10: 20})) == flow_key(other, VlanKeying({10: 20}))


def test_port_less_protocols_hash_zero_ports_as_arkime(shared_testdata):
    """Arkime's Community ID of an ESP/AH flow hashes two zero ports (its db.c), unlike the spec."""
    import json
    body = json.loads((shared_testdata / "arkime-pcap" / "ah-esp.test").read_text())["sessions3"][0]["body"]
    src, dst = body["source"]["ip"], body["destination"]["ip"]
    assert community_id(src, dst, 0, 0, body["ipProtocol"]) == body["network"]["community_id"]
    assert community_id(src, dst, None, None, body["ipProtocol"]) != body["network"]["community_id"]
