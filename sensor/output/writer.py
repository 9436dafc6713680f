"""The output writer: a pipeline listener that hands finished sessions to the sinks off the capture thread.

Each sink has its own bounded queue and thread, so a slow sink delays only
itself and a failing one fails only itself. A sink is flushed when its queue
has stayed empty for LINGER seconds and at least every FLUSH_EVERY seconds
while busy, so a batching sink holds a session only while more are coming
(a flood is committed in batches, not one session at a time). When a sink's queue is full the
session is dropped for that sink (live capture must not wait) or, with
`block_when_full` (reading files, where waiting loses nothing, or a stop
flushing every open session at once), the pipeline waits, until `wait_deadline`
if one is set. Every session a sink did not get is counted: `dropped` (queue full or
left queued at a timed-out close) and `failed` (its `write` raised).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass

from sensor.errors import SensorError, SessionsLost
from sensor.hooks import FinishedSession
from sensor.output import Output

log = logging.getLogger(__name__)

DEFAULT_QUEUE = 1024  # finished sessions waiting per sink
FLUSH_EVERY = 1.0     # a busy sink is flushed at least this often (seconds)
LINGER = 0.005        # a sink whose queue ran dry waits this long for more before it flushes (seconds)


@dataclass(slots=True)
class SinkStats:
    """What happened to the sessions offered to one sink."""

    name: str
    written: int = 0
    dropped: int = 0   # never reached the sink: its queue was full (or still held at a timed-out close)
    failed: int = 0    # the sink's write raised
    errors: int = 0    # its flush / reopen / close raised

    @property
    def lost(self) -> int:
        return self.dropped + self.failed


class _Control:
    """A request run on the sink's thread between writes; `done` is set when it ran."""

    __slots__ = ("op", "done")

    def __init__(self, op: str) -> None:
        self.op = op
        self.done = threading.Event()


Item = FinishedSession | tuple[FinishedSession, ...] | _Control


