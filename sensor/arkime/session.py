"""Per-session plugin state: field values, attributes, parsers, byte counters.

Field values are kept as insertion-ordered dicts used as sets, so `get` and the
SPI record are deterministic."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import ArkimeFieldTypeError
from .fields import FieldDef, FieldType
from .view import SessionView

MAX_STRING_BYTES = 16384  # longer add_string values are truncated and the session tagged
TRANSPORTS = {6: "tcp", 17: "udp", 132: "sctp", 1: "icmp", 58: "icmp"}
_STR, _INT = FieldType.STR, FieldType.INT  # an Enum member read through its class costs a lookup chain


@dataclass(slots=True)
class ParserBuf:
    """Arkime's ArkimeParserBuf_t: per-direction accumulation, 8 KiB cap, skip counts.

    `del`/`skip` rebind the bytearray rather than resize it, because a plugin may
    still hold a view of the old one."""

    handle: int
    bufs: list[bytearray] = field(default_factory=lambda: [bytearray(), bytearray()])
    skipping: list[int] = field(default_factory=lambda: [0, 0])

    CAPACITY = 8192

    def add(self, which: int, data: bytes) -> None:
        skip = self.skipping[which]
        if skip:
            if skip >= len(data):
                self.skipping[which] = skip - len(data)
                return
            data = data[skip:]
            self.skipping[which] = 0
        buf = self.bufs[which]
        room = self.CAPACITY - len(buf)
        if room <= 0:
            return  # Arkime drops bytes past the cap silently
        chunk = data if len(data) <= room else data[:room]
        try:
            buf += chunk
        except BufferError:  # a plugin kept a view of the buffer: copy instead
            self.bufs[which] = buf + chunk

    def delete(self, which: int, n: int) -> None:
        if n <= 0:
            return
        buf = self.bufs[which]
        self.bufs[which] = bytearray() if n >= len(buf) else buf[n:]

    def skip(self, which: int, n: int) -> None:
        if n <= 0:
            return
        have = len(self.bufs[which])
        if n <= have:
            self.delete(which, n)
        else:
            self.skipping[which] += n - have
            self.bufs[which] = bytearray()


@dataclass(slots=True)
class Parser:
    """A parser registered on one session; `buf` is set for register_parser_buf ones."""

    cb: Callable[..., Any]
    buf: ParserBuf | None = None


@dataclass(slots=True, eq=False)
class PluginSession:
    handle: int
    view: SessionView
    values: dict[int, dict] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    parsers: list[Parser | None] = field(default_factory=list)
    total: list[int] = field(default_factory=lambda: [0, 0])
    consumed: list[int] = field(default_factory=lambda: [0, 0])
    refcount: int = 0
    ending: bool = False  # final save requested, waiting for refcount to reach 0
    silenced: bool = False  # a callback ran out of time: no plugin sees this session again
    extra: dict[str, Any] = field(default_factory=dict)  # merged into the record (the host's own keys)
    rendered: dict | None = None  # the record as rendered before any plugin ran (session_started's)

    def live_parsers(self) -> int:
        return sum(p is not None for p in self.parsers)

    def add_str(self, fd: FieldDef, value: str, tags: FieldDef) -> bool:
        """add_string on a resolved field; False for duplicates and unwritable fields."""
        if not fd.writable:
            return False
        if fd.type is not _STR:
            raise ArkimeFieldTypeError(
                f"add_string on {fd.expr!r}, a {fd.type.value} field: use add_int for integer "
                "fields; ip and float fields cannot be set from Python")
        if len(value) * 4 > MAX_STRING_BYTES:  # cheap pre-check before encoding
            raw = value.encode("utf-8", "surrogatepass")
            if len(raw) > MAX_STRING_BYTES:
                value = raw[:MAX_STRING_BYTES].decode("utf-8", "ignore")
                self.add_str(tags, f"truncated-field-{fd.db}", tags)
        return self._insert(fd, value)

    def add_int(self, fd: FieldDef, value: int) -> bool:
        """add_int on a resolved field; stored unsigned like Arkime's uint32 sets."""
        if not fd.writable:
            return False
        if fd.type is not _INT:
            raise ArkimeFieldTypeError(
                f"add_int on {fd.expr!r}, a {fd.type.value} field: use add_string for string "
                "fields; ip and float fields cannot be set from Python")
        value &= 0xFFFFFFFF
        return self._insert(fd, value)

    def _insert(self, fd: FieldDef, value: object) -> bool:
        """Add to the field's insertion-ordered set; False for a duplicate."""
        store = self.values.get(fd.pos)
        if store is None:
            self.values[fd.pos] = {value: None}
            return True
        if value in store:
            return False
        store[value] = None
        return True

    def get(self, fd: FieldDef, tags: FieldDef) -> list | None:
        """The stored values of a real field as a list, None when unset."""
        store = self.values.get(fd.pos)
        if fd is tags and self.view.tags:
            merged = dict(store or ())
            merged.update(dict.fromkeys(sorted(self.view.tags)))
            return list(merged)
        return list(store) if store else None
