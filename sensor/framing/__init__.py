"""Stream framing: cut each direction's byte stream into frames (sans-I/O)."""

from sensor.framing.base import Framer, FramerConfigError, reframe
from sensor.framing.custom import CustomFramer, CustomFramerScript, load_custom_framer
from sensor.framing.delimiter import DelimiterFramer, LineFramer
from sensor.framing.fixed import FixedSizeFramer
from sensor.framing.length_prefix import LengthPrefixFramer
from sensor.framing.raw import RawFramer
from sensor.framing.registry import FRAMER_REGISTRY, FramerSpec, create_framer, validate_framer_config

__all__ = [
    "FRAMER_REGISTRY",
    "CustomFramer",
    "CustomFramerScript",
    "DelimiterFramer",
    "FixedSizeFramer",
    "Framer",
    "FramerConfigError",
    "FramerSpec",
    "LengthPrefixFramer",
    "LineFramer",
    "RawFramer",
    "create_framer",
    "load_custom_framer",
    "reframe",
    "validate_framer_config",
]
