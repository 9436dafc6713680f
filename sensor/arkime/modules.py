"""The `arkime` and `arkime_session` modules, bound to one PluginRuntime.

Names, constants, positional-only signatures, return values and exceptions
follow Arkime 6.7 (see specs/arkime-python-api.md a). Session handles are
opaque ints. Deliberate differences from Arkime:

| Arkime (fatal = LOGEXIT ends capture)                            | xdpsensor                                                                                                                                                    |
|------------------------------------------------------------------|--------------------------------------------------------------------------------------------------------------------------------------------------------------|
| unknown expression in get/add_*/field_get: fatal                 | raises `ArkimeFieldError` (a KeyError) in the plugin's code                                                                                                  |
| add_string on int/ip/float field, add_int on non-int: fatal      | raises `ArkimeFieldTypeError` (a TypeError)                                                                                                                  |
| field_define without db: for an unknown expression: fatal        | raises `ArkimeFieldError`                                                                                                                                    |
| termfield db containing `-term`, more than ~1024 fields: fatal   | raises `ArkimeFieldDefinitionError` (a ValueError)                                                                                                           |
| register_port_classifier with portKind 0: fatal                  | raises ValueError; a port outside 0-65535 too                                                                                                                |
| register_sctp_protocol_classifier protocol not 0-255: fatal      | raises ValueError                                                                                                                                            |
| classifier with a negative offset: reads outside the packet      | raises ValueError at registration                                                                                                                            |
| parser_buf_del/skip with which not 0/1: out of bounds            | raises ValueError                                                                                                                                            |
| decref below 0: count goes negative                              | ignored, with a warning                                                                                                                                      |
| plugin top-level code runs once per packet/reader thread         | runs once per runtime (one runtime per worker process)                                                                                                       |
| sys.exit() in plugin top-level code ends the process             | reported as a load error like any other exception                                                                                                            |
| more than 100 files in a dir: the first 100 read (readdir order) | the first 100 in alphabetical order; the rest reported as skipped                                                                                            |
| ~31 parser slots per session, unregistered slots included        | 31 live parsers per session                                                                                                                                  |
| kind:ip fields also create <db-2>GEO/ASN/RIR helper fields       | no helper fields (no enrichment in xdpsensor)                                                                                                                |
| arkime_packet callbacks run in reader threads                    | stored on the runtime, never run (xdpsensor decodes L2-L4); warned once; no packet handle exists, so get/set/run_*_cb raise ArkimeHandleError (a ValueError) |
"""
from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable

from . import classify
from .cargs import c_bytes, c_callable, c_int, c_str
from .classify import SCTP, TCP, UDP, Classifier
from .errors import ArkimeFieldError
from .fields import VIRTUAL_FIELDS, FieldDef, FieldType
from .packet_module import build_packet_module

if TYPE_CHECKING:
    from .runtime import PluginRuntime

VERSION = "6.7.0"
API_VERSION = 607


def _key(name: str, cb: Callable[..., Any]) -> str:
    fn = getattr(cb, "__name__", None)
    return f"{name}:{fn}" if isinstance(fn, str) else name


def _leading_int(text: str) -> int:
    # C atoi(): the leading run of ASCII digits
    end = 0
    while end < len(text) and "0" <= text[end] <= "9":
        end += 1
    return int(text[:end])


