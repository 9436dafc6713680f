"""When a read expires idle sessions and the filter's flows: every second of
capture time, the filter's on the previous record's clock; and the dealer of
`read --workers`, which asks per run, must get the same points as a reader
asking per record."""
from __future__ import annotations

import random

from sensor.offline import Housekeeping

T0 = 1_700_000_000.0


def _per_record(times: list[float], kernel: bool) -> list[tuple[int, tuple]]:
    housekeeping = Housekeeping(1.0, kernel)
    return [(i, due) for i, due in enumerate(map(housekeeping.step, times)) if due is not None]


def test_sessions_expire_at_the_first_record_and_then_a_second_of_capture_time_apart():
    times = [T0, T0 + 0.4, T0 + 0.99, T0 + 1.0, T0 + 1.5, T0 + 3.2, T0 + 3.3]
    assert _per_record(times, kernel=False) == [(0, (None, True)), (3, (None, True)), (5, (None, True))]


def test_the_filters_flows_expire_on_the_previous_records_clock():
    times = [T0, T0 + 0.5, T0 + 1.7, T0 + 1.8]
    # before record 1 on record 0's time, before record 3 on record 2's (a record never expires its own flow)
    assert _per_record(times, kernel=True) == [(0, (None, True)), (1, (T0, False)), (2, (None, True)),
                                               (3, (T0 + 1.7, False))]


def test_a_clock_that_goes_back_runs_the_housekeeping_at_once():
    times = [T0 + 10, T0 + 10.5, T0 + 2, T0 + 2.1]     # the next file starts earlier
    assert _per_record(times, kernel=False) == [(0, (None, True)), (2, (None, True))]


def test_runs_of_records_get_the_same_points_as_single_records():
    rng = random.Random(7)
    times, now = [], T0
    for _ in range(5000):
        now += rng.choice([0.0, 0.001, 0.01, 0.3, 2.5, -0.6, -4.0])   # bursts, gaps, a clock going back
        times.append(now)
    for kernel in (False, True):
        housekeeping, got, start = Housekeeping(1.0, kernel), [], 0
        while start < len(times):
            size = rng.choice([1, 2, 7, 256])
            run = times[start:start + size]
            got += [(start + i, due) for i, due in housekeeping.dues(run)]
            start += size
        assert got == _per_record(times, kernel)
        assert len(got) > 100
