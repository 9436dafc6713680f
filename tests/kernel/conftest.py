"""One real XDP program per module, run on crafted frames with BPF_PROG_TEST_RUN."""
from __future__ import annotations

import pytest

from sensor.kernel.contract import Stat
from sensor.kernel.program import ProgramOptions, Record, SensorProgram, parse_record
from sensor.kernel.rules import RuleSet

XDP_PASS = 2


class Harness:
    """Runs frames through the program and collects what it emitted."""

    def __init__(self, program: SensorProgram) -> None:
        self.program = program
        self.records: list[Record] = []
        program.open_ring(lambda raw: self.records.append(parse_record(raw)))

    def reset(self, rules: RuleSet) -> None:
        self.program.poll(0)
        for key, _ in list(self.program.flows()):
            self.program.delete_flow(key)
        self.program.set_rules(rules)
        self.records.clear()
        self.before = self.program.stats()

    def run(self, *frames: bytes) -> list[Record]:
        """Run each frame once; every one must pass through unchanged."""
        start = len(self.records)
        for frame in frames:
            result = self.program.test_run(frame)
            assert result.retval == XDP_PASS
            assert result.data_out == frame
        self.program.poll(0)
        return self.records[start:]

    def delta(self, stat: Stat) -> int:
        return self.program.stats()[stat] - self.before[stat]


def rules(ports: tuple[str, ...] = (), prefixes: tuple[str, ...] = ()) -> RuleSet:
    return RuleSet().add_specs(ports, prefixes)


@pytest.fixture(scope="module")
def program():
    prog = SensorProgram(ProgramOptions(snaplen=1522, max_undecided_payloads=4))
    yield prog
    prog.close()


@pytest.fixture
def make_harness():
    """A separate program with its own options, closed after the test."""
    made = []

    def make(options: ProgramOptions, ports=(), prefixes=()) -> Harness:
        prog = SensorProgram(options)
        made.append(prog)
        harness = Harness(prog)
        harness.reset(rules(ports, prefixes))
        return harness

    yield make
    for prog in made:
        prog.close()


@pytest.fixture
def xdp(program) -> Harness:
    harness = getattr(program, "_test_harness", None)
    if harness is None:
        harness = program._test_harness = Harness(program)
    harness.reset(rules(ports=("udp:5353", "tcp:8080"), prefixes=("tcp:0:GET ", "tcp:0:0x16030", "udp:4:ping")))
    return harness