class _SessionQueue:
    """A sink's FIFO, bounded in sessions: a batch (a tuple of sessions, one item) counts as
    its size, a control request as nothing. `maxsize` sessions at most (more only for a
    single batch larger than that, which waits for an empty queue)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.sessions = 0
        self._items: deque[tuple[Item, int]] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)

    def put(self, item: Item, size: int, block: bool = True, timeout: float | None = None) -> None:
        """Queue `item` (`size` sessions); queue.Full when there was no room (in time)."""
        with self._not_full:
            deadline = None if timeout is None else time.monotonic() + timeout
            while size and self.sessions and self.sessions + size > self.maxsize:
                left = None if deadline is None else deadline - time.monotonic()
                if not block or (left is not None and left <= 0):
                    raise queue.Full
                self._not_full.wait(left)
            self._items.append((item, size))
            self.sessions += size
            self._not_empty.notify()

    def get(self, block: bool = True) -> Item:
        """The oldest item; queue.Empty when there is none and `block` is False."""
        with self._not_empty:
            while not self._items:
                if not block:
                    raise queue.Empty
                self._not_empty.wait()
            item, size = self._items.popleft()
            self.sessions -= size
            self._not_full.notify_all()
            return item

    def empty(self) -> bool:
        return not self._items

    def clear(self) -> int:
        """Forget every queued item; the sessions they held."""
        with self._lock:
            left, self.sessions = self.sessions, 0
            self._items.clear()
            self._not_full.notify_all()
            return left


class _SinkThread:
    def __init__(self, name: str, sink: Output, capacity: int) -> None:
        self.sink = sink
        self.stats = SinkStats(name)
        self._failed_ops: Counter[str] = Counter()
        self.queue = _SessionQueue(capacity)
        self.thread = threading.Thread(target=self._run, name=f"xdpsensor-output-{name}", daemon=True)

    def offer(self, finished: FinishedSession | tuple[FinishedSession, ...], block: bool,
              deadline: float | None) -> None:
        """Queue one session, or a batch as one item (dropped whole, and counted, when it does not fit)."""
        size = len(finished) if type(finished) is tuple else 1
        try:
            self.queue.put(finished, size, block=block, timeout=_left(deadline) if block else None)
        except queue.Full:
            self.stats.dropped += size

    def abandon(self) -> int:
        """Take the sessions still queued off the queue (the sink is left behind); how many there were."""
        return self.queue.clear()

    def request(self, op: str) -> _Control:
        """Queue `op` behind what is queued (it takes no room)."""
        control = _Control(op)
        self.queue.put(control, 0)
        return control

    def _run(self) -> None:
        flushed = time.monotonic()
        unflushed = False  # written since the last flush
        while True:
            try:
                item = self.queue.get(block=not unflushed)
            except queue.Empty:
                # Run dry with writes not flushed: a flood is still coming if the queue refills
                # meanwhile (and the batch grows); else flush now. The pipeline's puts wake no one
                # while this thread sleeps, so the two threads do not trade the GIL per session.
                time.sleep(LINGER)
                if self.queue.empty():
                    self._call("flush")
                    flushed, unflushed = time.monotonic(), False
                continue
            if type(item) is _Control:
                self._call(item.op)
                item.done.set()
                if item.op in ("flush", "close"):
                    flushed, unflushed = time.monotonic(), False
                if item.op == "close":
                    return
                continue
            for finished in item if type(item) is tuple else (item,):
                self._write(finished)
            unflushed = True
            if time.monotonic() - flushed >= FLUSH_EVERY:
                self._call("flush")
                flushed, unflushed = time.monotonic(), False

    def _write(self, finished: FinishedSession) -> None:
        try:
            self.sink.write(finished)
            self.stats.written += 1
        except Exception as exc:
            # A lost batch takes the sessions written before this one with it: they were counted written.
            lost = exc.sessions if isinstance(exc, SessionsLost) else 1
            first = self.stats.failed == 0
            self.stats.failed += lost
            self.stats.written -= lost - 1
            if first:
                _report(exc, "output %s: writing session %s failed (further failures are only counted): %s",
                        self.stats.name, finished.session_id)

    def _call(self, op: str) -> None:
        try:
            getattr(self.sink, op)()
        except Exception as exc:
            self.stats.errors += 1
            if isinstance(exc, SessionsLost):
                self.stats.failed += exc.sessions
                self.stats.written -= exc.sessions
            self._failed_ops[op] += 1
            if self._failed_ops[op] == 1:
                _report(exc, "output %s: %s failed (further failures are only counted): %s", self.stats.name, op)


def _report(exc: Exception, message: str, *args: object) -> None:
    """One line for what the environment did (a full disk, a closed socket, a refused store);
    a traceback only for what looks like a bug in the sink."""
    if isinstance(exc, OSError) and exc.strerror:
        log.error(message, *args, exc.strerror if exc.filename is None else f"{exc.strerror}: {exc.filename}")
    elif isinstance(exc, (OSError, SensorError)):
        log.error(message, *args, exc)
    else:
        log.error(message, *args, f"{type(exc).__name__}: {exc}", exc_info=exc)


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class OutputWriter:
    """A pipeline listener: queues each FinishedSession for every sink.

    `names` label the sinks in stats and logs (default: their class names).
    The threads start with the first request; `close()` writes what is queued,
    closes the sinks, and must be called once at the end."""

    def __init__(self, sinks: Sequence[Output], names: Sequence[str] | None = None,
                 capacity: int = DEFAULT_QUEUE, block_when_full: bool = False) -> None:
        if capacity < 1:
            raise ValueError(f"the output queue needs room for at least 1 session, got {capacity}")
        if names is None:
            names = [f"{i}:{type(sink).__name__}" for i, sink in enumerate(sinks)]
        if len(names) != len(sinks):
            raise ValueError(f"{len(names)} names for {len(sinks)} outputs")
        self.block_when_full = block_when_full
        self.wait_deadline: float | None = None  # with block_when_full: wait no later than this (monotonic)
        self._sinks = [_SinkThread(name, sink, capacity) for name, sink in zip(names, sinks)]
        self._state = "new"  # -> "running" -> "closed"

    def session_finished(self, finished: FinishedSession) -> None:
        if self._state != "running":
            self._start()
        for sink in self._sinks:
            sink.offer(finished, self.block_when_full, self.wait_deadline)

    def sessions_finished(self, batch: Sequence[FinishedSession]) -> None:
        """Several sessions at once: one queue item per sink for up to a queue's room of them."""
        if self._state != "running":
            self._start()
        for sink in self._sinks:
            step = max(1, sink.queue.maxsize)
            for start in range(0, len(batch), step):
                sink.offer(tuple(batch[start:start + step]), self.block_when_full, self.wait_deadline)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every session queued so far is written and each sink flushed.
        False if some sink did not get there within `timeout` seconds."""
        return self._everywhere("flush", timeout, wait=True)

    def reopen(self) -> None:
        """Have each sink reopen its files (log rotation) once what is queued before is written.
        Returns at once unless a sink's queue is full."""
        self._everywhere("reopen", None, wait=False)

    def close(self, timeout: float | None = None) -> bool:
        """Write everything queued, then close the sinks. A sink still busy after
        `timeout` seconds is left behind and what it still holds counted as dropped."""
        if self._state == "closed":
            return True
        done = self._everywhere("close", timeout, wait=True)
        self._state = "closed"
        for sink in self._sinks:
            sink.stats.dropped += sink.abandon()
        return done

    def lost(self) -> int:
        """Sessions some sink did not get, all sinks together (cheaper than `stats`)."""
        return sum(s.stats.dropped + s.stats.failed for s in self._sinks)

    def stats(self) -> list[SinkStats]:
        """A snapshot of each sink's counters, in sink order."""
        return [SinkStats(s.stats.name, s.stats.written, s.stats.dropped, s.stats.failed, s.stats.errors)
                for s in self._sinks]

    def _start(self) -> None:
        if self._state == "closed":
            raise RuntimeError("this output writer is closed")
        for sink in self._sinks:
            sink.thread.start()
        self._state = "running"

    def _everywhere(self, op: str, timeout: float | None, wait: bool) -> bool:
        if self._state != "running":
            self._start()
        deadline = None if timeout is None else time.monotonic() + timeout
        requests = [sink.request(op) for sink in self._sinks]
        if not wait:
            return True
        return all([control.done.wait(_left(deadline)) for control in requests])
