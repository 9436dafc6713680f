"""The one timing rule every benchmark uses: the fastest of several runs is
the one least disturbed by other load on the machine. And the one way the
XDP benchmarks time a program under BPF_PROG_TEST_RUN."""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
STATS_RETRIES = 30         # runs given up on while bpf_stats stays on


def _bpf_stats_on() -> bool:
    return Path("/proc/sys/kernel/bpf_stats_enabled").read_text().strip() != "0"


def prog_run_ns(fd: int, frame: bytes, repeat: int) -> int:
    """ns per run of XDP program `fd` on `frame` (BPF_PROG_TEST_RUN, `repeat`
    times), taken while kernel.bpf_stats_enabled is off: a live bench elsewhere
    turning it on adds two clock reads to every run. Waits for it within bounds.
    The program runs on the caller's CPU."""
    from sensor.kernel import bpfsys
    for _ in range(STATS_RETRIES):
        before = _bpf_stats_on()
        ns = bpfsys.prog_test_run(fd, frame, repeat).duration_ns
        if not before and not _bpf_stats_on():
            return ns
        time.sleep(1)
    raise SystemExit("kernel.bpf_stats_enabled stayed on (a live bench running?): no run is comparable")


def best_rate(units: int, job: Callable[[], T], repeat: int) -> tuple[float, T]:
    """Units per second of the fastest of `repeat` runs, and what the last run returned."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = job()
        best = min(best, time.perf_counter() - start)
    return units / best, result
