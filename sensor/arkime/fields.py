"""Field registry: Arkime's field positions, expressions, db names and kinds.

Positions are small ints handed to plugins by `field_define`/`field_get`; the
registry also knows the virtual fields that `arkime_session.get` computes from
the session itself (ip.src, port.dst, tcpflags.syn, ...)."""
from __future__ import annotations

import enum
import json
import logging
from dataclasses import dataclass, field
from typing import Callable

from .errors import ArkimeFieldDefinitionError, ArkimeFieldError
from .view import SessionView

log = logging.getLogger(__name__)

MAX_FIELDS = 1024  # Arkime's ARKIME_FIELDS_MAX (approximately; exceeding it is fatal there)
NO_POSITION = -1  # fake, virtual and `.cnt` fields: usable in get, never in add_*


class FieldType(enum.Enum):
    STR = "str"
    INT = "int"
    IP = "ip"
    FLOAT = "float"


@dataclass(slots=True)
class FieldDef:
    """One field. `linked` fields keep their values across a mid-save."""

    pos: int
    expr: str
    db: str
    kind: str
    type: FieldType
    group: str = "general"
    friendly: str = ""
    help: str = ""
    category: str | None = None
    transform: str | None = None
    count: bool = False
    ecs_cnt: bool = False  # Cnt companion spelled "<key>-cnt" (source.mac, network.vlan.id)
    linked: bool = True
    noutf8: bool = False
    disabled: bool = False
    aliases: tuple[str, ...] = field(default_factory=tuple)

    @property
    def writable(self) -> bool:
        """True when add_string/add_int may store into this field."""
        return self.pos >= 0 and not self.disabled


def kind_type(kind: str) -> FieldType:
    """Arkime's storage type for a `kind:` value (unknown kinds are strings)."""
    if kind in ("integer", "seconds"):
        return FieldType.INT
    if kind == "ip":
        return FieldType.IP
    if kind == "float":
        return FieldType.FLOAT
    return FieldType.STR


def _ip_text(ip: str) -> str:
    # Arkime prints v4-mapped v6 addresses as dotted v4.
    return ip[7:] if ip.startswith("::ffff:") and "." in ip else ip


def _dst_ip_port(v: SessionView) -> str:
    ip = _ip_text(v.server_ip)
    return f"{ip}.{v.server_port}" if ":" in ip else f"{ip}:{v.server_port}"


def _syn_set(v: SessionView) -> int:
    # Arkime's session->synSet: bit 1 a SYN was seen, bit 2 a SYN-ACK was seen.
    return (1 if v.tcpflags.get("syn") else 0) | (2 if v.tcpflags.get("syn-ack") else 0)


def _community_id(v: SessionView) -> str | None:
    cid = v.community_id
    if not cid:
        return None
    return cid[2:] if cid.startswith("1:") else cid


def _flag_getter(name: str) -> Callable[[SessionView], int]:
    return lambda v: v.tcpflags.get(name, 0)


TCP_FLAG_NAMES = ("syn", "syn-ack", "ack", "psh", "fin", "rst", "urg", "ece", "cwr", "ae")

# Virtual fields computed from the session. Int getters returning 0 make
# `get` return None: an Arkime quirk that plugins may depend on.
VIRTUAL_FIELDS: dict[str, Callable[[SessionView], object]] = {
    "ip.src": lambda v: _ip_text(v.client_ip),
    "ip.dst": lambda v: _ip_text(v.server_ip),
    "port.src": lambda v: v.client_port,
    "port.dst": lambda v: v.server_port,
    **{f"tcpflags.{n}": _flag_getter(n) for n in TCP_FLAG_NAMES},
    "tcp.synSet": _syn_set,
    "packets.src": lambda v: v.packets[0],
    "packets.dst": lambda v: v.packets[1],
    "databytes.src": lambda v: v.databytes[0],
    "databytes.dst": lambda v: v.databytes[1],
    "communityId": _community_id,
    "ip.dst:port": _dst_ip_port,
    "dst.ip:port": _dst_ip_port,
}

