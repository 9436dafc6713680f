"""Packets per second through decode, sessions + reassembly, and the plugin pipeline, beside a bare struct loop.

Run: python -m bench.bench_packet_flows [--packets N] [--sessions N] [--repeat N]

The capture is synthetic and built in memory: Ethernet/IPv4/TCP sessions with
a handshake, payload in both directions and a FIN exchange, interleaved
round-robin so that every session is open at once (like a busy link). The
baseline unpacks the same fixed headers with one precompiled struct and does
nothing else: the floor that any Python decoder pays per packet.
"""
from __future__ import annotations

import argparse
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.timing import best_rate
from sensor.arkime.loader import load_plugins
from sensor.arkime.runtime import PluginRuntime
from sensor.flows.table import SessionTable
from sensor.hooks import FinishedCollector
from sensor.packet import decode_frame
from sensor.pipeline import Pipeline

_ETH_IP_TCP = struct.Struct("!6s6sHBBHHHBBH4s4sHHIIBBHHH")
_BASELINE = struct.Struct("!12xH2xH4xBx2x4s4sHHIIBB")  # ethertype ... TCP flags, all in one unpack
_PAYLOAD = 400


def _frame(client: int, reply: bool, flags: int, seq: int, ack: int, payload: bytes) -> bytes:
    cip, sip = struct.pack("!I", 0x0A000000 + client), struct.pack("!I", 0xC0A80001)
    cport, sport = 10000 + client % 50000, 443
    src, dst, p_src, p_dst = (sip, cip, sport, cport) if reply else (cip, sip, cport, sport)
    header = _ETH_IP_TCP.pack(
        b"\x02" * 6, b"\x04" * 6, 0x0800,
        0x45, 0, 40 + len(payload), 1, 0x4000, 64, 6, 0, src, dst,
        p_src, p_dst, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0,
    )
    return header + payload


def _session_frames(client: int, count: int) -> list[bytes]:
    """SYN, SYN-ACK, ACK, alternating data segments, then FIN/FIN-ACK: `count` frames."""
    cseq, sseq = 1000 * client, 7_000_000 + client
    frames = [_frame(client, False, 0x02, cseq, 0, b""), _frame(client, True, 0x12, sseq, cseq + 1, b""),
              _frame(client, False, 0x10, cseq + 1, sseq + 1, b"")]
    cseq, sseq = cseq + 1, sseq + 1
    data = bytes(range(256)) * (_PAYLOAD // 256 + 1)
    for n in range(count - 5):
        if n % 2:
            frames.append(_frame(client, True, 0x18, sseq, cseq, data[:_PAYLOAD]))
            sseq += _PAYLOAD
        else:
            frames.append(_frame(client, False, 0x18, cseq, sseq, data[:_PAYLOAD]))
            cseq += _PAYLOAD
    frames += [_frame(client, False, 0x11, cseq, sseq, b""), _frame(client, True, 0x11, sseq, cseq + 1, b"")]
    return frames


def build_capture(packets: int, sessions: int) -> list[tuple[float, bytes]]:
    per_session = max(6, packets // sessions)
    flows = [_session_frames(n, per_session) for n in range(sessions)]
    capture = [frame for round_ in zip(*flows) for frame in round_]
    return [(1_700_000_000 + n * 1e-5, frame) for n, frame in enumerate(capture)]


def run_baseline(capture: list[tuple[float, bytes]]) -> None:
    unpack = _BASELINE.unpack_from
    for _, frame in capture:
        unpack(frame)


def run_decode(capture: list[tuple[float, bytes]]) -> None:
    for ts, frame in capture:
        decode_frame(frame, ts)


def run_decode_and_table(capture: list[tuple[float, bytes]]) -> None:
    table = SessionTable()
    process = table.process
    for ts, frame in capture:
        process(decode_frame(frame, ts))
    ended = table.close_all()
    delivered = sum(sum(e.session.databytes) for e in ended)
    expected = sum(len(frame) - 54 for _, frame in capture)
    if delivered != expected:  # the table must really have reassembled every byte
        raise RuntimeError(f"reassembled {delivered} payload bytes, the capture holds {expected}")


TRIVIAL_PLUGIN = """\
import arkime
import arkime_session

seen = arkime.field_define("bench.bytes", "kind:integer;db:bench.bytes")


def parse(session, data, length, which):
    arkime_session.add_int(session, seen, length)
    return 0


def classify(session, data, remaining, which):
    arkime_session.add_protocol(session, "bench")
    arkime_session.register_parser(session, parse)


arkime.register_port_classifier("bench", 443, arkime.PORT_TCP_DST, classify)
arkime.register_port_classifier("bench-udp", 9000, arkime.PORT_UDP_DST, classify)  # bench_scaling's live traffic
"""


def run_pipeline(capture: list[tuple[float, bytes]], time_budget: float = 0.0) -> None:
    runtime = PluginRuntime(time_budget=time_budget)
    with tempfile.TemporaryDirectory() as tmp:
        plugin = Path(tmp) / "bench.py"
        plugin.write_text(TRIVIAL_PLUGIN)
        report = load_plugins(runtime, files=[plugin])
    if not report.ok:
        raise RuntimeError(f"bench plugin did not load: {report.errors}")
    collected = FinishedCollector()
    records = collected.records
    pipeline = Pipeline(runtime, SessionTable(), [collected])
    feed = pipeline.feed
    for ts, frame in capture:
        feed(frame, ts)
    pipeline.close()
    if not records or any(r.get("protocol") != ["bench", "tcp"] and r.get("protocol") != ["tcp", "bench"]
                          for r in records):
        raise RuntimeError("the bench plugin did not classify every session")
    runtime.close()


def run_pipeline_budgeted(capture: list[tuple[float, bytes]]) -> None:
    run_pipeline(capture, time_budget=2.0)


def rate(job: Callable[[list[tuple[float, bytes]]], None], capture: list[tuple[float, bytes]],
         repeat: int) -> float:
    return best_rate(len(capture), lambda: job(capture), repeat)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--sessions", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is kept")
    args = parser.parse_args()
    capture = build_capture(args.packets, args.sessions)
    print(f"{len(capture)} frames, {args.sessions} concurrent TCP sessions, {_PAYLOAD}-byte payloads")
    baseline = rate(run_baseline, capture, args.repeat)
    rows = [("baseline: one struct unpack per frame", baseline),
            ("decode_frame", rate(run_decode, capture, args.repeat)),
            ("decode_frame + SessionTable (reassembly)", rate(run_decode_and_table, capture, args.repeat)),
            ("pipeline: + trivial classifier/parser", rate(run_pipeline, capture, args.repeat)),
            ("same, plugin time budget on (2 s)", rate(run_pipeline_budgeted, capture, args.repeat)),
            ("pipeline again (noise check)", rate(run_pipeline, capture, args.repeat))]
    for label, per_second in rows:
        print(f"{label:<44} {per_second:>12,.0f} pkt/s  {baseline / per_second:5.1f}x baseline cost")


if __name__ == "__main__":
    main()
