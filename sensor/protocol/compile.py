"""Compile message definitions into decoding steps, once.

A step is a closure ``step(data, offset, ctx, out) -> new_offset`` that appends
ParsedFields to ``out`` and records numeric values in ``ctx`` only when some
expression reads them. Runs of fixed-width fields (numbers, bitfields,
fixed-length bytes) are read with one precompiled ``struct.Struct``, as dpkt
does; a run that would overrun the frame falls back to field-by-field steps
so a truncated frame still yields the fields before the cut. Fields get
renderers rather than display strings (see ``ParsedField.display_value``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sensor.models import ParsedField
from sensor.protocol import display
from sensor.protocol.definition import (
    NUMERIC_FORMATS,
    FieldDefinition,
    FieldType,
    MessageDefinition,
)
from sensor.protocol.expressions import REST_OF_FRAME, Expression

Step = Callable[[bytes, int, dict[str, Any], list[ParsedField]], int]
Build = Callable[[Any, bytes, int], ParsedField]
Resolve = Callable[[bytes, int, dict[str, Any]], int]

_BITFIELD_FORMATS = {1: "B", 2: "H", 4: "I", 8: "Q"}
# Array items one frame may produce, beyond one per byte: items that take no bytes (nested arrays of
# empty items) must not turn one datagram into millions of fields.
EXTRA_ARRAY_ITEMS = 4096
_ITEM_BUDGET = "\0array items left"  # in ctx, shared by the copies array items make of it


class DecodeFailure(Exception):
    """Decoding a frame stopped; the message becomes ``ParsedMessage.error``."""


@dataclass(frozen=True, slots=True)
class CompiledMessage:
    name: str
    display_name_suffix: str
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class _Fixed:
    """One field of a fixed-width run; ``bits`` names a bitfield's children."""

    name: str
    fmt: str
    size: int
    hint: str
    render: display.Render
    store: bool
    bits: tuple[tuple[int, str], ...] = ()


def compile_message(message: MessageDefinition, endianness: str) -> CompiledMessage:
    needed = set(_expression_names(message.fields))
    return CompiledMessage(message.name, f"B] {message.name}", _Compiler(endianness, needed).steps(message.fields))


def truncated(name: str, size: int, offset: int, length: int) -> DecodeFailure:
    return DecodeFailure(
        f"Truncated data parsing field {name!r}: need {size} bytes at offset {offset}, but frame is only {length} bytes"
    )


def _expression_names(fields: Iterable[FieldDefinition]) -> Iterable[str]:
    for item in fields:
        if item.length is not None:
            yield from item.length.names
        if item.array is not None:
            yield from item.array.count.names
            yield from _expression_names(item.array.item)


