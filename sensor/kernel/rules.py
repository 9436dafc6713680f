"""Pre-classification rules: what makes the kernel select a flow.

Pure data and functions: parsing `--port`/`--prefix` specs, grouping prefix
rules into the shapes the XDP program looks up, and the same matching in
Python (the prefilter used when BPF_PROG_TEST_RUN is not available)."""
from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from sensor.errors import SensorError
from sensor.kernel.contract import (
    IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, PREFIX_MAX, PREFIX_SHAPES,
)

PORT_PROTOCOLS = {"tcp": IPPROTO_TCP, "udp": IPPROTO_UDP, "sctp": IPPROTO_SCTP}
PAYLOAD_PROTOCOLS = {"tcp": IPPROTO_TCP, "udp": IPPROTO_UDP}   # prefix rules; what a bare port means
# `--proto NAME`: every flow of these IP protocols (a number names any other).
PROTO_NAMES = {"tcp": (IPPROTO_TCP,), "udp": (IPPROTO_UDP,), "sctp": (IPPROTO_SCTP,),
               "icmp": (IPPROTO_ICMP, IPPROTO_ICMPV6), "icmpv6": (IPPROTO_ICMPV6,)}
RULE_ENTRIES = 1024  # entries of the ports and prefixes maps: RULE_ENTRIES in bpf/sensor.bpf.c


class RuleError(SensorError, ValueError):
    """A rule cannot be expressed; the message says how to write it."""


class PortRole(enum.IntEnum):
    """Which end of the session the port belongs to (Arkime's SRC/DST)."""
    CLIENT = 0
    SERVER = 1


@dataclass(frozen=True, slots=True)
class PortRule:
    proto: int
    port: int
    role: PortRole


@dataclass(frozen=True, slots=True)
class PrefixRule:
    """Payload bytes at `offset` of a direction's first payload. A pattern
    given as an odd number of hex digits ends in a half byte: `last_mask`
    is then 0xf0."""
    proto: int
    offset: int
    pattern: bytes
    last_mask: int = 0xFF


@dataclass(frozen=True, slots=True)
class Shape:
    proto: int
    offset: int
    length: int
    last_mask: int


def _proto(name: str, spec: str, table: dict[str, int]) -> int:
    try:
        return table[name.lower()]
    except KeyError:
        raise RuleError(f"{spec!r}: protocol must be {' or '.join(table)}, not {name!r}") from None


def parse_proto_spec(spec: str) -> tuple[int, ...]:
    """`icmp` (ICMP and ICMPv6), `sctp`, `tcp`, `udp`, or an IP protocol number."""
    name = spec.strip().lower()
    if name in PROTO_NAMES:
        return PROTO_NAMES[name]
    if name.isdigit() and 0 <= int(name) < 256:
        return (int(name),)
    raise RuleError(f"{spec!r}: write a protocol as {', '.join(PROTO_NAMES)} or a number 0-255")


def parse_port_spec(spec: str) -> list[PortRule]:
    """`udp:5353` -> rules matching that port on either end of a session."""
    name, sep, port_text = spec.partition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise RuleError(f"{spec!r}: write a port rule as PROTO:PORT, e.g. udp:5353 or tcp:80")
    proto, port = _proto(name, spec, PORT_PROTOCOLS), int(port_text)
    return [PortRule(proto, port, PortRole.SERVER), PortRule(proto, port, PortRole.CLIENT)]


def parse_prefix_spec(spec: str) -> PrefixRule:
    """`tcp:0:GET ` (text) or `tcp:0:0x16030` (hex, odd digit count = half byte)."""
    parts = spec.split(":", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2]:
        raise RuleError(f"{spec!r}: write a prefix rule as PROTO:OFFSET:BYTES, e.g. tcp:0:GET or tcp:0:0x160301")
    proto, offset, text = _proto(parts[0], spec, PAYLOAD_PROTOCOLS), int(parts[1]), parts[2]
    if offset > 0xFFFF:
        raise RuleError(f"{spec!r}: offset must be below 65536")
    if text.lower().startswith("0x"):
        digits = text[2:]
        half = len(digits) % 2 == 1
        try:
            pattern = bytes.fromhex(digits + ("0" if half else ""))
        except ValueError:
            raise RuleError(f"{spec!r}: {text!r} is not hex; use 0x followed by hex digits") from None
        if not pattern:
            raise RuleError(f"{spec!r}: empty pattern")
        return PrefixRule(proto, offset, pattern, 0xF0 if half else 0xFF)
    return PrefixRule(proto, offset, text.encode())


def kernel_view(rule: PrefixRule, cap: int = PREFIX_MAX) -> tuple[Shape, bytes]:
    """The shape and masked key bytes the kernel compares. Patterns longer
    than `cap` (at most PREFIX_MAX) are cut: the kernel then selects a
    superset, and the plugin's own classifier sees the full bytes."""
    pattern = rule.pattern[:min(cap, PREFIX_MAX)]
    mask = rule.last_mask if len(pattern) == len(rule.pattern) else 0xFF
    masked = pattern[:-1] + bytes([pattern[-1] & mask])
    return Shape(rule.proto, rule.offset, len(pattern), mask), masked


