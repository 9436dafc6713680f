"""One flow-filter interface: the live program, the program under BPF_PROG_TEST_RUN, its
Python mirror and the capture view over either take and give the same things, in nanoseconds."""
from __future__ import annotations

import inspect

import pytest

from sensor.kernel.contract import FlowKey, Stat, Verdict
from sensor.kernel.flowfilter import FlowFilter, FrameFilter
from sensor.kernel.program import SensorProgram
from sensor.kernel.rules import RuleSet
from sensor.offline import CaptureFilter, TestRunTable
from sensor.prefilter import PythonFlowTable, parse_frame
from capturelib import ether
from scapy.layers.inet import IP, UDP

pytestmark = pytest.mark.kernel

METHODS = ("flow", "flows", "set_verdict", "delete_flow", "delete_flows", "stats")


def members(protocol) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(getattr(protocol, name)) for name in METHODS}


@pytest.mark.parametrize("cls", [SensorProgram, TestRunTable, PythonFlowTable, CaptureFilter])
def test_every_filter_has_the_interfaces_signatures(cls):
    wanted = members(FlowFilter)
    if cls in (TestRunTable, PythonFlowTable):   # userspace gives these the frames
        wanted["process"] = inspect.signature(FrameFilter.process)
    for name, signature in wanted.items():
        assert list(inspect.signature(getattr(cls, name)).parameters) == list(signature.parameters), name


def test_the_three_filters_answer_alike_in_capture_nanoseconds(program):
    """The same frame at the same capture time: the same flow, times, verdict
    change and counters from the program under test-run and the Python mirror."""
    program.set_rules(RuleSet().add_specs(("udp:53",), ()))
    frame = bytes(ether() / IP(src="10.1.0.1", dst="10.2.0.1") / UDP(sport=40000, dport=53) / b"q")
    ts_ns = 1_700_000_000_123_456_789
    filters = [CaptureFilter(program), CaptureFilter(PythonFlowTable(RuleSet().add_specs(("udp:53",), ())))]
    key = FlowKey.from_buffer_copy(parse_frame(frame).key)
    seen = []
    for f in filters:
        record = f.table.process(frame, ts_ns)
        state = f.flow(key)
        assert f.set_verdict(key, Verdict.BYPASSED)
        seen.append((record.header.ts_ns, state.first_ns, state.last_ns, f.flow(key).verdict, f.clock_offset_ns,
                     f.stats()[Stat.SELECTED], [bytes(k) for k, _ in f.flows()]))
        f.delete_flow(key)
        assert f.flow(key) is None and not f.set_verdict(key, Verdict.BYPASSED)
    assert seen[0] == seen[1]
    assert seen[0][:5] == (ts_ns, ts_ns, ts_ns, Verdict.BYPASSED, 0)