class _Compiler:
    def __init__(self, endianness: str, needed: set[str]) -> None:
        self.order = ">" if endianness == "big" else "<"
        self.endianness = endianness
        self.needed = needed

    def steps(self, fields: Iterable[FieldDefinition]) -> tuple[Step, ...]:
        steps: list[Step] = []
        run: list[_Fixed] = []
        for item in fields:
            fixed = self._fixed(item)
            if fixed is not None:
                run.append(fixed)
                continue
            if run:
                steps.append(self._run(run))
                run = []
            steps.append(self._variable(item))
        if run:
            steps.append(self._run(run))
        return tuple(steps)

    # -- fixed-width fields --------------------------------------------------

    def _fixed(self, item: FieldDefinition) -> _Fixed | None:
        store = item.name in self.needed
        if item.type in NUMERIC_FORMATS:
            fmt, size = NUMERIC_FORMATS[item.type]
            hint, render = display.numeric_display(item, self.endianness)
            return _Fixed(item.name, fmt, size, hint, render, store)
        if item.type is FieldType.BITFIELD:
            size = item.length.constant if item.length is not None else 1
            assert size is not None  # the loader admits only literal widths
            bits = tuple(item.bits.items())
            return _Fixed(item.name, _BITFIELD_FORMATS[size], size, "hex", display.hex_renderer(size), store, bits)
        if item.type is FieldType.BYTES and item.length is not None and _is_fixed(item.length):
            size = item.length.constant
            assert size is not None
            return _Fixed(item.name, f"{size}s", size, display.hint_or(item.display, "hex"), display.hex_preview, False)
        return None

    def _run(self, run: list[_Fixed]) -> Step:
        if len(run) == 1:
            return self._single(run[0])  # the same result without the loop
        layout = struct.Struct(self.order + "".join(fixed.fmt for fixed in run))
        total, unpack_from = layout.size, layout.unpack_from
        places = []
        position = 0
        for fixed in run:
            places.append((position, fixed.size, fixed.name, fixed.hint, fixed.render, fixed.store, fixed.bits))
            position += fixed.size
        singles = tuple(self._single(fixed) for fixed in run)

        def step(data: bytes, offset: int, ctx: dict[str, Any], out: list[ParsedField]) -> int:
            if offset + total > len(data):
                for single in singles:  # reports exactly which field was cut short
                    offset = single(data, offset, ctx, out)
                return offset
            for (rel, size, name, hint, render, store, bits), value in zip(places, unpack_from(data, offset)):
                start = offset + rel
                raw = data[start : start + size]
                children = _bit_fields(bits, value, raw, start, size) if bits else None
                out.append(ParsedField(name, value, raw, start, size, hint, render, children))
                if store:
                    ctx[name] = value if type(value) is int else _number(name, value)
            return offset + total

        return step

    def _single(self, fixed: _Fixed) -> Step:
        unpack_from = struct.Struct(self.order + fixed.fmt).unpack_from
        name, size, hint, render, store, bits = fixed.name, fixed.size, fixed.hint, fixed.render, fixed.store, fixed.bits

        def step(data: bytes, offset: int, ctx: dict[str, Any], out: list[ParsedField]) -> int:
            end = offset + size
            if end > len(data):
                raise truncated(name, size, offset, len(data))
            value = unpack_from(data, offset)[0]
            raw = data[offset:end]
            children = _bit_fields(bits, value, raw, offset, size) if bits else None
            out.append(ParsedField(name, value, raw, offset, size, hint, render, children))
            if store:
                ctx[name] = value if type(value) is int else _number(name, value)
            return end

        return step

    # -- variable-width fields -----------------------------------------------

    def _variable(self, item: FieldDefinition) -> Step:
        if item.type is FieldType.STRING:
            return _null_terminated_step(item) if item.null_terminated else _string_step(item)
        if item.type is FieldType.BYTES:
            return _sized_step(item, _bytes_builder)
        if item.type is FieldType.PADDING:
            return _sized_step(item, _padding_builder)
        if item.type is FieldType.ARRAY:
            return self._array(item)
        if item.type is FieldType.TLV_SEQUENCE:
            return self._tlv(item)
        raise AssertionError(f"no decoder for {item.type}")  # the loader admits only the types above

    def _array(self, item: FieldDefinition) -> Step:
        assert item.array is not None
        name = item.name
        count_of = _count_resolver(item.array.count, name)
        item_steps = self.steps(item.array.item)
        stores = any(sub.name in self.needed for sub in item.array.item)
        # An item that can be empty must not let a garbage count spin for billions of rounds.
        may_be_empty = not any((fixed := self._fixed(sub)) and fixed.size for sub in item.array.item)

        def step(data: bytes, offset: int, ctx: dict[str, Any], out: list[ParsedField]) -> int:
            count = count_of(data, offset, ctx)
            if may_be_empty and count > len(data) - offset:
                raise DecodeFailure(f"array {name!r}: count {count} is larger than the {len(data) - offset} bytes left")
            # Nested arrays of items that may be empty multiply: all arrays of a frame share one budget.
            budget = ctx.get(_ITEM_BUDGET)
            if budget is None:
                budget = ctx[_ITEM_BUDGET] = [len(data) + EXTRA_ARRAY_ITEMS]
            budget[0] -= count
            if budget[0] < 0:
                raise DecodeFailure(f"array {name!r}: the frame's arrays would have more than "
                                    f"{len(data) + EXTRA_ARRAY_ITEMS} items in all ({len(data)} bytes + "
                                    f"{EXTRA_ARRAY_ITEMS}); decoding stopped")
            start = offset
            items: list[ParsedField] = []
            for index in range(count):
                item_ctx = dict(ctx) if stores else ctx
                children: list[ParsedField] = []
                item_start = offset
                for sub in item_steps:
                    offset = sub(data, offset, item_ctx, children)
                size = offset - item_start
                items.append(ParsedField(f"[{index}]", children, data[item_start:offset], item_start, size, "auto", "", children))
            out.append(ParsedField(name, items, data[start:offset], start, offset - start, "auto", f"({count} items)", items))
            return offset

        return step

    def _tlv(self, item: FieldDefinition) -> Step:
        assert item.tlv is not None
        name, config = item.name, item.tlv
        header_order = ">" if config.endianness == "big" else "<"
        header = struct.Struct(header_order + _BITFIELD_FORMATS[config.type_size] + _BITFIELD_FORMATS[config.length_size])
        header_size, read_header = header.size, header.unpack_from
        tag_template = f"0x{{:0{config.type_size * 2}X}}"
        tags = {}
        for number, tag in config.tags.items():
            value_struct = None
            if tag.value_type in NUMERIC_FORMATS:
                value_struct = struct.Struct(self.order + NUMERIC_FORMATS[tag.value_type][0])
            prefix = f"[{tag_template.format(number)}] "
            tags[number] = (tag.name, value_struct, tag.value_type is FieldType.STRING, tag.encoding, display.hint_or(tag.display, "hex"),
                            display.prefixed(prefix, str), display.prefixed(prefix, display.hex_preview))
        length_of = _length_resolver(item.length, name) if item.length is not None else None

        def step(data: bytes, offset: int, ctx: dict[str, Any], out: list[ParsedField]) -> int:
            end = len(data) if length_of is None else min(len(data), offset + length_of(data, offset, ctx))
            start = offset
            entries: list[ParsedField] = []
            while offset + header_size <= end:
                number, value_length = read_header(data, offset)
                value_start = offset + header_size
                value_end = min(value_start + value_length, end)  # a cut value is kept, clipped
                raw = data[value_start:value_end]
                known = tags.get(number)
                if known is None:
                    label = tag_template.format(number)
                    entry_name, value, hint = f"tag_{label}", raw, "hex"
                    shown: Any = f"[{label}] {display.hex_preview(raw)}"
                else:
                    # Numbers only when the size fits exactly, as ProtoPoke does.
                    entry_name, value_struct, is_text, encoding, hint, show_value, show_bytes = known
                    if value_struct is not None and len(raw) == value_struct.size:
                        value, shown = value_struct.unpack(raw)[0], show_value
                    elif is_text:
                        try:
                            value = raw.decode(encoding, "replace")
                        except (UnicodeError, LookupError):
                            value = display.decode_text(raw, encoding)
                        shown = show_value
                    else:
                        value, shown = raw, show_bytes
                entries.append(ParsedField(entry_name, value, data[offset:value_end], offset, value_end - offset, hint, shown))
                offset = value_end
            out.append(
                ParsedField(name, entries, data[start:offset], start, offset - start, "auto", f"({len(entries)} TLV entries)", entries)
            )
            return offset

        return step


