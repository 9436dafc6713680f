"""`xdpsensor read`: capture files through the same pipeline as live traffic,
optionally behind the pre-filter the live sensor runs in XDP.

Three ways to read (`replay`'s `frame_filter`):
- None: every frame goes to the pipeline, as Arkime reads a file (--no-prefilter);
- CaptureFilter(SensorProgram): every frame runs through the real XDP program
  with BPF_PROG_TEST_RUN (root); what it emits goes to the pipeline;
- CaptureFilter(PythonFlowTable): the same decisions in pure Python (no root).
Either CaptureFilter is a flow filter (sensor.kernel.flowfilter) and the
pipeline's `kernel`: the same object, built once.

The program only parses Ethernet, so frames of other link types get an
Ethernet header built in front (zero MACs, the link type's protocol as the
ethertype); the pipeline still decodes the original frame. Whole-flow byte
counts follow Arkime either way: the bytes a frame had on the wire
(`wire_len`, link header included, nothing built added), not what the
program saw. Times are capture times throughout.
"""
from __future__ import annotations

import threading
import time
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sensor.arkime.loader import load_paths
from sensor.arkime.runtime import PluginRuntime
from sensor.capture.pcapfile import PcapError, PcapRecord, Span, iter_runs
from sensor.capture.ring import RingReader
from sensor.flows.ether import ether_flow_key
from sensor.flows.key import VlanKeying
from sensor.flows.table import FlowTimeouts, SessionTable
from sensor.hooks import FinishedCollector
from sensor.kernel.contract import IPPROTO_TCP, REUSE_MAX, FlowKey, FlowState, Stat, Verdict, retired_key
from sensor.kernel.flowfilter import FrameFilter
from sensor.kernel.flowsession import Attention
from sensor.kernel.program import Record, SensorProgram, parse_record
from sensor.packet import (
    LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_NULL,
    LINKTYPE_RAW, LINKTYPE_RAW_OPENBSD, TCP_ACK, TCP_SYN,
)
from sensor.pipeline import Pipeline
from sensor.prefilter import NOT_IP, ParsedFrame, parse_frame

EXPIRE_EVERY = 1.0          # capture seconds between idle-session expiries
# BPF_PROG_TEST_RUN puts at most a page minus headroom and shared info (3520
# bytes on 4 KiB pages) in the linear area the program sees; longer frames
# (TSO/GRO captures) are cut below that for both filters alike.
KERNEL_FRAME_MAX = 3072

LINKTYPE_LOOP = 108
_SYN_ACK = TCP_SYN | TCP_ACK
_ETH_IP, _ETH_IPV6 = b"\x08\x00", b"\x86\xdd"
_MACS = bytes(12)
_NULL_AF_INET6 = frozenset((10, 24, 28, 30))


def ethernet_frame(linktype: int, data: bytes) -> bytes | None:
    """The frame as the XDP program needs it: Ethernet. None when the link
    type has no Ethernet equivalent (radiotap, frame relay, ...) or the link
    header is cut short."""
    if linktype == LINKTYPE_ETHERNET:
        return data
    if linktype in (LINKTYPE_RAW, LINKTYPE_RAW_OPENBSD, LINKTYPE_IPV4, LINKTYPE_IPV6):
        if linktype == LINKTYPE_IPV4 or (linktype != LINKTYPE_IPV6 and data[:1] and data[0] >> 4 == 4):
            return _MACS + _ETH_IP + data
        if linktype == LINKTYPE_IPV6 or (data[:1] and data[0] >> 4 == 6):
            return _MACS + _ETH_IPV6 + data
        return _MACS + b"\0\0" + data  # not IP: the program counts it as such
    if linktype == LINKTYPE_LINUX_SLL:
        return _MACS + data[14:16] + data[16:] if len(data) >= 16 else None
    if linktype == LINKTYPE_LINUX_SLL2:
        return _MACS + data[0:2] + data[20:] if len(data) >= 20 else None
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(data) < 4:
            return None
        # NULL: the capturing host's byte order; LOOP: network order.
        families = {int.from_bytes(data[:4], "big")} if linktype == LINKTYPE_LOOP else {
            int.from_bytes(data[:4], "little"), int.from_bytes(data[:4], "big")}
        ethertype = _ETH_IP if 2 in families else _ETH_IPV6 if families & _NULL_AF_INET6 else b"\0\0"
        return _MACS + ethertype + data[4:]
    return None


