"""The one timing rule every benchmark uses: the fastest of several runs is
the one least disturbed by other load on the machine."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def best_rate(units: int, job: Callable[[], T], repeat: int) -> tuple[float, T]:
    """Units per second of the fastest of `repeat` runs, and what the last run returned."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = job()
        best = min(best, time.perf_counter() - start)
    return units / best, result
