"""Records of flows no rule selected, built from the pre-filter's counters
alone, against the records the userspace pipeline builds from every packet
(--no-prefilter: Arkime's rules, an independent implementation)."""
from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.layers.sctp import SCTP, SCTPChunkData, SCTPChunkInit
from scapy.layers.vxlan import VXLAN

from sensor.conformance.compare import core_differences
from sensor.flows.table import FlowTimeouts
from sensor.kernel.contract import FlowFlag, FlowState, make_key
from sensor.kernel.flowsession import Attention, end_reason, flow_session
from sensor.kernel.program import ProgramOptions, SensorProgram
from sensor.kernel.rules import RuleSet
from sensor.offline import read_records
from sensor.prefilter import PythonFlowTable
from tests.capturelib import Capture, ether

C, S = "10.1.0.1", "10.2.0.1"
C2 = "10.1.0.2"
C6, S6 = "fd00:1::1", "fd00:2::1"


def every_kind() -> Capture:
    cap = Capture()
    for seq in (1, 2):                                   # ping
        cap._add(ether() / IP(src=C, dst=S) / ICMP(type=8, id=7, seq=seq) / b"ping")
        cap._add(ether() / IP(src=S, dst=C) / ICMP(type=0, id=7, seq=seq) / b"ping")
    for src, dst, kind, code in ((C2, S, 8, 0), (S, C2, 0, 0), (C2, S, 13, 0), (S, C2, 3, 3), (S, C2, 3, 1)):
        cap._add(ether() / IP(src=src, dst=dst) / ICMP(type=kind, code=code) / b"icmp")   # several types a side
    cap._add(ether() / IPv6(src=C6, dst=S6) / ICMPv6EchoRequest(id=3) / b"v6")
    cap._add(ether() / IPv6(src=S6, dst=C6) / ICMPv6EchoReply(id=3) / b"v6")
    cap.tcp((C, 40001), (S, 23)).syn().rst("s")         # a refused connection
    cap.udp((C, 40002), (S, 7777), b"hello, unselected")  # an unselected UDP exchange
    cap.udp((S, 7777), (C, 40002), b"hi")
    cap.udp((S, 7777), (C, 40002), b"again")
    conv = cap.tcp((C, 40003), (S, 8443)).handshake().send("c", b"A" * 3, b"B" * 20)
    conv.send("s", b"response bytes")
    conv.seq["c"] -= 20
    conv.send("c", b"B" * 20)                            # a retransmission: counted once in databytes
    conv.close()
    for isn in (1000, 9000):                             # port reuse: a new SYN after the close, no idle between
        reuse = cap.tcp((C, 40005), (S, 8005))
        reuse.seq["c"] = isn
        reuse.handshake().send("c", b"x" * (isn // 1000)).close()
    cap._add(ether() / IP(src=C, dst=S) / SCTP(sport=40004, dport=2905) / SCTPChunkInit())
    cap._add(ether() / IP(src=C, dst=S) / SCTP(sport=40004, dport=2905)
             / SCTPChunkData(beginning=1, ending=1, data=b"sctp message"))
    cap._add(ether() / IP(src=C, dst="224.0.0.5", proto=89) / b"\x02\x01\x00\x2c ospf hello")
    cap._add(ether() / IP(src=S, dst=C, proto=50) / b"\0\0\0\1\0\0\0\1esp payload")
    arp = Ether(src="02:00:00:00:00:0a", dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="192.168.9.1", pdst="192.168.9.2")
    for src, dst in ((C2, S), (S, C2)):                  # no IP inside VXLAN: Arkime's "other" session, outer addresses
        cap._add(ether() / IP(src=src, dst=dst) / UDP(sport=50000, dport=4789) / VXLAN(vni=7, flags=0x08) / arp)
    for src, group in ((C, "239.1.1.1"), (C, "239.2.2.2"), (S, "224.0.0.22")):   # IGMP: one session in Arkime
        cap._add(ether() / IP(src=src, dst=group, proto=2) / b"\x16\x00\x00\x00\xef\x01\x01\x01")
    return cap


@pytest.fixture
def capture(tmp_path):
    return every_kind().write(tmp_path / "kinds.pcap")


def by_flow(records: list[dict]) -> dict[tuple, dict]:
    out = {}
    for r in records:
        ends = sorted(((r["source"]["ip"], r["source"].get("port")), (r["destination"]["ip"],
                                                                      r["destination"].get("port"))))
        out[(r["ipProtocol"], *ends, r["firstPacket"])] = r
    return out


def nothing_selected() -> RuleSet:
    return RuleSet().add_specs(["tcp:1"])


def assert_same_as_every_packet(capture, frame_filter) -> dict[tuple, dict]:
    unfiltered = by_flow(read_records([capture]))
    from_counters = by_flow(read_records([capture], frame_filter=frame_filter))
    assert from_counters.keys() == unfiltered.keys()
    for flow, expected in unfiltered.items():
        assert core_differences(expected, from_counters[flow]) == [], flow
        assert from_counters[flow]["xdpsensor"]["delivered"] == 0
    assert {r["ipProtocol"] for r in from_counters.values()} == {1, 2, 6, 17, 50, 58, 89, 132}
    return from_counters


def test_every_kind_of_flow_has_the_record_every_packet_gives(capture):
    records = assert_same_as_every_packet(capture, PythonFlowTable(nothing_selected()))
    ping = next(r for r in records.values() if r["ipProtocol"] == 1)
    assert (ping["source"]["ip"], ping["source"]["packets"], ping["destination"]["packets"]) == (C, 2, 2)
    assert ping["icmp"] == {"type": [0, 8], "code": [0]}
    [several] = [r for r in records.values() if r["ipProtocol"] == 1 and r["source"]["ip"] == C2]
    assert several["icmp"] == {"type": [0, 3, 8, 13], "code": [0, 1, 3]}
    [tunnel] = [r for r in records.values() if r["ipProtocol"] == 17 and r["source"]["ip"] == C2]
    assert (tunnel["source"]["packets"], tunnel["destination"]["packets"], tunnel["destination"]["port"]) == (2, 0, 0)
    assert "community_id" not in tunnel["network"]
    reused = sorted((r["firstPacket"], r["client"]["bytes"]) for r in records.values()
                    if r.get("destination", {}).get("port") == 8005)
    assert [client_bytes for _, client_bytes in reused] == [1, 9]
    refused = next(r for r in records.values() if r.get("destination", {}).get("port") == 23)
    assert refused["tcpflags"]["syn"] == 1 and refused["tcpflags"]["rst"] == 1
    tcp = next(r for r in records.values() if r["destination"].get("port") == 8443)
    assert (tcp["client"]["bytes"], tcp["server"]["bytes"]) == (23, 14) and tcp["srcPayload8"] == b"AAABBBBB".hex()
    assert tcp["xdpsensor"]["endReason"] == "shutdown"
    sctp = next(r for r in records.values() if r["ipProtocol"] == 132)
    assert sctp["destination"]["port"] == 2905 and sctp["srcPayload8"] == b"sctp mes".hex()
    ospf = next(r for r in records.values() if r["ipProtocol"] == 89)   # Arkime's "other" session
    assert "community_id" not in ospf["network"] and ospf["client"]["bytes"] == 0
    assert ospf["source"]["bytes"] > 0
    [igmp] = [r for r in records.values() if r["ipProtocol"] == 2]
    assert (igmp["source"]["ip"], igmp["destination"]["ip"]) == (C, "239.1.1.1")
    assert (igmp["source"]["packets"], igmp["destination"]["packets"]) == (3, 0)


@pytest.mark.kernel
def test_the_kernel_gives_the_same_records(capture):
    program = SensorProgram(ProgramOptions())
    try:
        program.set_rules(nothing_selected())
        assert_same_as_every_packet(capture, program)
    finally:
        program.close()


def test_a_flow_idle_past_its_timeout_ends_and_the_next_packet_starts_another(tmp_path):
    cap = Capture()
    cap.udp((C, 40010), (S, 9999), b"first")
    conv = cap.tcp((C, 40011), (S, 8000)).handshake().close()
    for _ in range(70):                                  # other traffic, one packet a second
        cap.clock += 1.0
        cap.udp((C, 40012), (S, 9998), b"tick")
    cap.udp((C, 40010), (S, 9999), b"second")
    path = cap.write(tmp_path / "idle.pcap")
    records = read_records([path], frame_filter=PythonFlowTable(nothing_selected()))
    on_9999 = sorted((r["firstPacket"], r["xdpsensor"]["endReason"]) for r in records
                     if r["destination"]["port"] == 9999)
    assert [reason for _, reason in on_9999] == ["timeout", "shutdown"]
    [closed] = [r for r in records if r["destination"]["port"] == 8000]
    assert closed["xdpsensor"]["endReason"] == "fin" and conv is not None
    assert by_flow(records).keys() == by_flow(read_records([path])).keys()


def test_end_reasons_follow_arkimes_timeouts():
    key, state = make_key(6, (C, 40000), (S, 80)), FlowState()
    timeouts = FlowTimeouts()
    state.last_ns = 10**9
    assert end_reason(key, state, 10**9 + 479 * 10**9, timeouts) is None
    assert end_reason(key, state, 10**9 + 481 * 10**9, timeouts) == "timeout"
    state.flags = FlowFlag.FIN_LO | FlowFlag.FIN_HI
    assert end_reason(key, state, 10**9 + 6 * 10**9, timeouts) == "fin"
    state.flags = FlowFlag.FIN_LO
    assert end_reason(key, state, 10**9 + 6 * 10**9, timeouts) is None
    state.flags = FlowFlag.RST
    assert end_reason(key, state, 10**9 + 6 * 10**9, timeouts) == "rst"
    icmp = make_key(1, (C, 0), (S, 0))
    assert end_reason(icmp, FlowState(last_ns=0), 11 * 10**9, timeouts) == "timeout"


def test_expiry_attention_takes_every_flow_that_ended_and_only_few_others():
    timeouts, now = FlowTimeouts(), 1000 * 10**9
    attention = Attention(now, timeouts, packets=10_000, span_ns=480 * 10**9)
    taken = left = 0
    for proto, port in ((6, 80), (17, 53), (1, 0), (132, 9), (47, 0)):
        key = make_key(proto, (C, 40000 + port if port else 0), (S, port))
        for flags in (0, FlowFlag.FIN_LO, FlowFlag.FIN_LO | FlowFlag.FIN_HI, FlowFlag.RST):
            for idle_s in (0, 4, 6, 9, 11, 59, 61, 479, 481):
                state = FlowState(last_ns=now - idle_s * 10**9, first_ns=now - 500 * 10**9 if proto != 6 else 0,
                                  flags=flags)
                wanted = attention.wants(proto, flags, 1, state.first_ns, state.last_ns)
                if end_reason(key, state, now, timeouts) is not None:
                    assert wanted, (proto, flags, idle_s)
                taken += wanted
                left += not wanted
    assert left > taken / 2     # it does sort: the quiet-but-live flows stay out
    # A live flow is still taken when it may be due a mid-session record.
    assert attention.wants(17, 0, 10_000, now - 10**9, now)
    assert attention.wants(6, 0, 2, now - 481 * 10**9, now)
    assert not attention.wants(6, 0, 2, now - 100 * 10**9, now)


def test_a_flow_session_takes_the_kernels_client_and_sides():
    key = make_key(17, (S, 53), (C, 40000))
    state = FlowState(first_ns=2 * 10**9, last_ns=3 * 10**9)
    lo_is_client = bytes(key.addr[:4]) == bytes((10, 1, 0, 1))
    state.client = 0 if lo_is_client else 1
    state.packets[state.client], state.packets[1 - state.client] = 3, 1
    session = flow_session(key, state, 1, clock_offset_ns=1_700_000_000 * 10**9)
    assert (session.client_ip, session.client_port, session.server_port) == (C, 40000, 53)
    assert session.packets == [3, 1] and session.first_ts == 1_700_000_002.0


def server_speaks_first() -> Capture:
    """An SMTP-like exchange: the server's greeting passes before the client's
    first bytes select the flow; then a long reply after the plugin-free
    pipeline would have bypassed it."""
    cap = Capture()
    conv = cap.tcp((C, 40020), (S, 2525)).handshake()
    conv.send("s", b"220 greeting from the server\r\n")
    conv.send("c", b"EHLO client\r\n")
    conv.send("s", b"250 ok\r\n", b"250 more\r\n")
    conv.close()
    return cap


@pytest.mark.parametrize("bypass", [False, True])
def test_a_flow_selected_after_the_other_sides_payload_counts_it(tmp_path, bypass):
    path = server_speaks_first().write(tmp_path / "late.pcap")
    rules = RuleSet().add_specs(prefixes=["tcp:0:EHLO"])
    [plain] = read_records([path])
    [late] = read_records([path], frame_filter=PythonFlowTable(rules), bypass=bypass)
    assert late["xdpsensor"]["delivered"] > 0          # selected, not a kernel-only record
    assert core_differences(plain, late) == []
    assert late["dstPayload8"] == b"220 gree".hex()


def test_port_reuse_after_a_long_connection_keeps_its_mid_session_records_apart(tmp_path):
    cap = Capture()
    first = cap.tcp((C, 40020), (S, 8020)).handshake()
    for _ in range(9):                                   # past Arkime's tcpSaveTimeout: a mid-session record
        cap.clock += 100.0
        first.send("c", b"tick")
    first.close()
    first_frames = len(cap.frames)
    second = cap.tcp((C, 40020), (S, 8020))
    second.seq["c"] = 90000
    second.handshake().send("c", b"again").close()
    path = cap.write(tmp_path / "reuse.pcap")
    records = read_records([path], frame_filter=PythonFlowTable(nothing_selected()))
    packets: dict[str, list[int]] = {}
    for r in records:
        packets.setdefault(r.get("rootId") or r["xdpsensor"]["sessionId"], []).append(r["network"]["packets"])
    assert sorted(map(sum, packets.values())) == sorted([first_frames, len(cap.frames) - first_frames])
    assert sorted(map(len, packets.values())) == [1, 2]   # the first connection: a mid-session record and its last
