"""The Python pre-filter alone (no root) on scapy-built frames: parse paths,
verdicts, counters and records as bpf/sensor.bpf.c defines them."""
from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.packet import Raw

from sensor.kernel.contract import (
    IPPROTO_TCP, IPPROTO_UDP, TCPF_ZERO_HI, TCPF_ZERO_LO, TCPFLAG_NAMES, Reason, Stat, Verdict, key_endpoints,
    make_key,
)
from sensor.kernel.program import ProgramOptions
from sensor.kernel.rules import PortRole, PortRule, RuleSet, parse_prefix_spec
from sensor.prefilter import PythonFlowTable

C4, S4 = "10.1.0.1", "10.2.0.1"
C6, S6 = "fd00:1::1", "fd00:2::1"
ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
FLAG = {name: i for i, name in enumerate(TCPFLAG_NAMES)}


def tcp(sport, dport, flags="A", payload=b"", src=C4, dst=S4, **kw) -> bytes:
    return bytes(ETH / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags, **kw) / Raw(payload))


def udp(sport, dport, payload=b"x", src=C4, dst=S4) -> bytes:
    return bytes(ETH / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / Raw(payload))


def table(ports=(), prefixes=(), select_all=(), **options) -> PythonFlowTable:
    return PythonFlowTable(RuleSet(select_all=set(select_all)).add_specs(ports, prefixes), ProgramOptions(**options))


def run(t: PythonFlowTable, *frames: bytes, start_ns: int = 1_000):
    return [t.process(f, start_ns + i) for i, f in enumerate(frames)]


def state(t, proto, a, b):
    return t.flow(make_key(proto, a, b))


def side_of(proto, sender, receiver) -> int:
    """The kernel's side of `sender`, from contract.make_key's independent ordering."""
    lo, _ = key_endpoints(make_key(proto, sender, receiver))
    return 0 if (lo.ip, lo.port) == sender else 1


# -- selection and records ----------------------------------------------------------

def test_port_rule_selects_from_the_first_packet_and_emits_whole_frames():
    t = table(ports=("udp:53",))
    query, answer = udp(40000, 53, b"query"), udp(53, 40000, b"answer!", src=S4, dst=C4)
    rec_q, rec_a = run(t, query, answer, start_ns=5_000)
    assert rec_q.frame == query and rec_a.frame == answer
    h = rec_q.header
    assert (h.ts_ns, h.wire_len, h.caplen, h.ifindex) == (5_000, len(query), len(query), 1)
    assert (h.reason, h.verdict) == (Reason.PORT, Verdict.SELECTED)
    assert bytes(h.key) == bytes(make_key(IPPROTO_UDP, (C4, 40000), (S4, 53)))
    assert h.side == side_of(IPPROTO_UDP, (C4, 40000), (S4, 53))
    assert rec_a.header.side == 1 - h.side
    assert h.client == h.side == rec_a.header.client  # the first packet's sender is the client
    assert rec_a.header.flow_hash == h.flow_hash


def test_unmatched_flow_is_counted_but_not_emitted():
    t = table(ports=("udp:53",))
    assert run(t, udp(40000, 5353), udp(5353, 40000, src=S4, dst=C4)) == [None, None]
    s = state(t, IPPROTO_UDP, (C4, 40000), (S4, 5353))
    assert list(s.packets) == [1, 1] and s.verdict == Verdict.IGNORED  # both first payloads passed
    assert t.stats()[Stat.EMITTED] == 0 and t.stats()[Stat.FLOW_NEW] == 1