def program_frame(linktype: int, data: bytes) -> bytes | None:
    """What the filter runs on for one capture record: the Ethernet frame,
    cut to KERNEL_FRAME_MAX; None when there is none or it is shorter than an
    Ethernet header (BPF_PROG_TEST_RUN refuses runts)."""
    frame = ethernet_frame(linktype, data)
    if frame is None or len(frame) < 14:
        return None
    return frame[:KERNEL_FRAME_MAX]


class _CaptureClock:
    """Maps bpf_ktime_get_ns() stamps back to the capture time of the frame
    being run: the program's clock reading falls between the CLOCK_MONOTONIC
    readings taken just before its test run and just before the next one."""

    def __init__(self) -> None:
        self._mono = array("q")
        self._capture = array("q")

    def __len__(self) -> int:
        return len(self._mono)

    def mark(self, capture_ns: int) -> None:
        self._mono.append(time.monotonic_ns())
        self._capture.append(capture_ns)

    def capture_ns(self, ktime_ns: int) -> int:
        i = bisect_right(self._mono, ktime_ns) - 1
        return self._capture[max(i, 0)] if self._capture else 0

    def keep(self, ktimes: Iterable[int]) -> None:
        """Forget every mark but those `ktimes` fall on, and the latest: the
        table's times are all that can still be asked about."""
        wanted = {bisect_right(self._mono, k) - 1 for k in ktimes} | {len(self._mono) - 1}
        wanted = sorted(i for i in wanted if i >= 0)
        self._mono = array("q", (self._mono[i] for i in wanted))
        self._capture = array("q", (self._capture[i] for i in wanted))


class TestRunTable:
    """The real XDP program as a frame-by-frame flow table: each frame runs
    with BPF_PROG_TEST_RUN, the ring is drained after it, and the kernel's
    clock in records and flows is turned into capture time (a FrameFilter).
    Takes over the program's ring buffer and clears its flows."""

    __test__ = False            # not a pytest class, despite the name
    clock_offset_ns = 0         # flow times are capture times

    def __init__(self, program: SensorProgram, keep_every: int = 1 << 20) -> None:
        """`keep_every`: test runs between forgetting the clock marks no flow refers to."""
        self.program = program
        self.options = program.options
        self.keep_every = keep_every
        self._ring = RingReader(program.ring_fds[0], program.ring_size)
        self._clock = _CaptureClock()
        self._keep_at = keep_every
        program.clear_flows()
        self._base = program.stats()

    def process(self, frame: bytes, ts_ns: int) -> Record | None:
        if len(self._clock) >= self._keep_at:
            self._clock.keep(t for _, s in self.program.flows() for t in (s.first_ns, s.last_ns))
            self._keep_at = max(self.keep_every, 2 * len(self._clock))  # amortised with many flows
        self._clock.mark(ts_ns)
        self.program.test_run(frame)
        emitted = self._ring.read()
        if not emitted:
            return None
        record = parse_record(emitted[-1])  # one frame, at most one record
        record.header.ts_ns = ts_ns
        return record

    @property
    def clock_marks(self) -> int:
        """Clock marks held (16 bytes each): one per frame run, until the
        marks no flow refers to are forgotten every `keep_every` or so."""
        return len(self._clock)

    def _captured(self, state: FlowState) -> FlowState:
        state.first_ns = self._clock.capture_ns(state.first_ns)
        state.last_ns = self._clock.capture_ns(state.last_ns)
        return state

    def flow(self, key: FlowKey) -> FlowState | None:
        state = self.program.flow(key)
        return None if state is None else self._captured(state)

    def flows(self, attention: Attention | None = None) -> Iterator[tuple[FlowKey, FlowState]]:
        # Attention compares capture times: it is tested after the program's times are mapped back.
        for key, state in self.program.flows():
            state = self._captured(state)
            if attention is None or attention.wants(key.proto, state.flags, state.packets[0] + state.packets[1],
                                                    state.first_ns, state.last_ns):
                yield key, state

    def set_verdict(self, key: FlowKey, verdict: Verdict) -> bool:
        return self.program.set_verdict(key, verdict)

    def delete_flow(self, key: FlowKey) -> None:
        self.program.delete_flow(key)

    def delete_flows(self, keys: Sequence[FlowKey]) -> None:
        self.program.delete_flows(keys)

    def stats(self) -> dict[Stat, int]:
        """Counters since this table took the program over."""
        return {stat: n - self._base[stat] for stat, n in self.program.stats().items()}


