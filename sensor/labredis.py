"""A throwaway redis-server for tests, benchmarks and trials of the Redis sink.

It listens on a unix socket in a directory the caller owns (and, when asked,
on a loopback TCP port), keeps an append-only file there so that a stop and a
start keep the stream as a real deployment would, and is stopped by `stop()`.
"""
from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

START_WAIT = 10.0  # seconds for the server to accept connections


class LabRedisError(RuntimeError):
    """redis-server is missing or did not start."""


def free_loopback_port() -> int:
    """A TCP port nothing listens on now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabRedis:
    """`start()`, `stop()`, `pause()`/`resume()` (SIGSTOP/SIGCONT: a Redis that stops
    answering without closing its connections); usable as a context manager."""

    def __init__(self, directory: str | Path, tcp: bool = False) -> None:
        if shutil.which("redis-server") is None:
            raise LabRedisError("redis-server is not installed: run scripts/setup-host (Debian package redis-server)")
        self.dir = Path(directory)
        self.socket = str(self.dir / "redis.sock")
        self.port = free_loopback_port() if tcp else 0
        self._proc: subprocess.Popen | None = None

    def start(self) -> LabRedis:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--unixsocket", self.socket,
             "--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--daemonize", "no", "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_WAIT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise LabRedisError(f"redis-server exited with {self._proc.returncode}; see {self.dir / 'redis.log'}")
            if self._answers():
                return self
            time.sleep(0.02)
        self.stop()
        raise LabRedisError(f"redis-server did not answer within {START_WAIT} s; see {self.dir / 'redis.log'}")

    def _answers(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(1)
                s.connect(self.socket)
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM (Redis flushes its append-only file) and wait."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(timeout=START_WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def pause(self) -> None:
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._proc.send_signal(signal.SIGCONT)

    @property
    def unix_url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def tcp_url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def __enter__(self) -> LabRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
