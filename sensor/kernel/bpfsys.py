"""Raw bpf(2) commands that bcc does not expose: XDP bpf_link create/detach,
BPF_PROG_TEST_RUN, link enumeration, ring buffer maps made at run time, and the
tiny map and program loads that probe kernel features. Each packs `union bpf_attr` by hand
(offsets from include/uapi/linux/bpf.h) and calls the syscall via ctypes."""
from __future__ import annotations

import ctypes as ct
import errno
import os
import platform
import struct
from dataclasses import dataclass

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "armv7l": 386, "riscv64": 280}.get(platform.machine(), 321)
_libc = ct.CDLL(None, use_errno=True)
_libc.syscall.restype = ct.c_long

BPF_MAP_CREATE = 0
BPF_PROG_LOAD = 5
BPF_PROG_TEST_RUN = 10
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_MAP_LOOKUP_BATCH = 24
BPF_LINK_CREATE = 28
BPF_LINK_GET_FD_BY_ID = 30
BPF_LINK_GET_NEXT_ID = 31
BPF_ENABLE_STATS = 32
BPF_LINK_DETACH = 34
BPF_STATS_RUN_TIME = 0
BPF_XDP = 37
BPF_LINK_TYPE_XDP = 6
BPF_MAP_TYPE_LRU_HASH = 9
BPF_MAP_TYPE_RINGBUF = 27
BPF_PROG_TYPE_XDP = 6

XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2

_ATTR_SIZE = 128


class BpfError(OSError):
    """A bpf(2) command failed; errno and the command are in the message."""


def _bpf(cmd: int, attr: ct.Array) -> int:
    ret = _libc.syscall(_SYS_BPF, cmd, ct.byref(attr), ct.sizeof(attr))
    if ret < 0:
        err = ct.get_errno()
        raise BpfError(err, f"bpf(cmd={cmd}): {os.strerror(err)}")
    return ret


def _attr(fmt: str, *values: int) -> ct.Array:
    buf = (ct.c_ubyte * _ATTR_SIZE)()
    struct.pack_into(fmt, buf, 0, *values)
    return buf


def ringbuf_create(size: int, name: str) -> int:
    """A new BPF_MAP_TYPE_RINGBUF of `size` bytes (a power-of-two number of
    pages); returns its fd. The caller closes it."""
    attr = _attr("=IIIIIII16s", BPF_MAP_TYPE_RINGBUF, 0, 0, size, 0, 0, 0, name.encode()[:15])
    return _bpf(BPF_MAP_CREATE, attr)


def link_create_xdp(prog_fd: int, ifindex: int, flags: int) -> int:
    """Attach an XDP program through a bpf_link; returns the link fd. The
    kernel detaches the program when the last fd to the link closes, so a
    sensor that dies (even by SIGKILL) leaves nothing behind."""
    return _bpf(BPF_LINK_CREATE, _attr("=IIII", prog_fd, ifindex, BPF_XDP, flags))


def link_detach(link_fd: int) -> None:
    """Force-detach a link (used for --force on a foreign link)."""
    _bpf(BPF_LINK_DETACH, _attr("=I", link_fd))


def link_get_fd_by_id(link_id: int) -> int:
    return _bpf(BPF_LINK_GET_FD_BY_ID, _attr("=I", link_id))


def link_ids() -> list[int]:
    """Ids of every bpf_link in the system."""
    ids, current = [], 0
    while True:
        attr = _attr("=I", current)
        try:
            _bpf(BPF_LINK_GET_NEXT_ID, attr)
        except BpfError as e:
            if e.errno == errno.ENOENT:
                return ids
            raise
        current = struct.unpack_from("=I", attr, 4)[0]
        ids.append(current)


@dataclass(frozen=True, slots=True)
class LinkInfo:
    type: int
    id: int
    prog_id: int
    ifindex: int  # XDP links only


def link_info(link_fd: int) -> LinkInfo:
    info = (ct.c_ubyte * 64)()
    attr = _attr("=IIQ", link_fd, ct.sizeof(info), ct.addressof(info))
    _bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    type_, id_, prog_id = struct.unpack_from("=III", info, 0)
    ifindex = struct.unpack_from("=I", info, 16)[0] if type_ == BPF_LINK_TYPE_XDP else 0
    return LinkInfo(type_, id_, prog_id, ifindex)