class CaptureFilter:
    """A pre-filter fed capture records: Ethernet frames for the program,
    Arkime's byte counts; the flow filter of a capture file. Give the same
    one to the Pipeline as `kernel` and to `replay` as `frame_filter`."""

    clock_offset_ns = 0         # flow times are capture times

    def __init__(self, table: FrameFilter | SensorProgram) -> None:
        self.table: FrameFilter = TestRunTable(table) if isinstance(table, SensorProgram) else table
        self.kind = "kernel" if isinstance(self.table, TestRunTable) else "python"
        self.unfilterable = 0   # frames the program cannot be given (link type, too short)
        self._extra: dict[bytes, list[int]] = {}   # flow -> per side: wire bytes minus program bytes

    def process_record(self, rec: PcapRecord) -> Record | None:
        """Run one capture record through the filter; the record the program
        emitted for it, or None."""
        frame = program_frame(rec.linktype, rec.data)
        if frame is None:
            self.unfilterable += 1
            return None
        record = self.table.process(frame, round(rec.timestamp * 1e9))
        extra = rec.wire_len - len(frame)
        if extra:
            self._count_extra(frame, extra)
        return record

    def _count_extra(self, frame: bytes, extra: int) -> None:
        """Remember the bytes the program counted differently for this frame,
        on the flow and side it counted them (the program's own attribution,
        replayed from its parse). A later fragment counts its payload, not its
        frame: nothing to correct."""
        p = parse_frame(frame, self.table.options.udp_tunnels, self.table.options.vlan_key)
        if not isinstance(p, ParsedFrame):
            found = ether_flow_key(frame) if p == NOT_IP else None
            if found is not None:   # a non-IP flow: all on its source side
                self._extra.setdefault(found[0], [0, 0])[0] += extra
            return
        if p.key is not None:
            if p.proto == IPPROTO_TCP and p.tcp_flags & _SYN_ACK == TCP_SYN and p.key in self._extra:
                self._follow_retired(p.key)
            self._extra.setdefault(p.key, [0, 0])[p.side] += extra

    def _follow_retired(self, key: bytes) -> None:
        """A SYN the program took as a new connection on these ports (port
        reuse): the old connection's bytes to correct go with it to its retired key."""
        state = self.table.flow(FlowKey.from_buffer_copy(key))
        if state is None or state.packets[0] + state.packets[1] != 1:
            return      # counted on the old flow: no new connection
        for retired in range(1, REUSE_MAX + 1):
            old = retired_key(key, retired)
            if old not in self._extra and self.table.flow(FlowKey.from_buffer_copy(old)) is not None:
                self._extra[old] = self._extra.pop(key)
                return

    # -- flowfilter.FlowFilter ------------------------------------------------------
    def flow(self, key: FlowKey) -> FlowState | None:
        state = self.table.flow(key)
        return None if state is None else self._with_wire_bytes(key, state)

    def flows(self, attention: Attention | None = None) -> Iterator[tuple[FlowKey, FlowState]]:
        for key, state in self.table.flows(attention):
            yield key, self._with_wire_bytes(key, state)

    def _with_wire_bytes(self, key: FlowKey, state: FlowState) -> FlowState:
        extra = self._extra.get(bytes(key))
        if extra is not None:
            for side in (0, 1):
                state.bytes[side] = max(0, state.bytes[side] + extra[side])
        return state

    def set_verdict(self, key: FlowKey, verdict: Verdict) -> bool:
        return self.table.set_verdict(key, verdict)

    def delete_flow(self, key: FlowKey) -> None:
        self.delete_flows([key])

    def delete_flows(self, keys: Sequence[FlowKey]) -> None:
        self.table.delete_flows(keys)
        for key in keys:
            self._extra.pop(bytes(key), None)

    def stats(self) -> dict[Stat, int]:
        return self.table.stats()