@dataclass(slots=True)
class RuleSet:
    """All rules for one program, in the form the kernel tables take."""
    ports: set[PortRule] = field(default_factory=set)
    prefixes: set[PrefixRule] = field(default_factory=set)
    select_all: set[int] = field(default_factory=set)  # protocols whose every flow is selected

    def add_specs(self, ports: Iterable[str] = (), prefixes: Iterable[str] = (),
                  protos: Iterable[str] = ()) -> RuleSet:
        """Add rules written as on the command line (`udp:5353`, `tcp:0:GET `, `icmp`); returns self."""
        for spec in protos:
            self.select_all.update(parse_proto_spec(spec))
        for spec in ports:
            self.ports.update(parse_port_spec(spec))
        for spec in prefixes:
            self.prefixes.add(parse_prefix_spec(spec))
        return self

    def add_offload(self, ports: Iterable[tuple[int, int, str]], prefixes: Iterable[tuple[int, int, bytes]],
                    match_all: Iterable[int]) -> None:
        """Add what plugin registrations ask for: (proto, port, 'src'|'dst')
        port classifiers, (proto, offset, bytes) byte classifiers, and the
        protocols with a match-everything classifier."""
        for proto, port, side in ports:
            self.ports.add(PortRule(proto, port, PortRole.CLIENT if side == "src" else PortRole.SERVER))
        for proto, offset, pattern in prefixes:
            if pattern and proto in PAYLOAD_PROTOCOLS.values():  # the kernel compares TCP and UDP payload
                self.prefixes.add(PrefixRule(proto, offset, pattern))
        self.select_all.update(match_all)

    def caps(self) -> dict[tuple[int, int], int]:
        """Per (proto, offset), the length patterns are cut to so that at most
        PREFIX_SHAPES shapes remain: the longest lengths of the most crowded
        offset merge into the next shorter one, step by step (HTTP's methods
        alone have six lengths). The kernel then selects a superset; the
        plugins still check every byte."""
        caps: dict[tuple[int, int], int] = {}
        while True:
            shapes = {kernel_view(r, caps.get((r.proto, r.offset), PREFIX_MAX))[0] for r in self.prefixes}
            if len(shapes) <= PREFIX_SHAPES:
                return caps
            crowded, count = Counter((s.proto, s.offset) for s in shapes).most_common(1)[0]
            lengths = sorted({s.length for s in shapes if (s.proto, s.offset) == crowded})
            cap = lengths[-2] if len(lengths) > 1 else lengths[0] - 1  # one length: drop its half byte
            if count == 1 or cap < 1:
                raise RuleError(
                    f"{len(shapes)} distinct prefix (protocol, offset) places; the kernel looks up at most "
                    f"{PREFIX_SHAPES} shapes. Use fewer distinct offsets.")
            caps[crowded] = cap

    def _views(self) -> list[tuple[Shape, bytes]]:
        caps = self.caps()
        return [kernel_view(r, caps.get((r.proto, r.offset), PREFIX_MAX)) for r in self.prefixes]

    def shapes(self) -> list[Shape]:
        """The distinct shapes the kernel looks up (at most PREFIX_SHAPES); RuleError when
        the rules do not fit the kernel's tables, whichever pre-filter will run them."""
        views = self._views()
        for kind, count in (("port", len(self.ports)), ("prefix", len({(s, m) for s, m in views}))):
            if count > RULE_ENTRIES:
                raise RuleError(f"the rules need {count} {kind} table entries (a port rule takes one per end) but "
                                f"the kernel's {kind} table holds at most {RULE_ENTRIES}: select with fewer rules")
        return sorted({shape for shape, _ in views}, key=lambda s: (s.proto, s.offset, s.length, s.last_mask))

    def prefix_keys(self) -> set[tuple[int, int, int, bytes]]:
        """(proto, offset, length, masked bytes) for every prefix rule, as cut by `caps`."""
        return {(shape.proto, shape.offset, shape.length, masked) for shape, masked in self._views()}

    def port_selected(self, proto: int, client_port: int, server_port: int) -> bool:
        return (proto in self.select_all
                or PortRule(proto, server_port, PortRole.SERVER) in self.ports
                or PortRule(proto, client_port, PortRole.CLIENT) in self.ports)

    def prefix_selected(self, proto: int, payload: bytes) -> bool:
        """The kernel's prefix match, in Python (for the unprivileged prefilter)."""
        keys = self.prefix_keys()
        for shape in self.shapes():
            if shape.proto != proto or shape.offset + shape.length > len(payload):
                continue
            window = payload[shape.offset:shape.offset + shape.length]
            masked = window[:-1] + bytes([window[-1] & shape.last_mask])
            if (proto, shape.offset, shape.length, masked) in keys:
                return True
        return False
