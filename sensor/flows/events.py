"""What `SessionTable` reports: small immutable events, in the order things happened."""
from __future__ import annotations

from dataclasses import dataclass

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
