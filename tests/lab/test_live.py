"""End to end: the real sensor (the CLI, as a user runs it) attached to the
lab's veths, real sockets sending bounded traffic through it."""
from __future__ import annotations

import json
import signal
import socket
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from sensor import lab as lab_mod
from sensor.labtraffic import tcp_exchange, udp_exchange, wait_attached
from tests.lab.oracle import IngressFrames

pytestmark = pytest.mark.lab



def start_sensor(lab, out: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sensor", "run", "--netns", lab.sensor, "-i", "to-client", "-i", "to-server",
           "-o", str(out), "--duration", "60", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait_attached(lab):
        proc.kill()
        pytest.fail("sensor did not attach: " + proc.communicate()[1])
    return proc


def stop_sensor(proc: subprocess.Popen, sig: int = signal.SIGINT) -> str:
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=lab_mod.patience(30))
    assert proc.returncode == 0, err
    return err


def ingress_counts(oracle: IngressFrames) -> Counter:
    """Ingress IPv4 frames per (src, sport, dst, dport)."""
    seen: Counter = Counter()
    for frame in oracle.frames():
        ihl = (frame[14] & 0x0F) * 4
        src, dst = socket.inet_ntoa(frame[26:30]), socket.inet_ntoa(frame[30:34])
        sport, dport = struct.unpack_from("!HH", frame, 14 + ihl)
        seen[(src, sport, dst, dport)] += 1
    return seen

def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_matched_flows_arrive_with_exact_counts_and_unmatched_do_not(lab, tmp_path):
    out = tmp_path / "sessions.jsonl"
    proc = start_sensor(lab, out, "--no-default-plugins", "--port", "udp:5353", "--prefix", "tcp:0:GET ")
    oracle = IngressFrames(lab)
    try:
        request = b"GET /x HTTP/1.1\r\nHost: s\r\n\r\n"
        assert tcp_exchange(lab, 8080, request, b"HTTP/1.1 200 OK\r\n\r\nbody") .startswith(b"HTTP/1.1 200")
        assert udp_exchange(lab, 5353, [b"q1", b"q2", b"q3"], b"answer") == 3
        tcp_exchange(lab, 7001, b"HELO x\r\n", b"250 ok\r\n")
        udp_exchange(lab, 9999, [b"n1", b"n2"], b"r")
    finally:
        err = stop_sensor(proc)
    seen = ingress_counts(oracle)
    recs = records(out)
    by_port = {r["destination"]["port"]: r for r in recs if r["ipProtocol"] in (6, 17)}
    # One record per flow, whichever worker's ring its records go to.
    assert sorted(r["destination"]["port"] for r in recs if r["ipProtocol"] in (6, 17)) == [5353, 7001, 8080, 9999], err

    # Flows no rule selected: their records come from the kernel's counters alone.
    for port in (7001, 9999):
        rec = by_port[port]
        client = (rec["source"]["ip"], rec["source"]["port"])
        assert client[0] == lab.client_ip and rec["xdpsensor"]["delivered"] == 0
        assert rec["source"]["packets"] == seen[(*client, lab.server_ip, port)] > 0
        assert rec["destination"]["packets"] == seen[(lab.server_ip, port, *client)] > 0
    assert by_port[9999]["srcPayload8"] == b"n1".hex() and by_port[9999]["dstPayload8"] == b"r".hex()
    assert by_port[7001]["client"]["bytes"] == len(b"HELO x\r\n") and by_port[7001]["tcpflags"]["syn"] == 1

    udp = by_port[5353]
    assert (udp["source"]["ip"], udp["destination"]["ip"]) == (lab.client_ip, lab.server_ip)
    assert (udp["source"]["packets"], udp["destination"]["packets"]) == (3, 3)
    assert udp["ipProtocol"] == 17 and udp["xdpsensor"]["delivered"] == 6

    tcp = by_port[8080]
    cport = tcp["source"]["port"]
    c2s = seen[(lab.client_ip, cport, lab.server_ip, 8080)]
    s2c = seen[(lab.server_ip, 8080, lab.client_ip, cport)]
    assert c2s >= 4 and s2c >= 4
    assert (tcp["source"]["packets"], tcp["destination"]["packets"]) == (c2s, s2c)
    assert tcp["tcpflags"]["syn"] == 1 and tcp["tcpflags"]["syn-ack"] == 1
    # Selected on the GET: the handshake was counted by the kernel but not delivered.
    assert tcp["xdpsensor"]["delivered"] == c2s + s2c - 3
    assert tcp["client"]["bytes"] == len(request)
    assert "kernel saw" in err