@dataclass(slots=True)
class ReplaySummary:
    prefilter: str = "none"     # "kernel", "python" or "none"
    frames: int = 0             # capture records read
    delivered: int = 0          # frames given to the pipeline
    unfilterable: int = 0       # frames the filter could not be given (not delivered)
    undecodable: int = 0        # delivered frames the pipeline could not decode
    sessions: int = 0
    records: int = 0
    seconds: float = 0.0
    filter_stats: dict[Stat, int] = field(default_factory=dict)
    broken: list[str] = field(default_factory=list)   # "file: where and why it broke", one per file
    linktypes: set[int] = field(default_factory=set)
    interrupted: bool = False   # stopped before the end; what was read is flushed
    dead_worker_frames: int = 0     # read --workers: frames dealt to a worker that died before it fed them

    def add(self, part: ReplaySummary) -> None:
        """Add what a worker did with the records dealt to it (this summary
        counts the reading: frames, link types, broken files)."""
        self.prefilter = part.prefilter
        self.delivered += part.delivered
        self.unfilterable += part.unfilterable
        self.undecodable += part.undecodable
        self.sessions += part.sessions
        self.records += part.records
        for stat, count in part.filter_stats.items():
            self.filter_stats[stat] = self.filter_stats.get(stat, 0) + count

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def unreadable(self) -> bool:
        """Frames were read, but not one of them could be decoded or filtered."""
        return self.frames > 0 and self.unfilterable + self.undecodable == self.frames

    @property
    def complete(self) -> bool:
        """Every file read to its end, and something in them was readable."""
        return not self.broken and not self.interrupted and not self.unreadable and not self.dead_worker_frames

    def lines(self) -> list[str]:
        out = [f"read {self.frames} frames in {self.seconds:.1f}s ({self.frames_per_second:,.0f} frames/s): "
               f"{self.delivered} to the pipeline ({self.undecodable} undecodable), {self.sessions} sessions, "
               f"{self.records} records"]
        s = self.filter_stats
        if self.prefilter == "none":
            out.append("no pre-filter: every frame went to the pipeline, as Arkime reads a file")
        else:
            out.append(f"pre-filter ({self.prefilter}): {s[Stat.FLOW_NEW]} flows, selected {s[Stat.SELECTED]}, "
                       f"ignored {s[Stat.IGNORED]}, bypassed packets {s[Stat.BYPASSED_PKTS]}, "
                       f"not IP {s[Stat.NOT_IP]}, truncated {s[Stat.TRUNCATED]}, orphan fragments "
                       f"{s[Stat.FRAG_ORPHAN]}, frames it cannot take {self.unfilterable}, "
                       f"flows its full table evicted {s[Stat.FLOW_EVICTED]} (an unselected one has no record)")
        out += [f"broken capture: {b} (sessions read before the break were flushed)" for b in self.broken]
        if self.unreadable:
            out.append(f"none of the {self.frames} frames could be read: link type(s) "
                       f"{', '.join(map(str, sorted(self.linktypes)))} not supported (Ethernet, raw IP, "
                       "Linux cooked v1/v2 and loopback are)")
        if self.dead_worker_frames:
            out.append(f"{self.dead_worker_frames} frames were not read: their flows' worker died first")
        if self.interrupted:
            out.append("interrupted: stopped before the end of the input; every open session was flushed")
        return out


def read_captures(paths: Sequence[Path], summary: ReplaySummary,
                  on_progress: Callable[[int, int], None] | None = None,
                  stop: threading.Event | None = None) -> Iterator[PcapRecord]:
    """The records of the capture files in order, counted in `summary`
    (frames, link types). A file that cannot be read to its end is noted in
    `broken` and the next one read; `stop` set ends the reading early.
    `on_progress(bytes_done, bytes_total)` follows the files."""
    for run in read_runs(paths, summary, on_progress, stop):
        for timestamp, linktype, buffer, start, end, wire_len in run:
            yield PcapRecord(timestamp, linktype, buffer[start:end], wire_len)


