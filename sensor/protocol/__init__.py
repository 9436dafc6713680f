"""Protocol-definition DSL (ProtoPoke-compatible): load and validate once, compile, decode frames."""

from sensor.protocol.decoder import UNKNOWN, DefinitionDecoder
from sensor.protocol.definition import (
    ProtocolDefinition,
    ProtocolDefinitionError,
    load_definition_dict,
    load_definition_file,
)
from sensor.protocol.expressions import ExpressionError

__all__ = [
    "UNKNOWN",
    "DefinitionDecoder",
    "ExpressionError",
    "ProtocolDefinition",
    "ProtocolDefinitionError",
    "load_definition_dict",
    "load_definition_file",
]
