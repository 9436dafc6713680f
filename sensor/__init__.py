"""xdpsensor: an XDP pre-classifier feeding Arkime-compatible Python plugins
and ProtoPoke-compatible framing and decoding.

    from sensor import Sensor, Direction, SessionState
"""
from sensor.flows.state import Direction, SessionState

__all__ = ["Sensor", "Direction", "SessionState"]


def __getattr__(name: str):
    # Sensor pulls in bcc; load it only when asked for.
    if name == "Sensor":
        from sensor.app import Sensor
        return Sensor
    raise AttributeError(f"module 'sensor' has no attribute {name!r}")