def read_runs(paths: Sequence[Path], summary: ReplaySummary,
              on_progress: Callable[[int, int], None] | None = None,
              stop: threading.Event | None = None) -> Iterator[list[Span]]:
    """As read_captures, in runs of records not copied out (pcapfile.Span):
    for the dealer of `read --workers`, which copies each out once, for its worker."""
    total = sum(p.stat().st_size for p in paths)
    done = 0
    for path in paths:
        if stop is not None and stop.is_set():
            summary.interrupted = True
            return
        try:
            with open(path, "rb") as stream:
                for run in iter_runs(stream):
                    summary.frames += len(run)
                    summary.linktypes.update({span[1] for span in run})
                    yield run
                    if on_progress is not None:
                        on_progress(done + stream.tell(), total)
                    if stop is not None and stop.is_set():
                        summary.interrupted = True
                        return
        except PcapError as e:
            summary.broken.append(f"{path}: {e}")
        except OSError as e:
            summary.broken.append(f"{path}: {e.strerror or e}")
        done += path.stat().st_size
        if on_progress is not None:
            on_progress(done, total)


class CaptureEvery:
    """A housekeeping step run on capture time: at the first record, then at
    the first record at least `period` after the last run."""

    def __init__(self, period: float) -> None:
        self.period = period
        self._next = 0.0

    def window(self) -> tuple[float, float]:
        """[low, high): the times `due` says False to, until it next says True."""
        return self._next - self.period, self._next

    def due(self, now: float) -> bool:
        if self._next - self.period <= now < self._next:
            return False        # (a clock that went back, e.g. the next file, runs it at once)
        self._next = now + self.period
        return True


class Housekeeping:
    """When one process reading every record of the captures expires idle
    sessions and the filter's own flows, on capture time. The same schedule
    drives a RecordFeed that sees every record and the dealer of
    `read --workers` (sensor.workers.shard), which sends each expiry to every
    worker: the housekeeping runs at the points one process would run it."""

    def __init__(self, period: float, kernel: bool) -> None:
        """`kernel`: there is a filter whose flows expire too."""
        self._sessions = CaptureEvery(period)
        self._kernel = CaptureEvery(period) if kernel else None
        self._previous: float | None = None
        self._quiet = (0.0, 0.0)    # times at which neither clock is due

    def step(self, timestamp: float) -> tuple[float | None, bool] | None:
        """For the record at `timestamp`: None when nothing is due, else (the
        capture time to expire the filter's flows at before the record, or
        None; whether idle sessions expire after it). The filter's flows
        expire on the previous record's clock, as Arkime's: a packet never
        times out its own flow."""
        previous, self._previous = self._previous, timestamp
        low, high = self._quiet
        if low <= timestamp < high and previous is not None and low <= previous < high:
            return None     # both clocks' windows hold both times: the common case, one test
        kernel = self._kernel
        kernel_due = previous if kernel is not None and previous is not None and kernel.due(previous) else None
        sessions_due = self._sessions.due(timestamp)
        self._quiet = self._sessions.window() if kernel is None else _overlap(self._sessions.window(), kernel.window())
        return None if kernel_due is None and not sessions_due else (kernel_due, sessions_due)

    def dues(self, timestamps: Sequence[float]) -> list[tuple[int, tuple[float | None, bool]]]:
        """`step` for a run of records: (position, what is due) where something is; in the
        common case (every time in both clocks' windows) one test for the whole run."""
        low, high = self._quiet
        previous = self._previous
        if timestamps and previous is not None and low <= previous < high \
                and low <= min(timestamps) and max(timestamps) < high:
            self._previous = timestamps[-1]
            return []
        return [(position, due) for position, due in enumerate(map(self.step, timestamps)) if due is not None]


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    return max(a[0], b[0]), min(a[1], b[1])


