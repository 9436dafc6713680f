"""Every kind of flow has a record live, from the kernel's counters alone: a
ping, a TCP connection to a closed port, an unselected UDP exchange and SCTP
(when the kernel has it). The sensor runs with no rule, so nothing crosses
to userspace; each record's per-direction packets, bytes and databytes must
equal what AF_PACKET sockets on the sensor's interfaces saw arrive."""
from __future__ import annotations

import socket
import struct
from collections import Counter
from pathlib import Path

import pytest

from sensor.labtraffic import TIMEOUT, udp_exchange
from sensor.netns import in_netns
from tests.lab.oracle import IngressFrames
from tests.lab.test_live import records, start_sensor, stop_sensor

pytestmark = pytest.mark.lab

ICMP, TCP, UDP, SCTP = 1, 6, 17, 132
PINGS = 3


def ingress_counts(oracle: IngressFrames) -> dict[tuple[int, str, str], Counter]:
    """Per (protocol, src ip, dst ip): packets, frame bytes and Arkime's
    databytes (ICMP: the whole message; UDP: the datagram's payload; SCTP:
    what follows its common header; TCP here carries none)."""
    seen: dict[tuple[int, str, str], Counter] = {}
    for frame in oracle.frames():
        ihl = (frame[14] & 0x0F) * 4
        total = struct.unpack_from("!H", frame, 16)[0]
        proto = frame[23]
        l4 = total - ihl
        data = {ICMP: l4, UDP: l4 - 8, SCTP: l4 - 12}.get(proto, 0)
        key = (proto, socket.inet_ntoa(frame[26:30]), socket.inet_ntoa(frame[30:34]))
        seen.setdefault(key, Counter()).update(packets=1, bytes=len(frame), data=data)
    return seen

def _ping(lab, count: int) -> int:
    """Echo requests from the client to the server with a raw socket; the replies received."""
    with in_netns(lab.client):
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.settimeout(TIMEOUT)
    replies = 0
    try:
        for seq in range(1, count + 1):
            body = struct.pack("!HH", 0x4242, seq) + b"xdpsensor ping"
            header = struct.pack("!BBH", 8, 0, 0) + body
            sock.sendto(struct.pack("!BBH", 8, 0, _checksum(header)) + body, (lab.server_ip, 0))
            for _ in range(8):                  # bounded: skip our own request if the socket sees it
                reply, _ = sock.recvfrom(65535)
                if reply[20] == 0 and reply[24:28] == body[:4]:
                    replies += 1
                    break
    finally:
        sock.close()
    return replies


def _checksum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF


def _refused(lab, port: int) -> None:
    with in_netns(lab.client):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    try:
        with pytest.raises(ConnectionRefusedError):
            sock.connect((lab.server_ip, port))
    finally:
        sock.close()


def _sctp_socket(family: int = socket.AF_INET) -> socket.socket:
    try:
        return socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    except OSError as e:
        pytest.skip(f"this kernel has no SCTP sockets ({e.strerror})")


def _sctp_exchange(lab, port: int, message: bytes) -> bytes:
    with in_netns(lab.server):
        listener = _sctp_socket()
        listener.bind((lab.server_ip, port))
        listener.listen(1)
    with in_netns(lab.client):
        client = _sctp_socket()
    listener.settimeout(TIMEOUT)
    client.settimeout(TIMEOUT)
    try:
        client.connect((lab.server_ip, port))
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(TIMEOUT)
            client.sendall(message)
            got = conn.recv(65535)
            conn.sendall(b"ack " + got)
            return client.recv(65535)
    finally:
        client.close()
        listener.close()


def _record(recs: list[dict], proto: int, lab, port: int | None = None) -> dict:
    """The one record of the flow between the lab's client and server (the lab's own
    neighbour discovery has records too)."""
    found = [r for r in recs if r["ipProtocol"] == proto
             and {r["source"]["ip"], r["destination"]["ip"]} == {lab.client_ip, lab.server_ip}
             and port in (None, r["destination"].get("port"))]
    assert len(found) == 1, found
    return found[0]


def _assert_counts(rec: dict, seen: dict, lab) -> None:
    """Each direction's packets, bytes and databytes equal what the oracle saw;
    the client is the lab's client."""
    proto = rec["ipProtocol"]
    assert rec["source"]["ip"] == lab.client_ip and rec["xdpsensor"]["delivered"] == 0
    up, down = seen[(proto, lab.client_ip, lab.server_ip)], seen[(proto, lab.server_ip, lab.client_ip)]
    assert (rec["source"]["packets"], rec["source"]["bytes"], rec["client"]["bytes"]) == \
        (up["packets"], up["bytes"], up["data"])
    assert (rec["destination"]["packets"], rec["destination"]["bytes"], rec["server"]["bytes"]) == \
        (down["packets"], down["bytes"], down["data"])


def _run(lab, tmp_path: Path, traffic) -> tuple[list[dict], dict]:
    """The sensor with no rule (every record from the kernel's counters), `traffic` through it."""
    out = tmp_path / "flows.jsonl"
    proc = start_sensor(lab, out, "--no-default-plugins")
    oracle = IngressFrames(lab)
    try:
        traffic()
    finally:
        err = stop_sensor(proc)
    seen = ingress_counts(oracle)
    recs = records(out)
    assert recs, err
    return recs, seen


def test_a_ping_has_a_record_with_the_packets_on_the_wire(lab, tmp_path):
    replies = []
    recs, seen = _run(lab, tmp_path, lambda: replies.append(_ping(lab, PINGS)))
    assert replies == [PINGS]
    rec = _record(recs, ICMP, lab)
    assert seen[(ICMP, lab.client_ip, lab.server_ip)]["packets"] == PINGS
    _assert_counts(rec, seen, lab)
    assert rec["icmp"]["type"] == [0, 8] and rec["icmp"]["code"] == [0]
    assert rec["network"]["community_id"].startswith("1:")


def test_a_refused_connection_and_an_unselected_udp_exchange_have_records(lab, tmp_path):
    def traffic() -> None:
        _refused(lab, 9)
        assert udp_exchange(lab, 9998, [b"first", b"second one"], b"reply") == 2

    recs, seen = _run(lab, tmp_path, traffic)
    refused = _record(recs, TCP, lab, 9)
    _assert_counts(refused, seen, lab)
    assert refused["tcpflags"]["syn"] == 1 and refused["tcpflags"]["rst"] == 1
    assert refused["tcpflags"]["syn-ack"] == 0
    udp = _record(recs, UDP, lab, 9998)
    _assert_counts(udp, seen, lab)
    assert (udp["source"]["packets"], udp["destination"]["packets"]) == (2, 2)
    assert udp["srcPayload8"] == b"first".hex() and udp["dstPayload8"] == b"reply".hex()


def test_an_sctp_association_has_a_record(lab, tmp_path):
    _sctp_socket().close()                      # skips when the kernel has no SCTP
    answers = []
    recs, seen = _run(lab, tmp_path, lambda: answers.append(_sctp_exchange(lab, 2905, b"sctp message")))
    assert answers == [b"ack sctp message"]
    _assert_counts(_record(recs, SCTP, lab, 2905), seen, lab)
