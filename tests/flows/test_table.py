"""SessionTable: direction rule, states, timeouts, eviction, counters, fragments, and Arkime's captures."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from sensor.capture.pcapfile import read_pcap
from sensor.flows.events import PayloadDelivered, SessionEnded, SessionStarted
from sensor.flows.key import VlanKeying
from sensor.flows.session import Session
from sensor.flows.state import SessionState
from sensor.flows.table import FlowTimeouts, SessionTable
from sensor.packet import Packet, PacketError, decode_frame

ARKIME_PCAPS = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "arkime-pcap"

# The spec's TCP example, whose Community ID is published.
C_IP, C_PORT, S_IP, S_PORT = "128.232.110.120", 34855, "66.35.250.204", 80
SPEC_CID = "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
FLAGS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40, "C": 0x80, "N": 0x100}
HEADERS = 54  # Ethernet + IPv4 + TCP without options: frame_len = HEADERS + payload


def tcp(ts: float, flags: str, seq: int = 0, ack: int = 0, payload: bytes = b"", *, reply: bool = False,
        window: int = 1000, vlan: tuple[int, ...] = ()) -> Packet:
    src, sport, dst, dport = (S_IP, S_PORT, C_IP, C_PORT) if reply else (C_IP, C_PORT, S_IP, S_PORT)
    bits = sum(FLAGS[f] for f in flags)
    return Packet(ts, HEADERS + len(payload), vlan, 4, src, dst, 6, 64, sport, dport, bits, seq, ack, window, payload)


def udp(ts: float, src: str, sport: int, dst: str, dport: int, payload: bytes, **fragment: object) -> Packet:
    packet = Packet(ts, 42 + len(payload), (), 4, src, dst, 17, 64, sport, dport, payload=payload)
    for name, value in fragment.items():
        setattr(packet, name, value)
    return packet


def feed(table: SessionTable, packets: list[Packet]) -> list[object]:
    return [event for packet in packets for event in table.process(packet)]


def payloads(events: list[object]) -> list[tuple[int, bytes]]:
    return [(e.direction_index, e.data) for e in events if isinstance(e, PayloadDelivered)]


def test_full_tcp_session_counters_and_states() -> None:
    table = SessionTable()
    states = []
    handshake_and_data = [
        tcp(10.0, "S", 100),
        tcp(10.1, "SA", 500, 101, reply=True),
        tcp(10.2, "A", 101, 501),
        tcp(10.3, "PA", 101, 501, b"GET / HTTP/1.0\r\n\r\n"),
        tcp(10.4, "PA", 501, 119, b"HTTP/1.0 200 OK\r\n", reply=True),
    ]
    events = []
    for packet in handshake_and_data:
        events += table.process(packet)
        states.append(next(iter(table)).state)
    assert states == [SessionState.CONNECTING, SessionState.CONNECTING] + [SessionState.ACTIVE] * 3
    (session,) = [e.session for e in events if isinstance(e, SessionStarted)]
    events += table.process(tcp(10.5, "FA", 119, 518))
    assert session.state is SessionState.ONLY_SERVER
    events += table.process(tcp(10.6, "FA", 518, 120, reply=True))
    assert session.state is SessionState.CLOSED
    events += table.process(tcp(10.7, "A", 120, 519))

    assert (session.client_ip, session.client_port, session.server_ip, session.server_port) == (C_IP, C_PORT, S_IP, S_PORT)
    assert session.community_id == SPEC_CID
    assert session.packets == [5, 3]
    assert session.bytes == [5 * HEADERS + 18, 3 * HEADERS + 17]
    assert session.databytes == [18, 17]
    assert session.first_payload == [b"GET / HT", b"HTTP/1.0"]
    assert session.tcpflags == {"syn": 1, "syn-ack": 1, "ack": 2, "psh": 2, "fin": 2, "rst": 0, "urg": 0,
                                "ece": 0, "cwr": 0, "ae": 0, "srcZero": 0, "dstZero": 0}
    assert payloads(events) == [(0, b"GET / HTTP/1.0\r\n\r\n"), (1, b"HTTP/1.0 200 OK\r\n")]
    assert session.tags == set()
    assert (session.first_ts, session.last_ts, session.created_at) == (10.0, 10.7, 10.0)

    assert table.expire(15.69) == []  # closing timeout is 5 s after the last packet
    (ended,) = table.expire(15.7)
    assert (ended.session is session, ended.reason, session.closed_at, len(table)) == (True, "fin", 15.7, 0)


def test_syn_ack_first_makes_its_destination_the_client() -> None:
    table = SessionTable()
    events = feed(table, [
        tcp(1.0, "SA", 500, 101, reply=True),
        tcp(1.1, "PA", 111, 501, b"late"),  # bytes 101..110 were never seen: a gap
        tcp(1.2, "PA", 101, 501, b"0123456789"),
    ])
    session = events[0].session
    assert (session.client_ip, session.client_port) == (C_IP, C_PORT)
    assert session.packets == [2, 1]
    assert "mid-stream" not in session.tags
    assert payloads(events) == [(0, b"0123456789"), (0, b"late")]


def test_mid_stream_tcp_first_source_is_client() -> None:
    table = SessionTable()
    events = feed(table, [tcp(1.0, "PA", 9000, 7000, b"response", reply=True), tcp(1.1, "A", 7000, 9008)])
    session = events[0].session
    assert (session.client_ip, session.client_port) == (S_IP, S_PORT)  # the first packet's source
    assert session.state is SessionState.ACTIVE
    assert session.tags == {"mid-stream"}
    assert payloads(events) == [(0, b"response")]
    assert session.packets == [1, 1]


def test_udp_direction_delivery_and_timeout() -> None:
    table = SessionTable()
    query = udp(5.0, "10.0.0.1", 5353, "10.0.0.2", 53, b"query-bytes")
    answer = udp(5.1, "10.0.0.2", 53, "10.0.0.1", 5353, b"answer")
    events = feed(table, [query, answer, udp(5.2, "10.0.0.1", 5353, "10.0.0.2", 53, b"")])
    session = events[0].session
    assert (session.client_ip, session.client_port, session.state) == ("10.0.0.1", 5353, SessionState.ACTIVE)
    assert payloads(events) == [(0, b"query-bytes"), (1, b"answer")]
    assert (session.packets, session.databytes, session.first_payload) == ([2, 1], [11, 6], [b"query-by", b"answer"])
    assert session.bytes == [42 + 11 + 42, 42 + 6]
    # An idle UDP session ends 60 s after its last packet, on the clock of the packets
    # before: the first packet after the silence (here another flow's) moves the clock,
    # the next one of this flow then starts a new session.
    table.process(udp(65.25, "10.0.0.7", 7, "10.0.0.8", 8, b"other flow"))
    late = table.process(udp(65.3, "10.0.0.2", 53, "10.0.0.1", 5353, b"x"))
    assert [type(e) for e in late] == [SessionEnded, SessionStarted, PayloadDelivered]
    assert (late[0].reason, late[0].session.closed_at) == ("timeout", 65.2)
    assert late[1].session.id > session.id
    assert late[1].session.client_ip == "10.0.0.2"


def test_packet_after_silence_joins_its_session_when_nothing_else_moved_the_clock() -> None:
    """Arkime reading a file: a packet never times out its own session."""
    table = SessionTable()
    (started, _) = table.process(udp(1.0, "10.0.0.1", 5353, "10.0.0.2", 53, b"q"))
    assert [type(e) for e in table.process(udp(500.0, "10.0.0.2", 53, "10.0.0.1", 5353, b"a"))] == [PayloadDelivered]
    assert (started.session.packets, started.session.last_ts) == ([1, 1], 500.0)
    (ended,) = table.expire(561.0)  # expire() with a later time still ends it
    assert (ended.session is started.session, ended.reason) == (True, "timeout")


def test_rst_closes_and_ends_after_closing_timeout() -> None:
    table = SessionTable()
    events = feed(table, [tcp(1.0, "S", 100), tcp(1.1, "RA", 0, 101, reply=True, window=0)])
    session = events[0].session
    assert session.state is SessionState.CLOSED
    assert (session.tcpflags["rst"], session.tcpflags["dstZero"], session.tcpflags["ack"]) == (1, 0, 0)
    assert table.process(tcp(4.0, "A", 101, 1)) == []  # still the same session 2.9 s later
    assert session.packets == [2, 1]
    (ended,) = table.expire(9.0)
    assert (ended.reason, ended.session.closed_at) == ("rst", 9.0)


def test_new_syn_on_closing_session_is_port_reuse() -> None:
    table = SessionTable()
    feed(table, [tcp(1.0, "S", 100), tcp(1.1, "SA", 500, 101, reply=True), tcp(1.2, "FA", 101, 501),
                 tcp(1.3, "FA", 501, 102, reply=True)])
    retransmitted_syn = table.process(tcp(1.4, "S", 100))
    assert retransmitted_syn == []  # same ISN: a late copy of the original SYN
    events = table.process(tcp(1.5, "S", 77777))
    assert [type(e) for e in events] == [SessionEnded, SessionStarted]
    assert (events[0].reason, events[0].session.closed_at, events[0].session.packets) == ("fin", 1.5, [3, 2])
    assert events[1].session.state is SessionState.CONNECTING


def test_tcp_idle_timeout_and_expire_order() -> None:
    table = SessionTable(FlowTimeouts(tcp=480.0, udp=60.0))
    table.process(tcp(0.0, "S", 1))
    table.process(udp(100.0, "10.1.1.1", 1, "10.1.1.2", 2, b"u"))
    assert table.expire(159.9) == []
    (udp_end,) = table.expire(160.0)
    assert (udp_end.reason, udp_end.session.ip_protocol) == ("timeout", 17)
    assert table.expire(479.99) == []
    (tcp_end,) = table.expire(480.0)
    assert (tcp_end.reason, tcp_end.session.ip_protocol, tcp_end.session.closed_at) == ("timeout", 6, 480.0)


def test_eviction_of_least_recently_seen_session() -> None:
    table = SessionTable(max_sessions=2)
    first = table.process(udp(1.0, "10.0.0.1", 1, "10.0.0.9", 9, b"a"))[0].session
    second = table.process(udp(2.0, "10.0.0.2", 2, "10.0.0.9", 9, b"b"))[0].session
    table.process(udp(3.0, "10.0.0.1", 1, "10.0.0.9", 9, b"a"))  # first is now the most recent
    events = table.process(udp(4.0, "10.0.0.3", 3, "10.0.0.9", 9, b"c"))
    assert [type(e) for e in events] == [SessionEnded, SessionStarted, PayloadDelivered]
    assert (events[0].session is second, events[0].reason, table.evicted, len(table)) == (True, "evicted", 1, 2)
    assert first.closed_at is None


def test_close_all_reports_shutdown() -> None:
    table = SessionTable()
    table.process(tcp(1.0, "S", 1))
    table.process(udp(2.0, "10.0.0.1", 1, "10.0.0.2", 2, b"x"))
    ended = table.close_all()
    assert [(e.reason, e.session.state, e.session.closed_at) for e in ended] == [
        ("shutdown", SessionState.CLOSED, 1.0), ("shutdown", SessionState.CLOSED, 2.0)]
    assert len(table) == 0


def test_reassembled_payload_and_retransmits_in_counters() -> None:
    table = SessionTable()
    events = feed(table, [
        tcp(1.0, "S", 100), tcp(1.1, "SA", 500, 101, reply=True), tcp(1.2, "A", 101, 501),
        tcp(1.3, "PA", 511, 101, b"WORLD", reply=True),
        tcp(1.4, "PA", 501, 101, b"HELLO" + b"_" * 5, reply=True),
        tcp(1.5, "PA", 501, 101, b"HELLO", reply=True),  # retransmit
    ])
    assert payloads(events) == [(1, b"HELLO_____"), (1, b"WORLD")]
    session = events[0].session
    assert session.databytes == [0, 15]
    assert session.packets == [2, 4]


def test_out_of_order_bound_tags_incomplete_tcp() -> None:
    table = SessionTable(max_ooo_segments=2)
    events = feed(table, [tcp(1.0, "S", 100)] + [tcp(1.1 + n, "PA", 200 + n, 1, b"x") for n in range(3)])
    session = events[0].session
    assert "incomplete-tcp" in session.tags
    assert payloads(feed(table, [tcp(5.0, "PA", 101, 1, b"in order")])) == []


def test_flag_counting_rules() -> None:
    table = SessionTable()
    events = feed(table, [
        tcp(1.0, "SEC", 1, window=0),  # ECN-setup SYN with zero window
        tcp(1.1, "SAE", 9, 2, reply=True),
        tcp(1.2, "AU", 2, 10, window=0),
        tcp(1.3, "AN", 2, 10),
        tcp(1.4, "RA", 2, 10, window=0),  # RST: zero window not counted
        tcp(1.5, "PA", 10, 2, b"data", reply=True, window=0),
    ])
    assert events[0].session.tcpflags == {"syn": 1, "syn-ack": 1, "ack": 2, "psh": 1, "fin": 0, "rst": 1, "urg": 1,
                                          "ece": 2, "cwr": 1, "ae": 1, "srcZero": 2, "dstZero": 1}


def test_icmp_session_community_id_uses_type_and_code() -> None:
    table = SessionTable()
    echo = Packet(1.0, 98, (), 4, "192.168.0.89", "192.168.0.1", 1, 64, payload=b"\x08\x00\xf7\xff\x00\x01\x00\x01")
    (started,) = table.process(echo)
    assert started.session.community_id == "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="
    assert (started.session.databytes, started.session.first_payload) == ([8, 0], [b"", b""])


def test_vlan_ids_are_collected_and_optionally_keyed() -> None:
    table = SessionTable()
    feed(table, [tcp(1.0, "S", 1, vlan=(10,)), tcp(1.1, "SA", 5, 2, reply=True, vlan=(20,))])
    (session,) = table
    assert (session.vlan, session.packets) == ((10, 20), [1, 1])
    split = SessionTable(vlan_key=VlanKeying())
    feed(split, [tcp(1.0, "S", 1, vlan=(10, 7)), tcp(1.1, "SA", 5, 2, reply=True, vlan=(20, 7))])
    assert len(split) == 2
    collapsed = SessionTable(vlan_key=VlanKeying({10: 0, 20: 0}))    # Arkime's [vlan-vni-collapse]
    feed(collapsed, [tcp(1.0, "S", 1, vlan=(10,)), tcp(1.1, "SA", 5, 2, reply=True, vlan=(20,)),
                     tcp(1.2, "A", 2, 6, vlan=(7, 10))])
    assert sorted(s.packets[0] + s.packets[1] for s in collapsed) == [1, 2]


def _run_capture(path: Path) -> list[Session]:
    table = SessionTable()
    ended: list[Session] = []
    for record in read_pcap(path):
        try:
            packet = decode_frame(record.data, record.timestamp, record.linktype, record.wire_len)
        except PacketError:
            continue
        ended += [e.session for e in table.process(packet) if isinstance(e, SessionEnded)]
    return ended + [e.session for e in table.close_all()]


def _core(body: dict) -> tuple:
    src, dst = body["source"], body["destination"]
    flags = body.get("tcpflags")
    return (src["ip"], src["port"], dst["ip"], dst["port"], src["packets"], dst["packets"], src["bytes"],
            dst["bytes"], body.get("client", {}).get("bytes", 0), body.get("server", {}).get("bytes", 0),
            body["network"]["community_id"], flags, body.get("srcPayload8"), body.get("dstPayload8"))


def _ours(s: Session) -> tuple:
    flags = dict(s.tcpflags) if s.ip_protocol == 6 else None
    return (s.client_ip, s.client_port, s.server_ip, s.server_port, *s.packets, *s.bytes, *s.databytes,
            s.community_id, flags, s.first_payload[0].hex() or None, s.first_payload[1].hex() or None)


@pytest.mark.skipif(not ARKIME_PCAPS.is_dir(), reason=f"Arkime test captures not found at {ARKIME_PCAPS}")
@pytest.mark.parametrize("name", [
    "http-301-get", "dns-udp", "dns-tcp", "aerospike", "ssh2", "mysql-allow", "postgres-good", "padded-udp",
    "tcp-reassembly-synthetic", "mongo", "tls13", "curl-enabled-tls13", "radius", "bt-udp", "bigendian",
])
def test_core_fields_match_arkime(name: str) -> None:
    """Endpoints, packets, bytes, databytes, community id, TCP flags and payload8 as Arkime saved them."""
    expected = json.loads((ARKIME_PCAPS / f"{name}.test").read_text())["sessions3"]
    assert sorted(_ours(s) for s in _run_capture(ARKIME_PCAPS / f"{name}.pcap")) == sorted(
        _core(doc["body"]) for doc in expected)
