"""How a worker's messages to its parent are pickled: as multiprocessing
pickles them, except that dataclasses with slots travel as their field values.

Python 3.11 pickles a slotted dataclass through a generated `__getstate__`
that calls `dataclasses.fields()` on every object: ~25 us of a worker's CPU
for each forwarded event, and a session forwards several (opened, updated,
closed, finished), each holding SessionInfo and other such values."""
from __future__ import annotations

import dataclasses
import io
import pickle
from typing import Any

_NOT_SLOTTED = ()
_FIELDS: dict[type, tuple[str, ...]] = {}


def _slotted_fields(cls: type) -> tuple[str, ...]:
    """The field names of a dataclass pickled by its generated slot state, else ()."""
    names = _FIELDS.get(cls)
    if names is None:
        getstate = cls.__dict__.get("__getstate__")
        generated = dataclasses.is_dataclass(cls) and getattr(getstate, "__name__", "") == "_dataclass_getstate"
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls)) if generated else _NOT_SLOTTED
    return names


def _rebuild(cls: type, values: tuple) -> Any:
    obj = object.__new__(cls)
    for name, value in zip(_slotted_fields(cls), values):
        object.__setattr__(obj, name, value)   # frozen ones too, as the generated __setstate__ does
    return obj


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        names = _slotted_fields(type(obj))
        if not names:
            return NotImplemented
        return _rebuild, (type(obj), tuple([getattr(obj, name) for name in names]))


def dumps(message: Any) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, pickle.HIGHEST_PROTOCOL).dump(message)
    return buffer.getvalue()


loads = pickle.loads
