"""terminate_session on a live session: the pipeline ends it at once, its
record says why, and later packets of the flow do not revive it."""
from __future__ import annotations

from capturelib import Capture

from sensor.api import SensorAPI
from sensor.arkime.runtime import PluginRuntime
from sensor.capture.pcapfile import read_pcap
from sensor.events import EventBus
from sensor.flows.state import SessionState
from sensor.flows.table import SessionTable
from sensor.hooks import FinishedCollector
from sensor.pipeline import Pipeline
from sensor.registry import SessionRegistry


def test_terminate_ends_a_live_session_with_its_reason(tmp_path):
    capture = Capture()
    capture.tcp(("10.0.0.1", 40000), ("10.0.0.2", 7000)).handshake().send("c", b"first").send("s", b"reply") \
        .send("c", b"after the end")
    frames = list(read_pcap(capture.write(tmp_path / "t.pcap")))
    registry = SessionRegistry([], EventBus())
    collected = FinishedCollector()
    records = collected.records
    pipeline = Pipeline(PluginRuntime(), SessionTable(), [registry, collected])
    api = SensorAPI(registry, terminate=pipeline.terminate)
    for rec in frames[:5]:  # handshake, "first", "reply"
        pipeline.feed(rec.data, rec.timestamp)
    (session,) = api.list_active_sessions()

    assert api.terminate_session(session.id)
    assert [r["xdpsensor"]["endReason"] for r in records] == ["terminated"]
    assert records[0]["client"]["bytes"] == len(b"first") and records[0]["server"]["bytes"] == len(b"reply")
    assert api.get_session(session.id).state is SessionState.CLOSED
    assert not api.terminate_session(session.id)  # already closed
    assert not api.terminate_session("no-such-session")

    pipeline.feed(frames[5].data, frames[5].timestamp)
    pipeline.close()
    # The flow's next packet starts a new, mid-stream session; the ended one stays ended.
    assert [r["xdpsensor"]["endReason"] for r in records] == ["terminated", "shutdown"]
    assert records[1]["xdpsensor"]["sessionId"] != session.id
