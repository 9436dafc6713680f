"""`xdpsensor run` in a process of its own on the lab's sensor interfaces, its stderr
collected line by line as it comes, so a test waits on what the sensor says (attached,
a counter) instead of sleeping."""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

from sensor.lab import patience


class SensorProcess:
    def __init__(self, lab, *args: str, duration: float = 120) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "sensor", "run", "--netns", lab.sensor, "-i", "to-client",
                                      "-i", "to-server", "--duration", str(patience(duration)), *args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stderr), daemon=True)
        self._reader.start()

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 20.0, after: int = 0) -> str:
        """The last line from the `after`-th on that contains `text`, waited for (bounded)."""
        deadline = time.monotonic() + patience(timeout)
        while time.monotonic() < deadline:
            found = [line for line in self.lines[after:] if text in line]
            if found:
                return found[-1]
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} never came; stderr:\n{self.stderr}")

    def counter(self, name: str) -> int:
        """One counter of a fresh SIGUSR1 dump (`kernel.emitted`, `userspace.bypassed`, ...)."""
        seen = len(self.lines)
        self.proc.send_signal(signal.SIGUSR1)
        return int(self.wait_for(f" {name} ", after=seen).split()[-1])

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=patience(60))
        self._reader.join(timeout=10)
        return code
