"""The library face live: `Sensor.start` on the lab's sensor interfaces, real
connections between the lab's client and server, the API and the events."""
from __future__ import annotations

import time

import pytest
from sinks import RecordSink

from sensor import Direction, Sensor, SessionState
from sensor.config import BUNDLED_PROTOCOLS, load_config
from sensor.lab import patience
from sensor.labtraffic import tcp_exchange, udp_exchange

pytestmark = pytest.mark.lab

READ_REQUEST = bytes.fromhex("000100000006010300000002")
READ_REPLY = bytes.fromhex("000100000007010304002a0007")


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def on(self, name: str):
        def handler(event) -> None:
            session_id = event.session.id if hasattr(event, "session") else event.session_id
            self.events.append((name, session_id))
        return handler


def test_sensor_api_and_events_on_live_traffic(lab):
    recorder = Recorder()
    sensor = Sensor(BUNDLED_PROTOCOLS / "bindings.yaml", outputs=[])
    bus = sensor.api.event_bus
    for name in ("on_session_opened", "on_frame_captured", "on_session_closed"):
        bus.subscribe(name, recorder.on(name))
    sensor.start(["to-client", "to-server"], netns=lab.sensor)
    try:
        assert tcp_exchange(lab, 502, READ_REQUEST, READ_REPLY) == READ_REPLY
        assert udp_exchange(lab, 9999, [b"nobody wants this"], b"ok") == 1
        deadline = time.monotonic() + patience(5)
        while time.monotonic() < deadline and not any(s.frame_count == 2 for s in sensor.api.list_sessions()):
            time.sleep(0.1)
    finally:
        summary = sensor.stop()
        sensor.close()
    sessions = sensor.api.list_sessions()
    modbus = [s for s in sessions if s.server_port == 502]
    assert len(modbus) == 1, sessions
    session = modbus[0]
    assert (session.client_host, session.server_host, session.transport) == (lab.client_ip, lab.server_ip, "tcp")
    assert session.state is SessionState.CLOSED and session.closed_at >= session.created_at
    assert [(f.direction, f.raw_bytes) for f in sensor.api.get_frames(session.id)] == [
        (Direction.CLIENT_TO_SERVER, READ_REQUEST), (Direction.SERVER_TO_CLIENT, READ_REPLY)]
    decoded = sensor.api.decode_session_frames(session.id)
    assert [m.message_type for m in decoded] == ["Read Holding Registers Request", "Read Holding Registers Response"]
    assert not any(s.server_port == 9999 for s in sessions)  # the kernel never sent it up

    mine = [name for name, sid in recorder.events if sid == session.id]
    assert mine == ["on_session_opened", "on_frame_captured", "on_frame_captured", "on_session_closed"]
    assert summary.records >= 1



def modbus(record: dict) -> bool:
    """The exchange's record; the lab's ARP has records too (no port), when its neighbours were stale."""
    return record["ipProtocol"] == 6 and record["destination"]["port"] == 502


@pytest.mark.parametrize("workers", [1, 2])
def test_a_sync_handler_terminates_a_live_session_once(lab, workers):
    out = RecordSink()
    config = load_config(BUNDLED_PROTOCOLS / "bindings.yaml")
    config.workers = workers
    sensor = Sensor(config, outputs=[out])
    results: list[bool] = []
    sensor.api.on_frame_captured(lambda event: results.append(sensor.api.terminate_session(event.session.id)))
    sensor.start(["to-client", "to-server"], netns=lab.sensor)
    try:
        assert tcp_exchange(lab, 502, READ_REQUEST, READ_REPLY) == READ_REPLY
        # With workers the exchange may be over (CLOSED, refused) before the handler's word arrives:
        # the session then ends after tcp_closing (5 s) and the next expiry (1 s).
        deadline = time.monotonic() + patience(10)
        while time.monotonic() < deadline and not any(modbus(r) for r in out.records):
            time.sleep(0.1)
    finally:
        sensor.stop()
        sensor.close()
    # The reply's frame may come up before the bypass and ask again; either way one record.
    assert results and results[0] is True
    (record,) = [r for r in out.records if modbus(r)]
    if workers == 1:  # the handler runs inside the packet: the session ends at its first frame
        assert record["xdpsensor"]["endReason"] == "terminated" and "xdp-bypassed" in record["tags"]
        assert record["client"]["bytes"] == len(READ_REQUEST)
    # With workers the handler runs in the parent: the owning worker gets the request after it may have
    # seen the whole exchange, so the session may end by itself first; it is still reported once.
