"""`Sensor`: the composition root. A config becomes loaded plugins, kernel
rules, bindings, a session registry with its event bus, outputs, and a
pipeline fed either by a live XDP capture or by capture files."""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from sensor.api import SensorAPI
from sensor.arkime.loader import LoadReport, load_paths
from sensor.arkime.runtime import PluginRuntime
from sensor.bindings import Binding, binding_rules, parse_bindings
from sensor.capture.live import LiveCapture
from sensor.config import SensorConfig, load_config, workers_for
from sensor.events import CaptureErrorEvent, EventBus
from sensor.flows.table import SessionTable
from sensor.hooks import FinishedSession
from sensor.kernel.attach import Attachment
from sensor.kernel.flowfilter import FlowFilter
from sensor.kernel.program import DEFAULT_SNAPLEN, ProgramOptions, SensorProgram, coarse_clock_is_exact
from sensor.kernel.rules import RuleSet
from sensor.offline import CaptureFilter, ReplaySummary, replay
from sensor.output import Output, open_outputs
from sensor.output.writer import OutputWriter, SinkStats
from sensor.pipeline import Pipeline, PipelineStats
from sensor.prefilter import PythonFlowTable
from sensor.registry import SessionRegistry
from sensor.runner import LiveLoop, RunSummary, WorkerLoop
from sensor.workers.pool import WorkerDeath, WorkerPool, bypass_shard, live_pool, offline_pool
from sensor.workers.shard import read_in_workers
from sensor.workers.view import WorkerSessions

log = logging.getLogger(__name__)

PREFILTERS = ("auto", "kernel", "python", "none")
STOP_FLUSH_WAIT = 30.0  # seconds a stop waits for full output queues before it drops (and counts)
# Config keys a running sensor cannot take on SIGHUP: they shape what was built at start.
RESTART_KEYS = ("plugins", "default_plugins", "outputs", "user", "group", "metrics", "max_sessions",
                "output_queue", "max_frames_per_session", "snaplen", "emit_undecided", "plugin_time_budget",
                "timeouts", "workers", "status_interval")


