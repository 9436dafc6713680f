"""SensorAPI over a registry fed by a real Pipeline: ProtoPoke's names, values and semantics."""
from __future__ import annotations

import textwrap

import pytest

from sensor.api import SensorAPI
from sensor.arkime.runtime import PluginRuntime
from sensor.bindings import parse_bindings
from sensor.events import EventBus
from sensor.flows.state import Direction, SessionState
from sensor.flows.table import SessionTable
from sensor.framing import FramerConfigError
from sensor.hooks import FinishedCollector
from sensor.pipeline import Pipeline
from sensor.registry import SessionRegistry

C2S, S2C = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT
CLIENT, SERVER = ("10.0.0.1", 40000), ("10.0.0.2", 7000)
HELLO = b"\x00\x06\x01hello"
FORTY_TWO = b"\x00\x05\x02\x00\x00\x00\x2a"

LP = {"name": "LP", "messages": [
    {"name": "Greeting", "match": {"type": "magic", "offset": 2, "value": [1]},
     "fields": [{"name": "length", "type": "uint16"}, {"name": "kind", "type": "uint8"},
                {"name": "text", "type": "string", "length": "{length - 1}"}]},
    {"name": "Counter", "match": {"type": "magic", "offset": 2, "value": [2]},
     "fields": [{"name": "length", "type": "uint16"}, {"name": "kind", "type": "uint8"},
                {"name": "value", "type": "uint32"}]},
]}
BINDINGS = [
    {"name": "lp", "match": {"ports": ["tcp:7000"]}, "framer": "length_prefix",
     "framer_kwargs": {"prefix_length": 2}, "protocol_definition": LP},
    {"name": "plain", "match": {"ports": ["tcp:8000", "udp:9000"]}},
]


@pytest.fixture
def registry():
    registry = SessionRegistry(parse_bindings(BINDINGS, "."), EventBus())
    yield registry
    registry.bus.close(timeout=1.0)


def frames_of(session):
    return [(f.direction, f.raw_bytes, f.sequence_number, f.framer_name) for f in session.frames]


def test_enum_values_are_protopokes():
    assert [d.value for d in Direction] == ["client_to_server", "server_to_client"]
    assert C2S.opposite() is S2C
    assert [s.value for s in SessionState] == ["connecting", "active", "only server", "only client", "closed"]


def test_hot_swap_mid_stream_keeps_buffered_bytes(registry, capture, tmp_path, make_pipeline, replay):
    api = SensorAPI(registry)
    capture.tcp(("10.0.0.1", 39999), SERVER).handshake().send("c", HELLO).close()
    capture.clock += 10  # past its closing timeout: it ends before the swap
    udp_src = ("10.0.0.1", 5000)
    capture.udp(udp_src, ("10.0.0.2", 9000), b"datagram")  # bound, but UDP is never swapped
    live = capture.tcp(CLIENT, SERVER).handshake()
    live.send("c", HELLO + b"\x00\x02x")  # a whole frame, then 3 bytes of the next one
    live.send("s", FORTY_TWO)
    swap_at = len(capture.frames)
    live.send("c", b"y\nsecond\n")
    live.send("s", b"ok\n")
    live.close()
    outcome = {}

    def swap(count):
        if count != swap_at:
            return
        lp = registry.binding("lp")
        before = lp.framer
        with pytest.raises(FramerConfigError, match="prefix_length must be one of"):
            api.set_framer("length_prefix", {"prefix_length": 3}, binding="lp")
        with pytest.raises(KeyError, match="no binding named 'nope'"):
            api.set_framer("line", binding="nope")
        assert lp.framer is before  # nothing changed
        outcome["swapped"] = api.set_framer("line", forwarder_name="lp")
        outcome["framer"] = lp.framer.name

    pipeline, _ = make_pipeline(registry)
    replay(pipeline, capture.write(tmp_path / "swap.pcap"), after=swap)
    pipeline.close()
    assert outcome == {"swapped": 1, "framer": "line"}
    closed_first, datagrams, session = registry.all_sessions()
    assert frames_of(session) == [
        (C2S, HELLO, 0, "length_prefix"),
        (S2C, FORTY_TWO, 0, "length_prefix"),
        (C2S, b"\x00\x02xy\n", 1, "line"),  # the old framer's 3 bytes went to the new one
        (C2S, b"second\n", 2, "line"),
        (S2C, b"ok\n", 1, "line"),
    ]
    assert frames_of(closed_first) == [(C2S, HELLO, 0, "length_prefix")]
    assert frames_of(datagrams) == [(C2S, b"datagram", 0, "raw")]


