"""ProtoPoke-compatible records: frames out of a framer, messages out of a decoder.

Field names and ``to_dict`` keys match ProtoPoke so that exported frames and
messages read the same in both tools.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sensor.flows.state import Direction
from sensor.ids import new_id

__all__ = ["Direction", "Field", "Frame", "ParsedField", "ParsedMessage", "new_id"]


@dataclass(slots=True)
class Frame:
    """One logical unit of one direction of a session, as a framer cut it.

    ``sequence_number`` counts frames per framer instance (per direction) from 0.
    """

    id: str
    session_id: str
    direction: Direction
    raw_bytes: bytes
    timestamp: float
    sequence_number: int
    framer_name: str = "raw"

    @classmethod
    def create(
        cls,
        session_id: str,
        direction: Direction,
        raw_bytes: bytes,
        sequence_number: int,
        framer_name: str = "raw",
    ) -> Frame:
        """Build a frame stamped with a new id and the current time."""
        return cls(new_id(), session_id, direction, raw_bytes, time.time(), sequence_number, framer_name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict with ProtoPoke's keys; bytes as lower-case hex."""
        return {
            "id": self.id,
            "session_id": self.session_id,
            "direction": self.direction.value,
            "raw_bytes": self.raw_bytes.hex(),
            "raw_bytes_len": len(self.raw_bytes),
            "timestamp": self.timestamp,
            "sequence_number": self.sequence_number,
            "framer_name": self.framer_name,
        }


def _json_value(value: Any) -> Any:
    """Coerce a field value to JSON: bytes to hex, nested fields to dicts."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, list):
        return [_json_value(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, ParsedField):
        return value.to_dict()
    return str(value)


class ParsedField:
    """One decoded field: value plus where it sits in the frame (offset from frame start).

    ``display_value`` may be given as a renderer instead of a string: it is then
    called with ``value`` on first read, so decoding does not format strings
    that nobody shows. Reading it always gives the string. ``children`` of a
    leaf is made on first read too: an empty list per field would be a third
    of the objects a decoded message holds, each one rescanned by the cyclic GC.
    """

    __slots__ = ("name", "value", "raw_bytes", "offset", "size", "display_hint", "_display_value", "_children")
    __match_args__ = ("name", "value", "raw_bytes", "offset", "size", "display_hint", "display_value", "children")

    def __init__(
        self,
        name: str,
        value: Any,
        raw_bytes: bytes,
        offset: int,
        size: int,
        display_hint: str = "auto",
        display_value: str | Callable[[Any], str] = "",
        children: list[ParsedField] | None = None,
    ) -> None:
        self.name = name
        self.value = value
        self.raw_bytes = raw_bytes
        self.offset = offset
        self.size = size
        self.display_hint = display_hint
        self._display_value = display_value
        self._children = children

    @property
    def display_value(self) -> str:
        shown = self._display_value
        if shown.__class__ is not str:
            shown = self._display_value = shown(self.value)  # type: ignore[operator]
        return shown  # type: ignore[return-value]

    @display_value.setter
    def display_value(self, text: str) -> None:
        self._display_value = text

    @property
    def children(self) -> list[ParsedField]:
        children = self._children
        if children is None:
            children = self._children = []
        return children

    @children.setter
    def children(self, children: list[ParsedField]) -> None:
        self._children = children

    def _astuple(self) -> tuple[Any, ...]:
        return (self.name, self.value, self.raw_bytes, self.offset, self.size, self.display_hint, self.display_value, self.children)

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        # Pickled (to the parent, from a worker process) with its text rendered: a renderer is a closure.
        return (ParsedField, self._astuple())

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._astuple() == other._astuple()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        return (
            f"ParsedField(name={self.name!r}, value={self.value!r}, raw_bytes={self.raw_bytes!r}, offset={self.offset!r}, "
            f"size={self.size!r}, display_hint={self.display_hint!r}, display_value={self.display_value!r}, "
            f"children={self.children!r})"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict, recursing into children; bytes as hex."""
        return {
            "name": self.name,
            "value": _json_value(self.value),
            "raw_bytes": self.raw_bytes.hex(),
            "offset": self.offset,
            "size": self.size,
            "display_hint": self.display_hint,
            "display_value": self.display_value,
            "children": [child.to_dict() for child in self.children],
        }


Field = ParsedField
"""Short alias; ProtoPoke calls the type ParsedField."""


class ParsedMessage:
    """A decoded view of one frame.

    ``id`` is a uuid4-shaped string made on first access: generating one costs more
    than decoding a small frame, and most messages are never asked for theirs.
    """

    __slots__ = ("_id", "frame", "protocol_name", "message_type", "fields", "display_name", "error")

    def __init__(
        self,
        frame: Frame,
        protocol_name: str,
        message_type: str = "",
        fields: list[ParsedField] | None = None,
        display_name: str = "",
        error: str | None = None,
        id: str | None = None,
    ) -> None:
        self._id = id
        self.frame = frame
        self.protocol_name = protocol_name
        self.message_type = message_type
        self.fields: list[ParsedField] = fields if fields is not None else []
        self.display_name = display_name
        self.error = error

    @property
    def id(self) -> str:
        if self._id is None:
            self._id = new_id()
        return self._id

    @classmethod
    def from_frame(
        cls,
        frame: Frame,
        protocol_name: str,
        message_type: str = "",
        fields: list[ParsedField] | None = None,
        display_name: str = "",
        error: str | None = None,
    ) -> ParsedMessage:
        """ProtoPoke's factory; a falsy ``fields`` becomes an empty list."""
        return cls(frame, protocol_name, message_type, fields or [], display_name, error)

    def field_by_name(self, name: str) -> ParsedField | None:
        """First top-level field called ``name``, or None."""
        for item in self.fields:
            if item.name == name:
                return item
        return None

    def as_dict(self) -> dict[str, Any]:
        """Flat ``{name: value}`` of top-level fields, raw Python values (later names win)."""
        return {item.name: item.value for item in self.fields}

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict; carries ``frame_id`` rather than the frame."""
        return {
            "id": self.id,
            "frame_id": self.frame.id,
            "protocol_name": self.protocol_name,
            "message_type": self.message_type,
            "fields": [item.to_dict() for item in self.fields],
            "display_name": self.display_name,
            "error": self.error,
        }

    def __repr__(self) -> str:
        names = [item.name for item in self.fields]
        return f"ParsedMessage(protocol={self.protocol_name!r} type={self.message_type!r} fields={names})"
