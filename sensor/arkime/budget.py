"""A time budget for plugin callbacks, kept by a watchdog thread.

Python cannot stop a thread from outside; it can only ask the interpreter to
raise an exception in it (PyThreadState_SetAsyncExc), which happens at the
thread's next bytecode boundary. So a callback looping in Python code (`while
True: pass`, a runaway parser) is interrupted within about one watchdog tick
after its budget, with `PluginTimeout` raised where it was; a callback blocked
inside C code (`time.sleep`, a socket read, a catastrophic regular expression,
a huge `bytes * n`) cannot be, and is interrupted only when control returns to
Python. `PluginTimeout` derives from BaseException so that a plugin's own
`except Exception` cannot swallow it.

The guarded region is one runtime entry (a payload delivery, a session save),
entered and left by the capture thread; the watchdog fires at most once per
entry, under a lock that `leave` also takes, so the exception lands inside the
region or is withdrawn before it can land anywhere else.

The watchdog parks (an untimed wait) after a tick in which no entry began,
and the next `enter` wakes it: a sensor whose plugins are not called pays no
timed wakeups for the budget."""
from __future__ import annotations

import ctypes
import threading
import time

# Two prototypes of one function: raise an exception class in a thread; withdraw it (NULL).
_set_async_exc = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.py_object)(
    ("PyThreadState_SetAsyncExc", ctypes.pythonapi))
_clear_async_exc = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)(
    ("PyThreadState_SetAsyncExc", ctypes.pythonapi))


class PluginTimeout(BaseException):
    """Raised inside a plugin callback that ran past its time budget."""


class CallbackBudget:
    """`enter()` before running plugin code, `leave()` after (in a finally, and
    again after catching PluginTimeout: the exception may arrive as `leave`
    starts)."""

    def __init__(self, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError("a time budget must be positive")
        self.seconds = seconds
        self.fired = 0                  # entries interrupted
        self._lock = threading.Lock()
        self._thread_id = 0
        self._started = 0.0
        self._active = False
        self._pending = False           # an exception was asked for this entry
        self._parked = False            # the watchdog waits for `_wake`, set by the next `enter`
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="xdpsensor-plugin-budget", daemon=True)
        self._watchdog.start()

    def enter(self) -> None:
        self._thread_id = threading.get_ident()
        self._started = time.monotonic()
        self._active = True
        if self._parked:
            self._parked = False
            self._wake.set()

    def leave(self) -> None:
        with self._lock:
            self._active = False
            if self._pending:
                # Fired but perhaps not raised yet: withdraw it so it cannot land outside the region.
                _clear_async_exc(self._thread_id, None)
                self._pending = False

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._watchdog.join()

    def _watch(self) -> None:
        tick = min(0.1, self.seconds / 4)
        seen = self._started
        while not self._stop.wait(tick):
            if not self._active and self._started == seen:
                self._park()
                seen = self._started
                continue
            seen = self._started
            with self._lock:
                if not self._active or self._pending or time.monotonic() - self._started < self.seconds:
                    continue
                self._pending = True
                self.fired += 1
                _set_async_exc(self._thread_id, PluginTimeout)

    def _park(self) -> None:
        """Wait for the next `enter` (or `close`). `enter` sets `_started` and
        `_active` before it looks at `_parked`, and this sets `_parked` before
        it looks at them, so one of the two always sees the other (the GIL
        orders the steps)."""
        seen = self._started
        self._wake.clear()
        self._parked = True
        if self._active or self._started != seen:
            self._parked = False
            return
        self._wake.wait()