def test_set_framer_for_every_binding_counts_live_tcp_sessions(registry, capture, tmp_path, make_pipeline, replay):
    api = SensorAPI(registry)
    capture.tcp(CLIENT, SERVER).handshake().send("c", HELLO)
    capture.tcp(("10.0.0.1", 40001), ("10.0.0.2", 8000)).handshake().send("c", b"abc")
    capture.tcp(("10.0.0.1", 40002), ("10.0.0.2", 80)).handshake().send("c", b"GET /")  # unbound
    capture.udp(("10.0.0.1", 5000), ("10.0.0.2", 9000), b"datagram")
    pipeline, _ = make_pipeline(registry)
    replay(pipeline, capture.write(tmp_path / "all.pcap"))
    assert api.set_framer("delimiter", {"delimiter": "0x0a"}) == 2
    assert [b.framer.kwargs for b in api.bindings] == [{"delimiter": b"\n"}, {"delimiter": b"\n"}]


def test_queries(registry, capture, tmp_path, make_pipeline, replay):
    api = SensorAPI(registry)
    capture.tcp(("10.0.0.1", 39999), SERVER).handshake().send("c", HELLO).close()
    capture.tcp(CLIENT, SERVER).handshake().send("c", HELLO).send("s", FORTY_TWO)
    pipeline, _ = make_pipeline(registry)
    replay(pipeline, capture.write(tmp_path / "q.pcap"))
    pipeline.expire(capture.clock + 6)  # past the 5 s closing timeout of the first session
    first, second = api.list_sessions()
    assert (first.state, second.state) == (SessionState.CLOSED, SessionState.ACTIVE)
    assert api.list_active_sessions() == [second]
    assert api.get_session(second.id) is second
    assert api.get_session("no-such-id") is None
    assert api.get_frames(second.id) is second.frames  # the live list, as in ProtoPoke
    assert [f.raw_bytes for f in api.get_frames(second.id, S2C)] == [FORTY_TWO]
    assert [f.raw_bytes for f in api.get_frames(second.id, "client_to_server")] == [HELLO]
    assert api.get_frames("no-such-id") == []

    as_dict = api.session_to_dict(first)
    assert list(as_dict) == ["id", "client_host", "client_port", "server_host", "server_port", "state",
                             "created_at", "closed_at", "forwarder_name", "transport", "frames"]
    assert (as_dict["state"], as_dict["forwarder_name"], as_dict["transport"]) == ("closed", "lp", "tcp")
    assert as_dict["frames"][0]["raw_bytes"] == HELLO.hex()
    assert as_dict["frames"][0]["direction"] == "client_to_server"


class DepthLock:
    """Stands in for the runner's pipeline lock and says whether it is held."""

    def __init__(self) -> None:
        self.depth = 0

    def __enter__(self):
        self.depth += 1

    def __exit__(self, *exc):
        self.depth -= 1


def test_terminate_and_delete(registry, capture, tmp_path, make_pipeline, replay):
    asked = []
    verdicts = {"refuse": False}
    lock = DepthLock()

    def terminate(session_id):
        assert lock.depth == 1  # the runner's callback runs under its pipeline lock
        asked.append(session_id)
        return not verdicts["refuse"]

    api = SensorAPI(registry, terminate=terminate, lock=lock)
    closed_events = []
    api.on_session_closed(closed_events.append)
    kept = capture.tcp(CLIENT, SERVER).handshake().send("c", HELLO)
    other = capture.tcp(("10.0.0.1", 40001), SERVER).handshake().send("c", HELLO)
    act_at = len(capture.frames)
    kept.send("c", HELLO).close()
    other.send("c", HELLO).close()
    ids = {}

    def act(count):
        if count != act_at:
            return
        first, second = api.list_sessions()
        ids.update(first=first.id, second=second.id)
        verdicts["refuse"] = True
        assert api.terminate_session(first.id) is False  # the runner refused: nothing changes
        assert first.is_active()
        verdicts["refuse"] = False
        assert api.terminate_session(first.id) is True
        assert first.state is SessionState.CLOSED
        assert api.terminate_session(first.id) is False  # already closed
        assert api.terminate_session("no-such-id") is False
        assert api.delete_session(second.id) is True
        assert api.delete_session(second.id) is False

    collected = FinishedCollector()
    pipeline = Pipeline(PluginRuntime(), SessionTable(), [registry, collected])
    replay(pipeline, capture.write(tmp_path / "term.pcap"), after=act)
    pipeline.close()
    assert asked == [ids["first"], ids["first"]]
    first = api.get_session(ids["first"])
    assert [f.raw_bytes for f in first.frames] == [HELLO]  # bytes after the terminate are ignored
    assert [e.session.id for e in closed_events] == [ids["first"], ids["second"]]  # closed once each
    assert api.get_session(ids["second"]) is None  # deleted, yet still captured to the end
    taken = {finished.session_id: finished for finished in collected.finished}
    assert [f.raw_bytes for f in taken[ids["second"]].frames] == [HELLO, HELLO]
    assert [s.id for s in api.list_sessions()] == [ids["first"]]


