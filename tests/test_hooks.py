"""The listener chain: hooks in order, each call guarded, one frozen FinishedSession for all."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from capturelib import Capture

from sensor.arkime.loader import load_plugins
from sensor.arkime.runtime import PluginRuntime
from sensor.bindings import parse_bindings
from sensor.capture.pcapfile import read_pcap
from sensor.events import EventBus
from sensor.flows.table import SessionTable
from sensor.hooks import HOOKS, FinishedCollector, FinishedSession, ListenerChain
from sensor.pipeline import Pipeline
from sensor.registry import SessionRegistry

CLIENT, SERVER = ("10.0.0.1", 40000), ("10.0.0.2", 7000)
LINES = [{"name": "lines", "match": {"ports": ["tcp:7000"]}, "framer": "delimiter"}]


class Broken:
    """Raises in every hook."""

    def __getattr__(self, name: str):
        if name not in HOOKS:
            raise AttributeError(name)

        def fail(*args):
            raise RuntimeError(f"{name} is broken")
        return fail


class Recorder:
    """Writes down every hook call it gets, with what identifies it."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def session_opened(self, session) -> None:
        self.calls.append(("session_opened", session.uid))

    def packet(self, session, packet, frame, linktype) -> None:
        self.calls.append(("packet", session.uid, frame, packet.timestamp, packet.frame_len, linktype))

    def payload(self, session, direction, data, protocols) -> None:
        self.calls.append(("payload", session.uid, direction, data))

    def session_ending(self, session, ending) -> None:
        self.calls.append(("session_ending", session.uid, len(ending.frames)))

    def record_saving(self, session, record) -> None:
        record["packetPos"] = [c[3] for c in self.calls if c[0] == "packet" and c[1] == session.uid]
        self.calls.append(("record_saving", session.uid))

    def session_finished(self, finished) -> None:
        self.calls.append(("session_finished", finished.session_id, len(finished.frames)))


@pytest.fixture
def pcap(tmp_path):
    capture = Capture()
    capture.tcp(CLIENT, SERVER).handshake().send("c", b"one\ntwo\n").send("s", b"ok\n").close()
    return capture.write(tmp_path / "lines.pcap")


def feed_all(pipeline: Pipeline, pcap) -> list:
    frames = list(read_pcap(pcap))
    for rec in frames:
        pipeline.feed(rec.data, rec.timestamp, linktype=rec.linktype, wire_len=rec.wire_len)
    pipeline.close()
    return frames


def test_each_listener_sees_the_session_in_hook_order(pcap):
    registry = SessionRegistry(parse_bindings(LINES, Path(".")), EventBus())
    recorder = Recorder()
    pipeline = Pipeline(PluginRuntime(), SessionTable(), [registry, recorder])
    frames = feed_all(pipeline, pcap)

    uid = registry.all_sessions()[0].id
    kinds = [call[0] for call in recorder.calls]
    assert kinds[0] == "session_opened" and kinds[-3:] == ["session_ending", "record_saving", "session_finished"]
    packets = [call for call in recorder.calls if call[0] == "packet"]
    assert [(p[2], p[3], p[4], p[5]) for p in packets] == [
        (rec.data, rec.timestamp, rec.wire_len, rec.linktype) for rec in frames]
    assert [(c[2], c[3]) for c in recorder.calls if c[0] == "payload"] == [(0, b"one\ntwo\n"), (1, b"ok\n")]
    # The registry runs first: it has handed its three frames over when the recorder's turns come.
    assert ("session_ending", uid, 3) in recorder.calls and ("session_finished", uid, 3) in recorder.calls


def test_record_saving_fields_reach_the_frozen_record(pcap):
    recorder, collected = Recorder(), FinishedCollector()
    pipeline = Pipeline(PluginRuntime(), SessionTable(), [recorder, collected])
    frames = feed_all(pipeline, pcap)
    (finished,) = collected.finished
    assert finished.record["packetPos"] == [rec.timestamp for rec in frames]
    with pytest.raises(dataclasses.FrozenInstanceError):
        finished.record = {}  # type: ignore[misc]


def test_a_failing_listener_is_counted_and_the_others_go_on(pcap):
    registry = SessionRegistry(parse_bindings(LINES, Path(".")), EventBus())
    recorder, collected = Recorder(), FinishedCollector()
    pipeline = Pipeline(PluginRuntime(), SessionTable(), [Broken(), registry, recorder, collected])
    feed_all(pipeline, pcap)

    (finished,) = collected.finished
    assert [f.raw_bytes for f in finished.frames] == [b"one\n", b"two\n", b"ok\n"]
    errors = pipeline.hooks.errors
    packets = sum(1 for call in recorder.calls if call[0] == "packet")
    assert errors.counts == {"Broken.session_opened": 1, "Broken.packet": packets, "Broken.payload": 2,
                             "Broken.state_changed": errors.counts["Broken.state_changed"],
                             "Broken.session_ending": 1, "Broken.record_saving": 1, "Broken.session_finished": 1}
    assert errors.counts["Broken.state_changed"] >= 1  # the handshake's ACK and the FINs
    assert errors.total == sum(errors.counts.values())


def test_a_listener_without_hooks_is_refused():
    with pytest.raises(TypeError, match="implements none of the pipeline hooks"):
        ListenerChain([object()])


HOLDING_PLUGIN = """\
import arkime
import arkime_session

held = []


def pre_save(session, final):
    arkime_session.incref(session)
    held.append(session)


arkime.register_pre_save(pre_save)
"""


def test_a_deferred_save_keeps_its_frames_until_the_record_comes(pcap, tmp_path):
    plugin = tmp_path / "holding.py"
    plugin.write_text(HOLDING_PLUGIN)
    runtime = PluginRuntime()
    assert load_plugins(runtime, files=[plugin]).ok
    registry = SessionRegistry(parse_bindings(LINES, Path(".")), EventBus())
    collected = FinishedCollector()
    pipeline = Pipeline(runtime, SessionTable(), [registry, collected])
    for rec in read_pcap(pcap):
        pipeline.feed(rec.data, rec.timestamp)
    pipeline.expire(float("inf"))
    assert collected.finished == []  # the plugin still holds the save
    pipeline.close()  # shutdown saves it anyway
    (finished,) = collected.finished
    assert isinstance(finished, FinishedSession)
    assert [f.raw_bytes for f in finished.frames] == [b"one\n", b"two\n", b"ok\n"]
    assert finished.record["xdpsensor"]["endReason"] in ("fin", "timeout")


def test_emit_hands_a_record_without_a_session_to_the_listeners():
    collected = FinishedCollector()
    pipeline = Pipeline(PluginRuntime(), SessionTable(), [collected])
    pipeline.emit({"xdpsensor": {"sessionId": "k1"}})
    assert collected.finished == [FinishedSession({"xdpsensor": {"sessionId": "k1"}})]
    assert pipeline.stats.records == 1
