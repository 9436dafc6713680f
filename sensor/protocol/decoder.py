"""Decode frames with a compiled protocol definition. ``decode`` never raises."""

from __future__ import annotations

import logging

from sensor.models import Frame, ParsedField, ParsedMessage
from sensor.protocol.compile import DecodeFailure, compile_message
from sensor.protocol.definition import ProtocolDefinition
from sensor.protocol.display import full_hex
from sensor.protocol.matching import compile_matchers

log = logging.getLogger(__name__)

UNKNOWN = "<unknown>"


class DefinitionDecoder:
    """Turns frames into ParsedMessages; one instance serves every session.

    It keeps no per-session state: matching depends only on the frame, so the
    same frame always decodes to the same message. ``failures`` counts frames
    whose decoding stopped on an unexpected error (a bug, logged).
    """

    def __init__(self, definition: ProtocolDefinition) -> None:
        self.definition = definition
        self.protocol_name = definition.name
        compiled = [(message, compile_message(message, definition.endianness)) for message in definition.messages]
        self._matchers = compile_matchers(compiled)
        self.failures = 0

    def decode(self, frame: Frame) -> ParsedMessage:
        data = frame.raw_bytes
        for matcher in self._matchers:
            message = matcher(data, frame.direction, frame.sequence_number)
            if message is not None:
                break
        else:
            return self._unknown(frame)
        fields: list[ParsedField] = []
        error = None
        ctx: dict[str, object] = {}
        offset = 0
        try:
            for step in message.steps:
                offset = step(data, offset, ctx, fields)
        except DecodeFailure as exc:
            error = str(exc)
        except Exception as exc:  # decode is total: a bug here must not stop the pipeline
            self.failures += 1
            log.exception("decoding %s frame as %r failed", self.protocol_name, message.name)
            error = f"internal decoder error in {message.name!r}: {exc!r}"
        return ParsedMessage(frame, self.protocol_name, message.name, fields, f"[{len(data)}{message.display_name_suffix}", error)

    def _unknown(self, frame: Frame) -> ParsedMessage:
        data = frame.raw_bytes
        raw = ParsedField("raw", data, data, 0, len(data), "hex", full_hex(data))
        return ParsedMessage(
            frame,
            self.protocol_name,
            UNKNOWN,
            [raw],
            f"[{len(data)}B] {UNKNOWN}",
            f"No message definition matched frame seq={frame.sequence_number}",
        )