def _is_fixed(length: Expression) -> bool:
    return length.constant is not None and length.constant != REST_OF_FRAME


def _number(name: str, value: int | float) -> int:
    """Expression variables are ints, as in ProtoPoke (floats are truncated); ints skip this call."""
    try:
        return int(value)
    except (ValueError, OverflowError):
        raise DecodeFailure(f"field {name!r} is {value}, which an expression cannot use") from None


def _bit_fields(bits: tuple[tuple[int, str], ...], value: int, raw: bytes, offset: int, size: int) -> list[ParsedField]:
    """A bitfield's named bits (bit 0 = LSB), each sharing the parent's bytes."""
    fields = []
    for bit, name in bits:
        flag = (value >> bit) & 1
        fields.append(ParsedField(name, flag, raw, offset, size, "decimal", str))
    return fields


def _bytes_builder(item: FieldDefinition) -> Build:
    name, hint = item.name, display.hint_or(item.display, "hex")
    return lambda value, raw, offset: ParsedField(name, raw, raw, offset, len(raw), hint, display.hex_preview)


def _padding_builder(item: FieldDefinition) -> Build:
    name = item.name
    return lambda value, raw, offset: ParsedField(name, None, raw, offset, len(raw), "hex", f"({len(raw)} padding bytes)")


def _sized_step(item: FieldDefinition, builder: Callable[[FieldDefinition], Build]) -> Step:
    assert item.length is not None
    name, build, length_of = item.name, builder(item), _length_resolver(item.length, item.name)
    variable = item.length.variable

    def step(data: bytes, offset: int, ctx: dict[str, Any], out: list[ParsedField]) -> int:
        size = ctx[variable] if variable is not None else -1
        if size < 0:  # not a bare "{field}", or -1 / a bad value the resolver deals with
            size = length_of(data, offset, ctx)
        end = offset + size
        if end > len(data):
            raise truncated(name, size, offset, len(data))
        raw = data[offset:end]
        out.append(build(raw, raw, offset))
        return end

    return step


