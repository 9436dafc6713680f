"""The parent's side of the workers: fork them, hand what they send to the
sensor's outputs and session view, ask them things, stop them in order, and
notice when one dies.

Workers are forked (plugins may import C extensions; nothing is pickled to
start them) after the program is loaded and before it is attached, so they
inherit the ring and flow-table fds but no bpf_link: a dead parent still
detaches the program. A worker that dies without saying "done" is reported;
its ring is taken out of the program, so the kernel bypasses its flows (each
loses the record that finds the ring gone, counted as Stat.RING_GONE), its
flows still SELECTED are bypassed at once, and the other workers go on."""
from __future__ import annotations

import itertools
import logging
import multiprocessing
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait

from sensor import gcpolicy
from sensor.config import SensorConfig
from sensor.hooks import FinishedSession
from sensor.kernel.contract import Verdict
from sensor.kernel.program import SensorProgram
from sensor.prefilter import flow_hash
from sensor.workers import wire
from sensor.workers.worker import WorkerTotals

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0     # seconds for a worker to load its plugins
STOP_TIMEOUT = 60.0      # seconds for a worker to flush its sessions
ASK_TIMEOUT = 10.0


class WorkerError(RuntimeError):
    """A worker could not start; the message says which and why."""


@dataclass(slots=True)
class WorkerDeath:
    """A worker that died: who, how, and what that cost."""
    index: int
    pid: int
    exitcode: int | None
    flows_bypassed: int = 0
    sessions_lost: int = 0
    live: bool = True

    def message(self) -> str:
        lost = f"worker {self.index} (pid {self.pid}) died (exit code {self.exitcode}): its " \
               f"{self.sessions_lost} open session(s) are lost; "
        if not self.live:
            return lost + "the frames of its flows it had not read are counted; the other workers go on"
        return lost + (f"{self.flows_bypassed} of its flow(s) bypassed in the kernel, and new ones are too "
                       "(counted as ring-gone); the other workers go on")


@dataclass(slots=True, eq=False)
class _Worker:
    index: int
    process: multiprocessing.process.BaseProcess
    conn: Connection
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    totals: WorkerTotals | None = None      # set by its "done"
    dead: bool = False
    fed: int = 0        # offline: capture records it has fed to its pipeline (its "fed" messages)