def test_ipv6_flows_are_selected_too(lab, tmp_path):
    out = tmp_path / "v6.jsonl"
    proc = start_sensor(lab, out, "--no-default-plugins", "--port", "udp:5353")
    try:
        assert udp_exchange(lab, 5353, [b"six"], b"ok", v6=True) == 1
    finally:
        stop_sensor(proc, signal.SIGTERM)
    [rec] = [r for r in records(out) if r["ipProtocol"] == 17]
    assert (rec["source"]["ip"], rec["destination"]["ip"]) == (lab.client_ip6, lab.server_ip6)
    assert (rec["source"]["packets"], rec["destination"]["packets"]) == (1, 1)


def test_sigkill_leaves_no_xdp_program_attached(lab, tmp_path):
    proc = start_sensor(lab, tmp_path / "k.jsonl", "--port", "udp:5353")
    proc.kill()
    proc.wait(timeout=lab_mod.patience(10))
    assert wait_attached(lab, timeout=10, attached=False)


def test_a_second_sensor_on_the_same_interface_refuses(lab, tmp_path):
    first = start_sensor(lab, tmp_path / "a.jsonl", "--port", "udp:5353")
    try:
        second = subprocess.run(
            [sys.executable, "-m", "sensor", "run", "--netns", lab.sensor, "-i", "to-client",
             "--port", "udp:5353", "--duration", "5", "-o", str(tmp_path / "b.jsonl")],
            capture_output=True, text=True, timeout=lab_mod.patience(60))
        assert second.returncode == 2
        assert "already has an XDP program" in second.stderr and "--force" in second.stderr
    finally:
        stop_sensor(first)


@pytest.mark.parametrize("args,message", [
    (["--netns", "no-such-ns", "-i", "eth0"], "network namespace 'no-such-ns' does not exist"),
    (["-i", "no-such-if0"], "interface 'no-such-if0' not found"),
    (["-i", "lo", "--port", "icmp:1"], "protocol must be tcp or udp"),
])
def test_bad_interface_netns_or_rule_gives_a_clear_error(args, message, tmp_path):
    result = subprocess.run([sys.executable, "-m", "sensor", "run", *args, "--duration", "1",
                             "-o", str(tmp_path / "x.jsonl")],
                            capture_output=True, text=True, timeout=lab_mod.patience(60))
    assert result.returncode == 2
    assert message in result.stderr


def test_a_plugin_classifies_live_traffic_and_its_rules_select_in_the_kernel(lab, tmp_path):
    plugin = Path(__file__).resolve().parents[2] / "plugins" / "redis.py"
    out = tmp_path / "redis.jsonl"
    proc = start_sensor(lab, out, "--no-default-plugins", "-p", str(plugin))
    try:
        tcp_exchange(lab, 7379, b"*1\r\n$4\r\nPING\r\n", b"+PONG\r\n")   # '*' prefix rule
        tcp_exchange(lab, 7001, b"HELO x\r\n", b"250 ok\r\n")           # no rule: not delivered
    finally:
        err = stop_sensor(proc)
    recs = {r["destination"]["port"]: r for r in records(out) if r["ipProtocol"] == 6}
    assert sorted(recs) == [7001, 7379], err
    assert recs[7001]["xdpsensor"]["delivered"] == 0 and recs[7001]["protocol"] == ["tcp"]
    rec = recs[7379]
    assert rec["protocol"] == ["tcp", "redis"]
    assert rec["redis"]["command"] == ["PING"]
