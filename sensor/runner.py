"""`xdpsensor run`: the I/O loop around the pipeline. Polls the ring buffer,
feeds the pipeline, expires idle sessions by the clock, shows a status line,
and on SIGINT/SIGTERM or --duration flushes every session and detaches."""
from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sensor.capture.live import LiveCapture
from sensor.kernel.contract import Stat
from sensor.kernel.program import Record
from sensor.pipeline import Pipeline

EXPIRE_EVERY = 1.0   # seconds between idle-session expiries in userspace
SWEEP_EVERY = 30.0   # seconds between sweeps of idle unselected flows in the kernel
KERNEL_IDLE = 60.0   # an unselected kernel flow idle this long is forgotten
STATUS_EVERY = 1.0


@dataclass(slots=True)
class RunSummary:
    seconds: float
    kernel: dict[Stat, int]
    records: int
    frames: int
    undecodable: int
    attachments: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        k = self.kernel
        return [
            f"attached: {', '.join(self.attachments)}",
            f"ran {self.seconds:.1f}s: kernel saw {k[Stat.SEEN]} packets, parsed {k[Stat.PARSED]}, "
            f"flows {k[Stat.FLOW_NEW]} (selected {k[Stat.SELECTED]}, ignored {k[Stat.IGNORED]})",
            f"delivered {k[Stat.EMITTED]} packets to userspace, ring-buffer drops {k[Stat.RINGBUF_FULL]}, "
            f"bypassed packets {k[Stat.BYPASSED_PKTS]}, truncated {k[Stat.TRUNCATED]}, "
            f"orphan fragments {k[Stat.FRAG_ORPHAN]}",
            f"userspace decoded {self.frames - self.undecodable}/{self.frames} frames, wrote {self.records} session records",
        ]


def run(capture: LiveCapture, pipeline: Pipeline, duration: float | None = None,
        status: Callable[[str], None] | None = None) -> RunSummary:
    """Run until a signal or `duration`; always detaches and flushes."""
    stopping = False

    def request_stop(signum, _frame):
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    offset = capture.program.monotonic_offset

    def on_record(rec: Record) -> None:
        pipeline.feed(rec.frame, rec.header.ts_ns / 1e9 + offset, rec.header.key,
                      wire_len=rec.header.wire_len)

    start = time.monotonic()
    try:
        attachments = capture.start(on_record)
        if status:
            status("attached: " + ", ".join(f"{a.where} [{a.mode}, {a.method}]" for a in attachments) + "\n")
        next_expire = next_status = start
        next_sweep = start + SWEEP_EVERY
        while not stopping:
            now = time.monotonic()
            if duration is not None and now - start >= duration:
                break
            capture.poll(100)
            if now >= next_expire:
                pipeline.expire(time.time())
                next_expire = now + EXPIRE_EVERY
            if now >= next_sweep:
                capture.program.sweep_idle(KERNEL_IDLE)
                next_sweep = now + SWEEP_EVERY
            if status and now >= next_status:
                status("\r" + _status_line(capture.program.stats(), pipeline.stats.records))
                next_status = now + STATUS_EVERY
        where = [f"{a.where} [{a.mode}, {a.method}]" for a in attachments]
    finally:
        capture.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    pipeline.close()
    if status:
        status("\n")
    stats = capture.program.stats()
    return RunSummary(time.monotonic() - start, stats, pipeline.stats.records, pipeline.stats.frames,
                      pipeline.stats.undecodable, where)


def _status_line(stats: dict[Stat, int], records: int) -> str:
    return (f"seen {stats[Stat.SEEN]}  selected flows {stats[Stat.SELECTED]}  "
            f"delivered {stats[Stat.EMITTED]}  drops {stats[Stat.RINGBUF_FULL]}  records {records}   ")


def terminal_status(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()
