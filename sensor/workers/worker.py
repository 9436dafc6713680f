"""One worker process: its own Sensor assembly (plugins, bindings, registry,
pipeline) fed by one ring (live) or by its share of the capture files'
records (offline), with everything it finishes or publishes sent to the parent.

Messages to the parent are lists of tuples, one list per send:
("ready", pid), ("finished", FinishedSession), ("event", event),
("reply", request_id, value), ("done", WorkerTotals or, offline, ReplaySummary),
offline ("fed", records) after each batch.
From the parent: ("stop",), ("ask", request_id, command, args) and, offline,
("share", frames, entries): a batch of records (sensor.workers.shard)."""
from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

from sensor import gcpolicy
from sensor.config import SensorConfig
from sensor.events import EVENT_NAMES
from sensor.hooks import FinishedSession
from sensor.kernel.program import SensorProgram
from sensor.protocol import DefinitionDecoder
from sensor.workers import wire

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class WorkerTotals:
    """What a worker did, for the run summary."""
    records: int = 0
    frames: int = 0
    undecodable: int = 0
    sessions: int = 0
    feed_errors: int = 0


class Outbox:
    """Messages for the parent, sent as one list per `flush` (a pipe write per
    batch of packets, not per event). Filled from the capture thread and the
    output writer's thread."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._pending: list[tuple] = []
        self._lock = threading.Lock()

    def put(self, message: tuple) -> None:
        with self._lock:
            self._pending.append(message)

    def event(self, event: object) -> None:
        self.put(("event", event))

    def flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
            if batch:
                self.conn.send_bytes(wire.dumps(batch))


class ForwardOutput:
    """The worker's only output sink: finished sessions go to the parent's outputs."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def write(self, finished: FinishedSession) -> None:
        self.outbox.put(("finished", finished))

    def flush(self) -> None:
        pass

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        pass


def _become_worker() -> None:
    """The parent stops the workers (in order, flushing); a Ctrl-C or a
    service manager's SIGTERM to the whole group must not, and a worker must
    not outlive its parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _worker_sensor(config: SensorConfig, outbox: Outbox):
    """The worker's own assembly; then what the fork copied and loading made
    leaves the cyclic GC's way (it lives as long as the worker)."""
    from sensor.app import Sensor  # imported here: app imports this package
    sensor = Sensor(dataclasses.replace(config, workers=1), outputs=[ForwardOutput(outbox)])
    for name in EVENT_NAMES:
        sensor.bus.subscribe(name, outbox.event)
    gcpolicy.freeze_startup()
    return sensor


def _answer(sensor, command: str, args: tuple):
    if command == "terminate":
        return sensor.api.terminate_session(*args)
    if command == "swap_framer":
        with sensor._lock:
            return sensor.registry.swap_framer(*args)
    if command == "set_decoder":
        name, definition = args
        with sensor._lock:
            return sensor.registry.set_decoder(name, DefinitionDecoder(definition))
    if command == "counters":
        from sensor.status import local_counters
        return local_counters(sensor)
    if command == "reload":
        return sensor.reload(*args)
    raise ValueError(f"unknown worker command {command!r}")


def _totals(pipeline, feed_errors: int) -> WorkerTotals:
    s = pipeline.stats
    return WorkerTotals(s.records, s.frames, s.undecodable, s.sessions, feed_errors)


def run_live_worker(index: int, config: SensorConfig, program: SensorProgram, conn: Connection) -> None:
    """Body of live worker `index`: read ring `index` until the parent says stop."""
    from sensor.capture.ring import RingReader
    from sensor.runner import RingFeed
    _become_worker()
    outbox = Outbox(conn)
    sensor = _worker_sensor(config, outbox)
    pipeline = sensor._new_pipeline(program)
    pipeline.shard = (index, program.options.rings)    # the kernel-only flows of this worker's ring
    feed = RingFeed(RingReader(program.ring_fds[index], program.ring_size), pipeline,
                    program.clock_offset_ns, sensor._lock)
    outbox.put(("ready", os.getpid()))
    outbox.flush()
    stopping = threading.Event()
    feed.run(stopping.is_set, each_pass=lambda: _serve(sensor, conn, outbox, stopping))
    feed.drain()       # the parent detached first: this is the last of the ring
    with sensor._lock:
        pipeline.close()
    sensor.writer.flush()   # every finished session is in the outbox
    outbox.put(("done", _totals(pipeline, feed.feed_errors)))
    outbox.flush()


def run_offline_worker(index: int, config: SensorConfig, prefilter: str, conn: Connection) -> None:
    """Body of offline worker `index`: the records the parent deals it
    (sensor.workers.shard), with the expiries at their places, through its
    own pre-filter and pipeline, until the parent says stop; the parent's
    questions are answered between batches."""
    from sensor.offline import RecordFeed, ReplaySummary
    from sensor.workers.shard import feed_share
    _become_worker()
    outbox = Outbox(conn)
    sensor = _worker_sensor(config, outbox)
    program, flow_filter = sensor.flow_filter(prefilter)
    pipeline = sensor._new_pipeline(flow_filter)
    started = time.monotonic()
    feed = RecordFeed(pipeline, flow_filter, ReplaySummary())
    outbox.put(("ready", os.getpid()))
    outbox.flush()
    stop = threading.Event()
    with sensor._lock:
        while not stop.is_set():
            for message in conn.recv():
                if message[0] == "share":
                    outbox.put(("fed", feed_share(feed, message[1], message[2])))
                else:
                    _obey(sensor, message, outbox, stop)
            outbox.flush()
        summary = feed.finish(started)
    if program is not None:
        program.close()
    sensor.writer.flush()
    outbox.put(("done", summary))
    outbox.flush()


def _serve(sensor, conn: Connection, outbox: Outbox, stop: threading.Event) -> None:
    """Answer what the parent asked meanwhile; "stop" sets `stop`."""
    while conn.poll(0):
        for message in conn.recv():
            _obey(sensor, message, outbox, stop)
    outbox.flush()


def _obey(sensor, message: tuple, outbox: Outbox, stop: threading.Event) -> None:
    """One message from the parent: "stop" sets `stop`; a question is answered."""
    if message[0] == "stop":
        stop.set()
    else:
        _, request, command, args = message
        outbox.put(("reply", request, _answer(sensor, command, args)))
