"""Load and validate ProtoPoke protocol definitions into typed, immutable objects.

Everything that ProtoPoke only discovers while decoding (unknown types,
missing lengths, undefined expression variables, bad TLV sizes) is rejected
here, with a message naming the file, the message and the field.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from sensor.errors import SensorError
from sensor.flows.state import Direction
from sensor.protocol.expressions import Expression, ExpressionError, parse_expression
from sensor.yamlload import YamlError, load_yaml


MAX_LENGTH = 1 << 24         # no frame is longer (the framers' largest max_frame_size is 16 MiB)
MAX_ARRAY_NESTING = 16       # arrays within arrays


class ProtocolDefinitionError(SensorError, ValueError):
    """A definition that cannot be used; the message says where and what to change."""


class FieldType(Enum):
    UINT8 = "uint8"
    UINT16 = "uint16"
    UINT32 = "uint32"
    UINT64 = "uint64"
    INT8 = "int8"
    INT16 = "int16"
    INT32 = "int32"
    INT64 = "int64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    BYTES = "bytes"
    STRING = "string"
    PADDING = "padding"
    BITFIELD = "bitfield"
    ARRAY = "array"
    TLV_SEQUENCE = "tlv_sequence"


# struct format character and size of each fixed-width numeric type.
NUMERIC_FORMATS: dict[FieldType, tuple[str, int]] = {
    FieldType.UINT8: ("B", 1),
    FieldType.UINT16: ("H", 2),
    FieldType.UINT32: ("I", 4),
    FieldType.UINT64: ("Q", 8),
    FieldType.INT8: ("b", 1),
    FieldType.INT16: ("h", 2),
    FieldType.INT32: ("i", 4),
    FieldType.INT64: ("q", 8),
    FieldType.FLOAT32: ("f", 4),
    FieldType.FLOAT64: ("d", 8),
}
FLOAT_TYPES = frozenset({FieldType.FLOAT32, FieldType.FLOAT64})
BITFIELD_WIDTHS = (1, 2, 4, 8)
TLV_SIZES = (1, 2, 4)
# Fields whose value can be used by later expressions (ProtoPoke: int or float values).
_EXPRESSION_SOURCES = frozenset(NUMERIC_FORMATS) | {FieldType.BITFIELD}
_TLV_VALUE_TYPES = frozenset(NUMERIC_FORMATS) | {FieldType.STRING, FieldType.BYTES}
_NEEDS_LENGTH = frozenset({FieldType.BYTES, FieldType.PADDING})


class DisplayHint(Enum):
    AUTO = "auto"
    HEX = "hex"
    ASCII = "ascii"
    UNICODE = "unicode"
    DECIMAL = "decimal"
    ENUM = "enum"


class DirectionFilter(Enum):
    BOTH = "both"
    CLIENT_TO_SERVER = "client_to_server"
    SERVER_TO_CLIENT = "server_to_client"

    @property
    def directions(self) -> frozenset[Direction]:
        """The frame directions this filter lets through."""
        if self is DirectionFilter.BOTH:
            return frozenset(Direction)
        return frozenset({Direction(self.value)})


_DIRECTION_ALIASES = {
    "c2s": DirectionFilter.CLIENT_TO_SERVER,
    "client": DirectionFilter.CLIENT_TO_SERVER,
    "s2c": DirectionFilter.SERVER_TO_CLIENT,
    "server": DirectionFilter.SERVER_TO_CLIENT,
}


class MatchType(Enum):
    MAGIC = "magic"
    SEQUENCE = "sequence"
    ALWAYS = "always"


@dataclass(frozen=True, slots=True)
class MatchRule:
    """How a message is recognised: bytes at an offset, position in its direction, or always."""

    type: MatchType
    offset: int = 0
    value: bytes = b""
    index: int = 0
    direction: DirectionFilter = DirectionFilter.BOTH


@dataclass(frozen=True, slots=True)
class TlvTag:
    name: str
    value_type: FieldType = FieldType.BYTES
    encoding: str = "utf8"
    display: DisplayHint = DisplayHint.AUTO


@dataclass(frozen=True, slots=True)
class TlvConfig:
    """Header sizes and order for tag and length; values use the protocol's endianness."""

    type_size: int = 1
    length_size: int = 2
    endianness: str = "big"
    tags: Mapping[int, TlvTag] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ArrayConfig:
    count: Expression
    item: tuple[FieldDefinition, ...]


@dataclass(frozen=True, slots=True)
class FieldDefinition:
    name: str
    type: FieldType = FieldType.BYTES
    length: Expression | None = None
    null_terminated: bool = False
    encoding: str = "utf8"
    display: DisplayHint = DisplayHint.AUTO
    enum: Mapping[int, str] = field(default_factory=dict)
    bits: Mapping[int, str] = field(default_factory=dict)
    tlv: TlvConfig | None = None
    array: ArrayConfig | None = None