def build_arkime_module(rt: PluginRuntime, config_prefix: str) -> ModuleType:
    m = ModuleType("arkime", "Arkime plugin registration API (xdpsensor implementation).")
    m.VERSION = VERSION
    m.CONFIG_PREFIX = config_prefix
    m.API_VERSION = API_VERSION
    for const in ("PORT_UDP_SRC", "PORT_UDP_DST", "PORT_TCP_SRC", "PORT_TCP_DST",
                  "PORT_SCTP_SRC", "PORT_SCTP_DST"):
        setattr(m, const, getattr(classify, const))

    def byte_classifier(fn: str, proto: int) -> Callable[..., None]:
        def register(name: Any, offset: Any, match: Any, cb: Any, /) -> None:
            name = c_str(name, fn, 1)
            offset = c_int(offset, fn, 2)
            match = c_bytes(match, fn, 3)
            c_callable(cb)
            if offset < 0:
                raise ValueError(f"{fn}: offset must be >= 0, not {offset}")
            if rt.claim_key(_key(name, cb)):
                rt.add_byte_classifier(proto, Classifier(name, cb, offset, match))
        register.__name__ = fn
        return register

    m.register_tcp_classifier = byte_classifier("register_tcp_classifier", TCP)
    m.register_udp_classifier = byte_classifier("register_udp_classifier", UDP)
    m.register_sctp_classifier = byte_classifier("register_sctp_classifier", SCTP)

    def register_sctp_protocol_classifier(name: Any, protocol: Any, cb: Any, /) -> None:
        fn = "register_sctp_protocol_classifier"
        name = c_str(name, fn, 1)
        protocol = c_int(protocol, fn, 2)
        c_callable(cb)
        if not 0 <= protocol <= 255:
            raise ValueError(f"{fn}: protocol must be 0-255, not {protocol}")
        if rt.claim_key(_key(name, cb)):
            rt.add_ppid_classifier(Classifier(name, cb), protocol)

    def register_port_classifier(name: Any, port: Any, portKind: Any, cb: Any, /) -> None:
        fn = "register_port_classifier"
        name = c_str(name, fn, 1)
        port = c_int(port, fn, 2)
        kind = c_int(portKind, fn, 3)
        c_callable(cb)
        if kind == 0:
            raise ValueError(f"{fn}: portKind 0 matches nothing; OR the arkime.PORT_* constants")
        if not 0 <= port <= 65535:
            raise ValueError(f"{fn}: port must be 0-65535, not {port}")
        if rt.claim_key(_key(name, cb)):
            rt.add_port_classifier(Classifier(name, cb), port, kind)

    def register_pre_save(cb: Any, /) -> None:
        c_callable(cb)
        if rt.claim_key(f":pre_save:{getattr(cb, '__name__', '')}"):
            rt.pre_save_hooks.append(cb)

    def register_save(cb: Any, /) -> None:
        c_callable(cb)
        if rt.claim_key(f":save:{getattr(cb, '__name__', '')}"):
            rt.save_hooks.append(cb)

    def field_define(expr: Any, definition: Any, /) -> int:
        expr = c_str(expr, "field_define", 1)
        definition = c_str(definition, "field_define", 2)
        if rt.dispatching:
            raise RuntimeError("arkime.field_define() can only be called at start up.")
        return rt.fields.define(expr, definition)

    def field_get(expr: Any, /) -> int:
        return rt.fields.position(c_str(expr, "field_get", 1))

    for f in (register_sctp_protocol_classifier, register_port_classifier, register_pre_save,
              register_save, field_define, field_get):
        setattr(m, f.__name__, f)
    return m


