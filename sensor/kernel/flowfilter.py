"""The flow filter: the kernel's flow table, verdicts and counters as userspace
uses them, declared once.

Three things implement it: the live program (`SensorProgram`, fed by the
interfaces it is attached to), the same program run frame by frame with
BPF_PROG_TEST_RUN (`offline.TestRunTable`) and its pure-Python mirror
(`prefilter.PythonFlowTable`). The last two are `FrameFilter`s: userspace
gives them the frames. The composition root (`sensor.app.Sensor`) builds one
and hands the same object to everything that needs it.

Times are nanoseconds: a flow's `first_ns`/`last_ns` and the `now_ns` its
expiry is judged by are on the filter's own clock (CLOCK_MONOTONIC live, the
capture's clock offline); adding `clock_offset_ns` gives epoch nanoseconds."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from sensor.kernel.contract import FlowKey, FlowState, Stat, Verdict
from sensor.kernel.flowsession import Attention
from sensor.kernel.program import ProgramOptions, Record


class FlowFilter(Protocol):
    """The flow table and its counters. `flows` yields every flow, or only
    those `attention` wants (an expiry pass); `set_verdict` is False when the
    flow is gone; deleting a flow already gone (evicted) is not an error."""

    clock_offset_ns: int

    def flow(self, key: FlowKey) -> FlowState | None: ...
    def flows(self, attention: Attention | None = None) -> Iterator[tuple[FlowKey, FlowState]]: ...
    def set_verdict(self, key: FlowKey, verdict: Verdict) -> bool: ...
    def delete_flow(self, key: FlowKey) -> None: ...
    def delete_flows(self, keys: Sequence[FlowKey]) -> None: ...
    def stats(self) -> dict[Stat, int]: ...


class FrameFilter(FlowFilter, Protocol):
    """A flow filter that userspace drives: `process` runs it on one Ethernet
    frame at `ts_ns` and returns the ring record it emitted, or None; `options`
    say how it parses and keys frames."""

    options: ProgramOptions

    def process(self, frame: bytes, ts_ns: int) -> Record | None: ...
