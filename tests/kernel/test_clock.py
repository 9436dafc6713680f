"""The live program's clock choice: the coarse clock only where its tick is
at most 1 ms, measured here by watching that clock step."""
from __future__ import annotations

import time

from sensor.app import program_options
from sensor.config import SensorConfig
from sensor.kernel.program import CLOCK_MONOTONIC_COARSE


def _coarse_tick_ns() -> int:
    """The smallest step of the coarse clock over a few of its ticks (bounded: 2 s at most)."""
    steps, last, deadline = [], time.clock_gettime_ns(CLOCK_MONOTONIC_COARSE), time.monotonic() + 2
    while len(steps) < 5 and time.monotonic() < deadline:
        now = time.clock_gettime_ns(CLOCK_MONOTONIC_COARSE)
        if now != last:
            steps.append(now - last)
            last = now
    return min(steps)


def test_live_takes_the_coarse_clock_only_where_it_keeps_times_exact_to_the_ms():
    cfg = SensorConfig()
    assert program_options(cfg, live=True).coarse_clock == (_coarse_tick_ns() <= 1_000_000)
    assert not program_options(cfg).coarse_clock     # offline (BPF_PROG_TEST_RUN): always precise
