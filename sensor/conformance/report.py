"""Conformance results: per capture, totals, a text table and a JSON-ready dict."""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sensor.conformance.compare import FieldDifference
from sensor.conformance.scope import CATEGORIES, IN_SCOPE


@dataclass(slots=True)
class CategoryCounts:
    expected: int = 0  # Arkime's sessions
    actual: int = 0  # ours
    matched: int = 0
    missing: int = 0  # Arkime's, not ours
    extra: int = 0  # ours, not Arkime's
    core_agree: int = 0  # matched with every core field equal

    def add(self, other: CategoryCounts) -> None:
        self.expected += other.expected
        self.actual += other.actual
        self.matched += other.matched
        self.missing += other.missing
        self.extra += other.extra
        self.core_agree += other.core_agree

    @property
    def coverage(self) -> float:
        """Share of Arkime's sessions that have a record of ours."""
        return _ratio(self.matched, self.expected)

    @property
    def agreement(self) -> float:
        """Matched sessions with every core field equal, over the sessions of either
        side (Arkime's plus our extra ones): a missing or extra session disagrees."""
        return _ratio(self.core_agree, self.expected + self.extra)


@dataclass(slots=True)
class ProtocolFieldStats:
    """Matched in-scope sessions carrying a shipped protocol, and how their fields compare."""

    sessions: int = 0
    sessions_agree: int = 0
    fields: int = 0
    fields_agree: int = 0

    def add(self, other: ProtocolFieldStats) -> None:
        self.sessions += other.sessions
        self.sessions_agree += other.sessions_agree
        self.fields += other.fields
        self.fields_agree += other.fields_agree


@dataclass(frozen=True, slots=True)
class SessionDifference:
    """A session that does not fully agree: `kind` is core, missing, extra or fields[<protocol>]."""

    capture: str
    category: str
    kind: str
    flow: str
    differences: tuple[FieldDifference, ...] = ()

    def describe(self) -> str:
        text = f"{self.capture}: [{self.category}] {self.kind} {self.flow}"
        if self.differences:
            text += ": " + "; ".join(f"{d.path} expected {d.expected!r} got {d.actual!r}"
                                     for d in self.differences)
        return text


@dataclass(slots=True)
class CaptureResult:
    name: str
    linktypes: frozenset[int] = frozenset()
    error: str | None = None
    segments_merged: int = 0  # Arkime documents that were later segments of a session
    categories: dict[str, CategoryCounts] = field(
        default_factory=lambda: {c: CategoryCounts() for c in CATEGORIES})
    protocols_agree: int = 0  # ... whose protocol lists are equal
    shipped_protocols_agree: int = 0  # ... equal once cut to shipped protocols + transports
    covered: int = 0  # matched in-scope sessions whose Arkime protocols are all shipped (or transports)
    covered_agree: int = 0  # ... whose protocol lists are equal
    core_field_mismatches: Counter = field(default_factory=Counter)
    protocols_missing: Counter = field(default_factory=Counter)  # in Arkime's list, not ours
    protocols_extra: Counter = field(default_factory=Counter)  # in ours, not Arkime's
    protocol_fields: dict[str, ProtocolFieldStats] = field(default_factory=dict)
    differences: list[SessionDifference] = field(default_factory=list)

    @property
    def in_scope(self) -> CategoryCounts:
        return self.categories[IN_SCOPE]

    @property
    def core_agree(self) -> int:
        """Matched in-scope sessions whose every core field agrees."""
        return self.in_scope.core_agree

    @property
    def core_total(self) -> int:
        """In-scope sessions of either side: a missing or extra session counts as disagreeing."""
        return self.in_scope.expected + self.in_scope.extra

    @property
    def core_ok(self) -> bool:
        return self.error is None and self.core_agree == self.core_total

    def to_dict(self) -> dict[str, Any]:
        return {
            "capture": self.name,
            "linktypes": sorted(self.linktypes),
            "error": self.error,
            "segmentsMerged": self.segments_merged,
            "categories": {c: _counts_dict(n) for c, n in self.categories.items() if n.expected or n.actual},
            "coreTotal": self.core_total,
            "coreAgree": self.core_agree,
            "protocolsAgree": self.protocols_agree,
            "shippedProtocolsAgree": self.shipped_protocols_agree,
            "covered": self.covered,
            "coveredAgree": self.covered_agree,
            "coreFieldMismatches": dict(sorted(self.core_field_mismatches.items())),
            "protocolsMissing": dict(sorted(self.protocols_missing.items())),
            "protocolsExtra": dict(sorted(self.protocols_extra.items())),
            "protocolFields": {p: _stats_dict(s) for p, s in sorted(self.protocol_fields.items())},
            "differences": [d.describe() for d in self.differences],
        }


