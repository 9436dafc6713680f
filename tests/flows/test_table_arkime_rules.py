"""SessionTable rules taken from Arkime's tcp.c / packet.c, checked on hand-built packets.

Each case is the packet sequence of a situation Arkime's test captures contain
(named in the docstring), with the outcome Arkime's saved session shows."""
from __future__ import annotations

from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether

from sensor.flows.events import PayloadDelivered, SessionEnded, SessionStarted
from sensor.flows.table import SessionTable, arkime_seq_diff
from sensor.packet import Packet, decode_frame

C_IP, C_PORT, S_IP, S_PORT = "192.168.235.1", 53648, "192.168.235.136", 8089
FLAGS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10}


def tcp(ts: float, flags: str, seq: int, ack: int = 0, payload: bytes = b"", *, reply: bool = False) -> Packet:
    src, sport, dst, dport = (S_IP, S_PORT, C_IP, C_PORT) if reply else (C_IP, C_PORT, S_IP, S_PORT)
    return Packet(ts, 54 + len(payload), (), 4, src, dst, 6, 64, sport, dport,
                  sum(FLAGS[f] for f in flags), seq, ack, 1000, payload)


def udp(ts: float, payload: bytes, *, reply: bool = False, sport: int = 5000) -> Packet:
    src, dst, ports = ("10.0.0.2", "10.0.0.1", (53, sport)) if reply else ("10.0.0.1", "10.0.0.2", (sport, 53))
    return Packet(ts, 42 + len(payload), (), 4, src, dst, 17, 64, *ports, payload=payload)


def run(table: SessionTable, packets: list[Packet]) -> list[object]:
    return [event for packet in packets for event in table.process(packet)]


def handshake(t: float = 1.0) -> list[Packet]:
    return [tcp(t, "S", 100), tcp(t + 0.01, "SA", 500, 101, reply=True), tcp(t + 0.02, "A", 101, 501)]


def test_a_fin_acknowledged_on_one_side_does_not_close() -> None:
    """CVE-2018-6794: the server sends data and FIN, the client ACKs; 18 s later
    the client's FIN and RST still belong to the same session."""
    table = SessionTable()
    events = run(table, handshake() + [
        tcp(1.1, "PA", 501, 101, b"HTTP/1.1 200", reply=True),
        tcp(1.2, "FA", 513, 101, reply=True),
        tcp(1.3, "A", 101, 514),
        tcp(19.0, "FA", 101, 514),
        tcp(19.1, "RA", 102, 514),
    ])
    assert [type(e) for e in events].count(SessionStarted) == 1
    (session,) = table
    assert (session.packets, session.closing_reason) == ([5, 3], None)
    assert (session.tcpflags["fin"], session.tcpflags["rst"]) == (2, 1)
    assert table.expire(25.0) == []  # still open: the idle TCP timeout applies, not the closing one


def test_both_fins_acknowledged_mark_the_session_for_close() -> None:
    table = SessionTable()
    run(table, handshake() + [tcp(2.0, "FA", 101, 501), tcp(2.1, "FA", 501, 102, reply=True)])
    (session,) = table
    assert session.closing_reason is None  # the server's FIN is not acknowledged yet
    run(table, [tcp(2.2, "A", 102, 502)])
    assert session.closing_reason == "fin"
    assert table.expire(7.1) == []
    (ended,) = table.expire(7.2)
    assert (ended.session is session, ended.reason) == (True, "fin")


def test_rst_at_the_expected_sequence_number_closes() -> None:
    table = SessionTable()
    run(table, handshake() + [tcp(2.0, "RA", 101, 501)])
    (session,) = table
    assert session.closing_reason == "rst"


def test_rst_ahead_of_the_stream_is_only_counted() -> None:
    """Its other flags are not counted either: Arkime returns before counting them."""
    table = SessionTable()
    run(table, handshake() + [tcp(2.0, "RPA", 5000, 501)])
    (session,) = table
    assert (session.closing_reason, session.tcpflags["rst"], session.tcpflags["psh"]) == (None, 1, 0)


def test_rst_behind_the_stream_counts_as_its_side_closed() -> None:
    table = SessionTable()
    run(table, handshake() + [tcp(2.0, "PA", 101, 501, b"abcd"), tcp(2.1, "R", 101)])
    (session,) = table
    assert session.closing_reason is None
    run(table, [tcp(2.2, "FA", 501, 105, reply=True), tcp(2.3, "A", 105, 502)])
    assert session.closing_reason == "fin"


def test_mid_stream_data_reaches_plugins_but_is_not_counted() -> None:
    """single-packets: Arkime saves client.bytes 0 and no srcPayload8 without a SYN."""
    table = SessionTable()
    events = run(table, [tcp(1.0, "PA", 9000, 7000, b"GET / HTTP/1.1\r\n")])
    session = events[0].session
    assert [e.data for e in events if isinstance(e, PayloadDelivered)] == [b"GET / HTTP/1.1\r\n"]
    assert (session.databytes, session.first_payload) == ([0, 0], [b"", b""])
    assert "mid-stream" in session.tags


