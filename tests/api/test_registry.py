"""The session registry behind a real Pipeline fed scapy-built captures.

Expected frames and decoded fields are written out by hand from the bytes
each test puts on the wire.
"""
from __future__ import annotations

import asyncio

import pytest

from sensor.arkime.runtime import PluginRuntime
from sensor.bindings import parse_bindings
from sensor.events import EventBus
from sensor.flows.state import Direction, SessionState
from sensor.flows.table import SessionTable
from sensor.hooks import FinishedCollector
from sensor.pipeline import Pipeline
from sensor.registry import SessionRegistry

C2S, S2C = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT
CLIENT, SERVER = ("10.0.0.1", 40000), ("10.0.0.2", 7000)

# 2-byte big-endian length, then `length` bytes: a kind byte and a body.
LP_DEFINITION = {
    "name": "LP",
    "messages": [
        {"name": "Greeting", "match": {"type": "magic", "offset": 2, "value": [0x01]},
         "fields": [{"name": "length", "type": "uint16"}, {"name": "kind", "type": "uint8"},
                    {"name": "text", "type": "string", "length": "{length - 1}"}]},
        {"name": "Counter", "match": {"type": "magic", "offset": 2, "value": [0x02]},
         "fields": [{"name": "length", "type": "uint16"}, {"name": "kind", "type": "uint8"},
                    {"name": "value", "type": "uint32"}]},
    ],
}
LP_BINDING = {"name": "lp", "match": {"ports": ["tcp:7000"]}, "framer": "length_prefix",
              "framer_kwargs": {"prefix_length": 2}, "protocol_definition": LP_DEFINITION}

HELLO = b"\x00\x06\x01hello"
SEVEN = b"\x00\x05\x02\x00\x00\x00\x07"
ODD = b"\x00\x01\x09"
FORTY_TWO = b"\x00\x05\x02\x00\x00\x00\x2a"
PARTIAL = b"\x00\x09\x01ab"  # announces 9 bytes, the connection closes after 3


class Recorder:
    """Sync handler for every session event, reducing each to a comparable tuple."""

    def __init__(self, bus: EventBus) -> None:
        self.events: list[tuple] = []
        self.raw: list = []
        for name in ("on_session_opened", "on_session_updated", "on_session_closed", "on_frame_captured",
                     "on_upstream_connection_failed"):
            bus.subscribe(name, self.handle)

    def handle(self, event) -> None:
        self.raw.append(event)
        self.events.append(describe(event))


def describe(event) -> tuple:
    kind = type(event).__name__.removesuffix("Event")
    if kind == "FrameCaptured":
        return kind, event.frame.direction, event.frame.raw_bytes
    if kind == "UpstreamConnectionFailed":
        return kind, event.error
    return kind, event.session.state


def registry_with(bindings, **options) -> SessionRegistry:
    return SessionRegistry(parse_bindings(bindings, "."), EventBus(), **options)


def lp_capture(capture):
    tcp = capture.tcp(CLIENT, SERVER).handshake()
    stream = HELLO + SEVEN + ODD
    tcp.send("c", stream[0:3], stream[3:10], stream[10:17], stream[17:18])
    tcp.send("s", FORTY_TWO[:4], FORTY_TWO[4:], PARTIAL)
    tcp.close()
    return capture


