"""Selected packets/s through decode + sessions + reassembly + a trivial
keep-everything plugin with 1 and 2 worker processes, offline and live.

    sudo .venv/bin/python -m bench.bench_scaling [--packets 200000] [--rate 60000] [--seconds 5]

Offline: a synthetic capture (bench_packet_flows' TCP sessions) read with no
pre-filter, every packet to the plugin; wall time of `Sensor.read_pcap`, and
the CPU per packet of the reading process and of the workers, which gives the
scaling two free cores would show (another job on the machine takes from the
wall clock, less from the CPU).
Live (root, lab): trafgen sends UDP over 100 flows the plugin selects, at a
fixed rate; delivered packets per second of traffic, and ring-buffer drops.
The target on a 2-core machine is >= 1.7x, and no drops with 2 workers at a
rate where 1 drops. Other processes share the CPUs: read the rows as ranges.
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.bench_packet_flows import TRIVIAL_PLUGIN, build_capture
from sensor import Sensor
from sensor.capture.pcapfile import write_pcap

FLOWS = 100


@dataclass
class OfflineRun:
    per_second: float       # packets/s, wall clock
    parent_us: float        # CPU per packet: the reading process (with 2 workers: read, shard, deal)
    workers_us: float       # CPU per packet: the worker processes together
    records: int

    @property
    def total_us(self) -> float:
        return self.parent_us + self.workers_us


def offline_run(pcap: Path, plugin: Path, workers: int, packets: int) -> OfflineRun:
    sensor = Sensor({"default_plugins": False, "plugins": [str(plugin)], "workers": workers}, outputs=[])
    try:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        started, cpu = time.monotonic(), time.process_time()
        summary = sensor.read_pcap(pcap, prefilter="none")
        seconds, cpu = time.monotonic() - started, time.process_time() - cpu
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        sensor.close()
    if summary.delivered != packets:
        raise RuntimeError(f"{workers} worker(s) delivered {summary.delivered} of {packets} packets")
    workers_cpu = max(0.0, after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime)
    return OfflineRun(packets / seconds, cpu / packets * 1e6, workers_cpu / packets * 1e6, summary.records)


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
    parser.add_argument("--rounds", type=int, default=3, help="offline runs of each, alternating")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plugin = Path(tmp) / "keep.py"
        plugin.write_text(TRIVIAL_PLUGIN)
        pcap = Path(tmp) / "bench.pcap"
        packets = write_pcap(pcap, build_capture(args.packets, 2_000))
        print(f"offline: {packets} packets, 2000 TCP sessions, no pre-filter, every packet to the plugin")
        runs: dict[int, list[OfflineRun]] = {1: [], 2: []}
        for _ in range(args.rounds):
            for workers in (1, 2):
                run = offline_run(pcap, plugin, workers, packets)
                runs[workers].append(run)
                print(f"  {workers} worker(s): {run.per_second:>10,.0f} packets/s  CPU per packet: "
                      f"reader {run.parent_us:5.2f} us + workers {run.workers_us:5.2f} us = {run.total_us:5.2f} us"
                      f"  ({run.records} records)")
        walls = sorted(two.per_second / one.per_second for one, two in zip(runs[1], runs[2]))
        ceilings = sorted(2 * one.total_us / two.total_us for one, two in zip(runs[1], runs[2]))
        print(f"  2 vs 1, wall clock: {walls[0]:.2f}-{walls[-1]:.2f}x (target >= 1.7x; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
        print(f"  2 vs 1, CPU-bound (two free cores, 2 x CPU of one / CPU of two): {ceilings[0]:.2f}-{ceilings[-1]:.2f}x")
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
