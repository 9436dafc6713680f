"""The live loop around the pipeline, on a thread of its own: waits for the
ring buffer, feeds the pipeline a batch at a time, expires idle sessions by
the clock, ends the kernel's own flows (their records), and reports
ring-buffer loss. Attaching happens in the caller's thread so its errors
reach the caller; stopping detaches, reads what the ring still holds and
flushes every session.

Wakeup policy: the kernel wakes the loop only when a ring holds
`ProgramOptions.wakeup_bytes`; otherwise the loop looks every POLL_SECONDS,
so a lone record waits at most that long and a busy ring is read in batches."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sensor.capture.live import LiveCapture
from sensor.capture.ring import RingReader, record_fields
from sensor.kernel.contract import Stat
from sensor.pipeline import Pipeline
from sensor.workers.pool import WorkerDeath, WorkerPool

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05  # the longest a record below the wakeup threshold waits in the ring
EXPIRE_EVERY = 1.0   # seconds between idle-session expiries in userspace
KERNEL_EXPIRE_EVERY = 5.0   # seconds between scans of the kernel table for flows that ended


@dataclass(slots=True)
class RunSummary:
    seconds: float
    kernel: dict[Stat, int]
    records: int
    frames: int
    undecodable: int
    attachments: list[str] = field(default_factory=list)
    workers: int = 1
    deaths: list[WorkerDeath] = field(default_factory=list)

    def lines(self) -> list[str]:
        k = self.kernel
        by = f" in {self.workers} workers" if self.workers > 1 else ""
        return [
            f"ran {self.seconds:.1f}s: kernel saw {k[Stat.SEEN]} packets, parsed {k[Stat.PARSED]}, "
            f"flows {k[Stat.FLOW_NEW]} (selected {k[Stat.SELECTED]}, ignored {k[Stat.IGNORED]})",
            f"delivered {k[Stat.EMITTED]} packets to userspace, ring-buffer drops {k[Stat.RINGBUF_FULL]}, "
            f"bypassed packets {k[Stat.BYPASSED_PKTS]}, truncated {k[Stat.TRUNCATED]}, "
            f"orphan fragments {k[Stat.FRAG_ORPHAN]}, lost with a dead worker {k[Stat.RING_GONE]}",
            f"flow table: flows that lost packets at the ring {k[Stat.FLOW_RING_LOST]}, "
            f"evicted by a full table {k[Stat.FLOW_EVICTED]} (an unselected one has no record), packets on no flow (table full) {k[Stat.FLOW_FAIL]}",
            f"userspace{by} decoded {self.frames - self.undecodable}/{self.frames} frames, "
            f"wrote {self.records} session records",
        ] + [death.message() for death in self.deaths]


class RingFeed:
    """One ring's records into one pipeline, a batch at a time; `lock` is
    held per batch, so API calls from other threads see whole packets."""

    def __init__(self, ring: RingReader, pipeline: Pipeline, clock_offset_ns: int,
                 lock: threading.RLock) -> None:
        self.ring = ring
        self.pipeline = pipeline
        self.offset_ns = clock_offset_ns
        self.lock = lock
        self.records = 0
        self.feed_errors = 0

    def drain(self) -> int:
        """Feed everything the ring holds now; how many records."""
        total = 0
        feed, offset_ns = self.pipeline.feed, self.offset_ns
        while batch := self.ring.read():
            with self.lock:
                for raw in batch:
                    ts_ns, _, wire_len, key, frame = record_fields(raw)
                    try:
                        feed(frame, (ts_ns + offset_ns) / 1e9, key, wire_len=wire_len)
                    except Exception:
                        self.feed_errors += 1
                        log.exception("record dropped: the pipeline failed on it")
            total += len(batch)
        self.records += total
        return total

    def run(self, stopping: Callable[[], bool], each_pass: Callable[[], None] = lambda: None,
            each_expiry: Callable[[], None] = lambda: None) -> None:
        """Read the ring until `stopping()`: on each wakeup (or POLL_SECONDS),
        drain it; by the clock, expire idle sessions (then `each_expiry()`)
        and end the kernel's own flows; then `each_pass()`."""
        now = time.monotonic()
        next_expire, next_kernel = now + EXPIRE_EVERY, now + KERNEL_EXPIRE_EVERY
        pipeline, lock = self.pipeline, self.lock
        while not stopping():
            self.ring.wait(POLL_SECONDS)
            self.drain()
            now = time.monotonic()
            if now >= next_expire:
                with lock:
                    pipeline.expire(time.time())
                each_expiry()
                next_expire = now + EXPIRE_EVERY
            if now >= next_kernel:
                with lock:
                    pipeline.expire_kernel(time.monotonic_ns())
                next_kernel = now + KERNEL_EXPIRE_EVERY
            each_pass()