def test_decoding(registry, capture, tmp_path, make_pipeline, replay):
    api = SensorAPI(registry)
    capture.tcp(CLIENT, SERVER).handshake().send("c", HELLO).send("s", FORTY_TWO).close()
    capture.tcp(("10.0.0.1", 40001), ("10.0.0.2", 8000)).handshake().send("c", b"\x01\x02").close()
    pipeline, _ = make_pipeline(registry)
    replay(pipeline, capture.write(tmp_path / "dec.pcap"))
    pipeline.close()
    lp, plain = api.list_sessions()

    # No API definition: each frame decodes with its binding's definition, else passthrough.
    assert api.decode_frame(lp.frames[0]).as_dict() == {"length": 6, "kind": 1, "text": "hello"}
    assert [m.as_dict() for m in api.decode_session_frames(lp.id, S2C)] == [{"length": 5, "kind": 2, "value": 42}]
    raw = api.decode_frame(plain.frames[0])
    assert (raw.protocol_name, raw.message_type, raw.display_name, raw.error) == ("raw", "raw", "[2 bytes]", None)
    assert [(f.name, f.value, f.display_hint, f.display_value) for f in raw.fields] == [
        ("raw", b"\x01\x02", "hex", "01 02")]
    assert api.decode_session_frames("no-such-id") == []

    # An API definition decodes every frame (ProtoPoke's single global decoder).
    api.set_protocol_dict({"name": "Bytes", "messages": [
        {"name": "Pair", "fields": [{"name": "a", "type": "uint8"}, {"name": "b", "type": "uint8"}]}]})
    assert api.decode_frame(plain.frames[0]).as_dict() == {"a": 1, "b": 2}
    assert api.decode_frame(lp.frames[0]).as_dict() == {"a": 0, "b": 6}
    path = tmp_path / "word.yaml"
    path.write_text(textwrap.dedent("""
        name: Word
        messages:
          - name: W
            fields: [{name: w, type: uint16}]
    """))
    api.set_protocol_file(path)
    assert api.decode_frame(plain.frames[0]).as_dict() == {"w": 0x0102}
    with pytest.raises(FileNotFoundError):
        api.set_protocol_file(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="name"):
        api.set_protocol_dict({"messages": []})
    assert api.decode_frame(plain.frames[0]).as_dict() == {"w": 0x0102}  # a failed load changes nothing


def test_binding_definition_swap_redecodes_live_sessions(registry, capture, tmp_path, make_pipeline, replay):
    api = SensorAPI(registry)
    live = capture.tcp(CLIENT, SERVER).handshake().send("c", HELLO)
    swap_at = len(capture.frames)
    live.send("c", FORTY_TWO)
    byte_kind = {"name": "Kind", "messages": [
        {"name": "K", "fields": [{"name": "length", "type": "uint16"}, {"name": "kind", "type": "uint8"}]}]}
    pipeline, _ = make_pipeline(registry)
    replay(pipeline, capture.write(tmp_path / "redecode.pcap"),
           after=lambda n: n == swap_at and api.set_protocol_dict(byte_kind, binding="lp"))
    (session,) = api.list_sessions()
    assert [m.as_dict() for m in session.messages] == [{"length": 6, "kind": 1}, {"length": 5, "kind": 2}]
    assert [m.frame for m in session.messages] == session.frames
    with pytest.raises(KeyError, match="no binding named 'x'"):
        api.set_protocol_dict(byte_kind, binding="x")
