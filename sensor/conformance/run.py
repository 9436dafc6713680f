"""Run the comparison over a directory of Arkime test captures."""
from __future__ import annotations

import ast
import json
from collections.abc import Iterable
from pathlib import Path

from sensor.capture.pcapfile import PcapError, read_pcap
from sensor.conformance.compare import (
    TRANSPORT_PROTOCOLS, core_differences, protocol_field_differences, protocol_list, protocols_agree,
)
from sensor.conformance.match import match_sessions
from sensor.conformance.normalise import merge_segments, normalise_body, undo_test_rules
from sensor.conformance.paths import NO_PREFILTER, ReadPath
from sensor.conformance.report import CaptureResult, ConformanceReport, ProtocolFieldStats, SessionDifference
from sensor.conformance.scope import IN_SCOPE, actual_category, expected_category
from sensor.errors import SensorError


_PROTOCOL_NAMES = {0: "non-ip", 1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp"}


class ConformanceError(SensorError):
    """The corpus directory or one of its expected-session files cannot be used."""


def run_conformance(directory: str | Path, plugins: Iterable[str | Path] = (),
                    shipped: Iterable[str] | None = None, path: str = NO_PREFILTER) -> ConformanceReport:
    """Compare our records for every `X.pcap` in `directory` with Arkime's `X.test`.

    `plugins` are plugin files/dirs loaded for every capture. `path` is how
    the captures are read (sensor.conformance.paths): `none`, every flow to
    the plugins as Arkime reads a file; `kernel` or `python`, the default
    `xdpsensor read` behind that pre-filter. `shipped` names the protocols
    whose field values are compared; by default, those the given plugins
    claim (`shipped_protocols`)."""
    root = Path(directory)
    if not root.is_dir():
        raise ConformanceError(f"{root} is not a directory: pass the folder holding Arkime's X.pcap/X.test pairs")
    pcaps = sorted(root.glob("*.pcap"))
    if not pcaps:
        raise ConformanceError(f"{root} holds no *.pcap: pass the folder of Arkime's test captures (tests/pcap)")
    plugin_paths = tuple(str(p) for p in plugins)
    names = frozenset(shipped) if shipped is not None else shipped_protocols(plugin_paths)
    report = ConformanceReport(str(root), plugin_paths, names - TRANSPORT_PROTOCOLS, path)
    with ReadPath(path, plugin_paths) as reader:
        for pcap in pcaps:
            test = pcap.with_suffix(".test")
            if not test.is_file():
                report.skipped.append(pcap.name)
                continue
            expected, merged = load_expected(test)
            result = compare_capture(pcap, expected, reader, report.shipped)
            result.segments_merged = merged
            report.captures.append(result)
    return report


def load_expected(test: Path) -> tuple[list[dict], int]:
    """The normalised session bodies of one `.test` file, one per session
    (segments of a mid-saved session joined, test rules undone), and how many
    segment documents were joined."""
    try:
        data = json.loads(test.read_text())
    except (OSError, ValueError) as e:
        raise ConformanceError(f"{test}: cannot read Arkime's expected sessions ({e}); "
                               "restore the file from arkime/arkime tests/pcap") from e
    sessions = data.get("sessions3") if isinstance(data, dict) else None
    if not isinstance(sessions, list):
        raise ConformanceError(f"{test}: no \"sessions3\" list: not a tests.pl --fix output")
    bodies = [undo_test_rules(normalise_body(s.get("body", {}))) for s in sessions]
    return merge_segments(bodies)


def compare_capture(pcap: Path, expected: list[dict], reader: ReadPath | tuple[str, ...],
                    shipped: frozenset[str]) -> CaptureResult:
    """Read one capture through `reader` (or, given plugin paths, without
    pre-filter) and compare its records with `expected`."""
    if not isinstance(reader, ReadPath):
        with ReadPath(NO_PREFILTER, tuple(reader)) as plain:
            return compare_capture(pcap, expected, plain, shipped)
    result = CaptureResult(pcap.stem)
    try:
        result.linktypes = frozenset(rec.linktype for rec in read_pcap(pcap))
        # Our mid-session records are joined as Arkime's segments are (load_expected).
        actual, _ = merge_segments([normalise_body(r) for r in reader.records(pcap)])
    except PcapError as e:
        result.error = f"{type(e).__name__}: {e}"
        actual = []
    matching = match_sessions(expected, actual)
    e_cat = [expected_category(b, result.linktypes) for b in expected]
    a_cat = [actual_category(r, result.linktypes) for r in actual]
    for cat in e_cat:
        result.categories[cat].expected += 1
    for i in matching.missing:
        result.categories[e_cat[i]].missing += 1
        result.differences.append(SessionDifference(result.name, e_cat[i], "missing", describe_flow(expected[i])))
    for j in matching.extra:
        result.categories[a_cat[j]].extra += 1
        result.categories[a_cat[j]].actual += 1
        result.differences.append(SessionDifference(result.name, a_cat[j], "extra", describe_flow(actual[j])))
    for i, j in matching.pairs:
        cat = e_cat[i]  # a pair counts where Arkime put the session
        counts = result.categories[cat]
        counts.matched += 1
        counts.actual += 1
        diffs = core_differences(expected[i], actual[j])
        if diffs:
            result.differences.append(SessionDifference(
                result.name, cat, "core", describe_flow(expected[i]), tuple(diffs)))
        else:
            counts.core_agree += 1
        if cat == IN_SCOPE:
            result.core_field_mismatches.update(d.path for d in diffs)
            _compare_protocols(result, expected[i], actual[j], shipped)
    return result


def _compare_protocols(result: CaptureResult, expected: dict, actual: dict, shipped: frozenset[str]) -> None:
    e_protocols, a_protocols = set(protocol_list(expected)), set(protocol_list(actual))
    result.protocols_missing.update(e_protocols - a_protocols)
    result.protocols_extra.update(a_protocols - e_protocols)
    result.protocols_agree += protocols_agree(expected, actual)
    result.shipped_protocols_agree += protocols_agree(expected, actual, shipped)
    if e_protocols <= shipped | TRANSPORT_PROTOCOLS:
        result.covered += 1
        result.covered_agree += e_protocols == a_protocols
    for protocol in sorted(e_protocols & shipped):
        compared, field_diffs = protocol_field_differences(expected, actual, protocol)
        stats = result.protocol_fields.setdefault(protocol, ProtocolFieldStats())
        stats.sessions += 1
        stats.sessions_agree += not field_diffs
        stats.fields += compared
        stats.fields_agree += compared - len(field_diffs)
        if field_diffs:
            result.differences.append(SessionDifference(
                result.name, IN_SCOPE, f"fields[{protocol}]", describe_flow(expected), tuple(field_diffs)))


def describe_flow(body: dict) -> str:
    """`proto src:port -> dst:port @firstPacket`, for humans reading the differences."""
    src, dst = body.get("source") or {}, body.get("destination") or {}
    proto = body.get("ipProtocol", 0)
    return (f"{_PROTOCOL_NAMES.get(proto, f'ip-proto-{proto}')} {src.get('ip', '-')}:{src.get('port', '-')} -> "
            f"{dst.get('ip', '-')}:{dst.get('port', '-')} @{body.get('firstPacket')}")


def shipped_protocols(plugin_paths: Iterable[str | Path]) -> frozenset[str]:
    """Protocol names the plugins can claim: every `add_protocol(session, "name")` in
    their source, found without running them (a name bound to a module-level string
    constant counts too)."""
    names: set[str] = set()
    for path in map(Path, plugin_paths):
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            try:
                tree = ast.parse(file.read_text(), str(file))
            except (OSError, SyntaxError, ValueError):
                continue  # the loader reports broken plugins; here they simply claim nothing
            names |= _claimed_protocols(tree)
    return frozenset(names)


def _claimed_protocols(tree: ast.Module) -> set[str]:
    constants = {t.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
                 and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
                 for t in node.targets if isinstance(t, ast.Name)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or len(node.args) < 2:
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name != "add_protocol":
            continue
        arg = node.args[1]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            found.add(arg.value)
        elif isinstance(arg, ast.Name) and arg.id in constants:
            found.add(constants[arg.id])
    return found