def test_length_prefixed_stream_split_across_segments(capture, tmp_path, make_pipeline, replay):
    registry = registry_with([LP_BINDING])
    recorder = Recorder(registry.bus)
    async_events: list[tuple] = []

    async def async_handler(event):
        await asyncio.sleep(0)
        async_events.append(describe(event))

    for name in ("on_session_opened", "on_session_updated", "on_session_closed", "on_frame_captured"):
        registry.bus.subscribe(name, async_handler)
    pipeline, records = make_pipeline(registry)
    replay(pipeline, lp_capture(capture).write(tmp_path / "lp.pcap"))
    pipeline.close()
    registry.bus.close(timeout=10)

    (session,) = registry.all_sessions()
    assert session.id == records[0]["xdpsensor"]["sessionId"]
    info = session.info
    assert (info.client_host, info.client_port, info.server_host, info.server_port) == (*CLIENT, *SERVER)
    assert (info.transport, info.forwarder_name, info.state) == ("tcp", "lp", SessionState.CLOSED)
    assert info.created_at == pytest.approx(capture.frames[0][0])
    assert info.closed_at >= capture.frames[-1][0]

    frames = [(f.direction, f.raw_bytes, f.sequence_number, f.framer_name) for f in session.frames]
    assert frames == [
        (C2S, HELLO, 0, "length_prefix"),
        (C2S, SEVEN, 1, "length_prefix"),
        (C2S, ODD, 2, "length_prefix"),
        (S2C, FORTY_TWO, 0, "length_prefix"),
        (S2C, PARTIAL, 1, "length_prefix"),  # flushed when the session closed
    ]
    assert all(f.session_id == session.id for f in session.frames)
    # HELLO is complete with the second client segment (after the 3-packet handshake).
    assert session.frames[0].timestamp == pytest.approx(capture.frames[4][0])
    assert session.frame_count == 5 and session.frames_dropped == 0

    messages = session.messages
    assert [m.frame for m in messages] == session.frames  # aligned
    assert [m.message_type for m in messages] == ["Greeting", "Counter", "<unknown>", "Counter", "Greeting"]
    assert messages[0].as_dict() == {"length": 6, "kind": 1, "text": "hello"}
    assert messages[1].as_dict() == {"length": 5, "kind": 2, "value": 7}
    assert messages[2].error == "No message definition matched frame seq=2"
    assert messages[3].as_dict() == {"length": 5, "kind": 2, "value": 42}
    assert messages[4].as_dict() == {"length": 9, "kind": 1}
    assert messages[4].error.startswith("Truncated data parsing field 'text': need 8 bytes at offset 3")
    assert [m.protocol_name for m in messages] == ["LP"] * 5

    expected = [
        ("SessionOpened", SessionState.CONNECTING),
        ("SessionUpdated", SessionState.ACTIVE),  # seen with the first payload
        ("FrameCaptured", C2S, HELLO),
        ("FrameCaptured", C2S, SEVEN),
        ("FrameCaptured", C2S, ODD),
        ("FrameCaptured", S2C, FORTY_TWO),
        ("SessionUpdated", SessionState.ONLY_SERVER),  # the client's FIN
        ("SessionUpdated", SessionState.CLOSED),  # the server's FIN
        ("FrameCaptured", S2C, PARTIAL),  # flushed at the end
        ("SessionClosed", SessionState.CLOSED),
    ]
    assert recorder.events == expected
    assert async_events == expected
    frame_events = [e for e in recorder.raw if type(e).__name__ == "FrameCapturedEvent"]
    assert [e.message for e in frame_events] == messages
    closed = recorder.raw[-1]
    assert closed.frame_count == 5
    assert closed.databytes == (len(HELLO + SEVEN + ODD), len(FORTY_TWO + PARTIAL))


def test_finished_sessions_carry_their_frames_and_messages(capture, tmp_path, replay):
    registry = registry_with([LP_BINDING])
    collected = FinishedCollector()
    pipeline = Pipeline(PluginRuntime(), SessionTable(), [registry, collected])
    lp_capture(capture)
    capture.tcp(("10.0.0.1", 40001), ("10.0.0.2", 80)).handshake().send("c", b"GET /\r\n").close()
    replay(pipeline, capture.write(tmp_path / "two.pcap"))
    pipeline.close()
    lp, http = registry.all_sessions()
    taken = {finished.session_id: finished for finished in collected.finished}
    assert len(collected.finished) == len(taken) == 2  # each session finished once
    frames, messages = taken[lp.id].frames, taken[lp.id].messages
    assert frames == tuple(lp.frames) and messages == tuple(lp.messages)
    assert [f.raw_bytes for f in frames] == [HELLO, SEVEN, ODD, FORTY_TWO, PARTIAL]
    assert [m.message_type for m in messages] == ["Greeting", "Counter", "<unknown>", "Counter", "Greeting"]
    assert (taken[http.id].frames, taken[http.id].messages) == ((), ())  # unbound: nothing to hand over


def test_udp_datagrams_are_frames_whatever_the_framer(capture, tmp_path, make_pipeline, replay):
    registry = registry_with([{"name": "mdns", "match": {"ports": ["udp:5353"]}, "framer": "length_prefix"}])
    query, answer, again = b"\x00\x00\x00\x00q", b"\x00\x00\x84\x00answer", b"\x00\x01\x00\x00q2"
    capture.udp(("10.0.0.1", 5353), ("224.0.0.251", 5353), query)
    capture.udp(("10.0.0.2", 5353), ("10.0.0.1", 5353), answer)
    capture.udp(("10.0.0.1", 5353), ("224.0.0.251", 5353), again)
    pipeline, _ = make_pipeline(registry)
    replay(pipeline, capture.write(tmp_path / "udp.pcap"))
    pipeline.close()
    sessions = registry.all_sessions()
    assert [s.info.transport for s in sessions] == ["udp", "udp"]
    multicast, reply = sessions
    assert [(f.direction, f.raw_bytes, f.framer_name) for f in multicast.frames] == [
        (C2S, query, "raw"), (C2S, again, "raw")]
    assert [(f.direction, f.raw_bytes) for f in reply.frames] == [(C2S, answer)]
    assert multicast.messages == []  # no definition: nothing decoded