def test_port_roles_follow_the_client_learnt_from_a_syn_ack():
    # A client-port rule (Arkime's "src" port): 40001 must be the client's port.
    rules = RuleSet(ports={PortRule(IPPROTO_TCP, 40001, PortRole.CLIENT)})
    t = PythonFlowTable(rules, ProgramOptions())
    # The capture starts at the server's SYN-ACK: its receiver is the client.
    [rec] = run(t, tcp(8000, 40001, "SA", src=S4, dst=C4))
    assert rec is not None and rec.header.reason == Reason.PORT
    assert rec.header.client == 1 - rec.header.side
    # The same port on the server end does not match a client-port rule.
    t2 = PythonFlowTable(rules, ProgramOptions())
    assert run(t2, tcp(40002, 40001, "S")) == [None]


def test_select_all_selects_every_flow_of_that_protocol_only():
    t = table(select_all=(IPPROTO_TCP,))
    rec_tcp, rec_udp = run(t, tcp(1234, 4321, "S"), udp(1234, 4321))
    assert rec_tcp.header.reason == Reason.ALL and rec_udp is None


def test_snaplen_caps_the_copied_bytes_not_the_wire_length():
    t = table(ports=("udp:53",), snaplen=64)
    frame = udp(40000, 53, b"q" * 200)
    [rec] = run(t, frame)
    assert (rec.header.caplen, rec.header.wire_len, rec.frame) == (64, len(frame), frame[:64])


# -- counters -------------------------------------------------------------------------

def test_counters_of_a_tcp_session_per_side_with_arkime_flag_meanings():
    t = table(ports=("tcp:80",))
    c, s = (C4, 40000), (S4, 80)
    frames = [
        tcp(40000, 80, "S", seq=100), tcp(80, 40000, "SA", src=S4, dst=C4, seq=300, ack=101),
        tcp(40000, 80, "A", seq=101),
        tcp(40000, 80, "PA", b"GET / HTTP/1.0\r\n\r\n", seq=101),
        tcp(80, 40000, "PA", b"HTTP/1.0 200 OK\r\n\r\n", src=S4, dst=C4, window=0, seq=301),
        tcp(40000, 80, "FA", seq=119), tcp(80, 40000, "R", src=S4, dst=C4, window=0, seq=320),
        tcp(40000, 80, "AUEC", seq=120),
    ]
    run(t, *frames)
    st = state(t, IPPROTO_TCP, c, s)
    cs = side_of(IPPROTO_TCP, c, s)
    client_frames, server_frames = [0, 2, 3, 5, 7], [1, 4, 6]
    assert st.packets[cs] == 5 and st.packets[1 - cs] == 3
    assert st.bytes[cs] == sum(len(frames[i]) for i in client_frames)
    assert st.bytes[1 - cs] == sum(len(frames[i]) for i in server_frames)
    assert st.databytes[cs] == 18 and st.databytes[1 - cs] == 19
    flags = dict(zip(TCPFLAG_NAMES, st.tcpflags))
    # ack: packets whose FIN/SYN/RST/PSH/ACK bits are ACK alone (URG/ECE/CWR do not matter)
    assert flags == {"syn": 1, "syn-ack": 1, "ack": 2, "psh": 2, "fin": 1, "rst": 1, "urg": 1, "ece": 1,
                     "cwr": 1, "ae": 0}
    # zero window: the server's data packet counts, its RST does not
    zero_server = st.tcpflags[TCPF_ZERO_LO if cs == 1 else TCPF_ZERO_HI]
    zero_client = st.tcpflags[TCPF_ZERO_LO if cs == 0 else TCPF_ZERO_HI]
    assert (zero_client, zero_server) == (0, 1)
    assert st.emitted == len(frames) and st.client == cs


def test_tcp_ae_bit_is_counted():
    t = table(select_all=(IPPROTO_TCP,))
    frame = bytearray(tcp(40000, 80, "A"))
    frame[14 + 20 + 12] |= 1   # AE (ex-NS): the low bit of the data offset byte
    run(t, bytes(frame))
    assert state(t, IPPROTO_TCP, (C4, 40000), (S4, 80)).tcpflags[FLAG["ae"]] == 1


