"""The loaded XDP program and its maps: compile with bcc, program the rule
tables, read counters and flows, write verdicts, make the ring buffers
(sensor.capture.ring reads them)."""
from __future__ import annotations

import ctypes as ct
import errno
import mmap
import os
import struct
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from sensor.errors import SensorError
from sensor.flows.key import VlanKeying
from sensor.kernel import bpfsys
from sensor.kernel.contract import (
    BPF_DIR, MAX_SNAPLEN, PREFIX_SHAPES, RECORD_HEADER_SIZE, RINGS_MAX, FlowKey, FlowState, PortKey,
    PrefixKey, PrefixShape, RecordHeader, SensorConfig, Stat, Verdict, select_proto_bits,
)
from sensor.kernel.flowsession import Attention
from sensor.kernel.rules import RuleSet
from sensor.walk import DEFAULT_UDP_TUNNELS

DEFAULT_SNAPLEN = 1522  # a full 1514-byte frame plus two VLAN tags
CLOCK_MONOTONIC_COARSE = 6  # Linux's clock id (Python's time module does not name it): bpf_ktime_get_coarse_ns
FLOW_BATCH = 4096       # flow entries per batch syscall: memory stays bounded however big the table


class ProgramError(SensorError, RuntimeError):
    """The XDP program could not be compiled or loaded; says what to do."""


@dataclass(frozen=True, slots=True)
class ProgramOptions:
    snaplen: int = DEFAULT_SNAPLEN
    flow_entries: int = 65536
    ringbuf_pages: int = 1024          # 4 MiB per ring with 4 KiB pages
    max_undecided_payloads: int = 8
    emit_undecided: bool = False
    rings: int = 1                     # one per worker process
    wakeup_bytes: int = 64 * 1024      # a ring's reader is woken once it holds this much
    # UDP destination port -> the tunnel it carries (sensor.walk.parse_udp_tunnels)
    udp_tunnels: Mapping[int, int] = field(default_factory=lambda: dict(DEFAULT_UDP_TUNNELS))
    coarse_clock: bool = False         # flow and record times from the tick clock (see coarse_clock_is_exact)
    vlan_key: VlanKeying | None = None  # flows keyed on their first VLAN id too (Arkime's sessionIdTracking=vlan)

    def __post_init__(self) -> None:
        if not 1 <= self.snaplen <= MAX_SNAPLEN:
            raise ValueError(f"snaplen must be between 1 and {MAX_SNAPLEN}, not {self.snaplen}")
        if self.ringbuf_pages & (self.ringbuf_pages - 1):
            raise ValueError("ringbuf_pages must be a power of two")
        if not 1 <= self.rings <= RINGS_MAX:
            raise ValueError(f"rings (workers) must be between 1 and {RINGS_MAX}, not {self.rings}")
        if not 1 <= self.wakeup_bytes <= self.ring_size // 2:
            raise ValueError(f"wakeup_bytes must be between 1 and half a ring ({self.ring_size // 2}), "
                             f"not {self.wakeup_bytes}")

    @property
    def ring_size(self) -> int:
        return self.ringbuf_pages * mmap.PAGESIZE


_KEY_SIZE, _STATE_SIZE = ct.sizeof(FlowKey), ct.sizeof(FlowState)
# The fields Attention looks at, read straight from the batch buffers.
_KEY_PROTO = struct.Struct(f"<{FlowKey.proto.offset}xB{_KEY_SIZE - FlowKey.proto.offset - 1}x")
_STATE_TIMES = struct.Struct(
    f"<QQ{FlowState.first_ns.offset - 16}xQQ{FlowState.flags.offset - FlowState.last_ns.offset - 8}xB"
    f"{FlowState.own.offset - FlowState.flags.offset - 1}xQQ{_STATE_SIZE - FlowState.own.offset - 16}x")