def test_protocol_binding_binds_after_the_plugin_claims_it(capture, tmp_path, make_pipeline, replay, redis_plugin):
    registry = registry_with([{"name": "redis", "match": {"protocol": "redis"}, "framer": "line"}])
    capture.tcp(CLIENT, ("10.0.0.2", 7777)).handshake() \
        .send("c", b"*1\r\n$4\r\n", b"PING\r\n").send("s", b"+PONG\r\n").close()
    capture.tcp(("10.0.0.1", 40001), ("10.0.0.2", 7777)).handshake() \
        .send("c", b"HELLO\r\n").send("s", b"+OK\r\n").close()
    pipeline, records = make_pipeline(registry, plugins=[redis_plugin])
    replay(pipeline, capture.write(tmp_path / "redis.pcap"))
    pipeline.close()
    redis, other = registry.all_sessions()
    assert "redis" in redis.protocols and "redis" not in other.protocols
    assert redis.info.forwarder_name == "redis"
    assert [(f.direction, f.raw_bytes) for f in redis.frames] == [
        (C2S, b"*1\r\n"), (C2S, b"$4\r\n"), (C2S, b"PING\r\n"), (S2C, b"+PONG\r\n")]
    assert other.frames == [] and other.info.forwarder_name == ""


def test_classifier_on_the_server_reply_frames_the_earlier_client_bytes(capture, tmp_path, make_pipeline, replay):
    registry = registry_with([{"name": "srv", "match": {"classifier": "tcp:0:SRV"}, "framer": "line"}])
    recorder = Recorder(registry.bus)
    capture.tcp(CLIENT, ("10.0.0.2", 2323)).handshake() \
        .send("c", b"hello\n").send("s", b"SRV ready\n").send("c", b"bye\n").close()
    capture.tcp(("10.0.0.1", 40001), ("10.0.0.2", 2323)).handshake() \
        .send("c", b"hello\n").send("s", b"NOPE\n").close()
    pipeline, _ = make_pipeline(registry)
    replay(pipeline, capture.write(tmp_path / "srv.pcap"))
    pipeline.close()
    matched, unmatched = registry.all_sessions()
    assert [(f.direction, f.raw_bytes) for f in matched.frames] == [
        (C2S, b"hello\n"), (S2C, b"SRV ready\n"), (C2S, b"bye\n")]
    assert unmatched.frames == []
    first = [e for e in recorder.raw if getattr(e, "session", None) and e.session.id == matched.id]
    # The binding is announced (updated, now with the binding's name) before the held bytes' frames.
    assert [describe(e)[0] for e in first[:3]] == ["SessionOpened", "SessionUpdated", "SessionUpdated"]
    assert first[2].session.forwarder_name == "srv" and first[1].session.forwarder_name == ""


def test_frames_beyond_the_bound_are_counted_and_still_published(capture, tmp_path, make_pipeline, replay):
    registry = registry_with([LP_BINDING], max_frames_per_session=2)
    recorder = Recorder(registry.bus)
    pipeline, _ = make_pipeline(registry)
    replay(pipeline, lp_capture(capture).write(tmp_path / "cap.pcap"))
    pipeline.close()
    (session,) = registry.all_sessions()
    assert [f.raw_bytes for f in session.frames] == [HELLO, SEVEN]
    assert [m.message_type for m in session.messages] == ["Greeting", "Counter"]
    assert (session.frame_count, session.frames_dropped) == (5, 3)
    assert registry.stats.frames_dropped == 3
    published = [e[2] for e in recorder.events if e[0] == "FrameCaptured"]
    assert published == [HELLO, SEVEN, ODD, FORTY_TWO, PARTIAL]


def test_counter_updates_are_throttled_in_packet_time(capture, tmp_path, make_pipeline, replay):
    registry = registry_with([LP_BINDING], update_interval=5.0)
    recorder = Recorder(registry.bus)
    tcp = capture.tcp(CLIENT, SERVER).handshake()
    tcp.send("c", HELLO, SEVEN)  # the handshake's last ACK made the session ACTIVE: one update
    capture.clock += 10.0
    tcp.send("c", ODD)  # ten seconds later: counters moved, one more update
    tcp.send("c", HELLO)  # within the interval again: none
    pipeline, _ = make_pipeline(registry)
    replay(pipeline, capture.write(tmp_path / "slow.pcap"))
    updates = [e for e in recorder.raw if type(e).__name__ == "SessionUpdatedEvent"]
    assert [(u.session.state, u.frame_count, u.databytes) for u in updates] == [
        (SessionState.ACTIVE, 0, (0, 0)),
        (SessionState.ACTIVE, 3, (len(HELLO + SEVEN + ODD), 0)),
    ]