def enable_run_time_stats() -> int:
    """Turn on the kernel's per-program run time counting for as long as the
    returned fd stays open (the caller closes it). Unlike the sysctl
    kernel.bpf_stats_enabled, which anyone may reset, each fd holds its own reference."""
    return _bpf(BPF_ENABLE_STATS, _attr("=I", BPF_STATS_RUN_TIME))


def prog_run_totals(prog_id: int) -> tuple[int, int]:
    """(run_time_ns, run_cnt) of a loaded program: the kernel counts them only
    while sysctl kernel.bpf_stats_enabled is 1 or an `enable_run_time_stats` fd is open."""
    fd = _bpf(BPF_PROG_GET_FD_BY_ID, _attr("=I", prog_id))
    try:
        info = (ct.c_ubyte * 256)()
        _bpf(BPF_OBJ_GET_INFO_BY_FD, _attr("=IIQ", fd, ct.sizeof(info), ct.addressof(info)))
        return struct.unpack_from("=QQ", info, 192)   # run_time_ns, run_cnt in struct bpf_prog_info
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class TestRun:
    retval: int
    data_out: bytes
    duration_ns: int  # mean per repetition, as the kernel reports it


def prog_test_run(prog_fd: int, data: bytes, repeat: int = 1) -> TestRun:
    """Run a loaded program on one frame with BPF_PROG_TEST_RUN. Map and ring
    buffer updates happen for real; the frame goes nowhere. The kernel
    refuses frames shorter than an Ethernet header (EINVAL)."""
    data_in = ct.create_string_buffer(data, len(data))
    out_size = len(data) + 512
    data_out = ct.create_string_buffer(out_size)
    attr = _attr("=IIIIQQII", prog_fd, 0, len(data), out_size,
                 ct.addressof(data_in), ct.addressof(data_out), repeat, 0)
    _bpf(BPF_PROG_TEST_RUN, attr)
    retval, _, size_out = struct.unpack_from("=III", attr, 4)
    duration = struct.unpack_from("=I", attr, 36)[0]
    return TestRun(retval, data_out.raw[:size_out], duration)


def map_create(map_type: int, key_size: int, value_size: int, max_entries: int, inner_map_fd: int = 0) -> int:
    """Create a map (a map of maps takes a template inner map); returns its fd (the caller closes it)."""
    return _bpf(BPF_MAP_CREATE, _attr("=IIIIII", map_type, key_size, value_size, max_entries, 0, inner_map_fd))


def prog_load(prog_type: int, insns: bytes, log_size: int = 65536) -> tuple[int, str]:
    """Load raw instructions (GPL licence, verifier log on); returns (fd, log),
    fd -1 when the verifier refused (the log says why)."""
    code = ct.create_string_buffer(insns, len(insns))
    license_ = ct.create_string_buffer(b"GPL")
    log = ct.create_string_buffer(log_size)
    attr = _attr("=IIQQIIQ", prog_type, len(insns) // 8, ct.addressof(code), ct.addressof(license_),
                 1, log_size, ct.addressof(log))
    try:
        fd = _bpf(BPF_PROG_LOAD, attr)
    except BpfError as e:
        if e.errno == errno.ENOSPC:  # the log overflowed: the load failed all the same
            return -1, log.value.decode(errors="replace")
        if e.errno not in (errno.EINVAL, errno.EACCES, errno.E2BIG):
            raise
        fd = -1
    return fd, log.value.decode(errors="replace")


def lookup_batch_works() -> bool:
    """Whether BPF_MAP_LOOKUP_BATCH reads an LRU hash map (the flow table's
    expiry scan): on an empty one it answers ENOENT, an older kernel EINVAL."""
    fd = map_create(BPF_MAP_TYPE_LRU_HASH, 4, 8, 1)
    try:
        token, keys, values = (ct.c_ubyte * 4)(), (ct.c_ubyte * 4)(), (ct.c_ubyte * 8)()
        attr = _attr("=QQQQIIQQ", 0, ct.addressof(token), ct.addressof(keys), ct.addressof(values), 1, fd, 0, 0)
        try:
            _bpf(BPF_MAP_LOOKUP_BATCH, attr)
        except BpfError as e:
            return e.errno == errno.ENOENT
        return True
    finally:
        os.close(fd)