def test_ethernet_padding_is_not_payload():
    t = table(ports=("udp:53",))
    frame = udp(40000, 53, b"ab")
    padded = frame + bytes(60 - len(frame))
    [rec] = run(t, padded)
    st = state(t, IPPROTO_UDP, (C4, 40000), (S4, 53))
    assert sum(st.databytes) == 2 and sum(st.bytes) == 60 and rec.header.wire_len == 60


# -- parse paths ----------------------------------------------------------------------

@pytest.mark.parametrize("cut", range(0, 54))
def test_frames_cut_inside_a_header_are_truncated_and_count_on_no_flow(cut):
    t = table(select_all=(IPPROTO_TCP,))
    assert run(t, tcp(40000, 80, "PA", b"payload")[:cut]) == [None]
    assert t.stats()[Stat.TRUNCATED] == 1 and t.stats()[Stat.FLOW_NEW] == 0


def test_a_frame_cut_in_its_payload_counts_the_ip_length_as_data():
    t = table(select_all=(IPPROTO_UDP,))
    frame = udp(40000, 53, b"p" * 100)
    [rec] = run(t, frame[:60])
    st = state(t, IPPROTO_UDP, (C4, 40000), (S4, 53))
    assert sum(st.bytes) == 60 and sum(st.databytes) == 100 and rec.header.wire_len == 60
    assert bytes(st.payload8[:8]) == b"p" * 8


def test_tcp_data_offset_below_five_is_truncated():
    frame = bytearray(tcp(40000, 80, "A"))
    frame[14 + 20 + 12] = 0x40
    t = table(select_all=(IPPROTO_TCP,))
    assert run(t, bytes(frame)) == [None] and t.stats()[Stat.TRUNCATED] == 1


def test_ipv4_options_are_skipped():
    t = table(ports=("udp:53",))
    frame = bytes(ETH / IP(src=C4, dst=S4, options=b"\x01\x01\x01\x00") / UDP(sport=40001, dport=53) / Raw(b"q"))
    [rec] = run(t, frame)
    assert rec is not None and sum(state(t, IPPROTO_UDP, (C4, 40001), (S4, 53)).databytes) == 1


@pytest.mark.parametrize("tags,vlan", [
    ((Dot1Q(vlan=100),), (100, 0)),
    ((Dot1AD(vlan=200), Dot1Q(vlan=300)), (200, 300)),
])
def test_vlan_tags_are_listed_not_keyed(tags, vlan):
    t = table(ports=("udp:53",))
    layers = ETH
    for tag in tags:
        layers = layers / tag
    run(t, bytes(layers / IP(src=C4, dst=S4) / UDP(sport=40000, dport=53) / Raw(b"q")),
        bytes(ETH / Dot1Q(vlan=999) / IP(src=C4, dst=S4) / UDP(sport=40000, dport=53) / Raw(b"r")))
    st = state(t, IPPROTO_UDP, (C4, 40000), (S4, 53))
    assert sum(st.packets) == 2
    assert tuple(st.vlan) == (vlan if vlan[1] else (vlan[0], 999))