def test_upstream_connection_failed(capture, tmp_path, make_pipeline, replay):
    registry = registry_with([LP_BINDING])
    recorder = Recorder(registry.bus)
    capture.tcp(CLIENT, SERVER).syn().rst("s")  # refused
    capture.tcp(("10.0.0.1", 40001), ("10.0.0.3", 7000)).syn()  # nobody answers
    capture.tcp(("10.0.0.1", 40002), SERVER).handshake().send("c", HELLO).close()  # fine
    capture.tcp(("10.0.0.1", 40003), ("10.0.0.3", 7000)).syn().rst("c")  # the client gives up
    pipeline, records = make_pipeline(registry)
    replay(pipeline, capture.write(tmp_path / "refused.pcap"))
    pipeline.close()
    refused, unanswered, fine, abandoned = registry.all_sessions()

    def events_of(session):
        return [e for e in recorder.raw if (e.session.id if hasattr(e, "session") else e.session_id) == session.id]

    failures = {e.session_id: e for e in recorder.raw if type(e).__name__ == "UpstreamConnectionFailedEvent"}
    assert {key: (f.forwarder_name, f.client_host, f.client_port, f.upstream_host, f.upstream_port, f.error)
            for key, f in failures.items()} == {
        refused.id: ("lp", "10.0.0.1", 40000, "10.0.0.2", 7000,
                     "connection refused: the server answered the client's SYN with RST"),
        unanswered.id: ("lp", "10.0.0.1", 40001, "10.0.0.3", 7000,
                        "connection timed out: no SYN-ACK from the server before the session ended"),
        abandoned.id: ("lp", "10.0.0.1", 40003, "10.0.0.3", 7000,
                       "no SYN-ACK from the server: the client reset the connection attempt"),
    }
    assert [describe(e) for e in events_of(refused)] == [
        ("SessionOpened", SessionState.CONNECTING),
        ("SessionUpdated", SessionState.CLOSED),  # the RST
        ("UpstreamConnectionFailed", failures[refused.id].error),
        ("SessionClosed", SessionState.CLOSED),
    ]
    assert [describe(e)[0] for e in events_of(fine)] == [
        "SessionOpened", "SessionUpdated", "FrameCaptured", "SessionUpdated", "SessionUpdated", "SessionClosed"]
    assert registry.stats.upstream_failures == 3
    assert len(records) == 4


def test_wants_more_follows_the_binding_decision(capture, tmp_path, make_pipeline, replay):
    registry = registry_with([LP_BINDING, {"name": "srv", "match": {"classifier": "tcp:0:SRV"}}])
    capture.tcp(CLIENT, SERVER).handshake()  # port-bound at open
    capture.tcp(("10.0.0.1", 40001), ("10.0.0.2", 80)).handshake().send("c", b"GET /\r\n")  # undecided
    capture.tcp(("10.0.0.1", 40002), ("10.0.0.2", 81)).handshake().send("c", b"x").send("s", b"y")  # decided: none
    pipeline, _ = make_pipeline(registry)
    replay(pipeline, capture.write(tmp_path / "wants.pcap"))
    flows = {flow.server_port: flow for flow in pipeline.table}
    assert registry.wants_more(flows[7000])
    assert registry.wants_more(flows[80])
    assert not registry.wants_more(flows[81])


def test_state_changed_hook_announces_a_half_close(capture, tmp_path, make_pipeline, replay):
    registry = registry_with([LP_BINDING])
    recorder = Recorder(registry.bus)
    capture.tcp(CLIENT, SERVER).handshake().send("c", HELLO).fin("c")  # no payload follows to carry the news
    pipeline, _ = make_pipeline(registry)
    replay(pipeline, capture.write(tmp_path / "half.pcap"))
    (flow,) = pipeline.table
    registry.state_changed(flow)
    registry.state_changed(flow)  # nothing new: no second update
    assert [e for e in recorder.events if e[0] == "SessionUpdated"] == [
        ("SessionUpdated", SessionState.ACTIVE), ("SessionUpdated", SessionState.ONLY_SERVER)]
    (session,) = registry.all_sessions()
    assert session.state is SessionState.ONLY_SERVER and session.is_active()


def test_bytes_held_before_a_decision_are_bounded(capture, tmp_path, make_pipeline, replay):
    registry = registry_with([{"name": "srv", "match": {"classifier": "tcp:0:SRV"}}], prebind_limit=10)
    capture.tcp(CLIENT, ("10.0.0.2", 2323)).handshake().send("c", b"12345678", b"12345678")
    pipeline, _ = make_pipeline(registry)
    replay(pipeline, capture.write(tmp_path / "held.pcap"))
    (flow,) = pipeline.table
    assert registry.stats.prebind_overflows == 1  # 16 bytes held > 10: the session stopped waiting
    assert not registry.wants_more(flow)
    pipeline.close()
    (session,) = registry.all_sessions()
    assert session.frames == [] and session.info.forwarder_name == ""
