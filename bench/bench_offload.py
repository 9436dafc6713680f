"""What the XDP offload saves, live in the lab (root): 100 UDP flows at a fixed
rate, one of them (1% of the packets) selected by a port rule.

    sudo .venv/bin/python -m bench.bench_offload [--rate 50000] [--seconds 10] [--rounds 1] [--before REV]

Rows, all on the same traffic in the same run:
- the sensor (one worker): its processes' CPU (/proc) plus the XDP program's
  run time on every packet (bpf_stats), per packet on the link;
- baseline: a plain-Python AF_PACKET reader on the same interfaces applying
  the same rule (its process CPU per frame it read; when it falls behind,
  the kernel drops the rest): the target is >= 20x;
- the sensor with every flow selected at a lower rate, to compare the CPU per
  selected packet at 1% (batched wakeups) with the saturated cost (the
  target is within 1.5x).
The selected flow's record must count every packet sent on it. With
`--before REV`, each round also runs the sensor of git revision REV (its
whole source tree) on the same lab, to measure a change beside its baseline.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from dataclasses import dataclass

from bench.lablive import (
    FIRST_CLIENT_PORT, ROOT, SERVER_PORT, SensorRun, bench_lab, checkout, run_sensor, send_udp, tree_cpu_seconds,
)
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


@dataclass(slots=True)
class TreeRound:
    """One round of one source tree's sensor: the 1% run and the saturated run."""
    one: SensorRun
    sat: SensorRun
    packets: int

    @property
    def sensor_ns(self) -> float:
        return (self.one.cpu_seconds * 1e9 + self.one.xdp_ns) / self.packets

    @property
    def selected(self) -> dict:
        [rec] = [r for r in self.one.records if r["source"].get("port") == FIRST_CLIENT_PORT] or [{}]
        return {"recorded": rec.get("source", {}).get("packets", 0),
                "delivered": rec.get("xdpsensor", {}).get("delivered", 0)}

    @property
    def per_selected(self) -> float:
        return self.one.cpu_seconds * 1e9 / max(self.selected["delivered"], 1)

    @property
    def per_saturated(self) -> float:
        delivered = sum(r.get("xdpsensor", {}).get("delivered", 0) for r in self.sat.records)  # non-IP: none
        return self.sat.cpu_seconds * 1e9 / max(delivered, 1)


def _spread(values: list[float], fmt: str) -> str:
    """median [min-max] of one row's rounds."""
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=50_000, help="packets/s on the link")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--saturated-rate", type=int, default=20_000, help="packets/s with every flow selected")
    parser.add_argument("--rounds", type=int, default=1, help="rounds, each measuring every row")
    parser.add_argument("--before", metavar="REV", help="also run the sensor of git revision REV, interleaved")
    parser.add_argument("--af-packet-reader", metavar="NETNS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.af_packet_reader:
        af_packet_reader(args.af_packet_reader, FIRST_CLIENT_PORT)
        return
    packets = int(args.rate * args.seconds)
    sat_packets = int(args.saturated_rate * args.seconds)
    sensor_args = ("--no-default-plugins", "--workers", "1", "--port")
    base_runs: list[tuple[float, dict]] = []
    runs: dict[str, list[TreeRound]] = {}
    with contextlib.ExitStack() as stack:
        trees = {"this tree": ROOT}
        if args.before:
            trees[f"before ({args.before})"] = stack.enter_context(checkout(args.before))
        lab = stack.enter_context(bench_lab())
        for _ in range(args.rounds):
            base_runs.append(run_baseline(lab, packets, args.rate))
            for name, tree in trees.items():
                one = run_sensor(lab, packets, args.rate, FLOWS, *sensor_args, f"udp:{FIRST_CLIENT_PORT}", tree=tree)
                sat = run_sensor(lab, sat_packets, args.saturated_rate, FLOWS, *sensor_args, f"udp:{SERVER_PORT}",
                                 tree=tree)
                runs.setdefault(name, []).append(TreeRound(one, sat, packets))
    # Per frame it handled: a reader that falls behind drops frames and spends less, not more.
    base_ns = [cpu * 1e9 / max(seen["seen"], 1) for cpu, seen in base_runs]
    print(f"{packets} UDP packets at {args.rate}/s over {FLOWS} flows, 1 flow = {packets // FLOWS} packets selected; "
          f"{args.rounds} round(s), median [min-max]")
    print(f"{'baseline: Python AF_PACKET reader, same rule':<52}{_spread(base_ns, '.0f'):>22} ns/packet   "
          f"(per frame it read: it read {', '.join(str(b['seen']) for _, b in base_runs)} of {packets})")
    for name, rounds in runs.items():
        print(f"sensor, {name}:")
        print(f"{'  process CPU + XDP run time':<52}{_spread([r.sensor_ns for r in rounds], '.0f'):>22} ns/packet   "
              f"(process {_spread([r.one.cpu_seconds * 1e9 / packets for r in rounds], '.0f')} + XDP "
              f"{_spread([r.one.xdp_ns / max(r.one.xdp_runs, 1) for r in rounds], '.0f')})")
        print(f"    offload: {_spread([b / r.sensor_ns for b, r in zip(base_ns, rounds)], '.1f')}x less CPU per "
              f"packet than the baseline (target >= 20x)")
        selected = [r.selected for r in rounds]
        whole = all(s["recorded"] == s["delivered"] == packets // FLOWS for s in selected)
        print(f"    selected flow: {packets // FLOWS} sent; recorded {', '.join(str(s['recorded']) for s in selected)}, "
              f"delivered {', '.join(str(s['delivered']) for s in selected)} ({'all' if whole else 'NOT all'})")
        print(f"{'  CPU per selected packet, 1% selected':<52}{_spread([r.per_selected for r in rounds], '.0f'):>22} ns")
        print(f"{'  CPU per selected packet, all selected':<52}{_spread([r.per_saturated for r in rounds], '.0f'):>22} ns"
              f"   (at {args.saturated_rate}/s)")
        print(f"    1% vs saturated: {_spread([r.per_selected / r.per_saturated for r in rounds], '.2f')}x "
              f"(target <= 1.5x)")


if __name__ == "__main__":
    main()