def test_three_vlan_tags_are_not_ip():
    t = table(ports=("udp:53",))
    frame = bytes(ETH / Dot1Q(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / IP(src=C4, dst=S4) / UDP(dport=53))
    assert run(t, frame) == [None] and t.stats()[Stat.NOT_IP] == 1


def test_not_ip_is_counted_apart_and_other_ip_protocols_are_flows():
    t = table(select_all=(IPPROTO_TCP, IPPROTO_UDP))
    run(t, bytes(ETH / ARP()), bytes(ETH / IP(src=C4, dst=S4) / ICMP()))
    stats = t.stats()
    assert (stats[Stat.SEEN], stats[Stat.NOT_IP], stats[Stat.OTHER_L4], stats[Stat.PARSED]) == (2, 1, 1, 1)
    assert sum(state(t, 1, (C4, 0), (S4, 0)).packets) == 1


def test_ipv6_extension_headers_are_walked():
    t = table(ports=("udp:53",))
    frame = bytes(ETH / IPv6(src=C6, dst=S6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
                  / IPv6ExtHdrRouting() / UDP(sport=40004, dport=53) / Raw(b"ext"))
    [rec] = run(t, frame)
    assert rec.header.key.family == 6
    assert sum(state(t, IPPROTO_UDP, (C6, 40004), (S6, 53)).databytes) == 3


@pytest.mark.parametrize("count,walked", [(8, True), (9, False)])
def test_eight_ipv6_extension_headers_are_walked_a_ninth_hits_the_limit(count, walked):
    chain = IPv6(src=C6, dst=S6)
    for _ in range(count):
        chain = chain / IPv6ExtHdrDestOpt()
    t = table(ports=("udp:53",))
    [rec] = run(t, bytes(ETH / chain / UDP(sport=40005, dport=53)))
    assert (rec is not None) == walked
    assert t.stats()[Stat.IPV6_EXT_LIMIT] == (0 if walked else 1) and t.stats()[Stat.TRUNCATED] == 0


def test_an_ipv6_extension_header_cut_short_is_truncated():
    frame = bytes(ETH / IPv6(src=C6, dst=S6) / IPv6ExtHdrDestOpt() / UDP(dport=53))
    t = table(ports=("udp:53",))
    assert run(t, frame[:14 + 40 + 4]) == [None] and t.stats()[Stat.TRUNCATED] == 1


# -- fragments ------------------------------------------------------------------------

def ipv4_fragments(dport: int, payload: bytes) -> list[bytes]:
    whole = IP(src=C4, dst=S4, id=777) / UDP(sport=40000, dport=dport) / Raw(payload)
    raw = bytes(whole)
    first = IP(src=C4, dst=S4, id=777, flags="MF", frag=0, proto=17) / Raw(raw[20:20 + 32])
    later = IP(src=C4, dst=S4, id=777, frag=4, proto=17) / Raw(raw[20 + 32:])
    return [bytes(ETH / first), bytes(ETH / later)]


def test_ipv4_later_fragment_follows_a_selected_flow():
    t = table(ports=("udp:53",))
    first, later = ipv4_fragments(53, b"d" * 60)
    rec_first, rec_later = run(t, first, later)
    assert rec_first.header.reason == Reason.PORT
    assert rec_later.header.reason == Reason.FRAGMENT and rec_later.frame == later
    assert bytes(rec_later.header.key) == bytes(rec_first.header.key)
    st = state(t, IPPROTO_UDP, (C4, 40000), (S4, 53))
    side = side_of(IPPROTO_UDP, (C4, 40000), (S4, 53))
    # One datagram, as Arkime counts it reassembled: the first frame and the later fragment's 36 bytes.
    assert st.packets[side] == 1 and st.bytes[side] == len(first) + 36 and st.databytes[side] == 60
    assert t.stats()[Stat.FRAG_FOLLOWED] == 1


def test_later_fragments_follow_unselected_flows_and_without_their_first_are_orphans():
    first, later = ipv4_fragments(9999, b"d" * 60)
    t = table(ports=("udp:53",))
    assert run(t, later) == [None]                  # first never seen
    assert run(t, first, later) == [None, None]     # first seen: counted on its flow, not emitted
    assert t.stats()[Stat.FRAG_ORPHAN] == 1 and t.stats()[Stat.FRAG_FOLLOWED] == 1


def test_ipv6_fragments_follow_through_the_fragment_header():
    raw = bytes(UDP(sport=40000, dport=53) / Raw(b"v" * 48))
    hdr = IPv6(src=C6, dst=S6)
    first = bytes(ETH / hdr / IPv6ExtHdrFragment(nh=17, offset=0, m=1, id=4242) / Raw(raw[:24]))
    later = bytes(ETH / hdr / IPv6ExtHdrFragment(nh=17, offset=3, m=0, id=4242) / Raw(raw[24:]))
    t = table(ports=("udp:53",))
    rec_first, rec_later = run(t, first, later)
    assert rec_first.header.reason == Reason.PORT and rec_later.header.reason == Reason.FRAGMENT
    st = state(t, IPPROTO_UDP, (C6, 40000), (S6, 53))
    assert (sum(st.packets), sum(st.databytes)) == (1, 48)   # one datagram, as reassembled


def test_later_fragment_of_icmp_without_its_first_is_an_orphan():
    frame = bytes(ETH / IP(src=C4, dst=S4, frag=10, proto=1) / Raw(b"x" * 8))
    t = table(select_all=(IPPROTO_TCP, IPPROTO_UDP))
    assert run(t, frame) == [None] and t.stats()[Stat.FRAG_ORPHAN] == 1


# -- prefixes -------------------------------------------------------------------------

@pytest.mark.parametrize("payload,selected", [
    (b"\x16\x03\x01\x02\x00", True),
    (b"\x16\x03\x0f", True),        # the half byte leaves the low nibble free
    (b"\x16\x03\x10", False),
    (b"\x16\x04\x01", False),
    (b"\x16\x03", False),           # shorter than the pattern
])
def test_half_byte_prefix_masks_the_last_nibble(payload, selected):
    t = table(prefixes=("tcp:0:0x16030",))
    [rec] = run(t, tcp(40000, 443, "PA", payload))
    assert (rec is not None) == selected
    if selected:
        assert rec.header.reason == Reason.PREFIX


def test_prefix_at_an_offset_and_only_on_a_first_payload():
    t = table(prefixes=("udp:4:ping",), max_undecided_payloads=8)
    assert run(t, udp(40000, 7000, b"....pong")) == [None]
    # The same side's second payload is not looked at, even though it matches.
    assert run(t, udp(40000, 7000, b"....ping")) == [None]
    # The other side's first payload matches: selected late.
    [rec] = run(t, udp(7000, 40000, b"xxxxping", src=S4, dst=C4))
    assert rec.header.reason == Reason.PREFIX
    assert state(t, IPPROTO_UDP, (C4, 40000), (S4, 7000)).late_select == 1


def test_prefix_on_the_first_payload_is_not_late():
    t = table(prefixes=("tcp:0:GET ",))
    recs = run(t, tcp(40000, 80, "S"), tcp(40000, 80, "PA", b"GET / HTTP/1.1\r\n"), tcp(40000, 80, "A"))
    assert [r is not None for r in recs] == [False, True, True]
    assert state(t, IPPROTO_TCP, (C4, 40000), (S4, 80)).late_select == 0


def test_a_pattern_longer_than_sixteen_bytes_compares_its_first_sixteen():
    t = table(prefixes=("tcp:0:GET /index.html?long",))
    [rec] = run(t, tcp(40000, 80, "PA", b"GET /index.html?LONG"))
    assert rec is not None  # the kernel selects a superset; the plugin sees the rest


# -- undecided flows ------------------------------------------------------------------

def test_max_undecided_payloads_ignores_a_one_sided_flow():
    t = table(prefixes=("udp:0:zz",), max_undecided_payloads=3)
    run(t, *[udp(40000, 9000, b"data")] * 2)
    assert state(t, IPPROTO_UDP, (C4, 40000), (S4, 9000)).verdict == Verdict.UNDECIDED
    run(t, udp(40000, 9000, b"data"))
    st = state(t, IPPROTO_UDP, (C4, 40000), (S4, 9000))
    assert st.verdict == Verdict.IGNORED and st.undecided_payloads == 3
    assert t.stats()[Stat.IGNORED] == 1


def test_packets_without_payload_do_not_count_towards_the_limit():
    t = table(prefixes=("tcp:0:GET ",), max_undecided_payloads=1)
    run(t, tcp(40000, 80, "S"), tcp(80, 40000, "SA", src=S4, dst=C4), tcp(40000, 80, "A"))
    assert state(t, IPPROTO_TCP, (C4, 40000), (S4, 80)).verdict == Verdict.UNDECIDED


def test_emit_undecided_sends_the_first_two_undecided_payloads():
    t = table(prefixes=("tcp:0:GET ",), emit_undecided=True, max_undecided_payloads=8)
    recs = run(t, tcp(40000, 80, "S"), tcp(40000, 80, "PA", b"POST"), tcp(40000, 80, "PA", b"more"),
               tcp(40000, 80, "PA", b"again"))
    assert [r is not None for r in recs] == [False, True, True, False]
    assert {(r.header.reason, r.header.verdict) for r in recs if r} == {(Reason.UNDECIDED, Verdict.UNDECIDED)}
    st = state(t, IPPROTO_TCP, (C4, 40000), (S4, 80))
    assert st.emitted == 0  # emitted counts selected-flow records only


# -- userspace's hands on the table ---------------------------------------------------

def test_bypassed_flows_are_counted_not_emitted():
    t = table(ports=("udp:53",))
    [rec] = run(t, udp(40000, 53))
    assert t.set_verdict(rec.header.key, Verdict.BYPASSED)
    assert run(t, udp(40000, 53), udp(53, 40000, src=S4, dst=C4)) == [None, None]
    st = t.flow(rec.header.key)
    assert sum(st.packets) == 3 and st.emitted == 1
    assert t.stats()[Stat.BYPASSED_PKTS] == 2


def test_set_verdict_on_an_unknown_flow_is_false():
    t = table()
    assert t.set_verdict(make_key(IPPROTO_UDP, (C4, 1), (S4, 2)), Verdict.BYPASSED) is False


def test_a_deleted_flow_starts_afresh():
    t = table(ports=("udp:53",))
    [rec] = run(t, udp(40000, 53))
    t.delete_flow(rec.header.key)
    assert t.flow(rec.header.key) is None
    run(t, udp(40000, 53))
    assert sum(t.flow(rec.header.key).packets) == 1 and t.stats()[Stat.FLOW_NEW] == 2


def test_times_are_the_callers():
    t = table(ports=("udp:53",))
    run(t, udp(40000, 53), start_ns=1_700_000_000_000_000_000)
    run(t, udp(53, 40000, src=S4, dst=C4), start_ns=1_700_000_001_000_000_000)
    st = state(t, IPPROTO_UDP, (C4, 40000), (S4, 53))
    assert (st.first_ns, st.last_ns) == (1_700_000_000_000_000_000, 1_700_000_001_000_000_000)
    assert t.clock_offset_ns == 0


def test_too_many_prefix_shapes_are_refused_like_the_kernel():
    rules = RuleSet(prefixes={parse_prefix_spec(f"tcp:{i}:ab") for i in range(9)})
    with pytest.raises(ValueError, match="shapes"):
        PythonFlowTable(rules)


def test_a_full_table_evicts_the_least_recent_flow_and_counts_it():
    t = table(flow_entries=2)
    run(t, udp(40000, 9), udp(40001, 9), udp(40000, 9), udp(40002, 9))
    assert state(t, IPPROTO_UDP, (C4, 40001), (S4, 9)) is None      # the least recently seen
    assert sum(state(t, IPPROTO_UDP, (C4, 40000), (S4, 9)).packets) == 2
    assert t.stats()[Stat.FLOW_EVICTED] == 1 and t.stats()[Stat.FLOW_NEW] == 3
    t.delete_flows([make_key(IPPROTO_UDP, (C4, 40000), (S4, 9)), make_key(IPPROTO_UDP, (C4, 40001), (S4, 9))])
    assert [bytes(k) for k, _ in t.flows()] == [bytes(make_key(IPPROTO_UDP, (C4, 40002), (S4, 9)))]
    assert t.stats()[Stat.FLOW_EVICTED] == 1     # deleted is not evicted