# Rule-only action fields: negative positions, add_* returns False, get None.
SPECIAL_FIELDS = ("_dontSaveSPI", "_maxPacketsToSave", "_minPacketsBeforeSavingSPI",
                  "_dropByDst", "_dropBySrc", "_dropBySession", "_closeNow", "_dontCheckYara")

# (expr, db, kind, count, linked, ecs_cnt): the built-ins plugins commonly use.
BUILTIN_FIELDS: tuple[tuple[str, str, str, bool, bool, bool], ...] = (
    ("protocols", "protocol", "termfield", True, True, False),
    ("tags", "tags", "termfield", True, True, False),
    ("user", "user", "lotermfield", True, True, False),
    ("asset", "asset", "lotermfield", True, True, False),
    ("mac.src", "source.mac", "lotermfield", True, False, True),
    ("mac.dst", "destination.mac", "lotermfield", True, False, True),
    ("vlan", "network.vlan.id", "integer", True, False, True),
    ("ttl.src", "srcTTL", "integer", True, False, False),
    ("ttl.dst", "dstTTL", "integer", True, False, False),
    ("host.http", "http.host", "lotermfield", True, False, False),
    ("http.uri", "http.uri", "termfield", True, False, False),
    ("http.user-agent", "http.useragent", "termfield", True, False, False),
    ("http.method", "http.method", "termfield", True, False, False),
    ("http.statuscode", "http.statuscode", "integer", True, False, False),
    ("ip.xff", "http.xffIp", "ip", True, False, False),
    ("host.dns", "dns.host", "lotermfield", True, False, False),
    ("ip.dns", "dns.ip", "ip", True, False, False),
    ("dns.query.type", "dns.qt", "uptermfield", True, False, False),
    ("tls.ja3", "tls.ja3", "lotermfield", True, False, False),
    ("tls.ja4", "tls.ja4", "lotermfield", True, False, False),
    ("tls.ja4_r", "tls.ja4_r", "lotermfield", True, False, False),
    ("tls.cipher", "tls.cipher", "uptermfield", True, False, False),
    ("tls.version", "tls.version", "termfield", True, False, False),
    ("tcp.ja4t", "tcp.ja4t", "lotermfield", True, False, False),
    ("ssh.ver", "ssh.version", "lotermfield", True, False, False),
    ("ssh.hassh", "ssh.hassh", "lotermfield", True, False, False),
    ("host.quic", "quic.host", "lotermfield", True, False, False),
    ("dhcp.host", "dhcp.host", "lotermfield", True, False, False),
    ("email.subject", "email.subject", "textfield", True, False, False),
    ("krb5.cname", "krb5.cname", "termfield", True, False, False),
)


def parse_definition(definition: str) -> dict[str, str]:
    """Split a custom-field definition the way Arkime does: on `;`, then at the first `:`.

    Elements without `:` are ignored; a repeated key keeps its last value."""
    opts: dict[str, str] = {}
    for element in definition.split(";"):
        key, sep, value = element.partition(":")
        if sep:
            opts[key] = value
    return opts


