"""A flood of one-packet flows into the SQLite store: sessions/s, peak memory,
and whether every flow was recorded or counted as shed.

Offline (`xdpsensor read`, a process of its own per run), on two paths:
- `pipeline`: no pre-filter, every flow a session of the userspace pipeline
  (table, plugin state, registry, record);
- `kernel-only`: the pre-filter (the real program as root, its Python mirror
  otherwise) with a rule no flow matches: every flow's record is made from the
  flow table's counters, as a live sensor records the flows no rule selects;
  with no plugin, and with a plugin whose save hook does nothing (the bundled
  http plugin has one: a default sensor's case). Each beside the same run on
  the code of `--before` (default main): the baseline.
Other baselines in the same run: the same number of frames in ONE flow (per-frame
cost without per-session cost), and the SQLite sink alone taking as many
records (the store's own ceiling). The kernel's table holds 65,536 flows: with
`--udp-timeout` short enough for the `--capture-rate`, flows end (and are
recorded) before the table is full; otherwise the full table evicts them
(counted in the summary, not recorded). Rates are given per wall-clock second and
per CPU second of the process (user + system, every thread): on a shared
machine the second is the one that means something.

From the table (`--table`, root): the record path alone, as a live sensor's
scan of the kernel's table runs it, without the frames: a real program's
table filled from userspace with `--flows` ended UDP flows, one
`Pipeline.expire_kernel` pass, the records through the output writer into the
store; with and without a save hook, each beside `--before`'s code, each in a
process of its own.

Live (`--live`, root): `xdpsensor run` on a lab of its own, trafgen sending
one-packet UDP flows (source and destination ports both stepping, so no two
packets share a flow) at a fixed rate; the flows are those no rule selects
(`--selected`: a rule selects them all, so every packet crosses the ring).

    python -m bench.bench_flood [--flows 200000] [--max-sessions 10000] [--capture-rate 100000] [--udp-timeout 60]
                                [--before main]
    python -m bench.bench_flood --table [--flows 1000000] [--before main]
    python -m bench.bench_flood --live [--flows 100000] [--rate 20000] [--selected]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sensor.hooks import FinishedSession
from sensor.output.sqlite import SqliteStore

_ETH = bytes.fromhex("020000000002020000000001") + b"\x08\x00"
FLOOD_PORT = 53             # the flood's destination port (offline)
UNMATCHED = "udp:9999"      # a rule no flood flow matches: kernel-only records
LIVE_DPORTS = 1009          # live: destination ports 20000..21008 step beside the source ports


def udp_frame(src: int, sport: int, payload: bytes = b"x") -> bytes:
    """Ethernet/IPv4/UDP from 10.<src> to 10.255.0.1:53 (checksums left zero: nothing here checks them)."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 0, 0, 64, 17, 0,
                     (10 << 24 | src).to_bytes(4, "big"), bytes((10, 255, 0, 1)))
    return _ETH + ip + struct.pack("!HHHH", sport, FLOOD_PORT, 8 + len(payload), 0) + payload