class RecordFeed:
    """Capture records into a pipeline one at a time, through the filter when
    there is one. With `housekeeping`, idle sessions and the filter's own
    flows expire on the records' capture time; a worker has none and is told
    when (`expire`, `expire_kernel`). The pipeline must have been built with
    kernel=capture_filter: its flow counts replace the session's, and bypass
    verdicts must reach it."""

    def __init__(self, pipeline: Pipeline, capture_filter: CaptureFilter | None, summary: ReplaySummary,
                 housekeeping: Housekeeping | None = None) -> None:
        if capture_filter is not None and pipeline.kernel is not capture_filter:
            raise ValueError("build the Pipeline with kernel=frame_filter: its flow counts replace the "
                             "session's, and bypass verdicts must reach it")
        self.pipeline = pipeline
        self.capture_filter = capture_filter
        self.summary = summary
        self.housekeeping = housekeeping

    def feed(self, rec: PcapRecord) -> None:
        due = self.housekeeping.step(rec.timestamp) if self.housekeeping is not None else None
        if due is not None and due[0] is not None:
            self.expire_kernel(due[0])
        self.process(rec)
        if due is not None and due[1]:
            self.pipeline.expire(rec.timestamp)

    def process(self, rec: PcapRecord) -> None:
        """The record through the filter (if any) into the pipeline; no housekeeping."""
        if self.capture_filter is None:
            self.pipeline.feed(rec.data, rec.timestamp, linktype=rec.linktype, wire_len=rec.wire_len)
            self.summary.delivered += 1
        else:
            record = self.capture_filter.process_record(rec)
            if record is not None:
                self.pipeline.feed(rec.data, rec.timestamp, kernel_key=bytes(record.header.key),
                                   linktype=rec.linktype, wire_len=rec.wire_len)
                self.summary.delivered += 1

    def expire(self, timestamp: float) -> None:
        """End the sessions idle at capture time `timestamp`."""
        self.pipeline.expire(timestamp)

    def expire_kernel(self, timestamp: float) -> None:
        """End the filter's flows idle at capture time `timestamp`."""
        self.pipeline.expire_kernel(round(timestamp * 1e9))

    def finish(self, started: float) -> ReplaySummary:
        """End every session; the summary, timed from `started` (time.monotonic())."""
        self.pipeline.close()
        summary = self.summary
        summary.seconds = time.monotonic() - started
        stats = self.pipeline.stats
        summary.undecodable, summary.sessions, summary.records = stats.undecodable, stats.sessions, stats.records
        if self.capture_filter is not None:
            summary.prefilter = self.capture_filter.kind
            summary.unfilterable = self.capture_filter.unfilterable
            summary.filter_stats = self.capture_filter.stats()
        return summary


def replay(pcaps: Iterable[str | Path], pipeline: Pipeline,
           frame_filter: CaptureFilter | None,
           on_progress: Callable[[int, int], None] | None = None,
           stop: threading.Event | None = None, lock: threading.RLock | None = None) -> ReplaySummary:
    """Feed the captures to `pipeline`, every frame (frame_filter None) or
    what the filter emits, then end every session. The pipeline must have
    been built with kernel=frame_filter. Idle sessions expire on capture
    time. `on_progress(bytes_done, bytes_total)` follows the files. A file
    that cannot be read to its end is noted in `broken` and the next one
    read; `stop` set ends the reading early. Either way every session read so far is flushed. `lock` is held
    for each record and released between records, so API calls from other
    threads see whole packets and wait no longer than one."""
    lock = lock if lock is not None else threading.RLock()
    summary = ReplaySummary()
    started = time.monotonic()
    feed = RecordFeed(pipeline, frame_filter, summary, Housekeeping(EXPIRE_EVERY, frame_filter is not None))
    for rec in read_captures([Path(p) for p in pcaps], summary, on_progress, stop):
        with lock:
            feed.feed(rec)
    with lock:
        return feed.finish(started)


def read_records(pcaps: Iterable[str | Path], plugins: Iterable[str | Path] = (),
                 frame_filter: FrameFilter | SensorProgram | None = None, bypass: bool = False,
                 kernel_records: bool = True, timeouts: FlowTimeouts = FlowTimeouts(),
                 vlan_key: VlanKeying | None = None) -> list[dict]:
    """Every session of the captures as SPI records, with the given plugin
    files/dirs loaded. Without `frame_filter` every flow goes to the plugins,
    like Arkime reading a file; with one, what that pre-filter emits does, and
    (`kernel_records`) every other flow gets its record from the filter's counters.
    `timeouts`: the idle timeouts of sessions and of the filter's flows alike;
    `vlan_key`: the sessions' VLAN keying (a filter keys flows by its own options')."""
    runtime = PluginRuntime()
    load_paths(runtime, plugins)
    collected = FinishedCollector()
    flow_filter = CaptureFilter(frame_filter) if frame_filter is not None else None
    pipeline = Pipeline(runtime, SessionTable(timeouts, vlan_key=vlan_key), [collected], kernel=flow_filter,
                        bypass=bypass, kernel_records=kernel_records)
    replay(pcaps, pipeline, flow_filter)
    return collected.records
