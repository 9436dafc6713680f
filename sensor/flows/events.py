"""What `SessionTable` reports: small immutable events, in the order things happened."""
from __future__ import annotations

from dataclasses import dataclass, fields

from sensor.flows.session import Session
from sensor.flows.state import EndReason


@dataclass(frozen=True, slots=True)
class SessionStarted:
    session: Session


@dataclass(frozen=True, slots=True)
class PayloadDelivered:
    """In-order bytes of one direction: a reassembled TCP chunk or one UDP datagram."""

    session: Session
    direction_index: int  # Arkime's `which`: 0 client->server, 1 server->client
    data: bytes


@dataclass(frozen=True, slots=True)
class StateChanged:
    """A packet moved the session along its states (handshake done, FIN, RST)."""

    session: Session


@dataclass(frozen=True, slots=True)
class SessionEnded:
    session: Session
    reason: EndReason


FlowEvent = SessionStarted | PayloadDelivered | StateChanged | SessionEnded


def _init_through_slots(cls: type) -> None:
    """Give a frozen slotted event an __init__ that writes its slots directly.

    The generated one goes through object.__setattr__ for each field, which
    costs more than the rest of the event, and the table makes one per packet.
    The events stay frozen to everyone else; the signature is unchanged."""
    names = [f.name for f in fields(cls)]
    setters = {f"_set_{name}": getattr(cls, name).__set__ for name in names}
    body = "".join(f"\n    _set_{name}(self, {name})" for name in names)
    namespace: dict = {}
    exec(f"def __init__(self, {', '.join(names)}):{body}", setters, namespace)  # noqa: S102
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init


for _event in (SessionStarted, PayloadDelivered, StateChanged, SessionEnded):
    _init_through_slots(_event)