@dataclass(frozen=True, slots=True)
class MessageDefinition:
    name: str
    description: str = ""
    direction: DirectionFilter = DirectionFilter.BOTH
    match: MatchRule = MatchRule(MatchType.ALWAYS)
    fields: tuple[FieldDefinition, ...] = ()


@dataclass(frozen=True, slots=True)
class ProtocolDefinition:
    name: str
    version: str = "1.0"
    endianness: str = "big"
    messages: tuple[MessageDefinition, ...] = ()
    source: str = "<dict>"


def load_definition_file(path: str | Path) -> ProtocolDefinition:
    """Load a ``.yaml``/``.yml``/``.json`` definition; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"protocol definition file not found: {path}")
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    if suffix in (".yaml", ".yml"):
        try:
            raw = load_yaml(text)
        except YamlError as exc:
            raise ProtocolDefinitionError(f"{path}: {exc}") from None
    elif suffix == ".json":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ProtocolDefinitionError(f"{path}: not valid JSON: {exc}") from None
    else:
        raise ProtocolDefinitionError(f"{path}: unsupported extension {suffix!r}; use .yaml, .yml or .json")
    return load_definition_dict(raw, source=str(path))


def load_definition_dict(raw: Any, source: str = "<dict>") -> ProtocolDefinition:
    """Validate an already-parsed mapping, wrapped in ``protocol:`` or bare."""
    if not isinstance(raw, dict):
        raise ProtocolDefinitionError(f"{source}: a protocol definition must be a mapping, got {type(raw).__name__}")
    if isinstance(raw.get("protocol"), dict):
        raw = raw["protocol"]
    name = _required_str(raw, "name", source)
    endianness = str(raw.get("endianness") or "big").lower()
    if endianness not in ("big", "little"):
        raise ProtocolDefinitionError(f"{source}: endianness must be 'big' or 'little', got {endianness!r}")
    messages = raw.get("messages", [])
    messages = [] if messages is None else messages
    if not isinstance(messages, list):
        raise ProtocolDefinitionError(f"{source}: 'messages' must be a list, got {type(messages).__name__}")
    return ProtocolDefinition(
        name=name,
        version=str(raw.get("version") or "1.0"),
        endianness=endianness,
        messages=tuple(_message(m, f"{source}: messages[{i}]") for i, m in enumerate(messages)),
        source=source,
    )


def _message(raw: Any, where: str) -> MessageDefinition:
    if not isinstance(raw, dict):
        raise ProtocolDefinitionError(f"{where}: a message must be a mapping, got {type(raw).__name__}")
    name = _required_str(raw, "name", where)
    where = f"{where} message {name!r}"
    fields = raw.get("fields", [])
    fields = [] if fields is None else fields
    if not isinstance(fields, list):
        raise ProtocolDefinitionError(f"{where}: 'fields' must be a list, got {type(fields).__name__}")
    return MessageDefinition(
        name=name,
        description=str(raw.get("description") or ""),
        direction=_direction(raw.get("direction"), where),
        match=_match(raw.get("match", {"type": "always"}), where),
        fields=_fields(fields, set(), where),
    )


def _match(raw: Any, where: str) -> MatchRule:
    if not isinstance(raw, dict):
        raise ProtocolDefinitionError(f"{where}: 'match' must be a mapping, got {type(raw).__name__}")
    kind = str(raw.get("type") or "always").lower()
    try:
        match_type = MatchType(kind)
    except ValueError:
        raise ProtocolDefinitionError(
            f"{where}: match type {kind!r} is unknown; use one of {[t.value for t in MatchType]}"
        ) from None
    if match_type is MatchType.MAGIC:
        if raw.get("value") is None:
            raise ProtocolDefinitionError(f"{where}: a magic match needs 'value', e.g. value: \"0x01 0x02\"")
        offset = _int(raw.get("offset", 0), "match offset", where)
        if offset < 0:
            raise ProtocolDefinitionError(f"{where}: match offset must be >= 0, got {offset}")
        return MatchRule(match_type, offset=offset, value=_magic_value(raw["value"], where))
    if match_type is MatchType.SEQUENCE:
        index = _int(raw.get("index", 0), "match index", where)
        return MatchRule(match_type, index=index, direction=_direction(raw.get("direction"), f"{where} match"))
    return MatchRule(match_type)


def _magic_value(raw: Any, where: str) -> bytes:
    """Accept ``"0x01"``, ``"0x01 0x02"``, ``[0x01, 2]`` or a bare int, one byte each."""
    if isinstance(raw, bool):
        raise ProtocolDefinitionError(f"{where}: match value must be bytes, got {raw!r}")
    items = [raw] if isinstance(raw, int) else raw.split() if isinstance(raw, str) else raw
    if not isinstance(items, list):
        raise ProtocolDefinitionError(
            f"{where}: match value must be an int, a list or a string like \"0x01 0x02\", got {type(raw).__name__}"
        )
    values = []
    for item in items:
        try:
            byte = item if isinstance(item, int) and not isinstance(item, bool) else int(str(item), 0)
        except ValueError:
            raise ProtocolDefinitionError(f"{where}: match value byte {item!r} is not a number like 0x1f") from None
        if not 0 <= byte <= 255:
            raise ProtocolDefinitionError(f"{where}: match value byte {byte} is outside 0-255; list bytes one by one")
        values.append(byte)
    return bytes(values)


def _fields(raw_fields: list[Any], scope: set[str], where: str, depth: int = 0) -> tuple[FieldDefinition, ...]:
    """Parse fields in order; ``scope`` grows with the numeric names later expressions may use.
    ``depth`` counts the arrays around them."""
    if depth > MAX_ARRAY_NESTING:
        raise ProtocolDefinitionError(f"{where}: arrays nested more than {MAX_ARRAY_NESTING} deep")
    parsed = []
    for index, raw in enumerate(raw_fields):
        definition = _field(raw, scope, f"{where} fields[{index}]", depth)
        if definition.type in _EXPRESSION_SOURCES:
            scope.add(definition.name)
        parsed.append(definition)
    return tuple(parsed)


def _field(raw: Any, scope: set[str], where: str, depth: int) -> FieldDefinition:
    if not isinstance(raw, dict):
        raise ProtocolDefinitionError(f"{where}: a field must be a mapping, got {type(raw).__name__}")
    name = _required_str(raw, "name", where)
    where = f"{where} field {name!r}"
    kind = str(raw.get("type") or "bytes").lower().replace("-", "_")
    try:
        field_type = FieldType(kind)
    except ValueError:
        raise ProtocolDefinitionError(
            f"{where}: type {kind!r} is unknown; use one of {[t.value for t in FieldType]}"
        ) from None
    null_terminated = bool(raw.get("null_terminated", False))
    length = _expression(raw.get("length"), "length", scope, where)
    if length is None and (field_type in _NEEDS_LENGTH or (field_type is FieldType.STRING and not null_terminated)):
        raise ProtocolDefinitionError(
            f"{where}: a {kind} field needs 'length' (a number, -1 for the rest of the frame, or '{{field}}')"
        )
    if length is not None and length.constant is not None and length.constant < -1:
        raise ProtocolDefinitionError(f"{where}: length {length.constant} is negative; use -1 for the rest of the frame")
    if length is not None and length.constant is not None and length.constant > MAX_LENGTH:
        raise ProtocolDefinitionError(f"{where}: length {length.constant} is larger than any frame "
                                      f"(at most {MAX_LENGTH} bytes)")
    if field_type is FieldType.BITFIELD and length is not None and length.constant not in BITFIELD_WIDTHS:
        raise ProtocolDefinitionError(f"{where}: a bitfield length must be one of {BITFIELD_WIDTHS} bytes")
    return FieldDefinition(
        name=name,
        type=field_type,
        length=length,
        null_terminated=null_terminated,
        encoding=_encoding(raw.get("encoding"), where),
        display=_display(raw.get("display")),
        enum=_int_map(raw.get("enum"), "enum", where),
        bits=_bits(raw.get("bits"), where) if field_type is FieldType.BITFIELD else {},
        tlv=_tlv(raw.get("tlv"), where) if field_type is FieldType.TLV_SEQUENCE else None,
        array=_array(raw.get("array"), scope, where, depth) if field_type is FieldType.ARRAY else None,
    )


def _expression(raw: Any, key: str, scope: set[str], where: str) -> Expression | None:
    if raw is None:
        return None
    try:
        expression = parse_expression(raw)
    except ExpressionError as exc:
        raise ProtocolDefinitionError(f"{where}: {key} {exc}") from None
    undefined = sorted(expression.names - scope)
    if undefined:
        hint = " ('remaining' is not a keyword; use -1 for the rest of the frame)" if "remaining" in undefined else ""
        raise ProtocolDefinitionError(
            f"{where}: {key} {expression.source!r} uses undefined variable(s) {', '.join(undefined)}{hint}; "
            f"numeric fields defined before it: {', '.join(sorted(scope)) or 'none'}"
        )
    return expression


def _array(raw: Any, scope: set[str], where: str, depth: int) -> ArrayConfig:
    if not isinstance(raw, dict):
        raise ProtocolDefinitionError(f"{where}: an array field needs an 'array' mapping with 'count' and 'item'")
    count = _expression(raw.get("count"), "array count", scope, where)
    if count is None:
        raise ProtocolDefinitionError(f"{where}: array 'count' is required, e.g. count: \"{{n_items}}\"")
    item = raw.get("item", [])
    item = [] if item is None else item
    if not isinstance(item, list):
        raise ProtocolDefinitionError(f"{where}: array 'item' must be a list of fields")
    # Items see the numeric fields before the array plus earlier fields of the same item.
    return ArrayConfig(count=count, item=_fields(item, set(scope), f"{where} item", depth + 1))


def _tlv(raw: Any, where: str) -> TlvConfig:
    if raw is None:
        return TlvConfig()
    if not isinstance(raw, dict):
        raise ProtocolDefinitionError(f"{where}: 'tlv' must be a mapping")
    type_size = _int(raw.get("type_size", 1), "tlv type_size", where)
    length_size = _int(raw.get("length_size", 2), "tlv length_size", where)
    for key, size in (("type_size", type_size), ("length_size", length_size)):
        if size not in TLV_SIZES:
            raise ProtocolDefinitionError(f"{where}: tlv {key} must be 1, 2 or 4, got {size}")
    endianness = str(raw.get("endianness") or "big").lower()
    if endianness not in ("big", "little"):
        raise ProtocolDefinitionError(f"{where}: tlv endianness must be 'big' or 'little', got {endianness!r}")
    raw_tags = raw.get("tags", {})
    raw_tags = {} if raw_tags is None else raw_tags
    if not isinstance(raw_tags, dict):
        raise ProtocolDefinitionError(f"{where}: tlv 'tags' must be a mapping of tag number -> {{name, value_type}}")
    tags = {}
    for key, spec in raw_tags.items():
        tag = _int(key, "tlv tag", where)
        tag_where = f"{where} tlv tag {key!r}"
        if not isinstance(spec, dict):
            raise ProtocolDefinitionError(f"{tag_where}: must be a mapping with 'name' and 'value_type'")
        kind = str(spec.get("value_type") or "bytes").lower().replace("-", "_")
        try:
            value_type = FieldType(kind)
        except ValueError:
            value_type = None
        if value_type not in _TLV_VALUE_TYPES:
            raise ProtocolDefinitionError(
                f"{tag_where}: value_type {kind!r} is not supported; use a number type, string or bytes"
            )
        tags[tag] = TlvTag(
            _required_str(spec, "name", tag_where),
            value_type,
            _encoding(spec.get("encoding"), tag_where),
            _display(spec.get("display")),
        )
    return TlvConfig(type_size, length_size, endianness, tags)


def _bits(raw: Any, where: str) -> dict[int, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ProtocolDefinitionError(f"{where}: 'bits' must be a mapping of bit index (0 = LSB) -> name")
    bits = {}
    for key, name in raw.items():
        index = _int(key, "bit index", where)
        if index < 0:
            raise ProtocolDefinitionError(f"{where}: bit index {index} must be >= 0 (0 is the least significant bit)")
        bits[index] = str(name)
    return dict(sorted(bits.items()))


def _int_map(raw: Any, key: str, where: str) -> dict[int, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ProtocolDefinitionError(f"{where}: '{key}' must be a mapping of integer -> label")
    return {_int(k, f"{key} key", where): str(v) for k, v in raw.items()}


def _direction(raw: Any, where: str) -> DirectionFilter:
    if raw is None:
        return DirectionFilter.BOTH
    text = str(raw).lower().replace("-", "_")
    if text in _DIRECTION_ALIASES:
        return _DIRECTION_ALIASES[text]
    try:
        return DirectionFilter(text)
    except ValueError:
        raise ProtocolDefinitionError(
            f"{where}: direction {raw!r} is unknown; use both, client_to_server (c2s, client) "
            "or server_to_client (s2c, server)"
        ) from None


def _display(raw: Any) -> DisplayHint:
    # ProtoPoke quietly treats an unknown display rule as auto; kept.
    try:
        return DisplayHint(str(raw or "auto").lower())
    except ValueError:
        return DisplayHint.AUTO


def _encoding(raw: Any, where: str) -> str:
    encoding = str(raw or "utf8")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ProtocolDefinitionError(f"{where}: encoding {encoding!r} is unknown; use e.g. utf8, ascii, latin-1") from None
    return encoding


def _required_str(raw: dict[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if value is None or value == "":
        raise ProtocolDefinitionError(f"{where}: required key {key!r} is missing")
    return str(value)


def _int(raw: Any, what: str, where: str) -> int:
    """Integers, also from strings such as "0x01" (YAML keys in quotes stay strings)."""
    if isinstance(raw, bool):
        raise ProtocolDefinitionError(f"{where}: {what} must be an integer, got {raw!r}")
    try:
        return raw if isinstance(raw, int) else int(str(raw), 0)
    except ValueError:
        raise ProtocolDefinitionError(f"{where}: {what} must be an integer, got {raw!r}") from None
