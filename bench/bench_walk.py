"""What the header walk (bpf/parse.h) costs a plain flow: the XDP program of
another revision (before) and this tree's (after), compiled and measured in
the same run with BPF_PROG_TEST_RUN, rounds interleaved, on one CPU (the
one that creates the flows: it counts them without atomics); plus the cost of a
flow inside VXLAN, which only the walk can key.

    sudo .venv/bin/python -m bench.bench_walk [--before REV]   (default: main)
"""
from __future__ import annotations

import argparse
import ctypes as ct
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from bench.timing import prog_run_ns
from sensor.kernel import bpfsys
from sensor.kernel.contract import BPF_DIR

REPEAT = 1_000_000
ROUNDS = 7
ROOT = BPF_DIR.parent


def _frames() -> dict[str, tuple[bytes, bytes]]:
    """name -> (frame, the other direction's frame that makes the flow IGNORED)."""
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")

    def pair(proto, sport, dport):
        return (bytes(eth / IP(src="10.0.0.1", dst="10.0.0.2") / proto(sport=sport, dport=dport) / Raw(b"x" * 64)),
                bytes(eth / IP(src="10.0.0.2", dst="10.0.0.1") / proto(sport=dport, dport=sport) / Raw(b"y")))

    inner = eth / IP(src="10.1.0.1", dst="10.1.0.2") / TCP(sport=1005, dport=7005, flags="PA") / Raw(b"x" * 64)
    back = eth / IP(src="10.1.0.2", dst="10.1.0.1") / TCP(sport=7005, dport=1005, flags="PA") / Raw(b"y")
    outer = eth / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=50000, dport=4789) / VXLAN(vni=7, flags=0x08)
    return {
        "ignored UDP flow": pair(UDP, 1000, 9999),
        "ignored TCP flow": pair(TCP, 1001, 7000),
        "ignored TCP flow in VXLAN": (bytes(outer / inner), bytes(outer / back)),
    }


def _load(bpf_dir: Path):
    """Compile and load sensor.bpf.c from `bpf_dir`, configured as SensorProgram does by default."""
    from bcc import BPF
    bpf = BPF(src_file=str(bpf_dir / "sensor.bpf.c").encode(), cflags=[f"-I{bpf_dir}", "-Wno-macro-redefined"])
    fd = bpf.load_func(b"xdp_sensor", BPF.XDP).fd
    config = bpf[b"config"]
    leaf = config.Leaf()
    leaf.snaplen, leaf.max_undecided_payloads = 1522, 8
    if hasattr(leaf, "rings"):
        leaf.rings, leaf.wakeup_bytes = 1, 64 * 1024
    config[ct.c_uint32(0)] = leaf
    if b"udp_tunnels" in bpf:
        bpf[b"udp_tunnels"][ct.c_uint32(4789)] = ct.c_uint8(1)
    return bpf, fd


def _checkout(rev: str, into: Path) -> Path:
    for name in ("sensor.bpf.c", "sensor.h", "parse.h", "ether.h"):
        shown = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:bpf/{name}"], capture_output=True)
        if shown.returncode == 0:
            (into / name).write_bytes(shown.stdout)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="main", help="git revision to compare with (default: main)")
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})    # BPF_PROG_TEST_RUN runs on the caller's CPU
    frames = _frames()
    with tempfile.TemporaryDirectory() as tmp:
        programs = {"before": _load(_checkout(args.before, Path(tmp))), "after": _load(BPF_DIR)}
    for _, fd in programs.values():
        for frame, reply in frames.values():
            for _ in range(2):
                bpfsys.prog_test_run(fd, frame, 1)
                bpfsys.prog_test_run(fd, reply, 1)
    runs: dict[tuple[str, str], list[float]] = {}
    for _ in range(ROUNDS):
        for name, (frame, _) in frames.items():
            for which, (_, fd) in programs.items():
                runs.setdefault((name, which), []).append(prog_run_ns(fd, frame, REPEAT))
    print(f"before = {args.before}, after = this tree; ns/packet, median [min-max] of {ROUNDS} rounds")
    print(f"{'path':<28}{'before':>20}{'after':>20}{'change':>9}")
    for name in frames:
        cells = []
        for which in ("before", "after"):
            r = runs[(name, which)]
            cells.append(f"{statistics.median(r):.1f} [{min(r):.0f}-{max(r):.0f}]")
        before, after = (statistics.median(runs[(name, w)]) for w in ("before", "after"))
        print(f"{name:<28}{cells[0]:>20}{cells[1]:>20}{(after - before) / before:>+9.1%}")
    for bpf, _ in programs.values():
        bpf.cleanup()


if __name__ == "__main__":
    main()
