"""Reporting of exceptions raised by plugin callbacks: log where, count, go on."""
from __future__ import annotations

import logging
import traceback
from collections import Counter
from typing import Any, Callable

from .budget import PluginTimeout

log = logging.getLogger("sensor.arkime.plugins")

# What a plugin callback may raise and the sensor survives: sys.exit() and KeyboardInterrupt inside a
# plugin are the plugin's failure, not a request to stop the sensor (which uses signals of its own).
PLUGIN_FAILURES = (Exception, SystemExit, KeyboardInterrupt, PluginTimeout)


def callback_origin(exc: BaseException, cb: Callable[..., Any] | None) -> tuple[str, int]:
    """File and line where a plugin callback failed: the innermost frame in the
    callback's own file, else the innermost frame of the traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    code = getattr(cb, "__code__", None)
    home = code.co_filename if code is not None else None
    for fs in reversed(frames):
        if fs.filename == home:
            return fs.filename, fs.lineno or 0
    if frames:
        return frames[-1].filename, frames[-1].lineno or 0
    if code is not None:
        return code.co_filename, code.co_firstlineno
    return "<unknown>", 0


class CallbackErrors:
    """Counts callback failures by "<kind>:<name>" and logs each with its traceback."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.total = 0

    def report(self, kind: str, name: str, cb: Callable[..., Any] | None,
               exc: BaseException) -> None:
        self.total += 1
        self.counts[f"{kind}:{name}"] += 1
        path, line = callback_origin(exc, cb)
        if isinstance(exc, PluginTimeout):
            log.error("arkime %s callback %r ran past its time budget at %s:%d: interrupted, session bypassed\n%s",
                      kind, name, path, line, "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
            return
        log.error("arkime %s callback %r failed at %s:%d: %s: %s\n%s", kind, name, path, line,
                  type(exc).__name__, exc,
                  "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
