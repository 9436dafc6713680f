"""Conformance of our session records against Arkime's own test corpus.

`run_conformance(directory)` reads every `X.pcap` beside an `X.test` (Arkime's
expected session JSON), normalises both sides like Arkime's `tests.pl --fix`,
matches sessions and reports, per capture and in total, how many sessions and
which fields agree, for one read path (`paths`: the default `read` behind the
kernel pre-filter or its Python mirror, or --no-prefilter). The steps are
separate modules: normalise, scope, paths, match, compare, report, run."""
from sensor.conformance.paths import PATHS, default_path
from sensor.conformance.report import CaptureResult, ConformanceReport, compare_paths
from sensor.conformance.run import ConformanceError, run_conformance, shipped_protocols

__all__ = ["PATHS", "CaptureResult", "ConformanceError", "ConformanceReport", "compare_paths", "default_path",
           "run_conformance", "shipped_protocols"]
