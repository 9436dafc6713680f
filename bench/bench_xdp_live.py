"""The XDP program's own run time per packet, live in the lab (root), from the
kernel's bpf_stats, beside a parse-only program on the same packets.

    sudo .venv/bin/python -m bench.bench_xdp_live [--rate 20000] [--seconds 3] [--repeats 5] [--baseline parse]

The traffic: 100 UDP flows from the client to the server at a fixed rate,
one of them (1% of the packets) selected by a port rule, the other 99 known
and unselected after a warm-up. `xdpsensor run` holds the program on the
sensor's veths (it sees each packet on `to-client` ingress); the baseline
(bpf/baseline.bpf.c xdp_parse_baseline: parse Ethernet/IPv4/UDP, bump a
per-CPU counter) sits on the server's end of the `to-server` veth pair and
sees the same packets one hop later (`--baseline lru` / `lru-clock`: the
flow-table floors of bench_xdp there instead, the same parse then one LRU
hash lookup of the flow, and the packet's time written into it). Both are read from
`kernel.bpf_stats_enabled` (run_time_ns / run_cnt) over the same bursts; the
ratio is per burst, reported as median and range (target: <= 2x).
bpf_stats_enabled is restored at the end, and the lab removed.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench.lablive import FIRST_CLIENT_PORT, bench_lab, send_udp, sensor_running, xdp_totals
from sensor import lab as lab_mod
from sensor.kernel import bpfsys
from sensor.kernel.attach import attach, detach, xdp_status
from sensor.kernel.contract import BPF_DIR
from sensor.netns import in_netns

FLOWS = 100
TARGET = 2.0
# --baseline: (program in bpf/baseline.bpf.c, what it does)
BASELINES = {
    "parse": ("xdp_parse_baseline", "baseline: parse Ethernet/IPv4/UDP + count"),
    "lru": ("xdp_lru_floor", "floor: parse + LRU hash lookup"),
    "lru-clock": ("xdp_lru_clock_floor", "floor: parse + LRU lookup + clock"),
}


@contextlib.contextmanager
def baseline_program(lab: lab_mod.Lab, name: str) -> Iterator[int]:
    """Baseline program `name` on the server's eth0 (native XDP); yields its program id.
    The floors' tables start empty: the warm-up's packets make each flow's entry."""
    from bcc import BPF
    bpf = BPF(src_file=str(BPF_DIR / "baseline.bpf.c").encode(), cflags=[f"-I{BPF_DIR}"])
    try:
        fd = bpf.load_func(name.encode(), BPF.XDP).fd
        att = attach(fd, "eth0", lab.server, mode="native")
        try:
            with in_netns(lab.server):
                yield xdp_status("eth0").prog_id
        finally:
            detach(att)
    finally:
        bpf.cleanup()


def _per_packet(before: tuple[int, int], after: tuple[int, int]) -> tuple[float, int]:
    runs = after[1] - before[1]
    return (after[0] - before[0]) / max(runs, 1), runs


def _row(name: str, values: list[float]) -> str:
    return f"{name:<46}{statistics.median(values):>8.0f}   ({min(values):.0f}-{max(values):.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=20_000, help="packets/s on the link")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one measured burst")
    parser.add_argument("--repeats", type=int, default=5, help="measured bursts")
    parser.add_argument("--baseline", choices=BASELINES, default="parse", help="the program beside the sensor's")
    args = parser.parse_args()
    packets = int(args.rate * args.seconds)
    sensor_ns: list[float] = []
    base_ns: list[float] = []
    ratios: list[float] = []
    runs: list[tuple[int, int]] = []
    with bench_lab() as lab, tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sessions.jsonl"
        with baseline_program(lab, BASELINES[args.baseline][0]) as base_id, \
                sensor_running(lab, out, "--no-default-plugins", "--workers", "1", "--flows", "selected",
                               "--port", f"udp:{FIRST_CLIENT_PORT}") as sensor:
            # Warm-up: every flow is created and the unselected ones decided before measuring.
            send_udp(lab, FLOWS * 20, args.rate, FLOWS)
            for _ in range(args.repeats):
                s0, b0 = xdp_totals(lab), bpfsys.prog_run_totals(base_id)
                send_udp(lab, packets, args.rate, FLOWS)
                s1, b1 = xdp_totals(lab), bpfsys.prog_run_totals(base_id)
                (s_ns, s_runs), (b_ns, b_runs) = _per_packet(s0, s1), _per_packet(b0, b1)
                sensor_ns.append(s_ns)
                base_ns.append(b_ns)
                ratios.append(s_ns / b_ns)
                runs.append((s_runs, b_runs))
        sent = FLOWS * 20 + packets * args.repeats
        records = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    selected = [r for r in records if r["source"]["port"] == FIRST_CLIENT_PORT]
    recorded = sum(r["source"]["packets"] for r in selected)
    print(f"{args.repeats} bursts of {packets} UDP packets at {args.rate}/s over {FLOWS} flows "
          f"(99 unselected, 1 selected); XDP run time per packet from bpf_stats")
    print(f"{'':<46}{'ns/packet':>8}   (range over bursts)")
    print(_row(BASELINES[args.baseline][1], base_ns))
    print(_row("sensor program (99% unselected, 1% selected)", sensor_ns))
    print(f"{'ratio':<46}{statistics.median(ratios):>8.2f}x  ({min(ratios):.2f}-{max(ratios):.2f}), "
          f"target <= {TARGET:.0f}x")
    print(f"  runs per burst (sensor, baseline): {', '.join(f'{s}/{b}' for s, b in runs)}")
    print(f"  selected flow: {sent // FLOWS} sent, {recorded} in its record; sensor said: "
          f"{sensor.summary.strip().splitlines()[-1] if sensor.summary.strip() else '-'}")


if __name__ == "__main__":
    main()
