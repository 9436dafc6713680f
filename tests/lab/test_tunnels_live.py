"""End to end through the lab: the kernel's own VXLAN devices in the client
and server namespaces, GRE frames crafted and sent from them (this kernel
has no GRE devices), and datagrams the client's kernel fragments;
the live sensor keys, counts and reassembles the inner flows. The oracle is
an AF_PACKET socket on the sensor's interfaces that reads the outer headers
at fixed offsets (independent of the sensor's decoder)."""
from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest

from sensor import lab as lab_mod
from sensor.labtraffic import wait_attached
from sensor.netns import in_netns
from tests.lab.oracle import IngressFrames

pytestmark = pytest.mark.lab

INNER = ("10.242.0.1", "10.242.0.2")   # client, server inside the tunnel
PORT = 5353


def _ip(ns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True)


@contextmanager
def vxlan(lab):
    """A VXLAN device between the lab's client and server, INNER addressed."""
    ends = ((lab.client, lab.client_ip, lab.server_ip, INNER[0]), (lab.server, lab.server_ip, lab.client_ip, INNER[1]))
    try:
        for ns, local, remote, inner in ends:
            _ip(ns, "link", "add", "tun0", "type", "vxlan", "id", "42", "local", local, "remote", remote,
                "dstport", "4789", "dev", "eth0")
            _ip(ns, "link", "set", "tun0", "addrgenmode", "none")   # no IPv6 chatter inside
            _ip(ns, "addr", "add", f"{inner}/24", "dev", "tun0")
            _ip(ns, "link", "set", "tun0", "up")
        yield
    finally:
        for ns, *_ in ends:
            subprocess.run(["ip", "-n", ns, "link", "del", "tun0"], capture_output=True)


def ingress_counts(oracle: IngressFrames, classify) -> Counter:
    """Ingress frames counted by a caller-given classifier (None: not counted)."""
    return Counter(key for frame in oracle.frames() if (key := classify(frame)) is not None)

def _inner_udp(frame: bytes, inner_ip: int) -> str | None:
    """'c2s'/'s2c' for an IPv4 UDP packet to/from PORT whose IPv4 header starts at `inner_ip`."""
    if len(frame) < inner_ip + 28 or frame[inner_ip] != 0x45 or frame[inner_ip + 9] != 17:
        return None
    sport, dport = struct.unpack_from("!HH", frame, inner_ip + 20)
    return "c2s" if dport == PORT else "s2c" if sport == PORT else None


