"""The kernel features the XDP program relies on, the first mainline kernel
with each, and a real probe per feature: a tiny map or program loaded with
bpf(2). Distributions backport, so the probe, not the version number, decides."""
from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

from sensor.kernel import bpfsys

# Helpers the compiled program calls (bcc's `map.lookup()` is bpf_map_lookup_elem,
# `ring.ringbuf_output()` bpf_ringbuf_output). tests/kernel/test_features.py holds
# this table to the helper calls in the compiled bpf/sensor.bpf.c.
HELPERS: dict[int, tuple[str, str, str]] = {
    1: ("bpf_map_lookup_elem", "3.19", "every map read"),
    2: ("bpf_map_update_elem", "3.19", "new flows"),
    3: ("bpf_map_delete_elem", "3.19", "a TCP connection reusing a closed one's ports"),
    5: ("bpf_ktime_get_ns", "4.1", "flow and packet times"),
    8: ("bpf_get_smp_processor_id", "4.1", "flow counters without atomics on the CPU that created the flow"),
    160: ("bpf_ktime_get_coarse_ns", "5.11", "flow and packet times live, where a tick is <= 1 ms"),
    130: ("bpf_ringbuf_output", "5.8", "packets of selected flows to userspace"),
    134: ("bpf_ringbuf_query", "5.8", "waking the reader once per batch"),
    189: ("bpf_xdp_load_bytes", "5.18", "payload prefixes and captured frames"),
}
# Map types the program creates (bpf_map_type values), held to the program the same way.
MAP_TYPES: dict[int, tuple[str, str, str]] = {
    1: ("hash map", "3.19", "port and prefix rules"),
    2: ("array map", "3.19", "configuration, prefix shapes"),
    6: ("per-CPU array map", "4.6", "counters, the record being built"),
    9: ("LRU hash map", "4.10", "the flow table"),
    12: ("array of ring buffers", "5.8", "one ring per worker"),   # map-in-map 4.12, its ring inner maps 5.8
    27: ("BPF ring buffer", "5.8", "packets of selected flows to userspace"),
}
_ARRAY_OF_MAPS, _RINGBUF = 12, bpfsys.BPF_MAP_TYPE_RINGBUF
TEST_RUN_SINCE = "4.12"  # BPF_PROG_TEST_RUN on XDP programs
BATCH_SINCE = "5.6"      # BPF_MAP_LOOKUP_BATCH / DELETE_BATCH: the flow table's expiry scan
XDP_LINK_SINCE = "5.9"   # BPF_LINK_CREATE for XDP: wanted, not needed (netlink is the fallback); see sensor.check

_XDP_PASS = 2
_LOG_UNKNOWN = ("invalid func", "unknown func", "cannot use helper")


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, dst | src << 4, off, imm)


_MOV_R0 = 0xB7    # BPF_ALU64 | BPF_MOV | BPF_K
_CALL = 0x85
_EXIT = 0x95
_RETURN_PASS = _insn(_MOV_R0, imm=_XDP_PASS) + _insn(_EXIT)


def _load_xdp(insns: bytes) -> tuple[int, str]:
    return bpfsys.prog_load(bpfsys.BPF_PROG_TYPE_XDP, insns)


def _helper_probe(helper: int) -> Callable[[], bool]:
    """As libbpf probes helpers: the verifier names an unknown helper before it
    looks at arguments, so any other outcome means the kernel has it."""
    def probe() -> bool:
        fd, log = _load_xdp(_insn(_CALL, imm=helper) + _RETURN_PASS)
        if fd >= 0:
            os.close(fd)
        return not any(word in log for word in _LOG_UNKNOWN)
    return probe


def _map_probe(map_type: int) -> Callable[[], bool]:
    """Create a map of the type (an array of maps holds ring buffers, as the program's does)."""
    def probe() -> bool:
        made = []
        try:
            if map_type in (_RINGBUF, _ARRAY_OF_MAPS):
                made.append(bpfsys.ringbuf_create(os.sysconf("SC_PAGE_SIZE"), "xdpsensor_probe"))
            if map_type != _RINGBUF:
                inner = made[0] if made else 0
                made.append(bpfsys.map_create(map_type, 4, 4 if inner else 8, 1, inner_map_fd=inner))
            return True
        except bpfsys.BpfError:
            return False
        finally:
            for fd in made:
                os.close(fd)
    return probe


def _test_run_probe() -> bool:
    fd, _ = _load_xdp(_RETURN_PASS)
    if fd < 0:
        return False
    try:
        return bpfsys.prog_test_run(fd, bytes(64)).retval == _XDP_PASS
    except bpfsys.BpfError:
        return False
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    since: str           # first mainline Linux version with it
    used_for: str
    probe: Callable[[], bool]


def features() -> list[Feature]:
    """Every feature the sensor needs, each with a cheap probe."""
    found = [Feature(name, since, use, _map_probe(t)) for t, (name, since, use) in MAP_TYPES.items()]
    found += [Feature(f"helper {name}", since, use, _helper_probe(h)) for h, (name, since, use) in HELPERS.items()]
    found.append(Feature("BPF_PROG_TEST_RUN for XDP", TEST_RUN_SINCE, "`read` through the real program",
                         _test_run_probe))
    found.append(Feature("batch map operations", BATCH_SINCE, "reading and expiring the flow table",
                         bpfsys.lookup_batch_works))
    return found


def version_tuple(version: str) -> tuple[int, ...]:
    """'6.1.0-57-amd64' -> (6, 1, 0): the leading dotted numbers."""
    head = version.split("-")[0].split("+")[0]
    parts = []
    for piece in head.split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def minimum_kernel() -> str:
    """The newest 'since' of the needed features: the oldest kernel that can run the sensor."""
    return max((f.since for f in features()), key=version_tuple)
