"""When the cyclic garbage collector runs, for a process that keeps many objects alive.

The sensor holds every kept frame and decoded message of thousands of sessions.
CPython's cyclic GC rescans all of them in each full collection, and a bulk
decode (thousands of new messages that all survive) triggers several: decoding
a 10,000-frame session ran 4x slower with the registry full than alone. None of
these objects form cycles; reference counting frees them. So:

- `paused()` keeps the collector off while a bounded bulk of acyclic objects is
  made (the objects are freed by reference counting as usual);
- `freeze_startup()` moves what start-up made (modules, plugins, compiled
  definitions) out of every later collection's way; call it once, from the
  program's entry point, when loading is done;
- `frozen_for_fork()` keeps a forked worker's collections off the parent's objects.
"""
from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_resume = False  # re-enable when the outermost pause ends (it was enabled when the first began)


@contextmanager
def paused() -> Iterator[None]:
    """No cyclic collection inside the block (process-wide, all threads): for bounded bulk work only.
    Nested and concurrent pauses end when the last one does; a collector the
    application disabled stays disabled."""
    global _depth, _resume
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _resume:
                gc.enable()


def freeze_startup() -> None:
    """Collect once, then exempt every object alive now from later collections (gc.freeze)."""
    gc.collect()
    gc.freeze()


@contextmanager
def frozen_for_fork() -> Iterator[None]:
    """Fork inside the block: the parent's objects are out of the collector's
    way while it forks, so a child's collections neither scan them nor touch
    (and copy) their pages; the parent's collector sees them again after. A
    process that froze its start-up (`freeze_startup`) is left as it is:
    unfreezing would undo that."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
