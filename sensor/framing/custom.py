"""Custom framer scripts: module-level ``on_data`` / ``on_flush`` functions, ProtoPoke style.

A script frames both directions of a session with one shared ``state`` dict,
so it must key per-direction buffers by the ``direction`` string (``"c2s"`` /
``"s2c"``). A script that raises loses that chunk, never the session.
"""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sensor.flows.state import Direction
from sensor.framing.base import Framer, FramerConfigError
from sensor.models import Frame

log = logging.getLogger(__name__)

_DIRECTION_TAGS = {Direction.CLIENT_TO_SERVER: "c2s", Direction.SERVER_TO_CLIENT: "s2c"}
_module_numbers = itertools.count()

OnData = Callable[[bytes, dict[str, Any], str], list[bytes]]
OnFlush = Callable[[dict[str, Any], str], list[bytes]]


@dataclass(slots=True)
class CustomFramerScript:
    """A loaded script; ``errors`` counts the calls that raised or returned junk."""

    path: Path
    on_data: OnData
    on_flush: OnFlush
    errors: int = 0


def load_custom_framer(path: str | Path) -> CustomFramerScript:
    """Import a framer script once and check it defines the two functions."""
    path = Path(path)
    if not path.is_file():
        raise FramerConfigError(f"custom framer script {path} does not exist or is not a file")
    spec = importlib.util.spec_from_file_location(f"_xdpsensor_framer_{next(_module_numbers)}", path)
    if spec is None or spec.loader is None:
        raise FramerConfigError(f"custom framer script {path} cannot be imported; give a .py file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the script is user code: any failure is a config error
        raise FramerConfigError(f"custom framer script {path} failed to import: {exc!r}") from exc
    missing = [name for name in ("on_data", "on_flush") if not inspect.isfunction(getattr(module, name, None))]
    if missing:
        raise FramerConfigError(
            f"custom framer script {path} must define module-level functions "
            f"on_data(data, state, direction) and on_flush(state, direction); missing: {', '.join(missing)}"
        )
    return CustomFramerScript(path, module.on_data, module.on_flush)


class CustomFramer(Framer):
    """Adapts one direction of a session to a script; ``state`` is shared with the other direction."""

    # ProtoPoke names these frames after its adapter class; kept for compatibility.
    name = "_functionframeradapter"

    def __init__(self, session_id: str, direction: Direction, script: CustomFramerScript, state: dict[str, Any]) -> None:
        super().__init__(session_id, direction)
        self.script = script
        self.state = state
        self._tag = _DIRECTION_TAGS[direction]

    def feed(self, data: bytes) -> list[Frame]:
        return self._frames(self.script.on_data, bytes(data), self.state, self._tag)

    def flush(self) -> list[Frame]:
        return self._frames(self.script.on_flush, self.state, self._tag)

    def reset(self) -> None:
        """Restart numbering; the shared script state belongs to the session, not this direction."""
        self.sequence_number = 0

    def _frames(self, hook: Callable[..., Any], *args: Any) -> list[Frame]:
        try:
            chunks = hook(*args)
            if not isinstance(chunks, list) or not all(isinstance(c, (bytes, bytearray)) for c in chunks):
                raise TypeError(f"{hook.__name__} must return a list of bytes, got {chunks!r:.80}")
        except Exception:  # user code: log, count, drop this chunk, keep the session
            self.script.errors += 1
            log.exception("custom framer %s failed in %s (%s); chunk dropped", self.script.path, hook.__name__, self._tag)
            return []
        return [self._make_frame(bytes(chunk)) for chunk in chunks]
