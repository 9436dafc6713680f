"""Conformance of our session records against Arkime's own test corpus.

`run_conformance(directory)` reads every `X.pcap` beside an `X.test` (Arkime's
expected session JSON), normalises both sides like Arkime's `tests.pl --fix`,
matches sessions and reports, per capture and in total, how many sessions and
which fields agree. The steps are separate modules: normalise, scope, match,
compare, report, run."""
from sensor.conformance.report import CaptureResult, ConformanceReport
from sensor.conformance.run import ConformanceError, run_conformance, shipped_protocols

__all__ = ["CaptureResult", "ConformanceError", "ConformanceReport", "run_conformance", "shipped_protocols"]