@dataclass(slots=True)
class ConformanceReport:
    directory: str
    plugins: tuple[str, ...]
    shipped: frozenset[str]
    path: str = "none"  # how the captures were read (sensor.conformance.paths)
    captures: list[CaptureResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # pcaps without a .test beside them

    # -- totals -------------------------------------------------------------------
    def category_totals(self) -> dict[str, CategoryCounts]:
        totals = {c: CategoryCounts() for c in CATEGORIES}
        for capture in self.captures:
            for c, counts in capture.categories.items():
                totals[c].add(counts)
        return totals

    @property
    def core_total(self) -> int:
        return sum(c.core_total for c in self.captures)

    @property
    def core_agree(self) -> int:
        return sum(c.core_agree for c in self.captures)

    @property
    def core_agreement(self) -> float:
        """Share of in-scope sessions (either side) matched with every core field equal."""
        return _ratio(self.core_agree, self.core_total)

    @property
    def protocol_agreement(self) -> float:
        """Share of in-scope sessions matched with equal protocol lists."""
        return _ratio(sum(c.protocols_agree for c in self.captures), self.core_total)

    @property
    def shipped_protocol_agreement(self) -> float:
        """Like protocol_agreement, with both lists cut to the shipped protocols and transports."""
        return _ratio(sum(c.shipped_protocols_agree for c in self.captures), self.core_total)

    @property
    def covered_protocol_agreement(self) -> float:
        """The issue's target: among sessions whose Arkime protocols are all ones we
        ship (or transports), the share whose protocol lists are equal."""
        return _ratio(sum(c.covered_agree for c in self.captures), sum(c.covered for c in self.captures))

    def protocol_field_totals(self) -> dict[str, ProtocolFieldStats]:
        totals: dict[str, ProtocolFieldStats] = {p: ProtocolFieldStats() for p in sorted(self.shipped)}
        for capture in self.captures:
            for p, stats in capture.protocol_fields.items():
                totals.setdefault(p, ProtocolFieldStats()).add(stats)
        return totals

    @property
    def field_agreement(self) -> float:
        """Share of shipped-protocol fields, over matched in-scope sessions, that agree."""
        totals = self.protocol_field_totals().values()
        return _ratio(sum(s.fields_agree for s in totals), sum(s.fields for s in totals))

    def core_field_mismatches(self) -> Counter:
        total: Counter = Counter()
        for capture in self.captures:
            total.update(capture.core_field_mismatches)
        return total

    def protocol_list_differences(self) -> tuple[Counter, Counter]:
        """Over matched in-scope sessions: protocol names only Arkime listed, and only we did."""
        missing: Counter = Counter()
        extra: Counter = Counter()
        for capture in self.captures:
            missing.update(capture.protocols_missing)
            extra.update(capture.protocols_extra)
        return missing, extra

    def differences(self, category: str | None = IN_SCOPE) -> list[SessionDifference]:
        """Sessions that differ, of one category (None: all)."""
        return [d for c in self.captures for d in c.differences if category in (None, d.category)]

    # -- output -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": self.directory,
            "path": self.path,
            "plugins": list(self.plugins),
            "shippedProtocols": sorted(self.shipped),
            "totals": {
                "captures": len(self.captures),
                "capturesCoreOk": sum(c.core_ok for c in self.captures),
                "capturesWithErrors": sum(c.error is not None for c in self.captures),
                "segmentsMerged": sum(c.segments_merged for c in self.captures),
                "categories": {c: _counts_dict(n) for c, n in self.category_totals().items()},
                "coreTotal": self.core_total,
                "coreAgree": self.core_agree,
                "coreAgreement": self.core_agreement,
                "protocolAgreement": self.protocol_agreement,
                "shippedProtocolAgreement": self.shipped_protocol_agreement,
                "coveredSessions": sum(c.covered for c in self.captures),
                "coveredProtocolAgreement": self.covered_protocol_agreement,
                "fieldAgreement": self.field_agreement,
                "coreFieldMismatches": dict(sorted(self.core_field_mismatches().items())),
                "protocolsMissing": dict(self.protocol_list_differences()[0].most_common()),
                "protocolsExtra": dict(self.protocol_list_differences()[1].most_common()),
                "protocolFields": {p: _stats_dict(s) for p, s in self.protocol_field_totals().items()},
            },
            "skipped": list(self.skipped),
            "captures": [c.to_dict() for c in self.captures],
        }

    def table(self, details: bool = False) -> str:
        """One row per capture, then totals; `details=True` lists every differing session
        (in-scope first, then the other categories)."""
        head = (f"{'capture':<40} {'exp':>4} {'ours':>4} {'match':>5} {'miss':>4} {'xtra':>4} "
                f"{'core':>5} {'proto':>5}  other (exp/ours)")
        lines = [head, "-" * len(head)]
        for c in self.captures:
            s = c.in_scope
            other = " ".join(f"{name} {n.expected}/{n.actual}" for name, n in c.categories.items()
                             if name != IN_SCOPE and (n.expected or n.actual))
            if c.error:
                other = f"ERROR {c.error} {other}"
            lines.append(f"{c.name[:40]:<40} {s.expected:>4} {s.actual:>4} {s.matched:>5} {s.missing:>4} "
                         f"{s.extra:>4} {c.core_agree:>5} {c.protocols_agree:>5}  {other}".rstrip())
        totals = self.category_totals()
        s = totals[IN_SCOPE]
        lines.append("-" * len(head))
        lines.append(f"{'TOTAL in scope (' + IN_SCOPE + ')':<40} {s.expected:>4} {s.actual:>4} {s.matched:>5} "
                     f"{s.missing:>4} {s.extra:>4} {self.core_agree:>5} "
                     f"{sum(c.protocols_agree for c in self.captures):>5}")
        lines.append("")
        lines.append(f"captures: {len(self.captures)}, all in-scope core fields agree in "
                     f"{sum(c.core_ok for c in self.captures)}, read errors in "
                     f"{sum(c.error is not None for c in self.captures)}; Arkime segment documents "
                     f"joined to their session: {sum(c.segments_merged for c in self.captures)}")
        lines.append(f"core agreement:              {self.core_agree}/{self.core_total} = "
                     f"{self.core_agreement:.2%} (in-scope sessions of either side)")
        lines.append(f"protocol list agreement:     {self.protocol_agreement:.2%}")
        lines.append(f"shipped protocol agreement:  {self.shipped_protocol_agreement:.2%} "
                     f"(lists cut to {', '.join(sorted(self.shipped)) or 'no shipped protocols'} + transports)")
        lines.append(f"covered protocol agreement:  {self.covered_protocol_agreement:.2%} "
                     f"(of {sum(c.covered for c in self.captures)} sessions whose Arkime protocols are all shipped)")
        compared = sum(st.fields for st in self.protocol_field_totals().values())
        lines.append("shipped field agreement:     " + (f"{self.field_agreement:.2%}" if compared
                                                        else "n/a (no field of a shipped protocol compared)"))
        lines.append("")
        lines.append(f"{'category':<12} {'exp':>5} {'ours':>5} {'match':>5} {'miss':>5} {'xtra':>5} {'core':>5}")
        for name, n in totals.items():
            lines.append(f"{name:<12} {n.expected:>5} {n.actual:>5} {n.matched:>5} {n.missing:>5} {n.extra:>5} "
                         f"{n.core_agree:>5}")
        mismatches = self.core_field_mismatches()
        if mismatches:
            lines.append("")
            lines.append("core field mismatches (matched in-scope sessions): " + ", ".join(
                f"{path} {n}" for path, n in mismatches.most_common()))
        missing, extra = self.protocol_list_differences()
        if missing or extra:
            lines.append("")
            lines.append("protocols only Arkime listed: " + (", ".join(
                f"{name} {n}" for name, n in missing.most_common()) or "none"))
            lines.append("protocols only we listed: " + (", ".join(
                f"{name} {n}" for name, n in extra.most_common()) or "none"))
        stats = self.protocol_field_totals()
        if stats:
            lines.append("")
            lines.append(f"{'protocol':<12} {'sessions':>8} {'agree':>6} {'fields':>7} {'agree':>6}")
            for p, st in stats.items():
                lines.append(f"{p:<12} {st.sessions:>8} {st.sessions_agree:>6} {st.fields:>7} {st.fields_agree:>6}")
        if details:
            lines.append("")
            lines.extend(d.describe() for d in self.differences())
            lines.extend(d.describe() for d in self.differences(None) if d.category != IN_SCOPE)
        if self.skipped:
            lines.append("")
            lines.append("skipped (no .test beside the capture): " + ", ".join(self.skipped))
        return "\n".join(lines)


