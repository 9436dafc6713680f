"""One real XDP program per module, run on crafted frames with BPF_PROG_TEST_RUN."""
from __future__ import annotations

import pytest

from sensor.capture.ring import RingReader
from sensor.kernel.contract import Stat
from sensor.kernel.program import ProgramOptions, Record, SensorProgram, parse_record
from sensor.kernel.rules import RuleSet

XDP_PASS = 2


class Harness:
    """Runs frames through the program and collects what it emitted, from
    every ring; `rings[i]` holds ring i's records."""

    def __init__(self, program: SensorProgram) -> None:
        self.program = program
        self.records: list[Record] = []
        self.readers = [RingReader(fd, program.ring_size) for fd in program.ring_fds]
        self.rings: list[list[Record]] = [[] for _ in self.readers]

    def collect(self) -> None:
        for reader, ring in zip(self.readers, self.rings):
            for raw in reader.read():
                ring.append(parse_record(raw))
                self.records.append(ring[-1])

    def reset(self, rules: RuleSet) -> None:
        self.collect()
        for key, _ in list(self.program.flows()):
            self.program.delete_flow(key)
        self.program.set_rules(rules)
        self.records.clear()
        for ring in self.rings:
            ring.clear()
        self.before = self.program.stats()

    def run(self, *frames: bytes) -> list[Record]:
        """Run each frame once; every one must pass through unchanged."""
        start = len(self.records)
        for frame in frames:
            result = self.program.test_run(frame)
            assert result.retval == XDP_PASS
            assert result.data_out == frame
        self.collect()
        return self.records[start:]

    def delta(self, stat: Stat) -> int:
        return self.program.stats()[stat] - self.before[stat]

    def close(self) -> None:
        for reader in self.readers:
            reader.close()


def rules(ports: tuple[str, ...] = (), prefixes: tuple[str, ...] = ()) -> RuleSet:
    return RuleSet().add_specs(ports, prefixes)


@pytest.fixture(scope="module")
def program():
    prog = SensorProgram(ProgramOptions(snaplen=1522, max_undecided_payloads=4))
    yield prog
    harness = getattr(prog, "_test_harness", None)
    if harness is not None:
        harness.close()
    prog.close()


@pytest.fixture
def make_harness():
    """A separate program with its own options, closed after the test."""
    made = []

    def make(options: ProgramOptions, ports=(), prefixes=()) -> Harness:
        harness = Harness(SensorProgram(options))
        made.append(harness)
        harness.reset(rules(ports, prefixes))
        return harness

    yield make
    for harness in made:
        harness.close()
        harness.program.close()


@pytest.fixture
def xdp(program) -> Harness:
    harness = getattr(program, "_test_harness", None)
    if harness is None:
        harness = program._test_harness = Harness(program)
    harness.reset(rules(ports=("udp:5353", "tcp:8080"), prefixes=("tcp:0:GET ", "tcp:0:0x16030", "udp:4:ping")))
    return harness
