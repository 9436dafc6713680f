"""The XDP program on crafted frames: parse paths, selection, counters, records."""
from __future__ import annotations

import os

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
                                IPv6ExtHdrRouting)
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.packet import Raw

from sensor.flows.key import VlanKeying
from sensor.kernel.program import ProgramOptions
from sensor.kernel.contract import (ICMP_MAX, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, REUSE_MAX, Reason, Stat,
                                    Verdict, key_endpoints, make_key)

pytestmark = pytest.mark.kernel

C4, S4 = "10.1.0.1", "10.2.0.1"
C6, S6 = "fd00:1::1", "fd00:2::1"
ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def tcp(sport, dport, flags="A", payload=b"", src=C4, dst=S4, **kw):
    return bytes(ETH / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags, **kw) / Raw(payload))


def udp(sport, dport, payload=b"x", src=C4, dst=S4):
    return bytes(ETH / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / Raw(payload))


def flow(xdp, proto, a, b):
    return xdp.program.flow(make_key(proto, a, b))


# -- parse paths -------------------------------------------------------------------

def test_udp_port_rule_selects_and_emits_the_whole_frame(xdp):
    frame = udp(40000, 5353, b"query")
    [rec] = xdp.run(frame)
    assert rec.frame == frame
    assert rec.header.wire_len == rec.header.caplen == len(frame)
    assert rec.header.reason == Reason.PORT
    lo, hi = key_endpoints(rec.header.key)
    assert {(lo.ip, lo.port), (hi.ip, hi.port)} == {(C4, 40000), (S4, 5353)}
    assert rec.header.key.proto == IPPROTO_UDP


def test_ipv4_options_are_skipped_to_find_ports(xdp):
    frame = bytes(ETH / IP(src=C4, dst=S4, options=b"\x01\x01\x01\x00") / UDP(sport=40001, dport=5353) / Raw(b"q"))
    assert len(xdp.run(frame)) == 1
    assert flow(xdp, IPPROTO_UDP, (C4, 40001), (S4, 5353)).packets[0] + \
        flow(xdp, IPPROTO_UDP, (C4, 40001), (S4, 5353)).packets[1] == 1


def test_ipv6_tcp_and_udp(xdp):
    f1 = bytes(ETH / IPv6(src=C6, dst=S6) / UDP(sport=40002, dport=5353) / Raw(b"q6"))
    f2 = bytes(ETH / IPv6(src=C6, dst=S6) / TCP(sport=40003, dport=8080, flags="S"))
    recs = xdp.run(f1, f2)
    assert [r.header.key.family for r in recs] == [6, 6]
    assert flow(xdp, IPPROTO_TCP, (C6, 40003), (S6, 8080)).verdict == Verdict.SELECTED