def build_session_module(rt: PluginRuntime) -> ModuleType:
    m = ModuleType("arkime_session", "Arkime per-session API (xdpsensor implementation).")
    fields = rt.fields
    by_expr = fields.by_expr
    by_pos = fields.by_pos
    state = rt.state
    int_type = FieldType.INT  # an Enum member read through its class costs a lookup chain
    int_positions: set[int] = set()  # writable integer fields add_int has met: its fast path
    live_state = rt._sessions.get  # rt.state without its call, for add_int: plugins call it per packet
    tags = fields.tags
    protocols = fields.protocols

    def resolve(f: Any, fn: str) -> FieldDef | None:
        """A position, a digit string (read as a position) or an expression."""
        if type(f) is str:
            fd = by_expr.get(f)
            if fd is not None:
                return fd
            if f[:1].isdigit() and f[0].isascii():
                pos = _leading_int(f)
                return by_pos[pos] if pos < len(by_pos) else None
            raise ArkimeFieldError(
                f"{fn}: unknown field expression {f!r}: define it with arkime.field_define")
        if isinstance(f, int):
            return by_pos[f] if 0 <= f < len(by_pos) else None
        raise TypeError(f"{fn}: field must be a position (int) or an expression (str), "
                        f"not {type(f).__name__}")

    def text(value: Any, fn: str, argno: int) -> str:
        if type(value) is str and value.isascii() and "\0" not in value:
            return value
        return c_str(value, fn, argno)

    def register_parser(session: Any, cb: Any, /) -> None:
        c_callable(cb)
        rt.add_parser(state(session), cb, buffered=False)

    def register_parser_buf(session: Any, cb: Any, /) -> None:
        c_callable(cb)
        rt.add_parser(state(session), cb, buffered=True)

    def buf_args(pb: Any, which: Any, n: Any, fn: str) -> tuple[Any, int, int]:
        which = c_int(which, fn, 2)
        n = c_int(n, fn, 3)
        if which not in (0, 1):
            raise ValueError(f"{fn}: which must be 0 or 1, not {which}")
        return rt.parser_buf(pb), which, n

    def parser_buf_del(pb: Any, which: Any, n: Any, /) -> None:
        buf, which, n = buf_args(pb, which, n, "parser_buf_del")
        buf.delete(which, n)

    def parser_buf_skip(pb: Any, which: Any, n: Any, /) -> None:
        buf, which, n = buf_args(pb, which, n, "parser_buf_skip")
        buf.skip(which, n)

    def add_tag(session: Any, tag: Any, /) -> None:
        tag = text(tag, "add_tag", 2)
        state(session).add_str(tags, tag, tags)

    def add_protocol(session: Any, p: Any, /) -> None:
        p = text(p, "add_protocol", 2)
        state(session).add_str(protocols, p, tags)

    def has_protocol(session: Any, p: Any, /) -> bool:
        p = text(p, "has_protocol", 2)
        store = state(session).values.get(protocols.pos)
        return bool(store) and p in store

    def add_string(session: Any, f: Any, value: Any, /) -> bool:
        value = text(value, "add_string", 3)
        st = state(session)
        fd = resolve(f, "add_string")
        return fd is not None and st.add_str(fd, value, tags)

    def add_int(session: Any, f: Any, value: Any, /) -> bool:
        if type(value) is not int or not -0x80000000 <= value <= 0x7FFFFFFF:
            value = c_int(value, "add_int", 3)
        st = live_state(session) if type(session) is int else None
        if st is None:
            st = state(session)  # raises the runtime's error for a bad handle
        if type(f) is int and f in int_positions:
            # PluginSession.add_int on a writable integer field, inlined: plugins call it per packet.
            value &= 0xFFFFFFFF
            store = st.values.get(f)
            if store is None:
                st.values[f] = {value: None}
                return True
            if value in store:
                return False
            store[value] = None
            return True
        fd = resolve(f, "add_int")
        if fd is None:
            return False
        if type(f) is int and fd.type is int_type and fd.writable:
            int_positions.add(f)
        return st.add_int(fd, value)

    def get(session: Any, f: Any, /) -> Any:
        f = c_str(f, "get", 2)
        st = state(session)
        virtual = VIRTUAL_FIELDS.get(f)
        if virtual is not None:
            value = virtual(st.view)
            return None if value == 0 else value  # Arkime quirk: virtual 0 reads as None
        fd = resolve(f, "get")
        if fd is None or fd.pos < 0:
            return None
        return st.get(fd, tags)

    def set_attr(session: Any, key: Any, obj: Any, /) -> None:
        key = text(key, "set_attr", 2)
        state(session).attrs[key] = obj

    def get_attr(session: Any, key: Any, /) -> Any:
        key = text(key, "get_attr", 2)
        return state(session).attrs.get(key)

    def incref(session: Any, /) -> None:
        rt.incref(state(session))

    def decref(session: Any, /) -> None:
        rt.decref(state(session))

    for f in (register_parser, register_parser_buf, parser_buf_del, parser_buf_skip, add_tag,
              add_protocol, has_protocol, add_string, add_int, get, set_attr, get_attr, incref,
              decref):
        setattr(m, f.__name__, f)
    return m


def build_modules(rt: PluginRuntime, config_prefix: str) -> dict[str, ModuleType]:
    """The three modules plugins import, keyed by their sys.modules name."""
    return {"arkime": build_arkime_module(rt, config_prefix),
            "arkime_session": build_session_module(rt),
            "arkime_packet": build_packet_module(rt)}