def _string_step(item: FieldDefinition) -> Step:
    assert item.length is not None
    name, encoding = item.name, item.encoding
    hint, length_of = display.hint_or(item.display, "ascii"), _length_resolver(item.length, item.name)
    variable = item.length.variable

    def step(data: bytes, offset: int, ctx: dict[str, Any], out: list[ParsedField]) -> int:
        size = ctx[variable] if variable is not None else -1
        if size < 0:  # not a bare "{field}", or -1 / a bad value the resolver deals with
            size = length_of(data, offset, ctx)
        end = offset + size
        if end > len(data):
            raise truncated(name, size, offset, len(data))
        raw = data[offset:end]
        try:
            value = raw.decode(encoding, "replace")
        except (UnicodeError, LookupError):
            value = display.decode_text(raw, encoding)
        out.append(ParsedField(name, value, raw, offset, size, hint, repr(value) if "\x00" in value else value))
        return end

    return step


def _null_terminated_step(item: FieldDefinition) -> Step:
    """Scan to a NUL within ``length`` (if any) or the frame; a missing NUL is not an error."""
    name, encoding, hint = item.name, item.encoding, display.hint_or(item.display, "ascii")
    max_of = _length_resolver(item.length, name) if item.length is not None else None

    def step(data: bytes, offset: int, ctx: dict[str, Any], out: list[ParsedField]) -> int:
        limit = len(data) if max_of is None else min(len(data), offset + max_of(data, offset, ctx))
        end = data.find(b"\x00", offset, limit)
        if end < 0:
            end = limit
        # ProtoPoke counts the byte at the stop position when it is a NUL, even just past the maximum.
        size = end - offset + (1 if end < len(data) and data[end] == 0 else 0)
        value = display.decode_text(data[offset:end], encoding)
        out.append(ParsedField(name, value, data[offset : offset + size], offset, size, hint, display.text_display(value)))
        return offset + size

    return step


def _length_resolver(expression: Expression, name: str) -> Resolve:
    """Length in bytes at ``offset``; -1 means the rest of the frame."""
    if expression.constant is not None:
        constant = expression.constant
        if constant == REST_OF_FRAME:
            return lambda data, offset, ctx: len(data) - offset
        return lambda data, offset, ctx: constant
    evaluate, source, variable = expression.evaluate, expression.source, expression.variable
    if variable is not None:  # the common "{field}": ctx holds ints already, skip the evaluator

        def resolve_variable(data: bytes, offset: int, ctx: dict[str, Any]) -> int:
            value = ctx[variable]
            if value >= 0:
                return value
            if value == REST_OF_FRAME:
                return len(data) - offset
            raise DecodeFailure(f"field {name!r}: length {source!r} gave {value}; lengths must be >= 0 or -1")

        return resolve_variable

    def resolve(data: bytes, offset: int, ctx: dict[str, Any]) -> int:
        try:
            value = evaluate(ctx)
        except (ArithmeticError, TypeError, ValueError):
            value = None
        if type(value) is not int:
            value = _evaluate(evaluate, source, name, "length", ctx)  # runs it again to raise the error that says why
        if value == REST_OF_FRAME:
            return len(data) - offset
        if value < 0:
            raise DecodeFailure(f"field {name!r}: length {source!r} gave {value}; lengths must be >= 0 or -1")
        return value

    return resolve


def _count_resolver(expression: Expression, name: str) -> Resolve:
    """Array item count; ProtoPoke treats a negative count as zero items, kept."""
    evaluate, source = expression.evaluate, expression.source
    return lambda data, offset, ctx: max(0, _evaluate(evaluate, source, name, "count", ctx))


def _evaluate(evaluate: Callable[[dict[str, Any]], Any], source: str, name: str, what: str, ctx: dict[str, Any]) -> int:
    try:
        value = evaluate(ctx)
    except (ArithmeticError, TypeError, ValueError) as exc:
        raise DecodeFailure(f"field {name!r}: {what} {source!r} failed: {exc}") from None
    if type(value) is not int:
        raise DecodeFailure(f"field {name!r}: {what} {source!r} gave {value!r}, not a whole number")
    return value