def test_server_stream_starts_at_its_first_packet_when_the_syn_ack_is_missing() -> None:
    table = SessionTable()
    events = run(table, [tcp(1.0, "S", 100), tcp(1.1, "A", 101, 700), tcp(1.2, "PA", 700, 101, b"hello", reply=True)])
    session = events[0].session
    assert (session.databytes, session.first_payload) == ([0, 5], [b"", b"hello"])


def test_data_on_a_syn_is_delivered_but_not_counted() -> None:
    """tcpseq_synthetic: Arkime counts no bytes carried by a SYN."""
    table = SessionTable()
    events = run(table, [tcp(1.0, "S", 100, 0, b"fastopen"), tcp(1.1, "PA", 109, 0, b"next")])
    session = events[0].session
    assert [e.data for e in events if isinstance(e, PayloadDelivered)] == [b"fastopen", b"next"]
    assert (session.databytes, session.first_payload) == ([4, 0], [b"next", b""])


def test_last_packet_is_the_last_processed_not_the_latest() -> None:
    """dns-flags0110: the answer was captured before the query it answers."""
    table = SessionTable()
    run(table, [udp(10.363, b"answer", reply=True), udp(10.327, b"query")])
    (session,) = table
    assert (session.first_ts, session.last_ts) == (10.363, 10.327)


def test_udp_payload8_comes_from_the_first_datagram_only() -> None:
    """tftp_rrq: dstPayload8 is "00040001", the first 4-byte ACK, not two of them."""
    table = SessionTable()
    run(table, [udp(1.0, b"\x00\x01file\x00octet\x00"), udp(1.1, b"\x00\x04\x00\x01", reply=True),
                udp(1.2, b"\x00\x04\x00\x02", reply=True)])
    (session,) = table
    assert session.first_payload == [b"\x00\x01file\x00o", b"\x00\x04\x00\x01"]
    assert session.databytes == [13, 8]


def test_a_flow_resuming_after_silence_is_split_only_when_other_traffic_moved_the_clock() -> None:
    """bacnet-stack-services: the flow whose packet ends a long silence keeps its
    session; a flow idle past its timeout while others spoke starts a new one."""
    table = SessionTable()
    run(table, [udp(100.0, b"a", sport=1), udp(100.5, b"b", sport=2)])
    events = run(table, [udp(200.0, b"c", sport=1), udp(200.1, b"d", sport=2)])
    kinds = [(type(e).__name__, e.session.client_port) for e in events]
    assert kinds == [("PayloadDelivered", 1), ("SessionEnded", 2), ("SessionStarted", 2), ("PayloadDelivered", 2)]


def test_arkime_sequence_difference_keeps_its_wrap_rules() -> None:
    assert arkime_seq_diff(100, 150) == 50
    assert arkime_seq_diff(0xFFFFFFF0, 0x10) == 0xFFFFFFF0 + 0x100000000 - 0x10
    assert arkime_seq_diff(0x10, 0xFFFFFFF0) == 0x10 - 0xFFFFFFF0 - 0x100000000
    assert arkime_seq_diff(0x90000000, 0) == -0x90000000  # no wrap between these: plain b - a


def test_port_reuse_needs_a_new_isn_on_a_finished_session() -> None:
    table = SessionTable()
    run(table, handshake() + [tcp(2.0, "FA", 101, 501), tcp(2.1, "FA", 501, 102, reply=True),
                              tcp(2.2, "A", 102, 502)])
    events = table.process(tcp(3.0, "S", 9000))
    assert [type(e) for e in events] == [SessionEnded, SessionStarted]
    assert events[0].reason == "fin"


def test_sctp_payload8_is_the_start_of_the_first_message() -> None:
    """sctp-www: srcPayload8 "GET / HT" from the first DATA chunk that begins a message."""
    def chunk(kind: int, flags: int, body: bytes) -> bytes:
        raw = bytes([kind, flags]) + (4 + len(body)).to_bytes(2, "big") + body
        return raw + b"\x00" * (-len(raw) % 4)

    data_header = (7).to_bytes(4, "big") + b"\x00\x00\x00\x00" + (0).to_bytes(4, "big")  # TSN, stream, seq, PPID
    sack = chunk(3, 0, b"\x00" * 12)
    middle = chunk(0, 0x00, data_header + b"not the start")
    first = chunk(0, 0x03, data_header + b"GET / HTTP/1.1\r\n")
    table = SessionTable()
    for payload in (sack + middle, sack + first):
        table.process(Packet(1.0, 98, (), 4, "10.0.0.1", "10.0.0.2", 132, 64, 32836, 80, payload=payload))
    (session,) = table
    assert session.first_payload == [b"GET / HT", b""]
    assert session.databytes == [len(sack + middle) + len(sack + first), 0]


def test_icmp_databytes_run_to_the_end_of_the_frame() -> None:
    """nbns: Arkime counts an ICMP message to the frame's end (pktlen - payloadOffset),
    so a router solicitation padded to 60 bytes counts 26 databytes, not 8."""
    frame = bytes(Ether() / IP(src="192.168.239.129", dst="224.0.0.2") / ICMP(type=10))
    table = SessionTable()
    table.process(decode_frame(frame + bytes(60 - len(frame)), 1.0))
    (session,) = table
    assert session.databytes == [60 - 14 - 20, 0]
