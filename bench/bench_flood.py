"""A flood of one-packet flows through `xdpsensor read`: throughput, peak memory
and whether every session was recorded, with the sessions table bounded by
max_sessions. Baseline in the same run: the same number of frames in ONE flow
(per-frame cost without per-session cost).

    python -m bench.bench_flood [--flows 1000000] [--max-sessions 10000] [--prefilter none]
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_ETH = bytes.fromhex("020000000002020000000001") + b"\x08\x00"


def udp_frame(src: int, sport: int, payload: bytes = b"x") -> bytes:
    """Ethernet/IPv4/UDP from 10.<src> to 10.255.0.1:53 (checksums left zero: nothing here checks them)."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 0, 0, 64, 17, 0,
                     (10 << 24 | src).to_bytes(4, "big"), bytes((10, 255, 0, 1)))
    return _ETH + ip + struct.pack("!HHHH", sport, 53, 8 + len(payload), 0) + payload


def write_capture(path: Path, frames: int, one_flow: bool) -> None:
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        same = udp_frame(1, 1000)
        for i in range(frames):
            frame = same if one_flow else udp_frame(1 + i // 60000, 1024 + i % 60000)
            out.write(struct.pack("<IIII", 1_700_000_000 + i // 100_000, i % 100_000 * 10, len(frame), len(frame)))
            out.write(frame)


def read(capture: Path, db: Path, config: Path, prefilter: str) -> tuple[float, int, str]:
    """Seconds, peak RSS (KiB) and stderr of one `xdpsensor read` in a process of its own."""
    args = ["--no-prefilter"] if prefilter == "none" else ["--prefilter", prefilter]
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "sensor", "read", str(capture), "-c", str(config),
                             "--no-default-plugins", "--port", "udp:53", "-o", f"sqlite:{db}", *args],
                            stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise RuntimeError(f"read failed: {err}")
    return time.perf_counter() - started, usage.ru_maxrss, err


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=1_000_000)
    parser.add_argument("--max-sessions", type=int, default=10_000)
    parser.add_argument("--prefilter", default="none", choices=("none", "python", "kernel"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        config = tmp_dir / "sensor.yaml"
        config.write_text(f"max_sessions: {args.max_sessions}\n")
        for label, one_flow in (("baseline: the same frames in one flow", True),
                                (f"{args.flows:,} one-packet flows", False)):
            capture, db = tmp_dir / "c.pcap", tmp_dir / "s.db"
            write_capture(capture, args.flows, one_flow)
            seconds, rss_kib, _ = read(capture, db, config, args.prefilter)
            with sqlite3.connect(db) as conn:
                stored = conn.execute("SELECT count(*) FROM sessions").fetchone()[0]
            print(f"{label:<40} {args.flows / seconds:>10,.0f} frames/s  {stored / seconds:>10,.0f} sessions/s  "
                  f"peak RSS {rss_kib / 1024:>6.0f} MiB  sessions stored {stored:,}")
            capture.unlink()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
