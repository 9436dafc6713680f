"""What the XDP offload saves, live in the lab (root): 100 UDP flows at a fixed
rate, one of them (1% of the packets) selected by a port rule.

    sudo .venv/bin/python -m bench.bench_offload [--rate 50000] [--seconds 10]

Rows, all on the same traffic in the same run:
- the sensor (one worker): its processes' CPU (/proc) plus the XDP program's
  run time on every packet (bpf_stats), per packet on the link;
- baseline: a plain-Python AF_PACKET reader on the same interfaces applying
  the same rule (its process CPU per frame it read; when it falls behind,
  the kernel drops the rest): the target is >= 20x;
- the sensor with every flow selected at a lower rate, to compare the CPU per
  selected packet at 1% (batched wakeups) with the saturated cost (the
  target is within 1.5x).
The selected flow's record must count every packet sent on it.
"""
from __future__ import annotations

import argparse
import json
import signal
import socket
import struct
import subprocess
import sys
import time

from bench.lablive import FIRST_CLIENT_PORT, SERVER_PORT, bench_lab, run_sensor, send_udp, tree_cpu_seconds
from sensor.netns import in_netns

FLOWS = 100
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def af_packet_reader(netns: str, port: int) -> None:
    """The baseline (runs as its own process): the plain way, one AF_PACKET
    socket in the sensor's namespace, a blocking recvfrom per frame, the port
    rule applied in Python, matches counted (ingress frames only)."""
    with in_netns(netns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.settimeout(0.1)
    stopping = []
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    matched = seen = 0
    ports = struct.Struct("!HH")
    while not stopping:
        try:
            frame, addr = sock.recvfrom(65535)
        except TimeoutError:
            continue
        if addr[2] == PACKET_OUTGOING or len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
            continue
        seen += 1
        sport, dport = ports.unpack_from(frame, 14 + (frame[14] & 0x0F) * 4)
        if sport == port or dport == port:
            matched += 1
    print(json.dumps({"seen": seen, "matched": matched}), flush=True)


def run_baseline(lab, packets: int, rate: int) -> tuple[float, dict]:
    proc = subprocess.Popen([sys.executable, "-m", "bench.bench_offload", "--af-packet-reader", lab.sensor],
                            stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        cpu0 = tree_cpu_seconds(proc.pid)
        send_udp(lab, packets, rate, FLOWS)
        time.sleep(0.2)
        cpu1 = tree_cpu_seconds(proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    return cpu1 - cpu0, json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=50_000, help="packets/s on the link")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--saturated-rate", type=int, default=20_000, help="packets/s with every flow selected")
    parser.add_argument("--af-packet-reader", metavar="NETNS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.af_packet_reader:
        af_packet_reader(args.af_packet_reader, FIRST_CLIENT_PORT)
        return
    packets = int(args.rate * args.seconds)
    selected = packets // FLOWS
    with bench_lab() as lab:
        one = run_sensor(lab, packets, args.rate, FLOWS, "--no-default-plugins", "--workers", "1",
                         "--port", f"udp:{FIRST_CLIENT_PORT}")
        base_cpu, base = run_baseline(lab, packets, args.rate)
        sat_packets = int(args.saturated_rate * args.seconds)
        sat = run_sensor(lab, sat_packets, args.saturated_rate, FLOWS, "--no-default-plugins", "--workers", "1",
                         "--port", f"udp:{SERVER_PORT}")
    [rec] = [r for r in one.records if r["source"].get("port") == FIRST_CLIENT_PORT] or [None]
    recorded = rec["source"]["packets"] if rec else 0
    delivered = rec["xdpsensor"]["delivered"] if rec else 0
    sensor_ns = (one.cpu_seconds * 1e9 + one.xdp_ns) / packets
    # Per frame it handled: a reader that falls behind drops frames and spends less, not more.
    base_ns = base_cpu * 1e9 / max(base["seen"], 1)
    sat_delivered = sum(r.get("xdpsensor", {}).get("delivered", 0) for r in sat.records)  # non-IP records have none
    per_selected = one.cpu_seconds * 1e9 / max(delivered, 1)
    per_saturated = sat.cpu_seconds * 1e9 / max(sat_delivered, 1)
    print(f"{packets} UDP packets at {args.rate}/s over {FLOWS} flows ({one.seconds:.1f}s), "
          f"1 flow = {selected} packets selected")
    print(f"{'':<52}{'ns/packet':>10}")
    print(f"{'baseline: Python AF_PACKET reader, same rule':<52}{base_ns:>10.0f}   "
          f"(per frame it read: it read {base['seen']} of {packets}, matched {base['matched']})")
    print(f"{'sensor: process CPU + XDP run time':<52}{sensor_ns:>10.0f}   "
          f"({one.cpu_seconds * 1e9 / packets:.0f} process + {one.xdp_ns / max(one.xdp_runs, 1):.0f} XDP "
          f"over {one.xdp_runs} runs)")
    print(f"  offload: {base_ns / sensor_ns:.1f}x less CPU per packet than the baseline (target >= 20x)")
    print(f"  selected flow: {selected} sent, {recorded} in its record, {delivered} delivered to Python "
          f"({'all' if recorded == delivered == selected else 'NOT all'})")
    print(f"{'sensor CPU per selected packet, 1% selected':<52}{per_selected:>10.0f}")
    print(f"{'sensor CPU per selected packet, all selected':<52}{per_saturated:>10.0f}   "
          f"({sat_delivered} at {args.saturated_rate}/s)")
    print(f"  1% vs saturated: {per_selected / per_saturated:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