def _wanted(attention: Attention | None, keys: ct.Array, values: ct.Array, n: int) -> Iterable[int]:
    """Indexes of the first `n` batch entries that `attention` wants (all without one)."""
    if attention is None:
        return range(n)
    protos = _KEY_PROTO.iter_unpack(memoryview(keys).cast("B")[:n * _KEY_SIZE])
    states = _STATE_TIMES.iter_unpack(memoryview(values).cast("B")[:n * _STATE_SIZE])
    wants = attention.wants
    return [i for i, ((proto,), (p0, p1, first, last, flags, own0, own1)) in enumerate(zip(protos, states))
            if wants(proto, flags, p0 + p1 + own0 + own1, first, last)]


def coarse_clock_is_exact() -> bool:
    """Whether the kernel's coarse clock ticks at least every millisecond
    (CONFIG_HZ >= 1000): only then do flow and record times taken from it stay
    exact to the ms. It saves ~35 ns per packet; BPF_PROG_TEST_RUN never
    takes it (frames run within one tick would share a time)."""
    return time.clock_getres(CLOCK_MONOTONIC_COARSE) <= 1e-3


@dataclass(frozen=True, slots=True)
class Record:
    """One ring-buffer record, copied out of the ring."""
    header: RecordHeader
    frame: bytes


def parse_record(raw: bytes) -> Record:
    header = RecordHeader.from_buffer_copy(raw[:RECORD_HEADER_SIZE])
    return Record(header, raw[RECORD_HEADER_SIZE:RECORD_HEADER_SIZE + header.caplen])


def _lib():
    from bcc.libbcc import lib  # imported late: only root paths need bcc
    return lib


