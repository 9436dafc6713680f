"""The main loop of a live sensor run as a service: it waits, logs a status
line, watches its attachments and answers signals, while capture runs on its
own thread.

- SIGINT, SIGTERM: stop; every session is flushed to the outputs, the program detached.
- SIGHUP: the outputs reopen their files (log rotation), then the config file is read
  again and its rules, bindings and protocol definitions taken without losing a session or
  a packet; a config that does not check out is refused with the reason, the old one kept.
- SIGUSR1: every counter to the log.

Handlers only queue the signal and wake the loop, which acts on it in the main
thread; otherwise the loop sleeps until its next timed job (a status line, an
attachment check), not on a short tick."""
from __future__ import annotations

import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from sensor.errors import SensorError
from sensor.kernel import bpfsys
from sensor.status import counter_lines, snapshot, status_line

if TYPE_CHECKING:
    from sensor.app import Sensor
    from sensor.config import SensorConfig

ATTACHMENT_CHECK = 1.0       # seconds between checks that the program is still attached
DROP_WARNING_EVERY = 10.0    # at most one ring-loss warning per this many seconds
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)


class AttachmentLost(SensorError):
    """Someone else removed the sensor's XDP program (another sensor with --force, `ip link set xdp off`)."""


class Service:
    """`run()` until a stop signal, `duration` or a lost attachment; `log(line, end="\n")` is where
    lines go (stderr, which systemd hands to the journal; on a terminal the status line is redrawn). `reload_config` builds the config again from
    its file and the command line (a SensorError when it is wrong)."""

    def __init__(self, sensor: Sensor, log: Callable[..., None],
                 reload_config: Callable[[], SensorConfig] | None = None, duration: float | None = None,
                 status_interval: float = 60.0, terminal: bool = False) -> None:
        self.sensor = sensor
        self.log = log
        self.reload_config = reload_config
        self.duration = duration
        self.status_interval = status_interval
        self.terminal = terminal
        self._signals: deque[int] = deque()
        self._previous: dict = {}
        self._wake = threading.Event()
        self._drops_seen = 0
        self._drops_warned_at = float("-inf")

    def install(self) -> None:
        """Take the signals over: call it before attaching, so a stop request that comes while
        the sensor starts is kept for `run` (which then stops at once) instead of killing it."""
        self._previous = {s: signal.signal(s, self._queue) for s in SIGNALS}

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def run(self) -> None:
        """Raises AttachmentLost when the program was taken off an interface (the caller stops
        the sensor, which flushes every session)."""
        self._loop()

    def _queue(self, signum: int, _frame) -> None:
        self._signals.append(signum)
        self._wake.set()

    def _loop(self) -> None:
        started = now = time.monotonic()
        interval = 1.0 if self.terminal else self.status_interval  # a terminal's line is redrawn
        next_status = started + interval if interval > 0 else float("inf")
        next_check = started + ATTACHMENT_CHECK
        end = started + self.duration if self.duration is not None else float("inf")
        while now < end:
            self._wake.wait(min(next_status, next_check, end) - now)
            self._wake.clear()
            while self._signals:
                signum = self._signals.popleft()
                if signum in (signal.SIGINT, signal.SIGTERM):
                    return
                self._answer(signum)
            now = time.monotonic()
            if now >= next_status:
                line = status_line(snapshot(self.sensor))
                if self.terminal:
                    self.log("\r" + line + "   ", end="")
                else:
                    self.log("status: " + line)
                next_status = now + interval
            if now >= next_check:
                self._check_attachments()
                self._warn_drops(now)
                next_check = now + ATTACHMENT_CHECK

    def _answer(self, signum: int) -> None:
        if signum == signal.SIGUSR1:
            snap = snapshot(self.sensor)
            self.log(f"counters at {time.strftime('%Y-%m-%dT%H:%M:%S', time.localtime(snap.taken_at))}:")
            for line in counter_lines(snap):
                self.log("  " + line)
        elif signum == signal.SIGHUP:
            self.sensor.writer.reopen()
            self.log("SIGHUP: outputs reopening")
            if self.reload_config is not None:
                self._reload()

    def _reload(self) -> None:
        try:
            cfg = self.reload_config()
            needs_restart = self.sensor.reload(cfg)
        except SensorError as e:
            self.log(f"SIGHUP: config refused, the running one is kept: {e}")
            return
        rules = self.sensor.rules
        self.log(f"SIGHUP: config reloaded: {len(rules.ports)} port and {len(rules.prefixes)} prefix rule(s), "
                 f"{len(self.sensor.bindings)} binding(s)")
        if needs_restart:
            self.log(f"SIGHUP: changed but only taken at a restart: {', '.join(needs_restart)}")

    def _check_attachments(self) -> None:
        lost = [a.where for a in self.sensor.attachments() if a.method == "link" and _link_detached(a.link_fd)]
        if lost:
            raise AttachmentLost(f"the XDP program was taken off {', '.join(lost)} by someone else (another "
                                 "sensor started with --force?); nothing is captured there any more: stopping")

    def _warn_drops(self, now: float) -> None:
        drops = self.sensor.ring_drops()
        if drops > self._drops_seen and now - self._drops_warned_at >= DROP_WARNING_EVERY:
            self.log(f"warning: ring buffer full: {drops - self._drops_seen} packet(s) of selected flows lost "
                     f"since the last warning ({drops} in all); narrow the rules, or let plugins bypass more")
            self._drops_seen, self._drops_warned_at = drops, now


def _link_detached(link_fd: int) -> bool:
    """A bpf_link that another program replaced (BPF_LINK_DETACH) reports no interface any more."""
    return bpfsys.link_info(link_fd).ifindex == 0
