"""terminate_session as ProtoPoke defines it: awaitable from coroutines, a
plain bool from sync code, safe from any handler (inside the very packet
being handled, offline and live), the flow bypassed and reported once."""
from __future__ import annotations

import asyncio
import os

import pytest
from capturelib import Capture
from sinks import RecordSink

from sensor import Sensor
from sensor.api import SensorAPI
from sensor.arkime.runtime import PluginRuntime
from sensor.capture.pcapfile import read_pcap
from sensor.config import BUNDLED_PROTOCOLS
from sensor.events import EventBus
from sensor.flows.state import SessionState
from sensor.flows.table import SessionTable
from sensor.hooks import FinishedCollector
from sensor.pipeline import Pipeline
from sensor.registry import SessionRegistry

REQUEST = bytes.fromhex("000100000006010300000002")
REPLY = bytes.fromhex("000100000007010304002a0007")
PLC = ("10.0.0.2", 502)



def modbus_capture(tmp_path, polls: int = 4):
    """One Modbus client polling `polls` times on one connection, then another client: only the
    first is terminated, the second must be untouched."""
    capture = Capture()
    first = capture.tcp(("10.0.0.1", 40000), PLC).handshake()
    for _ in range(polls):
        first.send("c", REQUEST).send("s", REPLY)
    first.close()
    capture.tcp(("10.0.0.3", 40001), PLC).handshake().send("c", REQUEST).send("s", REPLY).close()
    return capture.write(tmp_path / "modbus.pcap")


def test_terminate_ends_a_live_session_once_and_swallows_the_rest_of_its_flow(tmp_path):
    capture = Capture()
    conversation = capture.tcp(("10.0.0.1", 40000), ("10.0.0.2", 7000)).handshake().send("c", b"first") \
        .send("s", b"reply").send("c", b"after the end")
    conversation.fin("c")
    capture.tcp(("10.0.0.1", 40000), ("10.0.0.2", 7000)).handshake()  # the ports reused: a new connection
    frames = list(read_pcap(capture.write(tmp_path / "t.pcap")))
    registry = SessionRegistry([], EventBus())
    collected = FinishedCollector()
    records = collected.records
    table = SessionTable()
    pipeline = Pipeline(PluginRuntime(), table, [registry, collected])
    api = SensorAPI(registry, terminate=pipeline.terminate)
    for rec in frames[:5]:  # handshake, "first", "reply"
        pipeline.feed(rec.data, rec.timestamp)
    (session,) = api.list_active_sessions()

    assert api.terminate_session(session.id) is True
    assert [r["xdpsensor"]["endReason"] for r in records] == ["terminated"]
    assert records[0]["client"]["bytes"] == len(b"first") and records[0]["server"]["bytes"] == len(b"reply")
    assert api.get_session(session.id).state is SessionState.CLOSED
    assert api.terminate_session(session.id) is False  # already closed
    assert api.terminate_session("no-such-session") is False

    for rec in frames[5:7]:  # "after the end", FIN: swallowed
        pipeline.feed(rec.data, rec.timestamp)
    assert len(table) == 0 and table.muted_packets == 2
    for rec in frames[7:]:  # a new SYN on the same ports: a new session
        pipeline.feed(rec.data, rec.timestamp)
    pipeline.close()
    assert [r["xdpsensor"]["endReason"] for r in records] == ["terminated", "shutdown"]
    assert records[1]["xdpsensor"]["sessionId"] != session.id
    assert records[1]["tcpflags"]["syn"] == 1


PREFILTERS = ["none", "python"] + (["kernel"] if os.geteuid() == 0 else [])


def read_terminating(tmp_path, prefilter: str, handler_kind: str) -> tuple[list[dict], list]:
    """Read the Modbus capture; a handler terminates the first client's session at its first frame."""
    out = RecordSink()
    sensor = Sensor(BUNDLED_PROTOCOLS / "bindings.yaml", outputs=[out])
    results: list = []
    first_client = []

    def pick(event) -> bool:
        if event.session.client_port != 40000:
            return False
        first_client.append(event.frame)
        return len(first_client) == 1

    if handler_kind == "sync":
        def on_frame(event) -> None:
            if pick(event):
                results.append(sensor.api.terminate_session(event.session.id))
    else:
        async def on_frame(event) -> None:
            if pick(event):
                results.append(await sensor.api.terminate_session(event.session.id))
    sensor.api.on_frame_captured(on_frame)
    sensor.read_pcap(modbus_capture(tmp_path), prefilter)
    sensor.close()  # waits for the async handlers
    return out.records, results


@pytest.mark.parametrize("prefilter", PREFILTERS)
def test_a_sync_handler_terminates_inside_its_own_packet(tmp_path, prefilter):
    records, results = read_terminating(tmp_path, prefilter, "sync")
    assert results == [True]
    reasons = sorted((r["source"]["port"], r["xdpsensor"]["endReason"]) for r in records
                     if r["destination"]["port"] == 502)
    assert reasons == [(40000, "terminated"), (40001, "shutdown")]  # the other one ends with the read
    terminated = next(r for r in records if r["source"]["port"] == 40000)
    # Ended at its first request: SYN, ACK, request (the counts are the flow's at that moment).
    assert (terminated["client"]["bytes"], terminated["source"]["packets"]) == (len(REQUEST), 3)
    assert ("xdp-bypassed" in terminated.get("tags", [])) is (prefilter != "none")


def test_an_async_handler_awaits_terminate_session(tmp_path):
    records, results = read_terminating(tmp_path, "python", "async")
    assert results in ([True], [False])  # the read may have ended the session first; never an exception
    ours = [r for r in records if r["source"]["port"] == 40000]
    assert len(ours) == 1  # reported once either way
    assert ours[0]["xdpsensor"]["endReason"] == ("terminated" if results == [True] else "shutdown")


def test_terminate_session_is_awaitable_in_a_coroutine_and_a_bool_outside(tmp_path):
    registry = SessionRegistry([], EventBus())
    api = SensorAPI(registry)
    assert api.terminate_session("nothing") is False

    async def main() -> bool:
        return await api.terminate_session("nothing")
    assert asyncio.run(main()) is False