def compare_paths(reports: Sequence[ConformanceReport]) -> str:
    """Per category, Arkime's sessions and for each report (read path) how many
    of them have a record (coverage) and agree on every core field."""
    head = f"{'category':<11} {'Arkime':>6}" + "".join(
        f" | {r.path + ': found':>13} {'cover':>7} {'agree':>7} {'extra':>5}" for r in reports)
    lines = [head, "-" * len(head)]
    totals = [r.category_totals() for r in reports]
    for category in CATEGORIES:
        expected = max(t[category].expected for t in totals)
        if not expected and not any(t[category].actual for t in totals):
            continue
        row = f"{category:<11} {expected:>6}"
        for t in totals:
            n = t[category]
            row += f" | {n.matched:>13} {n.coverage:>7.1%} {n.agreement:>7.1%} {n.extra:>5}"
        lines.append(row)
    lines.append("")
    lines.append("cover: Arkime's sessions we have a record of; agree: sessions with every core field "
                 "equal, over Arkime's plus our extra ones")
    return "\n".join(lines)


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 1.0


def _counts_dict(n: CategoryCounts) -> dict[str, int]:
    return {"expected": n.expected, "actual": n.actual, "matched": n.matched,
            "missing": n.missing, "extra": n.extra, "coreAgree": n.core_agree,
            "coverage": n.coverage, "agreement": n.agreement}


def _stats_dict(s: ProtocolFieldStats) -> dict[str, int]:
    return {"sessions": s.sessions, "sessionsAgree": s.sessions_agree,
            "fields": s.fields, "fieldsAgree": s.fields_agree}