def _aliases(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    if text.startswith("["):
        try:
            return tuple(str(a) for a in json.loads(text))
        except (ValueError, TypeError):
            log.warning("field aliases %r are not a JSON list; ignored", text)
            return ()
    return tuple(a.strip() for a in text.split(",") if a.strip())


class FieldRegistry:
    """All fields of one runtime, by position, expression and db name."""

    def __init__(self, disabled: tuple[str, ...] | frozenset[str] = ()) -> None:
        self.by_pos: list[FieldDef] = []
        self.by_expr: dict[str, FieldDef] = {}
        self.by_db: dict[str, FieldDef] = {}
        self._disabled = frozenset(disabled)
        for expr, db, kind, count, linked, ecs in BUILTIN_FIELDS:
            self._add(expr, db, kind, {}, count=count, linked=linked, ecs_cnt=ecs)
        for i, name in enumerate(SPECIAL_FIELDS):
            self.by_expr[name] = FieldDef(pos=-2 - i, expr=name, db=name, kind="special",
                                          type=FieldType.INT)
        for name in VIRTUAL_FIELDS:
            self.by_expr[name] = FieldDef(pos=NO_POSITION, expr=name, db=name, kind="virtual",
                                          type=FieldType.STR)
        self.protocols = self.by_expr["protocols"]
        self.tags = self.by_expr["tags"]

    def _add(self, expr: str, db: str, kind: str, opts: dict[str, str], *, count: bool,
             linked: bool, ecs_cnt: bool = False) -> FieldDef:
        if len(self.by_pos) >= MAX_FIELDS:
            raise ArkimeFieldDefinitionError(
                f"cannot define {expr!r}: more than {MAX_FIELDS} fields")
        ftype = kind_type(kind)
        fd = FieldDef(
            pos=len(self.by_pos), expr=expr, db=db, kind=kind, type=ftype,
            group=opts.get("group") or (expr.split(".", 1)[0] if "." in expr else "general"),
            friendly=opts.get("friendly") or opts.get("friendlyName") or expr,
            help=opts.get("help") or expr,
            category=opts.get("category") or ("ip" if ftype is FieldType.IP else None),
            transform=opts.get("transform"),
            count=count, ecs_cnt=ecs_cnt, linked=linked,
            noutf8=opts.get("noutf8") == "true",
            disabled=expr in self._disabled or db in self._disabled,
            aliases=_aliases(opts.get("aliases")),
        )
        self.by_pos.append(fd)
        self.by_db[db] = fd
        for name in (expr, *fd.aliases):
            self.by_expr.setdefault(name, fd)
        if count:
            self.by_expr.setdefault(f"{expr}.cnt", FieldDef(
                pos=NO_POSITION, expr=f"{expr}.cnt", db=f"{db}Cnt", kind="integer",
                type=FieldType.INT))
        return fd

    def define(self, expr: str, definition: str) -> int:
        """`arkime.field_define`: returns the position, or -1 (no kind, fake field).

        Raises ArkimeFieldError when `db:` is missing and `expr` is unknown, and
        ArkimeFieldDefinitionError for the other definitions Arkime treats as fatal."""
        opts = parse_definition(definition)
        expr = opts.get("field", expr)
        db = opts.get("db")
        if not db:
            return self.position(expr)
        kind = opts.get("kind")
        if not kind:
            log.warning("field_define(%r): no kind in %r; field not defined", expr, definition)
            return -1
        if "termfield" in kind and "-term" in db:
            raise ArkimeFieldDefinitionError(
                f"field_define({expr!r}): a {kind} db name may not contain '-term' ({db!r})")
        if opts.get("fake") == "true" or opts.get("viewerOnly") == "true":
            return -1
        existing = self.by_db.get(db)
        if existing is not None:
            if existing.kind != kind:
                log.warning("field_define(%r): db %r already defined as kind %s; keeping it",
                            expr, db, existing.kind)
            self.by_expr.setdefault(expr, existing)
            return existing.pos
        return self._add(expr, db, kind, opts, count=opts.get("count") == "true",
                         linked=opts.get("nolinked") != "true").pos

    def position(self, expr: str) -> int:
        """`arkime.field_get`: the position of a known expression (-1 for virtual/.cnt)."""
        return self.lookup(expr).pos

    def lookup(self, expr: str) -> FieldDef:
        fd = self.by_expr.get(expr)
        if fd is None:
            raise ArkimeFieldError(
                f"unknown field expression {expr!r}: define it first with arkime.field_define")
        return fd

    def at(self, pos: int) -> FieldDef | None:
        """The field at a position, None for a negative or unused one."""
        return self.by_pos[pos] if 0 <= pos < len(self.by_pos) else None