class Sensor:
    """Build from a config (dict, YAML path, SensorConfig or None); then
    `read_pcap(path)` (blocking) or `start(interfaces)` ... `stop()`.
    `sensor.api` is the ProtoPoke-style SensorAPI, `sensor.bus` the event bus.
    The pipeline's listeners, in order: the session registry, outputs that
    follow packets (pcap), the output writer (sinks on their own threads), then
    the sensor's own error reports."""

    def __init__(self, config: SensorConfig | dict | str | Path | None = None,
                 outputs: Sequence[Output] | None = None) -> None:
        self.config = config if isinstance(config, SensorConfig) else load_config(config)
        cfg = self.config
        self.bus = EventBus()
        self.runtime = PluginRuntime(time_budget=cfg.plugin_time_budget)
        self.load_report: LoadReport = load_paths(self.runtime, cfg.plugin_paths())
        for error in self.load_report.errors:
            self.bus.publish(CaptureErrorEvent(error=f"plugin {error}", kind="plugin"))
        self.bindings = parse_bindings(cfg.bindings, cfg.base_dir)
        self.rules = self._rules(cfg, self.bindings)
        self.registry = SessionRegistry(self.bindings, self.bus, max_frames_per_session=cfg.max_frames_per_session)
        self._lock = threading.RLock()
        self.api = SensorAPI(self.registry, terminate=self._terminate, lock=self._lock)
        if outputs is None:
            self.outputs: list[Output] = open_outputs(cfg.outputs)
            names = list(cfg.outputs)
        else:
            self.outputs, names = list(outputs), None
        self.writer = OutputWriter(self.outputs, names, capacity=cfg.output_queue)
        self._reported: dict[str, int] = {}  # losses already published, by what was lost
        self._losses_seen = 0   # the sum of the loss counters at the last look
        self._pipeline: Pipeline | None = None
        self._live: LiveLoop | WorkerLoop | None = None
        self._program: SensorProgram | None = None
        self._pool: WorkerPool | None = None
        self._view: WorkerSessions | None = None
        self._finished = 0      # records the workers finished

    # -- assembly ---------------------------------------------------------------
    def _rules(self, cfg: SensorConfig, bindings: list[Binding]) -> RuleSet:
        """Kernel rules: the plugins' registrations, the config's own rules, the bindings'."""
        rules = RuleSet()
        offload = self.runtime.offload_rules()
        rules.add_offload(offload.ports, offload.prefixes, offload.match_all)
        rules.add_specs(cfg.ports, cfg.prefixes, cfg.protos)
        ports, prefixes = binding_rules(bindings)
        rules.ports.update(ports)
        rules.prefixes.update(prefixes)
        rules.shapes()  # raises RuleError now rather than at attach
        return rules

    def reload(self, cfg: SensorConfig) -> list[str]:
        """Take a new config's rules, bindings and protocol definitions (read from their files
        again) without losing a session or a packet: everything is built and checked first (a
        SensorError leaves the running config untouched), then swapped in between two packets,
        here and in every worker. Live sessions keep the binding they started with; new ones get
        the new bindings. Returns the keys that changed but need a restart."""
        bindings = parse_bindings(cfg.bindings, cfg.base_dir)
        rules = self._rules(cfg, bindings)
        old = self.config
        needs_restart = [key for key in RESTART_KEYS if getattr(cfg, key) != getattr(old, key)]
        for key in needs_restart:  # the config says what runs
            setattr(cfg, key, getattr(old, key))
        with self._lock:
            if self._program is not None:
                self._program.set_rules(rules)
            self.registry.bindings = bindings
            self.bindings, self.rules, self.config = bindings, rules, cfg
        self.worker_answers("reload", (cfg,))
        return needs_restart

    def program_options(self, rings: int = 1, live: bool = False) -> ProgramOptions:
        return program_options(self.config, rings, live)

    def _new_pipeline(self, kernel: FlowFilter | None) -> Pipeline:
        table = SessionTable(self.config.timeouts, max_sessions=self.config.max_sessions,
                             vlan_key=self.config.vlan_keying())
        # A session that neither a plugin nor a binding still wants stops crossing the ring.
        bypass = kernel is not None and (bool(self.load_report.loaded) or bool(self.bindings))
        self._reported.pop("listener", None)  # a new chain counts from 0
        self._losses_seen = -1
        packet_outputs = [output for output in self.outputs if hasattr(output, "record_saving")]
        self._pipeline = Pipeline(self.runtime, table, [self.registry, *packet_outputs, self.writer, self],
                                  kernel=kernel, bypass=bypass, save_every=self.config.save_every,
                                  max_packets=self.config.max_packets, kernel_records=self.config.flows == "all",
                                  udp_tunnels=self.config.udp_tunnel_table())
        return self._pipeline

    def session_finished(self, finished: FinishedSession) -> None:
        """The sensor's own listener, last in the chain: report new losses."""
        self._report_losses()

    def sessions_finished(self, batch: Sequence[FinishedSession]) -> None:
        self._report_losses()

    def _report_losses(self) -> None:
        """Publish what failed since the last report: plugin callbacks, listener calls, output writes.
        Runs for every finished session, so it first checks one cheap sum of the counters."""
        marker = self.runtime.errors.total + self.writer.lost() + (
            self._pipeline.hooks.errors.total if self._pipeline is not None else 0)
        if marker == self._losses_seen:
            return
        self._losses_seen = marker
        totals = [("plugin", "plugin", self.runtime.errors.total,
                   "plugin callback error(s); see the log for file and line")]
        if self._pipeline is not None:
            totals.append(("listener", "listener", self._pipeline.hooks.errors.total,
                           "listener call(s) failed; see the log for which and why"))
        for sink in self.writer.stats():
            totals.append((f"output {sink.name}", "output", sink.lost,
                           f"session(s) not written to output {sink.name} (queue full or write failed)"))
        for key, kind, total, what in totals:
            new = total - self._reported.get(key, 0)
            if new > 0:
                self._reported[key] = total
                self.bus.publish(CaptureErrorEvent(error=f"{new} {what}", kind=kind))

    def _terminate(self, session_uid: str) -> bool:
        """End a live session now; a kernel-fed one is bypassed (counted, not sent)."""
        if self._pool is not None:
            owner = self._view.owner(session_uid)
            if owner is None:
                return False
            if self._pool.dispatching():  # a sync handler of a worker's event: its answer would come here
                return self._pool.tell(owner, "terminate", (session_uid,))
            return any(self._pool.ask(owner, "terminate", (session_uid,)))
        pipeline = self._pipeline
        return pipeline is not None and pipeline.terminate(session_uid)

    # -- workers (sensor.workers): their sessions reach the outputs, the bus and the API here
    def _worker_finished(self, worker: int, finished: FinishedSession) -> None:
        finished.record["xdpsensor"]["worker"] = worker  # a copy made by the pipe: no one else holds it
        self._finished += 1
        self.writer.session_finished(finished)
        self._report_losses()

    def _worker_event(self, worker: int, event: object) -> None:
        self._view.apply(worker, event)
        self.bus.publish(event)

    def _worker_died(self, death: WorkerDeath) -> None:
        death.live = self._live is not None
        if death.live:
            death.flows_bypassed = bypass_shard(self._program, death.index, len(self._pool.workers))
        death.sessions_lost = self._view.lost(death.index)
        log.error("%s", death.message())
        self.bus.publish(CaptureErrorEvent(error=death.message(), kind="worker"))

    def _start_workers(self, pool: WorkerPool) -> WorkerPool:
        """Start `pool`'s workers, reporting to this sensor; the API follows their sessions from now on."""
        pool.on_finished, pool.on_event, pool.on_death = self._worker_finished, self._worker_event, self._worker_died
        self._view = WorkerSessions(self.bindings, self.bus, pool.ask,
                                    max_frames_per_session=self.config.max_frames_per_session)
        self.api.follow(self._view)
        self._pool = pool
        pool.start()
        return pool

    # -- offline ----------------------------------------------------------------
    def read_pcap(self, paths: str | Path | Sequence[str | Path], prefilter: str = "auto",
                  on_progress: Callable[[int, int], None] | None = None,
                  stop: threading.Event | None = None) -> ReplaySummary:
        """Run capture files through the pipeline. prefilter: `kernel` (the real
        XDP program through BPF_PROG_TEST_RUN, root), `python` (its pure-Python
        mirror), `none` (every flow to the plugins, like Arkime), or `auto`
        (kernel when root, else python). Setting `stop` ends the read early,
        every session read so far flushed."""
        if prefilter not in PREFILTERS:
            raise ValueError(f"prefilter must be one of {', '.join(PREFILTERS)}, not {prefilter!r}")
        if isinstance(paths, (str, Path)):
            paths = [paths]
        if prefilter == "auto":
            prefilter = "kernel" if os.geteuid() == 0 else "python"
        self.writer.block_when_full, self.writer.wait_deadline = True, None  # a file waits for the outputs
        workers = workers_for(self.config, live=False)
        if workers > 1:
            summary = self._read_with_workers([Path(p) for p in paths], prefilter, workers, on_progress, stop)
        else:
            program, flow_filter = self.flow_filter(prefilter)
            try:
                pipeline = self._new_pipeline(flow_filter)
                summary = replay(paths, pipeline, flow_filter, on_progress, stop, self._lock)
            finally:
                if program is not None:
                    program.close()
        self._flush_outputs()
        return summary

    def flow_filter(self, prefilter: str) -> tuple[SensorProgram | None, CaptureFilter | None]:
        """(the program to close, the flow filter for both the pipeline and
        the reading) for a `read_pcap` prefilter other than auto."""
        if prefilter == "kernel":
            program = SensorProgram(self.program_options())
            program.set_rules(self.rules)
            return program, CaptureFilter(program)
        if prefilter == "python":
            return None, CaptureFilter(PythonFlowTable(self.rules, self.program_options()))
        return None, None

    def _read_with_workers(self, paths: list[Path], prefilter: str, count: int,
                           on_progress: Callable[[int, int], None] | None,
                           stop: threading.Event | None) -> ReplaySummary:
        """This process reads the files and deals each record to the one of
        `count` workers its flow hashes to (sensor.workers.shard)."""
        pool = self._start_workers(offline_pool(self.config, prefilter, count))
        try:
            return read_in_workers(paths, pool, prefilter != "none", self.config.udp_tunnel_table(), on_progress, stop)
        finally:
            self._pool = None

    # -- live -------------------------------------------------------------------
    def start(self, interfaces: Sequence[str], netns: str | None = None, mode: str = "auto",
              force: bool = False, capture: LiveCapture | None = None) -> list[str]:
        """Attach to `interfaces` and run in a background thread; returns where and how it attached.
        `capture`: one `attach_program` made earlier (as root, before this Sensor loaded its
        plugins as an unprivileged user); it then replaces the other arguments."""
        if self._live is not None:
            raise RuntimeError("this sensor is already running: stop() it first")
        workers = workers_for(self.config, live=True)
        if capture is None:
            capture = LiveCapture(SensorProgram(self.program_options(rings=workers, live=True)), interfaces, netns, mode, force)
        program = capture.program
        try:
            program.set_rules(self.rules)
            self.writer.block_when_full = False  # capture never waits for an output
            if workers > 1:
                self._program = program
                pool = self._start_workers(live_pool(self.config, program, workers))
                live = WorkerLoop(capture, pool, on_ring_loss=self._ring_loss)
            else:
                live = LiveLoop(capture, self._new_pipeline(program), self._lock, on_ring_loss=self._ring_loss)
            where = live.start()
        except BaseException:
            if self._pool is not None:
                self._pool.stop()
                self._pool = None
            program.close()
            raise
        self._program, self._live = program, live
        return where

    def _ring_loss(self, lost: int) -> None:
        self.bus.publish(CaptureErrorEvent(
            error=f"ring buffer full: {lost} packet(s) lost; narrow the rules or let plugins bypass more",
            kind="ringbuf"))

    def live_stats(self) -> dict | None:
        """The kernel's counters while running."""
        return self._live.stats() if self._live is not None else None

    def ring_drops(self) -> int:
        """Packets of selected flows lost to a full ring so far, as the live loop last read the counter."""
        return self._live.drops if self._live is not None else 0

    def pipeline_stats(self) -> PipelineStats | None:
        if self._pool is not None:
            return PipelineStats(records=self._finished)
        return self._pipeline.stats if self._pipeline is not None else None

    def stop(self) -> RunSummary:
        """Detach, flush every session to the outputs, free the program."""
        if self._live is None:
            raise RuntimeError("this sensor is not running")
        # Stopping ends every open session at once, far more than an output queue holds: wait
        # for the outputs rather than drop, but not for ever on one that is stuck.
        self.writer.wait_deadline = time.monotonic() + STOP_FLUSH_WAIT
        self.writer.block_when_full = True
        try:
            return self._live.stop()
        finally:
            self._program.close()
            self._live = self._program = self._pool = None
            self._flush_outputs()

    def _flush_outputs(self) -> None:
        """Wait until the outputs hold every finished session, then report what was lost."""
        self.writer.flush()
        self._report_losses()

    def session_table(self) -> SessionTable | None:
        return self._pipeline.table if self._pipeline is not None else None

    def attachments(self) -> list[Attachment]:
        """Where the live program is attached (empty when not running)."""
        return list(self._live.capture.attachments) if self._live is not None else []

    def worker_answers(self, command: str, args: tuple = ()) -> list | None:
        """Every worker's answer to `command` (sensor.workers.worker); None without workers."""
        return self._pool.ask(None, command, args) if self._pool is not None else None

    def output_stats(self) -> list[SinkStats]:
        """Per output: sessions written, dropped (queue full) and failed (write raised)."""
        return self.writer.stats()

    def close(self) -> None:
        """Write what is queued, close the outputs, then the event bus (after stop / read)."""
        self.writer.close()
        self._report_losses()
        self.runtime.close()
        self.bus.close()

    def __enter__(self) -> Sensor:
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self.stop()
        self.close()


def program_options(cfg: SensorConfig, rings: int = 1, live: bool = False) -> ProgramOptions:
    """The program's options for `cfg`; live, the cheap tick clock where it keeps times exact to the ms."""
    return ProgramOptions(snaplen=cfg.snaplen or DEFAULT_SNAPLEN, emit_undecided=cfg.emit_undecided, rings=rings,
                          udp_tunnels=cfg.udp_tunnel_table(), coarse_clock=live and coarse_clock_is_exact(),
                          vlan_key=cfg.vlan_keying())


def attach_program(cfg: SensorConfig, interfaces: Sequence[str], netns: str | None = None, mode: str = "auto",
                   force: bool = False) -> LiveCapture:
    """The privileged half of a live start: the program loaded and attached, selecting nothing
    until `Sensor.start(capture=...)` writes its rules (which needs no privilege)."""
    program = SensorProgram(program_options(cfg, rings=workers_for(cfg, live=True), live=True))
    capture = LiveCapture(program, interfaces, netns, mode, force)
    try:
        capture.start()
    except BaseException:
        program.close()
        raise
    return capture