def write_capture(path: Path, frames: int, one_flow: bool, rate: int = 100_000) -> None:
    """`frames` frames, `rate` per second of capture time: one flow, or each frame a flow of its own."""
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        same = udp_frame(1, 1000)
        for i in range(frames):
            frame = same if one_flow else udp_frame(1 + i // 60000, 1024 + i % 60000)
            out.write(struct.pack("<IIII", 1_700_000_000 + i // rate, i % rate * 1_000_000 // rate,
                                  len(frame), len(frame)))
            out.write(frame)


def read(capture: Path, db: Path, config: Path, args: list[str], tree: Path | None = None
         ) -> tuple[float, float, int, int]:
    """Wall seconds, CPU seconds, peak RSS (KiB) and flows the full table evicted (unrecorded)
    of one `xdpsensor read` in a process of its own, of this tree's code or `tree`'s."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "sensor", "read", str(capture), "-c", str(config),
                             "--no-default-plugins", "-o", f"sqlite:{db}", *args],
                            stderr=subprocess.PIPE, text=True, **_in(tree))
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise RuntimeError(f"read failed: {err}")
    evicted = re.search(r"flows its full table evicted (\d+)", err)
    return (time.perf_counter() - started, usage.ru_utime + usage.ru_stime, usage.ru_maxrss,
            int(evicted.group(1)) if evicted else 0)


@contextlib.contextmanager
def before_tree(rev: str) -> Iterator[Path]:
    """The sensor package (and bpf/) of git revision `rev`, with this tree's bench/ beside it."""
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(root), "archive", rev, "sensor", "bpf", "plugins", "protocols"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        shutil.copytree(root / "bench", Path(tmp) / "bench")
        yield Path(tmp)


def _in(tree: Path | None) -> dict:
    """Popen arguments that run the child on `tree`'s code (None: this tree's)."""
    if tree is None:
        return {}
    return {"cwd": tree, "env": {**os.environ, "PYTHONPATH": str(tree)}}


def stored(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM sessions").fetchone()[0]


def remove_store(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def sink_alone(db: Path, count: int) -> tuple[float, float]:
    """Wall and CPU seconds of the SQLite sink taking `count` flood-like records (the store's ceiling)."""
    from sensor.ids import new_id
    record = {"client": {"bytes": 1}, "destination": {"bytes": 0, "ip": "10.255.0.1", "packets": 0, "port": 53},
              "firstPacket": 1700000000129, "ipProtocol": 17, "lastPacket": 1700000000129, "length": 0,
              "network": {"bytes": 43, "community_id": "1:Lc0e6mZQ9WOG6yIHoVJy/fn4fIk=", "packets": 1},
              "packetRange": {"gte": 1700000000129, "lte": 1700000000129}, "protocol": ["udp"], "protocolCnt": 1,
              "server": {"bytes": 0}, "srcPayload8": "78", "totDataBytes": 1}
    finished = [FinishedSession({**record, "source": {"bytes": 43, "ip": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
                                                      "packets": 1, "port": 1024 + i % 60000},
                                 "xdpsensor": {"endReason": "evicted", "sessionId": new_id()}})
                for i in range(count)]
    cpu0, started = time.process_time(), time.perf_counter()
    with SqliteStore(db) as store:
        for done in finished:
            store.write(done)
    return time.perf_counter() - started, time.process_time() - cpu0


def line(label: str, count: int, wall: float, cpu: float, extra: str = "") -> str:
    return (f"  {label:<44} {count / wall:>9,.0f}/s wall {count / cpu:>9,.0f}/s CPU "
            f"({wall:6.1f}s wall, {cpu:6.1f}s CPU){extra}")


SAVE_HOOK = "import arkime\n\ndef saved(session, final):\n    pass\n\narkime.register_save(saved)\n"


def offline(flows: int, max_sessions: int, capture_rate: int, udp_timeout: float, before: str) -> None:
    kernel = "kernel" if os.geteuid() == 0 else "python"
    with tempfile.TemporaryDirectory() as tmp, before_tree(before) as old:
        tmp_dir = Path(tmp)
        config = tmp_dir / "sensor.yaml"
        config.write_text(f"max_sessions: {max_sessions}\ntimeouts: {{udp: {udp_timeout}}}\n")
        plugin = tmp_dir / "save_hook.py"
        plugin.write_text(SAVE_HOOK)
        db = tmp_dir / "s.db"
        print(f"{flows:,} one-packet flows ({capture_rate:,}/s of capture time, UDP timeout {udp_timeout} s), "
              f"max_sessions {max_sessions:,}, into the SQLite store; baseline: {before}")
        kernel_only = ["--prefilter", kernel, "--port", UNMATCHED]
        hooked = [*kernel_only, "--plugin", str(plugin)]
        pipeline = ("pipeline (no pre-filter)", ["--no-prefilter", "--port", f"udp:{FLOOD_PORT}"], None)
        runs = {True: (pipeline, (f"kernel-only ({kernel} pre-filter)", kernel_only, None)),
                False: (pipeline,
                        (f"kernel-only ({kernel} pre-filter)", kernel_only, None),
                        (f"kernel-only, baseline {before}", kernel_only, old),
                        ("kernel-only, a plugin save hook", hooked, None),
                        (f"kernel-only, a plugin save hook, baseline {before}", hooked, old))}
        for one_flow, paths in runs.items():
            capture = tmp_dir / "c.pcap"
            write_capture(capture, flows, one_flow, capture_rate)
            for label, args, tree in paths:
                wall, cpu, rss_kib, evicted = read(capture, db, config, args, tree)
                count = stored(db)
                what = f"baseline, frames in one flow: {label}" if one_flow else label
                unit = flows if one_flow else count
                print(line(what, unit, wall, cpu, f"  {'frames' if one_flow else 'sessions'}; stored {count:,}, "
                                                  f"peak RSS {rss_kib / 1024:,.0f} MiB"
                                                  + (f", evicted unrecorded {evicted:,}" if evicted else "")))
                remove_store(db)
            capture.unlink()
        # Last: the records it holds would count in the peak RSS of the reads' forked processes.
        wall, cpu = sink_alone(db, flows)
        print(line("baseline: the SQLite sink alone", flows, wall, cpu, f"  stored {stored(db):,}"))


def from_table(flows: int, before: str) -> None:
    """This tree's record path and `before`'s, without and with a save hook, each in a child
    process (its own peak RSS)."""
    print(f"{flows:,} ended one-packet UDP flows in the kernel's table, one expiry pass into the SQLite store; "
          f"baseline: {before}")
    with before_tree(before) as old:
        for label, hook, tree in (("kernel-only", False, None), (f"kernel-only, baseline {before}", False, old),
                                  ("kernel-only, a save hook", True, None),
                                  (f"kernel-only, a save hook, baseline {before}", True, old)):
            with tempfile.TemporaryDirectory() as tmp:
                out = subprocess.run([sys.executable, "-m", "bench.bench_flood", "--table-child", str(int(hook)),
                                      "--flows", str(flows), "--db", str(Path(tmp) / "s.db")],
                                     capture_output=True, text=True, check=True, **_in(tree)).stdout.split()
            wall, cpu, rss_kib, count, records = float(out[0]), float(out[1]), int(out[2]), int(out[3]), int(out[4])
            print(line(label, count, wall, cpu, f"  sessions; records {records:,}, stored {count:,}, "
                                                f"peak RSS {rss_kib / 1024:,.0f} MiB"))


def table_child(flows: int, hook: bool, db: Path) -> None:
    """One `from_table` run; prints wall s, CPU s (every thread), peak RSS KiB, stored, records."""
    import resource

    from bench.bench_expiry import fill
    from sensor.arkime.runtime import PluginRuntime
    from sensor.flows.table import SessionTable
    from sensor.kernel.program import ProgramOptions, SensorProgram
    from sensor.output.writer import OutputWriter
    from sensor.pipeline import Pipeline
    program = SensorProgram(ProgramOptions(flow_entries=1 << max(16, (flows - 1).bit_length())))
    try:
        now = time.monotonic_ns()
        fill(program, flows, flows, now)
        runtime = PluginRuntime()
        if hook:
            runtime.save_hooks.append(lambda session, final: None)
        writer = OutputWriter([SqliteStore(db)], block_when_full=True)
        pipeline = Pipeline(runtime, SessionTable(), [writer], kernel=program)
        cpu0, started = time.process_time(), time.perf_counter()
        pipeline.expire_kernel(now)
        writer.close()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
    finally:
        program.close()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(wall, cpu, rss, stored(db), pipeline.stats.records)


def live(flows: int, rate: int, selected: bool, max_sessions: int, workers: int | None,
         output_queue: int) -> None:
    """One-packet flows from the lab's client at `rate`/s; every one must be recorded or counted."""
    from bench.lablive import bench_lab, tree_cpu_seconds
    from sensor.labtraffic import udp_flood, wait_attached
    first_sport, dport = 20000, 20000
    sports = min(flows, 40000)
    with bench_lab() as lab, tempfile.TemporaryDirectory() as tmp:
        db, config = Path(tmp) / "s.db", Path(tmp) / "sensor.yaml"
        rule = "protos: [udp]" if selected else f"ports: [{UNMATCHED}]"
        # UDP flows end 2 s after their packet: the kernel's table (65,536 flows) holds the flood's last seconds.
        # Each scan of the kernel's table hands the outputs a burst of records: the queue holds one.
        config.write_text(f"max_sessions: {max_sessions}\n{rule}\ntimeouts: {{udp: 2}}\n"
                          f"output_queue: {output_queue}\n")
        proc = subprocess.Popen([sys.executable, "-m", "sensor", "run", "--netns", lab.sensor, "-i", "to-client",
                                 "-i", "to-server", "-c", str(config), "--no-default-plugins",
                                 "-o", f"sqlite:{db}", "--duration", "900",
                                 *(["--workers", str(workers)] if workers else [])],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            if not wait_attached(lab, timeout=60):
                raise RuntimeError("the sensor did not attach: " + proc.communicate(timeout=30)[1])
            time.sleep(1.0)
            cpu0, started = tree_cpu_seconds(proc.pid), time.monotonic()
            udp_flood(lab, flows, rate, (first_sport, first_sport + sports - 1), (dport, dport + LIVE_DPORTS - 1))
            sent = time.monotonic() - started
            # Every flow has ended 2 s after the last packet; the next scan of the kernel's table
            # (every 5 s) records them. Wait until the store has not grown for 15 s (at most 10 min).
            counts = [0]
            while time.monotonic() - started < 600 and (len(counts) < 4 or counts[-1] != counts[-4]):
                time.sleep(5)
                counts.append(_flood_records(db))
            cpu = tree_cpu_seconds(proc.pid) - cpu0
            busy = time.monotonic() - started - 15
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=300)
        count = _flood_records(db)
    drops = re.search(r"ring-buffer drops (\d+)", err)
    lost = re.findall(r"(\d+) session\(s\) not written", err)
    print(f"live flood: {flows:,} one-packet UDP flows at {rate:,}/s ({'selected' if selected else 'no rule selects them'}), "
          f"sent in {sent:.1f}s")
    print(f"  recorded {count:,} ({count / busy:,.0f}/s over {busy:.1f}s until the store stopped growing; "
          f"{count / cpu:,.0f} per CPU second of the sensor, {cpu:.1f}s CPU)")
    print(f"  shed and counted: ring-buffer drops {drops.group(1) if drops else '?'} packets, "
          f"outputs lost {sum(map(int, lost))}; not accounted for: {flows - count - sum(map(int, lost))}")
    warnings = [line for line in err.splitlines() if "warning: ring buffer full" in line]
    print(f"  ring-full warnings while it ran: {len(warnings)}" + (f" (first: {warnings[0]})" if warnings else ""))
    print("  sensor: " + " | ".join(err.strip().splitlines()[-3:]))


def _flood_records(db: Path) -> int:
    """The flood's records: the lab carries no other UDP (and either end may be a flow's client)."""
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM sessions WHERE transport = 'udp'").fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=200_000)
    parser.add_argument("--max-sessions", type=int, default=10_000)
    parser.add_argument("--capture-rate", type=int, default=100_000, help="offline: flows per second of capture time")
    parser.add_argument("--udp-timeout", type=float, default=60, help="offline: the config's timeouts.udp (seconds)")
    parser.add_argument("--live", action="store_true", help="the live flood in a lab of its own (root)")
    parser.add_argument("--table", action="store_true", help="records from a filled kernel table (root)")
    parser.add_argument("--table-child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--before", default="main", help="offline and --table: the git revision to compare with")
    parser.add_argument("--rate", type=int, default=20_000, help="live: flows (packets) per second")
    parser.add_argument("--selected", action="store_true", help="live: a rule selects every flood flow")
    parser.add_argument("--workers", type=int, default=None, help="live: worker processes (default: run's)")
    parser.add_argument("--output-queue", type=int, default=65536, help="live: the config's output_queue")
    args = parser.parse_args()
    if args.table_child is not None:
        table_child(args.flows, bool(args.table_child), args.db)
    elif args.table:
        from_table(args.flows, args.before)
    elif args.live:
        live(args.flows, args.rate, args.selected, args.max_sessions, args.workers, args.output_queue)
    else:
        offline(args.flows, args.max_sessions, args.capture_rate, args.udp_timeout, args.before)


if __name__ == "__main__":
    main()
