"""Per-packet cost of the XDP program, measured with BPF_PROG_TEST_RUN
(`repeat`), beside baselines in the same run (bpf/baseline.bpf.c): one
that only bumps a counter, one that parses Ethernet/IPv4/UDP and bumps
a counter (issue 9's target: an unselected known flow <= 2.5x the latter),
and the floor of any flow table: that parse and one LRU hash lookup of the
flow's 40-byte key (also with the packet's time from the precise clock).

    sudo .venv/bin/python -m bench.bench_xdp

Every nanosecond here is paid by every packet on the link; the ignored-flow
path is the one a busy link mostly takes. The process runs pinned to one CPU,
the one that creates the flows (it counts them without atomics); one row runs
a flow on another CPU. A run during which kernel.bpf_stats_enabled was on (a
live bench elsewhere adds two clock reads to every run) is run again."""
from __future__ import annotations

import os
import statistics
from collections.abc import Callable

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from bench.timing import prog_run_ns
from sensor.capture.ring import RingReader
from sensor.kernel.contract import BPF_DIR, Stat
from sensor.kernel.program import ProgramOptions, SensorProgram
from sensor.kernel.rules import RuleSet, parse_port_spec, parse_prefix_spec

REPEAT = 1_000_000
SELECTED_REPEAT = 2_000    # fits the 4 MiB ring buffer; it is drained between runs
ROUNDS = 5
PARSE = "baseline: parse Eth/IPv4/UDP + count"


def _vxlan(inner) -> Ether:
    """`inner` (an Ethernet frame) inside VXLAN between two tunnel endpoints."""
    return (Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="192.0.2.1", dst="192.0.2.2")
            / UDP(sport=50000, dport=4789) / VXLAN(vni=7, flags=0x08) / inner)


def _frames() -> dict[str, bytes]:
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    return {
        "non-IP (ARP)": bytes(eth / ARP()),
        "ignored UDP flow": bytes(eth / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1000, dport=9999) / Raw(b"x" * 64)),
        "ignored TCP flow": bytes(eth / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1001, dport=7000, flags="A")),
        "ignored TCP flow in VXLAN": bytes(_vxlan(eth / IP(src="10.0.0.1", dst="10.0.0.2")
                                                  / TCP(sport=1004, dport=7004, flags="PA") / Raw(b"x" * 64))),
        "selected TCP flow (emit 100 B)": bytes(eth / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1002, dport=80, flags="PA") / Raw(b"GET / HTTP/1.1\r\n" + b"h" * 30)),
        "selected UDP flow (emit 1514 B)": bytes(eth / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1003, dport=5353) / Raw(b"m" * 1472)),
    }


def _decided(program: SensorProgram, rules: RuleSet, frames: dict[str, bytes]) -> SensorProgram:
    """Rules set and the flows decided first, as on a live link: ignored flows
    have seen both directions' payload."""
    program.set_rules(rules)
    for frame in frames.values():
        program.test_run(frame)
    for sport, dport, proto, wrap in ((9999, 1000, UDP, None), (7000, 1001, TCP, None), (7004, 1004, TCP, _vxlan)):
        reply = Ether() / IP(src="10.0.0.2", dst="10.0.0.1") / proto(sport=sport, dport=dport) / Raw(b"y")
        program.test_run(bytes(wrap(reply) if wrap else reply))
    return program


def _rounds(jobs: list[tuple[str, int, bytes, int, int, Callable[[], None] | None]]) -> dict[str, list[int]]:
    """ns/packet of each (name, program fd, frame, repeat, CPU, drain) job, ROUNDS times,
    the jobs interleaved in every round so a change of load touches them all."""
    runs: dict[str, list[int]] = {name: [] for name, *_ in jobs}
    for _ in range(ROUNDS):
        for name, fd, frame, repeat, cpu, drain in jobs:
            os.sched_setaffinity(0, {cpu})     # BPF_PROG_TEST_RUN runs on the caller's CPU
            runs[name].append(prog_run_ns(fd, frame, repeat))
            if drain:
                drain()
    return runs


def main() -> None:
    from bcc import BPF
    cpus = sorted(os.sched_getaffinity(0))
    home = cpus[0]      # every flow is created here
    os.sched_setaffinity(0, {home})
    baseline = BPF(src_file=str(BPF_DIR / "baseline.bpf.c").encode(), cflags=[f"-I{BPF_DIR}"])
    count_fd = baseline.load_func(b"xdp_baseline", BPF.XDP).fd
    parse_fd = baseline.load_func(b"xdp_parse_baseline", BPF.XDP).fd
    lru_fd = baseline.load_func(b"xdp_lru_floor", BPF.XDP).fd
    percpu_lru_fd = baseline.load_func(b"xdp_lru_percpu_floor", BPF.XDP).fd
    clock_lru_fd = baseline.load_func(b"xdp_lru_clock_floor", BPF.XDP).fd
    rules = RuleSet(ports=set(parse_port_spec("udp:5353")), prefixes={parse_prefix_spec("tcp:0:GET ")})
    frames = _frames()
    program = _decided(SensorProgram(ProgramOptions()), rules, frames)
    # The build a live sensor loads where a tick is <= 1 ms (sensor.kernel.program.coarse_clock_is_exact).
    coarse = _decided(SensorProgram(ProgramOptions(coarse_clock=True)), rules, frames)
    ring = RingReader(program.ring_fds[0], program.ring_size)

    def drain() -> None:
        while ring.read():
            pass
    drain()

    udp = frames["ignored UDP flow"]
    jobs = [("baseline: count + XDP_PASS", count_fd, udp, REPEAT, home, None),
            (PARSE, parse_fd, udp, REPEAT, home, None),
            ("floor: parse + LRU hash lookup", lru_fd, udp, REPEAT, home, None),
            ("floor: parse + per-CPU LRU lookup", percpu_lru_fd, udp, REPEAT, home, None),
            ("floor: parse + LRU lookup + clock", clock_lru_fd, udp, REPEAT, home, None)]
    for name, frame in frames.items():
        selected = name.startswith("selected")
        jobs.append((name, program.fd, frame, SELECTED_REPEAT if selected else REPEAT, home,
                     drain if selected else None))
    for name in ("ignored UDP flow", "ignored TCP flow"):
        jobs.append((f"{name}, coarse clock", coarse.fd, frames[name], REPEAT, home, None))
    if len(cpus) > 1:   # counted atomically: another CPU than the flow's creator
        jobs.append(("ignored UDP flow, another CPU", program.fd, udp, REPEAT, cpus[1], None))
    runs = _rounds(jobs)
    base = statistics.median(runs[PARSE])
    print(f"{'path':<38}{'ns/packet':>10}{'range':>10}{'x parse':>9}   ({ROUNDS} rounds of {REPEAT} repeats)")
    for name, ns in runs.items():
        median = statistics.median(ns)
        print(f"{name:<38}{median:>10.0f}{f'{min(ns)}-{max(ns)}':>10}{median / base:>9.2f}")
    print(f"(ring-buffer drops during the selected runs: {program.stats()[Stat.RINGBUF_FULL]})")
    program.close()
    coarse.close()
    baseline.cleanup()


if __name__ == "__main__":
    main()