class _KernelLoop:
    """What both loops do beside reading: attach, run `_loop` on a thread,
    report ring loss, stop the thread."""

    name = "xdpsensor-live"

    def __init__(self, capture: LiveCapture, on_ring_loss: Callable[[int], None] | None) -> None:
        self.capture = capture
        self.on_ring_loss = on_ring_loss
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self._where: list[str] = []
        self.drops = 0             # Stat.RINGBUF_FULL when last read (each EXPIRE_EVERY)

    def _attach(self) -> list[str]:
        """Attach everywhere (or raise having attached nothing), then run `_loop` on a thread."""
        attachments = self.capture.start()
        self._where = [f"{a.where} [{a.mode}, {a.method}]" for a in attachments]
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()
        return self._where

    def _loop(self) -> None:
        raise NotImplementedError

    def _check_drops(self) -> None:
        drops = self.capture.program.stat(Stat.RINGBUF_FULL)
        if drops > self.drops and self.on_ring_loss is not None:
            self.on_ring_loss(drops - self.drops)
        self.drops = drops

    def _halt(self) -> None:
        """Stop the thread, then detach."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        self.capture.stop()

    def stats(self) -> dict[Stat, int]:
        return self.capture.program.stats()


class LiveLoop(_KernelLoop):
    """One capture feeding one pipeline from ring 0; `lock` is held per batch."""

    def __init__(self, capture: LiveCapture, pipeline: Pipeline, lock: threading.RLock,
                 on_ring_loss: Callable[[int], None] | None = None) -> None:
        super().__init__(capture, on_ring_loss)
        self.pipeline = pipeline
        self.lock = lock
        self._feed: RingFeed | None = None

    def start(self) -> list[str]:
        """Attach everywhere (or raise having attached nothing), then read on a thread."""
        ring = self.capture.ring(0)
        self._feed = RingFeed(ring, self.pipeline, self.capture.program.clock_offset_ns, self.lock)
        try:
            return self._attach()
        except BaseException:
            ring.close()
            raise

    def _loop(self) -> None:
        self._feed.run(self._stopping.is_set, each_expiry=self._check_drops)

    def stop(self) -> RunSummary:
        """Stop the loop, detach, drain the ring, end every session."""
        self._halt()
        self._feed.drain()
        self._feed.ring.close()
        with self.lock:
            self.pipeline.close()
        self._check_drops()
        p = self.pipeline.stats
        return RunSummary(time.monotonic() - self._started, self.stats(), p.records, p.frames, p.undecodable,
                          self._where)


class WorkerLoop(_KernelLoop):
    """The parent's loop when workers read the rings: the pool's workers feed
    their own pipelines and end their shares of the kernel's own flows; this
    thread only reports ring loss."""

    name = "xdpsensor-kernel"

    def __init__(self, capture: LiveCapture, pool: WorkerPool,
                 on_ring_loss: Callable[[int], None] | None = None) -> None:
        super().__init__(capture, on_ring_loss)
        self.pool = pool

    def start(self) -> list[str]:
        """Attach everywhere (or raise having attached nothing); the workers already run."""
        return self._attach()

    def _loop(self) -> None:
        while not self._stopping.wait(EXPIRE_EVERY):
            self._check_drops()

    def stop(self) -> RunSummary:
        """Detach, then let every worker read the rest of its ring and flush its sessions."""
        self._halt()
        totals = self.pool.stop()
        self._check_drops()
        return RunSummary(time.monotonic() - self._started, self.stats(),
                          sum(t.records for t in totals), sum(t.frames for t in totals),
                          sum(t.undecodable for t in totals), self._where,
                          workers=len(self.pool.workers), deaths=list(self.pool.deaths))
