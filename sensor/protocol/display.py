"""How decoded values are shown: ProtoPoke's display hints and their renderers.

Each rule is picked once per field when a definition is compiled; decoding
hands the chosen renderer to the ParsedField, which calls it with the value
the first time ``display_value`` is read.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping

from sensor.protocol.definition import FLOAT_TYPES, NUMERIC_FORMATS, DisplayHint, FieldDefinition

HEX_PREVIEW_BYTES = 32

Render = Callable[[int | float], str]


def hex_preview(raw: bytes) -> str:
    """Spaced upper-case hex, cut after 32 bytes with the total length noted."""
    if not raw:
        return "(empty)"
    if len(raw) <= HEX_PREVIEW_BYTES:
        return raw.hex(" ").upper()
    return f"{raw[:HEX_PREVIEW_BYTES].hex(' ').upper()} … ({len(raw)} bytes)"


def full_hex(raw: bytes) -> str:
    """Spaced upper-case hex of everything (the ``raw`` field of an unmatched frame)."""
    return raw.hex(" ").upper() if raw else "(empty)"


def text_display(value: str) -> str:
    """Strings show as themselves, or as ``repr`` when they hold NULs."""
    return repr(value) if "\x00" in value else value


def hint_or(display: DisplayHint, default: str) -> str:
    return default if display is DisplayHint.AUTO else display.value


def numeric_display(field: FieldDefinition, endianness: str) -> tuple[str, Render]:
    """The (hint, renderer) of a number field.

    auto -> enum when an enum map exists, else hex for 1-byte types and decimal
    otherwise; an explicit rule wins. Floats shown as hex render their IEEE bits
    (ProtoPoke raises there).
    """
    fmt, size = NUMERIC_FORMATS[field.type]
    hint = field.display
    if hint is DisplayHint.AUTO:
        hint = DisplayHint.ENUM if field.enum else DisplayHint.HEX if size == 1 else DisplayHint.DECIMAL
    if hint is DisplayHint.ENUM and field.enum:
        return "enum", enum_renderer(field.enum)
    if hint is DisplayHint.HEX:
        if field.type in FLOAT_TYPES:
            pack = struct.Struct((">" if endianness == "big" else "<") + fmt).pack
            return "hex", lambda value: "0x" + pack(value).hex().upper()
        return "hex", hex_renderer(size)
    return hint.value, str


def hex_renderer(size: int) -> Render:
    """Zero-padded upper-case hex as wide as the field: 0x0010 for 2 bytes."""
    template = f"0x{{:0{size * 2}X}}"
    return template.format


def enum_renderer(labels: Mapping[int, str]) -> Render:
    def render(value: int | float) -> str:
        label = labels.get(value)  # type: ignore[call-overload]
        if label is not None:
            return label
        return f"<unknown: 0x{value:X}>" if isinstance(value, int) else f"<unknown: {value}>"

    return render


def prefixed(prefix: str, render: Callable[[object], str]) -> Callable[[object], str]:
    """A TLV entry's renderer: ``[0x0001] `` before the value as ``render`` shows it (text and numbers via ``str``)."""
    return lambda value: prefix + render(value)


def decode_text(raw: bytes, encoding: str) -> str:
    """Never fails: undecodable bytes become U+FFFD; a codec that still raises falls back to latin-1."""
    try:
        return raw.decode(encoding, errors="replace")
    except (UnicodeError, LookupError, TypeError):
        return raw.decode("latin-1")
