"""A worker's messages reach the parent equal to what was sent, slotted dataclasses included."""
from __future__ import annotations

import dataclasses
import pickle

import pytest

from sensor.events import FrameCapturedEvent, SessionClosedEvent
from sensor.flows.state import Direction, SessionState
from sensor.hooks import FinishedSession
from sensor.models import Frame
from sensor.registry import SessionInfo
from sensor.workers import wire


def messages() -> list[tuple]:
    info = SessionInfo("s-1", "10.0.0.1", 40000, "10.0.0.2", 502, SessionState.CLOSED, 1.5, closed_at=2.5,
                       forwarder_name="modbus", transport="tcp")
    frame = Frame("f-1", "s-1", Direction.SERVER_TO_CLIENT, b"\x00\x01", 2.0, 3, "length_prefix")
    return [("event", SessionClosedEvent(info, 7, (10, 20))), ("event", FrameCapturedEvent(frame, info)),
            ("finished", FinishedSession({"xdpsensor": {"sessionId": "s-1"}}, (frame,), (None,))), ("done", 3)]


def test_messages_arrive_equal_and_of_their_types():
    sent = messages()
    received = wire.loads(wire.dumps(sent))
    assert received == sent == pickle.loads(pickle.dumps(sent))
    assert [type(m[1]) for m in received] == [type(m[1]) for m in sent]


def test_a_frozen_value_stays_frozen():
    event = wire.loads(wire.dumps(messages()[0][1]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.frame_count = 8