class WorkerPool:
    """K workers running `target(index, *args, conn)`. Set the callbacks before
    `start`; they run on the pool's own thread: `on_finished(worker,
    FinishedSession)`, `on_event(worker, event)`, `on_death(WorkerDeath)`."""

    on_finished: Callable[[int, FinishedSession], None]
    on_event: Callable[[int, object], None]
    on_death: Callable[[WorkerDeath], None]

    def __init__(self, count: int, target: Callable, args: tuple) -> None:
        self.count = count
        self._target, self._args = target, args
        self.workers: list[_Worker] = []
        self.deaths: list[WorkerDeath] = []
        self._requests = itertools.count()
        self._replies: dict[int, list] = {}
        self._replied = threading.Condition()
        self._thread: threading.Thread | None = None

    # -- start / stop ------------------------------------------------------------------------
    def start(self) -> None:
        """Fork the workers and wait until each has loaded its plugins."""
        ctx = multiprocessing.get_context("fork")
        try:
            with gcpolicy.frozen_for_fork():
                for index in range(self.count):
                    ours, theirs = ctx.Pipe()
                    process = ctx.Process(target=self._target, args=(index, *self._args, theirs),
                                          name=f"xdpsensor-worker-{index}", daemon=True)
                    process.start()
                    theirs.close()
                    self.workers.append(_Worker(index, process, ours))
            for worker in self.workers:
                if not worker.conn.poll(START_TIMEOUT):
                    raise WorkerError(f"worker {worker.index} did not start within {START_TIMEOUT:.0f}s")
                [(kind, *_)] = wire.loads(worker.conn.recv_bytes())
                if kind != "ready":
                    raise WorkerError(f"worker {worker.index} sent {kind!r} before it was ready")
        except (WorkerError, EOFError, OSError) as e:
            self._kill_all()
            raise WorkerError(f"starting {self.count} workers failed: {e}") from e
        self._thread = threading.Thread(target=self._dispatch, name="xdpsensor-workers", daemon=True)
        self._thread.start()

    def send(self, index: int, message: tuple) -> bool:
        """Send one message to a live worker; False if it is gone."""
        worker = self.workers[index]
        if worker.dead or worker.totals is not None:
            return False
        data = wire.dumps([message])
        with worker.send_lock:
            try:
                # send_bytes, not send: its partial writes to a full pipe slice a memoryview; send's
                # slice the pickled bytes, a copy of the rest per write (a batch is ~100 KiB).
                worker.conn.send_bytes(data)
            except OSError:
                return False
        return True

    def stop(self) -> list:
        """Ask every live worker to flush and exit; wait for them. Totals of those that finished."""
        for worker in self.workers:
            self.send(worker.index, ("stop",))
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
        self._kill_all()
        return [w.totals for w in self.workers if w.totals is not None]

    def join(self, stop: threading.Event | None = None) -> list:
        """Wait until every worker has finished by itself (offline: the end of
        the files); `stop` set asks them to end now, flushing."""
        while self._thread is not None and self._thread.is_alive():
            if stop is not None and stop.is_set():
                return self.stop()
            self._thread.join(0.2)
        self._kill_all()
        return [w.totals for w in self.workers if w.totals is not None]

    def _kill_all(self) -> None:
        for worker in self.workers:
            if worker.process.is_alive():
                worker.process.kill()
            worker.process.join()
            worker.conn.close()

    # -- requests ----------------------------------------------------------------------------
    def tell(self, index: int, command: str, args: tuple) -> bool:
        """Have a worker run `command` without waiting for its answer: what a handler of the
        workers' own events must do (it runs on the thread that would receive the answer)."""
        return self.send(index, ("ask", None, command, args))

    def dispatching(self) -> bool:
        """Whether the caller is the thread that hands on the workers' messages."""
        return threading.current_thread() is self._thread

    def ask(self, index: int | None, command: str, args: tuple) -> list:
        """Ask one worker (or every live one) to run `command`; their answers."""
        targets = range(len(self.workers)) if index is None else [index]
        request = next(self._requests)
        sent = sum(self.send(i, ("ask", request, command, args)) for i in targets)
        with self._replied:
            self._replied.wait_for(lambda: len(self._replies.get(request, ())) >= sent, ASK_TIMEOUT)
            return self._replies.pop(request, [])

    # -- the pool's thread -------------------------------------------------------------------
    def _dispatch(self) -> None:
        while True:
            running = [w for w in self.workers if not w.dead and w.totals is None]
            if not running:
                return
            ready = wait([w.conn for w in running] + [w.process.sentinel for w in running], timeout=1.0)
            for worker in running:
                if worker.conn in ready:
                    self._receive(worker)
                if worker.process.sentinel in ready:
                    while worker.totals is None and worker.conn.poll(0) and self._receive(worker):
                        pass
                    if worker.totals is None:
                        self._died(worker)

    def _receive(self, worker: _Worker) -> bool:
        try:
            batch = wire.loads(worker.conn.recv_bytes())
        except (EOFError, OSError):
            return False
        for message in batch:
            kind = message[0]
            if kind == "finished":
                self.on_finished(worker.index, message[1])
            elif kind == "event":
                self.on_event(worker.index, message[1])
            elif kind == "reply" and message[1] is not None:  # None: a `tell`, nobody waits
                with self._replied:
                    self._replies.setdefault(message[1], []).append(message[2])
                    self._replied.notify_all()
            elif kind == "fed":
                worker.fed += message[1]
            elif kind == "done":
                worker.totals = message[1]
        return True

    def _died(self, worker: _Worker) -> None:
        worker.dead = True
        worker.process.join()
        death = WorkerDeath(worker.index, worker.process.pid, worker.process.exitcode)
        self.deaths.append(death)
        with self._replied:
            self._replied.notify_all()
        self.on_death(death)


def bypass_shard(program: SensorProgram, index: int, count: int) -> int:
    """Take ring `index` out of the program and bypass the flows it carried
    that are still SELECTED; how many flows. New and later packets of its
    flows meet the empty slot and are bypassed by the kernel itself."""
    program.remove_ring(index)
    bypassed = 0
    for key, state in program.flows():
        if state.verdict == Verdict.SELECTED and flow_hash(bytes(key)) % count == index:
            bypassed += program.set_verdict(key, Verdict.BYPASSED)
    return bypassed


def live_pool(config: SensorConfig, program: SensorProgram, count: int) -> WorkerPool:
    """Live workers, one per ring of `program`."""
    from sensor.workers.worker import run_live_worker
    return WorkerPool(count, run_live_worker, (config, program))


def offline_pool(config: SensorConfig, prefilter: str, count: int) -> WorkerPool:
    """Workers fed the records of their share by the parent
    (sensor.workers.shard), each with its own `prefilter` (kernel, python or none)."""
    from sensor.workers.worker import run_offline_worker
    return WorkerPool(count, run_offline_worker, (config, prefilter))
