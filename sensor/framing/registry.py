"""Framer names, kwarg validation and construction.

``validate_framer_config`` checks a whole framer config before anything is
swapped (ProtoPoke saves a bad config and then fails every new connection).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sensor.flows.state import Direction
from sensor.framing.base import Framer, FramerConfigError
from sensor.framing.custom import CustomFramer, CustomFramerScript, load_custom_framer
from sensor.framing.delimiter import DelimiterFramer, LineFramer
from sensor.framing.fixed import FixedSizeFramer
from sensor.framing.length_prefix import LengthPrefixFramer
from sensor.framing.raw import RawFramer

FRAMER_REGISTRY: dict[str, type[Framer]] = {
    cls.name: cls for cls in (RawFramer, DelimiterFramer, LineFramer, LengthPrefixFramer, FixedSizeFramer)
}

_TYPES: dict[str, type] = {"int": int, "bool": bool, "bytes": bytes, "str": str}
_REQUIRED = inspect.Parameter.empty


def _options(cls: type[Framer]) -> dict[str, tuple[type, Any]]:
    """The kwargs a framer takes, from its ``__init__``: name -> (type, default or _REQUIRED)."""
    params = list(inspect.signature(cls.__init__).parameters.values())[3:]  # self, session_id, direction
    return {p.name: (_TYPES[str(p.annotation)], p.default) for p in params}


def _coerce(framer: str, key: str, expected: type, value: Any) -> Any:
    """Check one kwarg's type; bytes may come from YAML as text or as ``0x``-hex."""
    if expected is bytes and isinstance(value, str):
        if value[:2].lower() == "0x":
            try:
                return bytes.fromhex(value[2:])
            except ValueError:
                raise FramerConfigError(f"{framer}: {key}={value!r} is not valid 0x-hex") from None
        return value.encode("utf-8")
    if expected is bytes and isinstance(value, bytearray):
        return bytes(value)
    # bool is an int subclass: reject it where a number is meant, and vice versa.
    if isinstance(value, expected) and not (expected is int and isinstance(value, bool)):
        return value
    raise FramerConfigError(f"{framer}: {key} must be {expected.__name__}, got {type(value).__name__} {value!r}")


@dataclass(slots=True)
class FramerSpec:
    """A validated framer config that builds the framers of each new session."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    script: CustomFramerScript | None = None

    def create(self, session_id: str, direction: Direction, state: dict[str, Any] | None = None) -> Framer:
        """One direction's framer; custom scripts share ``state`` between a session's directions."""
        if self.script is not None:
            return CustomFramer(session_id, direction, self.script, {} if state is None else state)
        return FRAMER_REGISTRY[self.name](session_id, direction, **self.kwargs)

    def create_pair(self, session_id: str) -> tuple[Framer, Framer]:
        """Both directions' framers, indexed by ``Direction.index``, sharing one script state."""
        state: dict[str, Any] = {}
        return (
            self.create(session_id, Direction.CLIENT_TO_SERVER, state),
            self.create(session_id, Direction.SERVER_TO_CLIENT, state),
        )


def validate_framer_config(
    name: str, kwargs: dict[str, Any] | None = None, custom_framer_path: str | Path | None = None
) -> FramerSpec:
    """Check name, kwarg names, types and values; raise ``FramerConfigError`` saying what to fix.

    A ``custom_framer_path`` wins over ``name`` (as in ProtoPoke); scripts take no kwargs.
    """
    kwargs = dict(kwargs or {})
    if custom_framer_path:
        if kwargs:
            raise FramerConfigError(f"custom framer scripts take no kwargs; remove {sorted(kwargs)}")
        script = load_custom_framer(custom_framer_path)
        return FramerSpec(CustomFramer.name, {}, script)
    cls = FRAMER_REGISTRY.get(name)
    if cls is None:
        raise FramerConfigError(
            f"unknown framer {name!r}; choose one of {sorted(FRAMER_REGISTRY)} or give a custom_framer_path"
        )
    options = _options(cls)
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise FramerConfigError(f"{name}: unknown kwargs {unknown}; it accepts {sorted(options)}")
    values: dict[str, Any] = {}
    for key, (expected, default) in options.items():
        if key in kwargs:
            values[key] = _coerce(name, key, expected, kwargs[key])
        elif default is _REQUIRED:
            raise FramerConfigError(f"{name}: kwarg {key!r} ({expected.__name__}) is required")
        else:
            values[key] = default
    try:
        cls.check_options(**values)  # type: ignore[attr-defined]
    except FramerConfigError as exc:
        raise FramerConfigError(f"{name}: {exc}") from None
    return FramerSpec(name, {k: v for k, v in values.items() if k in kwargs})


def create_framer(name: str, session_id: str, direction: Direction, **kwargs: Any) -> Framer:
    """Build one built-in framer by name after full validation."""
    return validate_framer_config(name, kwargs).create(session_id, direction)