def start_sensor(lab, out: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sensor", "run", "--netns", lab.sensor, "-i", "to-client", "-i", "to-server",
           "-o", str(out), "--duration", "60", "--no-default-plugins", "--port", f"udp:{PORT}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait_attached(lab):
        proc.kill()
        pytest.fail("sensor did not attach: " + proc.communicate()[1])
    return proc


def stop_sensor(proc: subprocess.Popen) -> str:
    proc.send_signal(2)
    _, err = proc.communicate(timeout=lab_mod.patience(30))
    assert proc.returncode == 0, err
    return err


def exchange(lab, client: str, server: str, sizes: list[int], no_df: bool = False) -> None:
    """Client sends one datagram of each size to server:PORT; the server answers each with b'ok'."""
    with in_netns(lab.server):
        srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        srv.bind((server, PORT))
    with in_netns(lab.client):
        cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if no_df:
            cli.setsockopt(socket.IPPROTO_IP, 10, 0)   # IP_MTU_DISCOVER = IP_PMTUDISC_DONT: the kernel fragments
    for s in (srv, cli):
        s.settimeout(lab_mod.patience(5))
    try:
        for size in sizes:
            cli.sendto(b"x" * size, (server, PORT))
            data, peer = srv.recvfrom(65535)
            assert len(data) == size
            srv.sendto(b"ok", peer)
            cli.recvfrom(100)
    finally:
        srv.close()
        cli.close()


def _the_record(out: Path, client: str, server: str) -> dict:
    records = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    mine = [r for r in records if r["ipProtocol"] == 17   # the lab's ARP has records too
            and (r["source"]["ip"], r["destination"]["ip"], r["destination"]["port"]) == (client, server, PORT)]
    assert len(mine) == 1, records
    return mine[0]


def _check(lab, out: Path, seen: Counter, protocol: str, databytes: tuple[int, int]) -> None:
    assert seen == {"c2s": 3, "s2c": 3}
    record = _the_record(out, *INNER)
    assert (record["source"]["packets"], record["destination"]["packets"]) == (seen["c2s"], seen["s2c"])
    assert (record["client"]["bytes"], record["server"]["bytes"]) == databytes
    assert protocol in record["protocol"]
    assert sorted(record["srcOuterIp"]) == sorted((lab.client_ip, lab.server_ip))


def test_a_flow_inside_the_kernels_vxlan_is_keyed_and_counted_exactly(lab, tmp_path):
    out = tmp_path / "sessions.jsonl"
    with vxlan(lab):
        exchange(lab, *INNER, [10])   # settles ARP inside the tunnel before anyone counts
        proc = start_sensor(lab, out)
        oracle = IngressFrames(lab)
        try:
            exchange(lab, *INNER, [20, 30, 40])
        finally:
            stop_sensor(proc)
    _check(lab, out, ingress_counts(oracle, lambda frame: _inner_udp(frame, 14 + 20 + 8 + 8 + 14)), "vxlan", (90, 6))


def _mac(ns: str, ifname: str) -> str:
    shown = subprocess.run(["ip", "-n", ns, "-j", "link", "show", ifname], check=True, capture_output=True, text=True)
    return json.loads(shown.stdout)[0]["address"]


def test_a_flow_inside_gre_is_keyed_and_counted_exactly(lab, tmp_path):
    from scapy.all import raw
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import GRE, Ether
    out = tmp_path / "sessions.jsonl"
    sides = ((lab.client, "to-client", lab.client_ip, lab.server_ip, INNER[0], INNER[1], 40000, PORT),
             (lab.server, "to-server", lab.server_ip, lab.client_ip, INNER[1], INNER[0], PORT, 40000))
    proc = start_sensor(lab, out)
    oracle = IngressFrames(lab)
    try:
        for ns, toward, outer_src, outer_dst, inner_src, inner_dst, sport, dport in sides:
            frame = raw(Ether(dst=_mac(lab.sensor, toward), src=_mac(ns, "eth0"))
                        / IP(src=outer_src, dst=outer_dst) / GRE(key_present=1, key=9, proto=0x0800)
                        / IP(src=inner_src, dst=inner_dst) / UDP(sport=sport, dport=dport) / (b"g" * 25))
            with in_netns(ns):
                sender = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
                sender.bind(("eth0", 0))
            with sender:
                for _ in range(3):
                    sender.send(frame)
    finally:
        stop_sensor(proc)
    _check(lab, out, ingress_counts(oracle, lambda frame: _inner_udp(frame, 14 + 20 + 8)), "gre", (75, 75))


def test_fragmented_datagrams_reach_the_plugins_whole(lab, tmp_path):
    out = tmp_path / "sessions.jsonl"
    proc = start_sensor(lab, out)
    oracle = IngressFrames(lab)
    try:
        exchange(lab, lab.client_ip, lab.server_ip, [3000, 4000], no_df=True)
    finally:
        stop_sensor(proc)

    def direction(frame: bytes) -> tuple[str, bool] | None:
        """(direction, whether the frame starts a datagram: fragment offset 0)."""
        if frame[14] >> 4 != 4 or frame[23] != 17:
            return None
        src = socket.inet_ntoa(frame[26:30])
        starts = not int.from_bytes(frame[20:22], "big") & 0x1FFF
        return ("c2s" if src == lab.client_ip else "s2c" if src == lab.server_ip else None, starts)
    seen = ingress_counts(oracle, direction)
    frames = {d: seen[(d, True)] + seen[(d, False)] for d in ("c2s", "s2c")}
    assert frames == {"c2s": 3 + 3, "s2c": 2}      # 1480-byte fragments on a 1500 MTU
    record = _the_record(out, lab.client_ip, lab.server_ip)
    # A datagram counts once, as Arkime counts it reassembled; the plugins got whole datagrams.
    assert (record["source"]["packets"], record["destination"]["packets"]) == (seen[("c2s", True)], seen[("s2c", True)])
    assert (record["client"]["bytes"], record["server"]["bytes"]) == (7000, 4)
