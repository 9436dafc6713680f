"""Frames per second of `xdpsensor read`'s pre-filters: the Python mirror
against the real XDP program driven by BPF_PROG_TEST_RUN (root only).

Run: python -m bench.bench_prefilter [--flows N] [--packets-per-flow N] [--repeat N]

The capture is synthetic, written to a temporary pcap: five kinds of flows
interleaved round-robin (all open at once), as rules tcp:80, udp:53 and
prefix tcp:0:0x16030 see them: HTTP (port-selected), TLS on 8443
(prefix-selected), SSH (undecided, then ignored), DNS (port-selected),
UDP on 5000 (ignored). Rows: the filter alone on prepared frames, then the
whole read (pcap -> filter -> sessions -> records) for each filter and none.
"""
from __future__ import annotations

import argparse
import os
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.timing import best_rate
from sensor.capture.pcapfile import read_pcap, write_pcap
from sensor.kernel.program import ProgramOptions
from sensor.kernel.rules import RuleSet
from sensor.offline import program_frame, read_records
from sensor.prefilter import PythonFlowTable

_ETH_IP = struct.Struct("!6s6sHBBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
_UDP = struct.Struct("!HHHH")
KINDS = [  # (protocol, server port, client payload, server payload)
    (6, 80, b"GET /index.html HTTP/1.1\r\nHost: example\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 600),
    (6, 8443, b"\x16\x03\x01\x00\xc8" + b"h" * 200, b"\x16\x03\x03\x00\x50" + b"s" * 1000),
    (6, 22, b"SSH-2.0-OpenSSH_9.2\r\n", b"SSH-2.0-OpenSSH_9.6\r\n" + b"k" * 300),
    (17, 53, b"\x12\x34\x01\x00\x00\x01" + b"q" * 30, b"\x12\x34\x81\x80\x00\x01" + b"a" * 90),
    (17, 5000, b"ping" * 20, b"pong" * 200),
]


def _ip(proto: int, src: bytes, dst: bytes, l4: bytes) -> bytes:
    return _ETH_IP.pack(b"\x02" * 6, b"\x04" * 6, 0x0800, 0x45, 0, 20 + len(l4), 1, 0x4000, 64, proto, 0,
                        src, dst) + l4


def _flow_frames(n: int, count: int) -> list[bytes]:
    proto, port, ask, answer = KINDS[n % len(KINDS)]
    client, server = struct.pack("!I", 0x0A000000 + n), struct.pack("!I", 0xC0A80001 + n % 7)
    cport = 10000 + n % 50000

    def tcp(reply: bool, flags: int, payload: bytes = b"") -> bytes:
        s, d, sp, dp = (server, client, port, cport) if reply else (client, server, cport, port)
        return _ip(6, s, d, _TCP.pack(sp, dp, 1000, 1000, 5 << 4, flags, 65535, 0, 0) + payload)

    def udp(reply: bool, payload: bytes) -> bytes:
        s, d, sp, dp = (server, client, port, cport) if reply else (client, server, cport, port)
        return _ip(17, s, d, _UDP.pack(sp, dp, 8 + len(payload), 0) + payload)

    if proto == 17:
        return [udp(i % 2 == 1, answer if i % 2 else ask) for i in range(count)]
    frames = [tcp(False, 0x02), tcp(True, 0x12), tcp(False, 0x10)]
    frames += [tcp(i % 2 == 1, 0x18, answer if i % 2 else ask) for i in range(count - 5)]
    return frames + [tcp(False, 0x11), tcp(True, 0x11)]


def build_capture(flows: int, per_flow: int) -> list[tuple[float, bytes]]:
    all_flows = [_flow_frames(n, per_flow) for n in range(flows)]
    frames = [frame for round_ in zip(*all_flows) for frame in round_]
    return [(1_700_000_000 + i * 1e-5, frame) for i, frame in enumerate(frames)]


def bench_rules() -> RuleSet:
    return RuleSet().add_specs(("tcp:80", "udp:53"), ("tcp:0:0x16030",))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=2_000)
    parser.add_argument("--packets-per-flow", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is kept")
    args = parser.parse_args()
    capture = build_capture(args.flows, args.packets_per_flow)
    rules, options = bench_rules(), ProgramOptions()
    root = os.geteuid() == 0
    if root:
        from sensor.kernel.program import SensorProgram
        from sensor.offline import TestRunTable

    with tempfile.TemporaryDirectory() as tmp:
        pcap = Path(tmp) / "bench.pcap"
        write_pcap(pcap, capture)
        prepared = [(round(r.timestamp * 1e9), program_frame(r.linktype, r.data)) for r in read_pcap(pcap)]
        print(f"{len(prepared)} frames, {args.flows} flows open at once ({len(KINDS)} kinds)")

        def filter_only(table) -> Callable[[], int]:
            def job() -> int:
                t = table()
                process = t.process
                return sum(process(frame, ts) is not None for ts, frame in prepared)
            return job

        def fresh_program():
            program = SensorProgram(options)
            program.set_rules(rules)
            programs.append(program)
            return program

        programs: list = []
        rows = [("filter only: Python flow table", filter_only(lambda: PythonFlowTable(rules, options)))]
        if root:
            rows.append(("filter only: XDP program, BPF_PROG_TEST_RUN",
                         filter_only(lambda: TestRunTable(fresh_program()))))
        rows.append(("read: no pre-filter", lambda: len(read_records([pcap]))))
        rows.append(("read: Python pre-filter",
                     lambda: len(read_records([pcap], frame_filter=PythonFlowTable(rules, options)))))
        if root:
            rows.append(("read: XDP pre-filter (test run)",
                         lambda: len(read_records([pcap], frame_filter=fresh_program()))))
        for label, job in rows:
            rate, result = best_rate(len(prepared), job, args.repeat)
            what = "frames emitted" if label.startswith("filter") else "records"
            print(f"{label:<46} {rate:>10,.0f} frames/s  ({result} {what})")
            for program in programs:
                program.close()
            programs.clear()
        if not root:
            print("XDP rows skipped: BPF_PROG_TEST_RUN needs root")


if __name__ == "__main__":
    main()