class SensorProgram:
    """One compiled and loaded instance of bpf/sensor.bpf.c; the live
    flow filter (sensor.kernel.flowfilter). Not attached to any interface:
    see sensor.kernel.attach."""

    def __init__(self, options: ProgramOptions = ProgramOptions()) -> None:
        if os.geteuid() != 0:
            raise ProgramError("loading an XDP program needs root: run with sudo")
        try:
            from bcc import BPF
        except ImportError as e:
            raise ProgramError("bcc is not importable: run `make setup` (installs python3-bpfcc) "
                               "and use .venv/bin/xdpsensor") from e
        self.options = options
        cflags = [f"-I{BPF_DIR}", f"-DFLOW_ENTRIES={options.flow_entries}",
                  f"-DRINGBUF_PAGES={options.ringbuf_pages}", "-Wno-macro-redefined"]
        if options.coarse_clock:
            cflags.append("-DSENSOR_COARSE_CLOCK")
        try:
            self.bpf = BPF(src_file=str(BPF_DIR / "sensor.bpf.c").encode(), cflags=cflags)
            self.fd: int = self.bpf.load_func(b"xdp_sensor", BPF.XDP).fd
        except Exception as e:
            raise ProgramError(f"could not compile/load the XDP program: {e}. "
                               "Run `xdpsensor check` to see what the host lacks.") from e
        self._map_fd = {name: self.bpf[name.encode()].map_fd for name in
                        ("flows", "ports", "prefixes", "prefix_shapes", "config", "stats", "rings", "udp_tunnels",
                         "vlan_collapse", "deleters")}
        self._deleted: dict[int, int] = {}   # flows this process deleted, by pid (workers are forked)
        # Ring 0 is bcc's `events`; the others are made here with its size.
        self.ring_size = options.ring_size
        self._own_rings = [bpfsys.ringbuf_create(self.ring_size, f"events{i}") for i in range(1, options.rings)]
        self.ring_fds: list[int] = [self.bpf[b"events"].map_fd, *self._own_rings]
        for index, fd in enumerate(self.ring_fds):
            self._update("rings", ct.c_uint32(index), ct.c_uint32(fd))
        from bcc.utils import get_possible_cpus
        self._ncpus = len(get_possible_cpus())  # per-CPU maps hold one slot per possible CPU
        self._config = SensorConfig(snaplen=options.snaplen,
                                    max_undecided_payloads=options.max_undecided_payloads,
                                    emit_undecided=int(options.emit_undecided),
                                    rings=options.rings, wakeup_bytes=options.wakeup_bytes,
                                    vlan_key=int(options.vlan_key is not None))
        self._write_config()
        for port, kind in options.udp_tunnels.items():
            self._update("udp_tunnels", ct.c_uint32(port), ct.c_uint8(kind))
        for vlan, keyed in (options.vlan_key.collapse.items() if options.vlan_key is not None else ()):
            self._update("vlan_collapse", ct.c_uint32(vlan), ct.c_uint16(keyed + 1))
        # bpf_ktime_get_ns() is CLOCK_MONOTONIC: this turns it into epoch time (flowfilter.FlowFilter).
        self.clock_offset_ns = time.time_ns() - time.monotonic_ns()

    def close(self) -> None:
        self.bpf.cleanup()
        for fd in self._own_rings:
            os.close(fd)
        self._own_rings = []

    # -- configuration and rules -------------------------------------------------
    def _write_config(self) -> None:
        self._update("config", ct.c_uint32(0), self._config)

    def set_rules(self, rules: RuleSet) -> None:
        """Replace every port and prefix rule with `rules`. Flows already
        decided keep their verdict."""
        shapes = rules.shapes()  # validates before anything changes
        self._config.select_proto[:] = select_proto_bits(rules.select_all)
        self._write_config()
        self._clear("ports", PortKey)
        self._clear("prefixes", PrefixKey)
        one = ct.c_uint8(1)
        for rule in rules.ports:
            self._update("ports", PortKey(rule.proto, int(rule.role), rule.port), one)
        for proto, offset, length, masked in rules.prefix_keys():
            key = PrefixKey(proto=proto, len=length, offset=offset)
            ct.memmove(key.bytes, masked, length)
            self._update("prefixes", key, one)
        for slot in range(PREFIX_SHAPES):
            shape = PrefixShape()
            if slot < len(shapes):
                s = shapes[slot]
                shape = PrefixShape(proto=s.proto, len=s.length, last_mask=s.last_mask, offset=s.offset)
            self._update("prefix_shapes", ct.c_uint32(slot), shape)

    # -- counters and flows ------------------------------------------------------
    def stats(self) -> dict[Stat, int]:
        return {stat: self.stat(stat) for stat in Stat}

    def stat(self, stat: Stat) -> int:
        """One counter, summed over the CPUs (the live loop's once-a-second check)."""
        values = (ct.c_uint64 * self._ncpus)()
        _lib().bpf_lookup_elem(self._map_fd["stats"], ct.byref(ct.c_uint32(stat)), ct.byref(values))
        return sum(values)

    def flow(self, key: FlowKey) -> FlowState | None:
        state = self._stored_flow(key)
        return state.folded() if state is not None else None

    def _stored_flow(self, key: FlowKey) -> FlowState | None:
        """The entry as the kernel keeps it (`own` apart): what a write back must start from."""
        state = FlowState()
        if _lib().bpf_lookup_elem(self._map_fd["flows"], ct.byref(key), ct.byref(state)) < 0:
            return None
        return state

    def flows(self, attention: Attention | None = None) -> Iterator[tuple[FlowKey, FlowState]]:
        """Every flow (or those `attention` wants), FLOW_BATCH entries per
        syscall (BPF_MAP_LOOKUP_BATCH); `attention` is tested on the raw
        entries, so only the flows it wants become objects. A scan read to
        the end also updates Stat.FLOW_EVICTED."""
        created = self.stat(Stat.FLOW_NEW)
        present = 0
        fd, lib = self._map_fd["flows"], _lib()
        keys, values = (FlowKey * FLOW_BATCH)(), (FlowState * FLOW_BATCH)()
        token, first = ct.c_uint32(), True
        while True:
            got = ct.c_uint32(FLOW_BATCH)
            failed = lib.bpf_lookup_batch(fd, None if first else ct.byref(token), ct.byref(token),
                                          keys, values, ct.byref(got)) != 0
            err = ct.get_errno()
            n = got.value
            present += n
            yield from [(FlowKey.from_buffer_copy(keys, i * _KEY_SIZE),
                         FlowState.from_buffer_copy(values, i * _STATE_SIZE).folded())
                        for i in _wanted(attention, keys, values, n)]
            if failed:
                if err != errno.ENOENT:     # ENOENT: the table's end
                    raise ProgramError(f"reading the flow table failed: {os.strerror(err)}")
                break
            first = False
        self._note_evicted(created, present)

    def _note_evicted(self, created: int, present: int) -> None:
        """Flows the LRU table evicted before userspace ended them: created
        minus deleted (by any of the sensor's processes) minus present. Read in
        this order it never counts a flow that was not evicted, and it is exact
        once traffic stops; the kernel slot keeps the largest value seen."""
        deleted = sum(v.value for _, v in self.bpf[b"deleters"].items())
        evicted = created - deleted - present
        if evicted > self.stat(Stat.FLOW_EVICTED):
            values = (ct.c_uint64 * self._ncpus)(evicted)
            _lib().bpf_update_elem(self._map_fd["stats"], ct.byref(ct.c_uint32(Stat.FLOW_EVICTED)),
                                   ct.byref(values), 0)

    def set_verdict(self, key: FlowKey, verdict: Verdict) -> bool:
        """Write a verdict into an existing flow (BYPASSED stops emission but
        not counting). False if the kernel no longer has the flow."""
        state = self._stored_flow(key)
        if state is None:
            return False
        state.verdict = verdict
        return _lib().bpf_update_elem(self._map_fd["flows"], ct.byref(key), ct.byref(state), 2) == 0

    def delete_flow(self, key: FlowKey) -> None:
        self.delete_flows([key])

    def delete_flows(self, keys: Sequence[FlowKey]) -> None:
        """Delete flows, FLOW_BATCH per syscall (BPF_MAP_DELETE_BATCH); a key
        already gone (evicted) is skipped. Counts what this process deleted."""
        fd, lib, deleted = self._map_fd["flows"], _lib(), 0
        for start in range(0, len(keys), FLOW_BATCH):
            chunk = keys[start:start + FLOW_BATCH]
            array = (FlowKey * len(chunk))(*chunk)
            done = 0
            while done < len(chunk):
                count = ct.c_uint32(len(chunk) - done)
                failed = lib.bpf_delete_batch(fd, ct.byref(array, done * ct.sizeof(FlowKey)), ct.byref(count)) != 0
                err = ct.get_errno()
                deleted += count.value
                done += count.value
                if failed:
                    if err != errno.ENOENT:
                        raise ProgramError(f"deleting flows failed: {os.strerror(err)}")
                    done += 1   # the key the batch stopped at is gone already
        if deleted:
            pid = os.getpid()
            self._deleted[pid] = self._deleted.get(pid, 0) + deleted
            self._update("deleters", ct.c_uint32(pid), ct.c_uint64(self._deleted[pid]))

    def clear_flows(self) -> None:
        """Forget every flow and remembered fragment (a program reused for another run)."""
        self.delete_flows(self._keys("flows", FlowKey))
        self.bpf[b"frags"].clear()

    # -- ring buffers ------------------------------------------------------------
    def remove_ring(self, index: int) -> None:
        """Take ring `index` out of the program (its reader is gone): records
        of its flows are then counted as Stat.RING_GONE instead of filling it."""
        _lib().bpf_delete_elem(self._map_fd["rings"], ct.byref(ct.c_uint32(index)))

    def test_run(self, frame: bytes, repeat: int = 1) -> bpfsys.TestRun:
        return bpfsys.prog_test_run(self.fd, frame, repeat)

    # -- map plumbing ------------------------------------------------------------
    def _update(self, name: str, key, value) -> None:
        if _lib().bpf_update_elem(self._map_fd[name], ct.byref(key), ct.byref(value), 0) < 0:
            err = ct.get_errno()
            raise ProgramError(f"writing map {name} failed: {os.strerror(err) if err else 'full?'}")

    def _keys(self, name: str, key_type) -> list:
        keys, fd, lib = [], self._map_fd[name], _lib()
        current, nxt = None, key_type()
        while lib.bpf_get_next_key(fd, ct.byref(current) if current is not None else None,
                                   ct.byref(nxt)) == 0:
            keys.append(nxt)
            current, nxt = nxt, key_type()
        return keys

    def _clear(self, name: str, key_type) -> None:
        for key in self._keys(name, key_type):
            _lib().bpf_delete_elem(self._map_fd[name], ct.byref(key))
