"""Classifier tables, built at registration so dispatch is a few dict lookups.

Order on a chunk (Arkime parsers.c): port classifiers (src-port list, then
dst-port list), offset/empty-match classifiers, 1-byte-prefix classifiers,
then classifiers matching >= 2 bytes at offset 0; registration order within a
list, every match runs. The same tables give the kernel its offload rules."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger(__name__)

TCP, UDP, SCTP = 6, 17, 132

PORT_UDP_SRC, PORT_UDP_DST = 0x01, 0x02
PORT_TCP_SRC, PORT_TCP_DST = 0x04, 0x08
PORT_SCTP_SRC, PORT_SCTP_DST = 0x10, 0x20
PORT_KIND_BITS = ((PORT_UDP_SRC, UDP, "src"), (PORT_UDP_DST, UDP, "dst"),
                  (PORT_TCP_SRC, TCP, "src"), (PORT_TCP_DST, TCP, "dst"),
                  (PORT_SCTP_SRC, SCTP, "src"), (PORT_SCTP_DST, SCTP, "dst"))
PORT_KIND_ALL = 0x3F


@dataclass(frozen=True, slots=True)
class Classifier:
    name: str
    cb: Callable[..., Any]
    offset: int = 0
    match: bytes = b""

    def matches(self, data: bytes) -> bool:
        return not self.match or data.startswith(self.match, self.offset)


@dataclass(slots=True)
class ProtoTable:
    """Classifiers of one IP protocol. Lists are replaced, never mutated, so a
    registration made during dispatch does not disturb the loop in progress."""

    src_ports: dict[int, list[Classifier]] = field(default_factory=dict)
    dst_ports: dict[int, list[Classifier]] = field(default_factory=dict)
    anywhere: list[Classifier] = field(default_factory=list)  # offset != 0 or empty match
    one_byte: dict[int, list[Classifier]] = field(default_factory=dict)
    two_byte: dict[int, list[Classifier]] = field(default_factory=dict)  # key: data[0]<<8|data[1]
    ppid: dict[int, list[Classifier]] = field(default_factory=dict)  # SCTP payload protocol id
    byte_rules: list[tuple[int, bytes]] = field(default_factory=list)

    def may_fire(self, client_port: int, server_port: int, bytes_allowed: bool) -> bool:
        """Could any classifier still fire on a first chunk of this session?"""
        return bool(client_port in self.src_ports or server_port in self.dst_ports
                    or self.ppid or (bytes_allowed and self.byte_rules))

    def add_bytes(self, c: Classifier) -> None:
        self.byte_rules = [*self.byte_rules, (c.offset, c.match)]
        if c.offset or not c.match:
            self.anywhere = [*self.anywhere, c]
        elif len(c.match) == 1:
            _append(self.one_byte, c.match[0], c)
        else:
            _append(self.two_byte, c.match[0] << 8 | c.match[1], c)

    def select(self, data: bytes, client_port: int, server_port: int,
               bytes_allowed: bool, ppid: int | None = None) -> list[Classifier]:
        """Every classifier that fires on this first chunk, in Arkime's order
        (SCTP payload-protocol classifiers run right after the port lists)."""
        out: list[Classifier] = []
        hit = self.src_ports.get(client_port)
        if hit:
            out.extend(hit)
        hit = self.dst_ports.get(server_port)
        if hit:
            out.extend(hit)
        if ppid is not None:
            hit = self.ppid.get(ppid)
            if hit:
                out.extend(hit)
        if not bytes_allowed:
            return out
        for c in self.anywhere:
            if c.matches(data):
                out.append(c)
        hit = self.one_byte.get(data[0])
        if hit:
            out.extend(hit)
        hit = self.two_byte.get(data[0] << 8 | data[1])
        if hit:
            out.extend(c for c in hit if data.startswith(c.match))
        return out


def _append(table: dict[int, list[Classifier]], key: int, c: Classifier) -> None:
    table[key] = [*table.get(key, ()), c]


@dataclass(frozen=True, slots=True)
class OffloadRules:
    """What the XDP pre-classifier may select on.

    `match_all` lists IP protocols with an empty-match classifier: every flow of
    that protocol must go to userspace, so prefix offload is impossible there.
    UDP prefix rules must not select flows with port 53 on either side (Arkime
    never runs UDP byte classifiers there); port rules still apply."""

    ports: tuple[tuple[int, int, str], ...]
    prefixes: tuple[tuple[int, int, bytes], ...]
    match_all: frozenset[int]


class ClassifierTables:
    """All session classifiers of a runtime, keyed by IP protocol."""

    def __init__(self) -> None:
        self.by_proto: dict[int, ProtoTable] = {TCP: ProtoTable(), UDP: ProtoTable(),
                                                SCTP: ProtoTable()}
        self._port_rules: list[tuple[int, int, str]] = []

    def add_bytes(self, ip_proto: int, c: Classifier) -> None:
        self.by_proto[ip_proto].add_bytes(c)
        if not c.match:
            log.warning("classifier %r matches every %s session: kernel offload is off for it",
                        c.name, {TCP: "tcp", UDP: "udp", SCTP: "sctp"}[ip_proto])

    def add_port(self, c: Classifier, port: int, kind: int) -> None:
        for bit, proto, side in PORT_KIND_BITS:
            if kind & bit:
                t = self.by_proto[proto]
                _append(t.src_ports if side == "src" else t.dst_ports, port, c)
                self._port_rules.append((proto, port, side))

    def add_ppid(self, c: Classifier, ppid: int) -> None:
        _append(self.by_proto[SCTP].ppid, ppid, c)

    def offload_rules(self) -> OffloadRules:
        prefixes: list[tuple[int, int, bytes]] = []
        match_all: set[int] = set()
        for proto, t in self.by_proto.items():
            for offset, match in t.byte_rules:
                if match:
                    prefixes.append((proto, offset, match))
                else:
                    match_all.add(proto)
        return OffloadRules(ports=tuple(dict.fromkeys(self._port_rules)),
                            prefixes=tuple(dict.fromkeys(prefixes)),
                            match_all=frozenset(match_all))
