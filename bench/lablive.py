"""Shared by the live benches: a lab of their own, fixed-rate UDP traffic
from trafgen, the CPU a process tree used (/proc), and the XDP program's run
time (bpf_stats). Root only; everything made here is removed on exit."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


from sensor import lab as lab_mod
from sensor.kernel import bpfsys
from sensor.kernel.attach import xdp_status
from sensor.labtraffic import udp_flood, wait_attached
from sensor.netns import in_netns

ROOT = Path(__file__).resolve().parent.parent   # this source tree
SERVER_PORT = 9000
FIRST_CLIENT_PORT = 40000
PAYLOAD = 64


@contextlib.contextmanager
def bench_lab() -> Iterator[lab_mod.Lab]:
    """A lab named after this process, with a UDP socket bound on the server
    (no ICMP unreachable comes back) and bpf_stats on; all undone at the end.
    The sysctl shows other benches that stats are on; the stats fd keeps them
    on when another bench resets the sysctl meanwhile."""
    lab = lab_mod.up(lab_mod.Lab(f"b{os.getpid() % 100000}"))
    stats_file = Path("/proc/sys/kernel/bpf_stats_enabled")
    before = stats_file.read_text().strip()
    stats_fd = bpfsys.enable_run_time_stats()
    try:
        stats_file.write_text("1")
        with in_netns(lab.server):
            sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sink.bind((lab.server_ip, SERVER_PORT))
        try:
            yield lab
        finally:
            sink.close()
    finally:
        stats_file.write_text(before)
        os.close(stats_fd)
        lab_mod.down(lab)


def send_udp(lab: lab_mod.Lab, packets: int, rate: int, flows: int) -> float:
    """`packets` UDP packets at `rate`/s from the client, round-robin over
    `flows` client ports from FIRST_CLIENT_PORT to the server's SERVER_PORT;
    returns the seconds it took."""
    return udp_flood(lab, packets, rate, (FIRST_CLIENT_PORT, FIRST_CLIENT_PORT + flows - 1),
                     (SERVER_PORT, SERVER_PORT), PAYLOAD)


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its live descendants, every thread, in ns
    precision (/proc/PID/task/TID/schedstat; /proc/PID/stat counts ticks)."""
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                total += int((task / "schedstat").read_text().split()[0])
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1e9


def xdp_totals(lab: lab_mod.Lab) -> tuple[int, int]:
    """(run_time_ns, run_cnt) of the program on the lab's sensor interfaces."""
    with in_netns(lab.sensor):
        prog_id = xdp_status(lab_mod.SENSOR_IFACES[0]).prog_id
    return bpfsys.prog_run_totals(prog_id)


@dataclass(slots=True)
class SensorRun:
    cpu_seconds: float          # the sensor's processes, while the traffic ran (and drained)
    xdp_ns: int                 # the program's run time over the same span
    xdp_runs: int
    seconds: float              # traffic time
    records: list[dict]
    summary: str


@dataclass(slots=True)
class SensorProcess:
    pid: int
    summary: str = ""           # its stderr, once it has stopped


@contextlib.contextmanager
def checkout(rev: str) -> Iterator[Path]:
    """A temporary copy of the repository's files at git revision `rev`
    (a sensor of another revision to run beside this tree's), removed after."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Path(tmp)


@contextlib.contextmanager
def sensor_running(lab: lab_mod.Lab, out: Path, *args: str, tree: Path = ROOT) -> Iterator[SensorProcess]:
    """`xdpsensor run` (of the source tree `tree`) on the lab's sensor interfaces with
    `args`, SPI records to `out`; attached and settled when this yields, stopped (SIGINT) after."""
    cmd = [sys.executable, "-m", "sensor", "run", "--netns", lab.sensor, "-i", "to-client", "-i", "to-server",
           "-o", f"spi:{out}", "--duration", "600", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tree,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                filter(None, (str(tree), os.environ.get("PYTHONPATH"))))})
    running = SensorProcess(proc.pid)
    attached = False
    try:
        attached = wait_attached(lab, timeout=60)
        if attached:
            time.sleep(1.0)  # workers settle
            yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        running.summary = proc.communicate(timeout=120)[1]
    if not attached:
        raise RuntimeError("the sensor did not attach: " + running.summary)


def run_sensor(lab: lab_mod.Lab, packets: int, rate: int, flows: int, *args: str, tree: Path = ROOT) -> SensorRun:
    """`xdpsensor run` (of source tree `tree`) on the lab with `args`, measured while trafgen sends."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sessions.jsonl"
        with sensor_running(lab, out, *args, tree=tree) as proc:
            cpu0, (xdp_ns0, runs0) = tree_cpu_seconds(proc.pid), xdp_totals(lab)
            seconds = send_udp(lab, packets, rate, flows)
            time.sleep(0.2)  # what is still in the ring: up to the 50 ms poll bound
            cpu1, (xdp_ns1, runs1) = tree_cpu_seconds(proc.pid), xdp_totals(lab)
        records = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return SensorRun(cpu1 - cpu0, xdp_ns1 - xdp_ns0, runs1 - runs0, seconds, records, proc.summary)