def test_ipv6_extension_headers_are_walked(xdp):
    frame = bytes(ETH / IPv6(src=C6, dst=S6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
                  / IPv6ExtHdrRouting() / UDP(sport=40004, dport=5353) / Raw(b"ext"))
    assert len(xdp.run(frame)) == 1
    assert flow(xdp, IPPROTO_UDP, (C6, 40004), (S6, 5353)) is not None


def test_too_many_ipv6_extension_headers_pass_uncounted(xdp):
    chain = IPv6(src=C6, dst=S6)
    for _ in range(9):
        chain = chain / IPv6ExtHdrDestOpt()
    frame = bytes(ETH / chain / UDP(sport=40005, dport=5353) / Raw(b"deep"))
    assert xdp.run(frame) == []
    assert xdp.delta(Stat.IPV6_EXT_LIMIT) == 1


@pytest.mark.parametrize("tags,vlan", [
    (lambda: Dot1Q(vlan=42), (42, 0)),
    (lambda: Dot1AD(vlan=100) / Dot1Q(vlan=7), (100, 7)),
])
def test_vlan_tags_are_parsed_and_listed_not_keyed(xdp, tags, vlan):
    frame = bytes(ETH / tags() / IP(src=C4, dst=S4) / UDP(sport=40006, dport=5353) / Raw(b"v"))
    untagged = bytes(ETH / IP(src=S4, dst=C4) / UDP(sport=5353, dport=40006) / Raw(b"w"))
    assert len(xdp.run(frame, untagged)) == 2
    state = flow(xdp, IPPROTO_UDP, (C4, 40006), (S4, 5353))
    assert tuple(state.vlan) == vlan and sum(state.packets) == 2


def test_with_vlan_keying_flows_are_keyed_on_their_first_vlan_after_the_collapse(make_harness):
    # Arkime's sessionIdTracking=vlan, [vlan-vni-collapse] 0=50,100: VLANs 50 and 100 key as untagged.
    harness = make_harness(ProgramOptions(vlan_key=VlanKeying({50: 0, 100: 0})))
    frames = [bytes(ETH / tags / IP(src=C4, dst=S4) / UDP(sport=40007, dport=9999) / Raw(b"v"))
              for tags in (Dot1Q(vlan=30), Dot1AD(vlan=40) / Dot1Q(vlan=30), Dot1Q(vlan=50), Dot1Q(vlan=100))]
    harness.run(*frames, bytes(ETH / IP(src=S4, dst=C4) / UDP(sport=9999, dport=40007) / Raw(b"w")))
    keyed = {}
    for key, state in harness.program.flows():
        keyed[key.vlan] = (sum(state.packets), tuple(state.vlan))
        assert (key.proto, key.retired) == (IPPROTO_UDP, 0)
    assert keyed == {30: (1, (30, 0)), 40: (1, (40, 30)), 0: (3, (50, 100))}


@pytest.mark.parametrize("frame,stat", [
    (bytes(ETH / ARP()), Stat.NOT_IP),
    (bytes(ETH / IP(src=C4, dst=S4) / ICMP()), Stat.OTHER_L4),
    (bytes(ETH / IP(src=C4, dst=S4) / TCP(sport=1, dport=8080))[:14 + 20 + 10], Stat.TRUNCATED),
    (bytes(ETH / IP(src=C4, dst=S4))[:14 + 12], Stat.TRUNCATED),
    (bytes(ETH / IPv6(src=C6, dst=S6) / IPv6ExtHdrHopByHop() / UDP())[:14 + 40 + 4], Stat.TRUNCATED),
])
def test_frames_the_sensor_cannot_use_pass_and_are_counted(xdp, frame, stat):
    assert xdp.run(frame) == []
    assert xdp.delta(stat) == 1
    assert xdp.delta(Stat.SEEN) == 1


def test_garbage_frames_all_pass(xdp):
    rng = __import__("random").Random(7)
    frames = [bytes(rng.getrandbits(8) for _ in range(rng.randint(14, 200))) for _ in range(300)]
    frames += [bytes(ETH)[:12] + b"\x08\x00" + os.urandom(n) for n in range(0, 60, 3)]
    frames += [bytes(ETH)[:12] + b"\x86\xdd" + os.urandom(n) for n in range(0, 80, 5)]
    xdp.run(*frames)  # run() asserts XDP_PASS and unchanged data for every frame
    assert xdp.delta(Stat.SEEN) == len(frames)


def test_ethernet_padding_is_not_payload(xdp):
    frame = bytes(ETH / IP(src=C4, dst=S4) / UDP(sport=40007, dport=5353) / Raw(b"ab"))
    padded = frame + b"\0" * (60 - len(frame))
    xdp.run(padded)
    state = flow(xdp, IPPROTO_UDP, (C4, 40007), (S4, 5353))
    assert sum(state.databytes) == 2
    assert sum(state.bytes) == 60


def test_icmp_databytes_run_to_the_end_of_the_frame(xdp):
    # Arkime counts an ICMP message's databytes to the frame's end, Ethernet padding too (nbns.pcap).
    frame = bytes(ETH / IP(src=C4, dst="224.0.0.2") / ICMP(type=10))
    xdp.run(frame + b"\0" * (60 - len(frame)))
    assert sum(flow(xdp, IPPROTO_ICMP, (C4, 0), ("224.0.0.2", 0)).databytes) == 60 - 14 - 20


# -- selection ---------------------------------------------------------------------

def test_unmatched_flows_are_counted_but_not_emitted(xdp):
    frames = [udp(40010, 9999, b"a"), udp(9999, 40010, b"b", src=S4, dst=C4)]
    assert xdp.run(*frames) == []
    state = flow(xdp, IPPROTO_UDP, (C4, 40010), (S4, 9999))
    assert state.verdict == Verdict.IGNORED  # both sides showed a payload, nothing matched
    assert sorted(state.packets) == [1, 1]


def test_one_sided_undecided_flow_is_ignored_after_the_payload_bound(xdp):
    frames = [udp(40011, 9998, b"a%d" % i) for i in range(4)]
    xdp.run(*frames)
    assert flow(xdp, IPPROTO_UDP, (C4, 40011), (S4, 9998)).verdict == Verdict.IGNORED


def test_port_rule_matches_the_client_port_too(xdp):
    # The server answers from 5353: the port rule covers either end.
    assert len(xdp.run(udp(5353, 40012, b"resp"))) == 1


def test_prefix_on_client_payload_selects_from_that_packet(xdp):
    c, s = (C4, 40020), (S4, 80)
    handshake = [tcp(40020, 80, "S"), tcp(80, 40020, "SA", src=S4, dst=C4), tcp(40020, 80, "A")]
    assert xdp.run(*handshake) == []
    get = tcp(40020, 80, "PA", b"GET / HTTP/1.1\r\n\r\n")
    resp = tcp(80, 40020, "PA", b"HTTP/1.1 200 OK\r\n\r\n", src=S4, dst=C4)
    recs = xdp.run(get, resp)
    assert [r.frame for r in recs] == [get, resp]
    assert all(r.header.reason == Reason.PREFIX for r in recs)
    state = flow(xdp, IPPROTO_TCP, c, s)
    assert state.verdict == Verdict.SELECTED and state.late_select == 0
    assert sum(state.packets) == 5 and state.emitted == 2


def test_prefix_on_server_first_payload_selects(xdp):
    # The server speaks first (a banner): its first payload is the one matched.
    banner = tcp(8443, 40021, "PA", b"\x16\x03\x03\x00\x10hello", src=S4, dst=C4)
    assert len(xdp.run(banner)) == 1


def test_late_selection_is_flagged(xdp):
    hello = tcp(40022, 443, "PA", b"hello")          # client payload: no match
    reply = tcp(443, 40022, "PA", b"\x16\x03\x01\x00", src=S4, dst=C4)  # server payload matches
    assert len(xdp.run(hello, reply)) == 1
    state = flow(xdp, IPPROTO_TCP, (C4, 40022), (S4, 443))
    assert state.verdict == Verdict.SELECTED and state.late_select == 1


def test_half_byte_hex_prefix(xdp):
    # tcp:0:0x16030 is 16 03 then a byte whose high nibble is 0.
    assert xdp.run(tcp(40023, 443, "PA", b"\x16\x03\x01zz")) != []
    assert xdp.run(tcp(40024, 443, "PA", b"\x16\x03\x0fzz")) != []
    assert xdp.run(tcp(40025, 443, "PA", b"\x16\x03\x10zz")) == []
    assert xdp.run(tcp(40026, 443, "PA", b"\x16\x04\x01zz")) == []


def test_prefix_at_an_offset_and_too_short_payloads(xdp):
    assert xdp.run(udp(40026, 7000, b"\0\0\0\0ping")) != []
    assert xdp.run(udp(40027, 7000, b"\0\0\0\0pin")) == []


def test_bypassed_flows_are_counted_not_emitted(xdp):
    first = udp(40030, 5353, b"one")
    assert len(xdp.run(first)) == 1
    key = make_key(IPPROTO_UDP, (C4, 40030), (S4, 5353))
    assert xdp.program.set_verdict(key, Verdict.BYPASSED)
    assert xdp.run(udp(40030, 5353, b"two"), udp(5353, 40030, b"three", src=S4, dst=C4)) == []
    assert sum(xdp.program.flow(key).packets) == 3
    assert xdp.delta(Stat.BYPASSED_PKTS) == 2


def test_emit_undecided_is_off_by_default(xdp):
    assert xdp.run(udp(40031, 9997, b"first")) == []


# -- counters ------------------------------------------------------------------------

def test_whole_flow_counters_and_arkime_tcp_flag_counts(xdp):
    # The packets of Arkime's http-301-get.pcap: S, SA, A, PA, FA, A, FA, A.
    c, s = dict(src=C4, dst=S4), dict(src=S4, dst=C4)
    frames = [tcp(40040, 8080, "S", seq=1000, **c), tcp(8080, 40040, "SA", seq=5000, ack=1001, **s),
              tcp(40040, 8080, "A", seq=1001, ack=5001, **c),
              tcp(40040, 8080, "PA", b"G" * 145, seq=1001, ack=5001, **c),
              tcp(8080, 40040, "FA", b"H" * 107, seq=5001, ack=1146, **s),
              tcp(40040, 8080, "A", seq=1146, ack=5109, **c), tcp(40040, 8080, "FA", seq=1146, ack=5109, **c),
              tcp(8080, 40040, "A", seq=5109, ack=1147, **s)]
    assert len(xdp.run(*frames)) == 8
    key = make_key(IPPROTO_TCP, (C4, 40040), (S4, 8080))
    state = xdp.program.flow(key)
    lo, _ = key_endpoints(key)
    client_side = 0 if (lo.ip, lo.port) == (C4, 40040) else 1
    assert state.client == client_side
    assert state.packets[client_side] == 5 and state.packets[1 - client_side] == 3
    assert state.bytes[client_side] == sum(len(f) for i, f in enumerate(frames) if i in (0, 2, 3, 5, 6))
    assert state.databytes[client_side] == 145 and state.databytes[1 - client_side] == 107
    assert list(state.tcpflags)[:10] == [1, 1, 3, 1, 2, 0, 0, 0, 0, 0]
    assert state.first_ns <= state.last_ns


def test_syn_ack_first_makes_its_receiver_the_client(xdp):
    xdp.run(tcp(8080, 40041, "SA", src=S4, dst=C4))
    key = make_key(IPPROTO_TCP, (C4, 40041), (S4, 8080))
    lo, _ = key_endpoints(key)
    assert xdp.program.flow(key).client == (0 if (lo.ip, lo.port) == (C4, 40041) else 1)


def test_icmp_types_and_codes_are_kept_distinct_in_order_up_to_the_bound(xdp):
    kinds = [(8, 0), (0, 0), (8, 0), (3, 3), (3, 1)] + [(13 + i, 0) for i in range(ICMP_MAX)]
    ends = [(C4, S4), (S4, C4)]     # the sides take turns
    xdp.run(*(bytes(ETH / IP(src=ends[i % 2][0], dst=ends[i % 2][1]) / ICMP(type=kind, code=code))
              for i, (kind, code) in enumerate(kinds)))
    state = flow(xdp, IPPROTO_ICMP, (C4, 0), (S4, 0))
    assert list(state.icmp_type[:state.icmp_types]) == [8, 0, 3] + [13 + i for i in range(ICMP_MAX - 3)]
    assert list(state.icmp_code[:state.icmp_codes]) == [0, 3, 1]


def _closed_connection(port: int, isn: int, server_isn: int = 5000) -> list[bytes]:
    c, s = dict(src=C4, dst=S4), dict(src=S4, dst=C4)
    return [tcp(port, 9090, "S", seq=isn, **c), tcp(9090, port, "SA", seq=server_isn, ack=isn + 1, **s),
            tcp(port, 9090, "PA", b"abc", seq=isn + 1, ack=server_isn + 1, **c),
            tcp(port, 9090, "FA", seq=isn + 4, ack=server_isn + 1, **c),
            tcp(9090, port, "FA", seq=server_isn + 1, ack=isn + 5, **s),
            tcp(port, 9090, "A", seq=isn + 5, ack=server_isn + 2, **c)]


def test_a_syn_after_the_close_starts_a_new_flow_and_the_old_one_waits_retired(xdp):
    # Arkime's port reuse: a SYN with a new ISN after FINs (or a RST) is a new session.
    xdp.run(*_closed_connection(40070, 1000), *_closed_connection(40070, 7000, 8000))
    xdp.run(tcp(9090, 40070, "R", seq=8002, src=S4, dst=C4), tcp(40070, 9090, "S", seq=20000))
    key = make_key(IPPROTO_TCP, (C4, 40070), (S4, 9090))
    live = xdp.program.flow(key)
    assert sum(live.packets) == 1 and live.tcpflags[0] == 1 and live.syn_seq == 20000
    lo, _ = key_endpoints(key)
    assert live.client == (0 if (lo.ip, lo.port) == (C4, 40070) else 1)
    retired = []
    for n in range(1, REUSE_MAX + 1):
        key.retired = n
        retired.append(xdp.program.flow(key))
    first, second = retired[0], retired[1]
    assert retired[2:] == [None] * (REUSE_MAX - 2)
    assert sum(first.packets) == 6 and first.databytes[first.client] == 3 and first.syn_seq == 1000
    assert sum(second.packets) == 7 and second.tcpflags[5] == 1 and second.syn_seq == 7000   # with the RST
    assert first.first_ns < second.first_ns <= second.last_ns <= live.first_ns


def test_a_syn_repeating_the_clients_isn_or_on_a_selected_flow_is_no_new_flow(xdp):
    xdp.run(*_closed_connection(40071, 3000), tcp(40071, 9090, "S", seq=3000))   # a late copy of the first SYN
    state = flow(xdp, IPPROTO_TCP, (C4, 40071), (S4, 9090))
    assert sum(state.packets) == 7 and state.tcpflags[0] == 2
    frames = [tcp(40072, 8080, "S", seq=3000), tcp(40072, 8080, "FA", seq=3001),
              tcp(8080, 40072, "FA", src=S4, dst=C4), tcp(40072, 8080, "S", seq=9000)]   # port 8080: selected
    assert len(xdp.run(*frames)) == 4
    assert sum(flow(xdp, IPPROTO_TCP, (C4, 40072), (S4, 8080)).packets) == 4   # userspace splits a flow it follows


def test_later_fragments_follow_a_selected_flow(xdp):
    big = IP(src=C4, dst=S4, id=777) / UDP(sport=40050, dport=5353) / Raw(b"z" * 3000)
    from scapy.layers.inet import fragment
    frags = [bytes(ETH / f) for f in fragment(big, fragsize=1400)]
    recs = xdp.run(*frags)
    assert len(recs) == len(frags) == 3
    assert [r.header.reason for r in recs] == [Reason.PORT, Reason.FRAGMENT, Reason.FRAGMENT]
    assert xdp.delta(Stat.FRAG_FOLLOWED) == 2
    state = flow(xdp, IPPROTO_UDP, (C4, 40050), (S4, 5353))
    # One datagram, as Arkime counts it reassembled: a packet of the first frame plus the later payloads.
    assert sum(state.packets) == 1 and sum(state.databytes) == 3000
    assert sum(state.bytes) == len(frags[0]) + sum(len(f) - len(ETH) - 20 for f in frags[1:])


def test_orphan_fragments_are_counted(xdp):
    orphan = bytes(ETH / IP(src=C4, dst=S4, id=999, frag=100, proto=17) / Raw(b"y" * 40))
    assert xdp.run(orphan) == []
    assert xdp.delta(Stat.FRAG_ORPHAN) == 1


def test_ipv6_fragments_follow_a_selected_flow(xdp):
    from scapy.layers.inet6 import fragment6
    pkt = IPv6(src=C6, dst=S6) / IPv6ExtHdrFragment(id=4242) / UDP(sport=40051, dport=5353) / Raw(b"w" * 3000)
    frags = [bytes(ETH / f) for f in fragment6(pkt, 1400)]
    recs = xdp.run(*frags)
    assert len(recs) == len(frags) and recs[-1].header.reason == Reason.FRAGMENT


# -- records -------------------------------------------------------------------------

def test_records_are_cut_at_snaplen(make_harness):
    small = make_harness(ProgramOptions(snaplen=64), ports=("udp:5353",))
    frame = udp(40060, 5353, b"p" * 500)
    [rec] = small.run(frame)
    assert rec.header.caplen == 64 and rec.header.wire_len == len(frame)
    assert rec.frame == frame[:64]


def test_emit_undecided_sends_first_payloads(make_harness):
    harness = make_harness(ProgramOptions(emit_undecided=True), prefixes=("tcp:0:SSH-",))
    hello = tcp(40061, 22, "PA", b"client speaks first")
    banner = tcp(22, 40061, "PA", b"SSH-2.0-x\r\n", src=S4, dst=C4)
    got = harness.run(hello, banner)
    assert [(r.header.reason, r.frame) for r in got] == [(Reason.UNDECIDED, hello), (Reason.PREFIX, banner)]


def test_select_all_takes_every_flow_of_the_protocol(make_harness):
    from sensor.kernel.rules import RuleSet
    harness = make_harness(ProgramOptions())
    all_udp = RuleSet(select_all={IPPROTO_UDP})
    harness.reset(all_udp)
    [rec] = harness.run(udp(40070, 12345, b"anything"))
    assert rec.header.reason == Reason.ALL
    assert harness.run(tcp(40071, 12345, "PA", b"anything")) == []


