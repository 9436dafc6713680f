"""Selected packets/s through decode + sessions + reassembly + a trivial
keep-everything plugin with 1 and 2 worker processes, offline and live.

    sudo .venv/bin/python -m bench.bench_scaling [--packets 200000] [--rate 60000] [--seconds 5]

Offline: a synthetic capture (bench_packet_flows' TCP sessions) read with no
pre-filter, every packet to the plugin; wall time of `Sensor.read_pcap`.
Live (root, lab): trafgen sends UDP over 100 flows the plugin selects, at a
fixed rate; delivered packets per second of traffic, and ring-buffer drops.
The target on a 2-core machine is >= 1.7x, and no drops with 2 workers at a
rate where 1 drops. Other processes share the CPUs: read the rows as ranges.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench.bench_packet_flows import TRIVIAL_PLUGIN, build_capture
from sensor import Sensor
from sensor.capture.pcapfile import write_pcap

FLOWS = 100


def offline_rate(pcap: Path, plugin: Path, workers: int, packets: int) -> tuple[float, int]:
    sensor = Sensor({"default_plugins": False, "plugins": [str(plugin)], "workers": workers}, outputs=[])
    try:
        started = time.monotonic()
        summary = sensor.read_pcap(pcap, prefilter="none")
        seconds = time.monotonic() - started
    finally:
        sensor.close()
    if summary.delivered != packets:
        raise RuntimeError(f"{workers} worker(s) delivered {summary.delivered} of {packets} packets")
    return packets / seconds, summary.records


def live_rows(plugin: Path, rate: int, seconds: float) -> list[tuple[int, float, int, int]]:
    from bench.lablive import bench_lab, run_sensor
    packets = int(rate * seconds)
    rows = []
    with bench_lab() as lab:
        for workers in (1, 2):
            run = run_sensor(lab, packets, rate, FLOWS, "--no-default-plugins", "-p", str(plugin),
                             "--workers", str(workers))
            delivered = sum(r.get("xdpsensor", {}).get("delivered", 0) for r in run.records)  # non-IP: none
            drops = next((int(line.split("ring-buffer drops ")[1].split(",")[0])
                          for line in run.summary.splitlines() if "ring-buffer drops" in line), -1)
            rows.append((workers, delivered / run.seconds, delivered, drops))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=200_000, help="offline capture size")
    parser.add_argument("--rate", type=int, default=60_000, help="live packets/s, all selected")
    parser.add_argument("--seconds", type=float, default=5.0, help="live traffic time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plugin = Path(tmp) / "keep.py"
        plugin.write_text(TRIVIAL_PLUGIN)
        pcap = Path(tmp) / "bench.pcap"
        packets = write_pcap(pcap, build_capture(args.packets, 2_000))
        print(f"offline: {packets} packets, 2000 TCP sessions, no pre-filter, every packet to the plugin")
        rates = {}
        for workers in (1, 2):
            rates[workers], records = offline_rate(pcap, plugin, workers, packets)
            print(f"  {workers} worker(s): {rates[workers]:>10,.0f} packets/s  ({records} records)")
        print(f"  2 vs 1: {rates[2] / rates[1]:.2f}x (target >= 1.7x)")
        if os.geteuid() != 0:
            print("live: skipped, needs root")
            return
        print(f"live: UDP at {args.rate}/s over {FLOWS} flows for {args.seconds:.0f}s, every flow selected")
        rows = live_rows(plugin, args.rate, args.seconds)
        for workers, per_second, delivered, drops in rows:
            print(f"  {workers} worker(s): {per_second:>10,.0f} packets/s delivered ({delivered}), "
                  f"ring-buffer drops {drops}")
        print(f"  2 vs 1: {rows[1][1] / rows[0][1]:.2f}x")


if __name__ == "__main__":
    main()
