"""protocols/: the bundled Modbus/TCP and MQTT definitions, their framers and bindings.

Frames are built here field by field from the Modbus and OASIS MQTT specs; the
framers cut streams built here; and the frames of Arkime's own captures decode
to the function codes and packet types Arkime's parsers reported for them.
"""

from __future__ import annotations

import struct
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from sensor.capture.pcapfile import read_pcap
from sensor.flows.events import PayloadDelivered
from sensor.flows.state import Direction
from sensor.flows.table import SessionTable
from sensor.framing import FramerSpec, validate_framer_config
from sensor.models import Frame
from sensor.packet import PacketError, decode_frame
from sensor.protocol import UNKNOWN, DefinitionDecoder, load_definition_file

# The frame builders and Arkime's expected sessions are shared with the plugin tests; tests/plugins
# is a plain directory (no __init__.py), put on sys.path here for when this file runs on its own.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))
from plugin_testlib import arkime_bodies, arkime_pcap, session_key  # noqa: E402
from spec_frames import adu, control, text, varint  # noqa: E402

PROTOCOLS = Path(__file__).resolve().parents[2] / "protocols"
C2S, S2C = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT


def _binding(name: str) -> tuple[FramerSpec, DefinitionDecoder]:
    """One entry of protocols/bindings.yaml, validated the way a binding is: paths from the file's folder."""
    bindings = yaml.safe_load((PROTOCOLS / "bindings.yaml").read_text())["bindings"]
    [entry] = [b for b in bindings if b["name"] == name]
    script = entry.get("custom_framer_path")
    spec = validate_framer_config(entry["framer"], entry.get("framer_kwargs"), PROTOCOLS / script if script else None)
    return spec, DefinitionDecoder(load_definition_file(PROTOCOLS / entry["protocol_definition"]))


def test_bindings_file_loads_with_the_sensor_loader():
    bindings = pytest.importorskip("sensor.bindings", reason="the bindings loader is not in this tree")
    raw = yaml.safe_load((PROTOCOLS / "bindings.yaml").read_text())["bindings"]
    modbus, mqtt = bindings.parse_bindings(raw, PROTOCOLS)
    assert (modbus.name, modbus.definition.name, modbus.framer.name) == ("modbus", "Modbus/TCP", "length_prefix")
    assert modbus.match.ports_match(6, 40000, 502) and not modbus.match.ports_match(17, 40000, 502)
    assert (mqtt.name, mqtt.definition.name, mqtt.match.protocol) == ("mqtt", "MQTT", "mqtt")
    assert mqtt.framer.script is not None and mqtt.framer.script.path == PROTOCOLS / "mqtt_framer.py"


@pytest.fixture(scope="module")
def modbus() -> tuple[FramerSpec, DefinitionDecoder]:
    return _binding("modbus")


@pytest.fixture(scope="module")
def mqtt() -> tuple[FramerSpec, DefinitionDecoder]:
    return _binding("mqtt")


def decode(decoder: DefinitionDecoder, data: bytes, direction: Direction = C2S):
    return decoder.decode(Frame.create("s", direction, data, 0))


def plain(fields) -> dict:
    """Field values by name; arrays become lists of their items' values, bitfields stay numbers."""
    return {f.name: [plain(item.children) for item in f.value] if isinstance(f.value, list) else f.value
            for f in fields}


def bits(message, name: str) -> dict[str, int]:
    [field] = [f for f in message.fields if f.name == name]
    return {child.name: child.value for child in field.children}


# -- Modbus/TCP: the examples of the Modbus Application Protocol Specification V1.1b3 ------------


def mbap(length: int, function_code: int, transaction_id: int = 1, unit_id: int = 0x11) -> dict:
    return {"transaction_id": transaction_id, "protocol_id": 0, "length": length, "unit_id": unit_id,
            "function_code": function_code}


def registers(*values: int) -> list[dict]:
    return [{"value": v} for v in values]


MODBUS_EXAMPLES = [
    # (direction, PDU, message, fields after the function code)
    (C2S, "01 0013 0013", "Read Coils Request", {"starting_address": 0x13, "quantity": 0x13}),
    (S2C, "01 03 CD6B05", "Read Coils Response", {"byte_count": 3, "coil_status": b"\xcd\x6b\x05"}),
    (C2S, "02 00C4 0016", "Read Discrete Inputs Request", {"starting_address": 0xC4, "quantity": 0x16}),
    (S2C, "02 03 ACDB35", "Read Discrete Inputs Response", {"byte_count": 3, "coil_status": b"\xac\xdb\x35"}),
    (C2S, "03 006B 0003", "Read Holding Registers Request", {"starting_address": 0x6B, "quantity": 3}),
    (S2C, "03 06 022B 0000 0064", "Read Holding Registers Response",
     {"byte_count": 6, "registers": registers(0x022B, 0, 0x64)}),
    (C2S, "04 0008 0001", "Read Input Registers Request", {"starting_address": 8, "quantity": 1}),
    (S2C, "04 02 000A", "Read Input Registers Response", {"byte_count": 2, "registers": registers(10)}),
    (C2S, "05 00AC FF00", "Write Single Coil Request", {"output_address": 0xAC, "output_value": 0xFF00}),
    (S2C, "05 00AC FF00", "Write Single Coil Response", {"output_address": 0xAC, "output_value": 0xFF00}),
    (C2S, "06 0001 0003", "Write Single Register Request", {"register_address": 1, "register_value": 3}),
    (S2C, "06 0001 0003", "Write Single Register Response", {"register_address": 1, "register_value": 3}),
    (C2S, "0F 0013 000A 02 CD01", "Write Multiple Coils Request",
     {"starting_address": 0x13, "quantity": 10, "byte_count": 2, "coil_status": b"\xcd\x01"}),
    (S2C, "0F 0013 000A", "Write Multiple Coils Response", {"starting_address": 0x13, "quantity": 10}),
    (C2S, "10 0001 0002 04 000A 0102", "Write Multiple Registers Request",
     {"starting_address": 1, "quantity": 2, "byte_count": 4, "registers": registers(10, 0x102)}),
    (S2C, "10 0001 0002", "Write Multiple Registers Response", {"starting_address": 1, "quantity": 2}),
    (C2S, "16 0004 00F2 0025", "Mask Write Register Request",
     {"register_address": 4, "and_mask": 0xF2, "or_mask": 0x25}),
    (C2S, "17 0003 0006 000E 0003 06 00FF 00FF 00FF", "Read/Write Multiple Registers Request",
     {"read_starting_address": 3, "quantity_to_read": 6, "write_starting_address": 14, "quantity_to_write": 3,
      "byte_count": 6, "registers": registers(0xFF, 0xFF, 0xFF)}),
    (S2C, "81 02", "Exception Response", {"exception_code": 2}),  # the spec's exception example
    (S2C, "90 04", "Exception Response", {"exception_code": 4}),
    (C2S, "11", "Other Request", {"data": b""}),  # Report Server ID has no data
    (C2S, "08 0000 A537", "Other Request", {"data": bytes.fromhex("0000A537")}),
]


@pytest.mark.parametrize(("direction", "pdu", "name", "body"), MODBUS_EXAMPLES,
                         ids=[f"{name} {pdu[:2]}" for _, pdu, name, _ in MODBUS_EXAMPLES])
def test_modbus_spec_examples(modbus, direction, pdu, name, body):
    raw_pdu = bytes.fromhex(pdu)
    message = decode(modbus[1], adu(raw_pdu), direction)
    assert (message.message_type, message.error) == (name, None)
    assert plain(message.fields) == {**mbap(len(raw_pdu) + 1, raw_pdu[0]), **body}


def test_modbus_labels(modbus):
    message = decode(modbus[1], adu(bytes.fromhex("83 02")), S2C)
    shown = {f.name: f.display_value for f in message.fields}
    assert shown["function_code"] == "Read Holding Registers (exception)"
    assert shown["exception_code"] == "Illegal Data Address"
    coil = decode(modbus[1], adu(bytes.fromhex("05 00AC 0000")))
    assert [f.display_value for f in coil.fields if f.name == "output_value"] == ["OFF"]


def test_modbus_truncated_response_keeps_the_fields_before_the_cut(modbus):
    message = decode(modbus[1], adu(bytes.fromhex("03 06 022B"))[:-1], S2C)
    assert message.message_type == "Read Holding Registers Response"
    assert message.error is not None and "registers" not in plain(message.fields)
    assert plain(message.fields)["byte_count"] == 6


def test_modbus_framer_cuts_adus_split_anywhere(modbus):
    frames = [adu(bytes.fromhex("03 006B 0003"), 1), adu(bytes.fromhex("11"), 2),
              adu(bytes.fromhex("10 0001 0002 04 000A 0102"), 3)]
    stream = b"".join(frames)
    framer = modbus[0].create("s", C2S)
    cuts = [0, 3, 5, 6, 13, 14, 20, len(stream)]
    out = [f.raw_bytes for a, b in zip(cuts, cuts[1:]) for f in framer.feed(stream[a:b])]
    assert out == frames


def test_modbus_framer_flushes_a_length_no_adu_can_have(modbus):
    framer = modbus[0].create("s", C2S)
    garbage = b"\x00\x01\x00\x00\xff\xff\x01\x03"  # length 65535 > the 260-byte ADU limit
    assert [f.raw_bytes for f in framer.feed(garbage)] == [garbage]
    good = adu(bytes.fromhex("03 006B 0003"))
    assert [f.raw_bytes for f in framer.feed(good)] == [good]  # framing restarts on the next read


# -- MQTT: the OASIS MQTT 3.1.1 (and 5.0) specs ---------------------------------------------------


def test_mqtt_connect_spec_example(mqtt):
    # 3.1.2.10: protocol name MQTT, level 4, flags 0xCE (user name, password, will QoS 1,
    # will flag, clean session), keep alive 10; payload fields in the order of 3.1.3.
    body = text("MQTT") + b"\x04\xce\x00\x0a" + text("client-1") + text("will/topic") + text("bye") \
        + text("user") + text("pass")
    message = decode(mqtt[1], control(0x10, body))
    assert (message.message_type, message.error) == ("CONNECT", None)
    assert plain(message.fields) == {
        "fixed_header": 0x10, "remaining_length": len(body), "remaining_length_continued": [],
        "protocol_name_length": 4, "protocol_name": "MQTT", "protocol_level": 4, "connect_flags": 0xCE,
        "keep_alive": 10, "properties": [], "client_id_length": 8, "client_id": "client-1",
        "will": [{"will_topic_length": 10, "will_topic": "will/topic", "will_message_length": 3,
                  "will_message": b"bye", "properties": []}],
        "username": [{"username_length": 4, "username": "user"}],
        "password": [{"password_length": 4, "password": b"pass"}],
    }
    assert bits(message, "connect_flags") == {
        "reserved": 0, "clean_session": 1, "will_flag": 1, "will_qos_bit0": 1, "will_qos_bit1": 0,
        "will_retain": 0, "password_flag": 1, "username_flag": 1}


def test_mqtt_connect_without_optional_fields(mqtt):
    body = text("MQTT") + b"\x04\x02\x00\x3c" + text("")
    fields = plain(decode(mqtt[1], control(0x10, body)).fields)
    assert (fields["client_id"], fields["will"], fields["username"], fields["password"]) == ("", [], [], [])


@pytest.mark.parametrize("properties", [
    b"\x11" + struct.pack(">I", 3600),  # session expiry interval: a 1-byte properties length
    b"\x26" + text("k" * 100) + text("v" * 100),  # user property: 205 bytes, a 2-byte length
])
def test_mqtt5_connect_properties(mqtt, properties):
    body = text("MQTT") + b"\x05\x02\x00\x3c" + varint(len(properties)) + properties + text("v5")
    message = decode(mqtt[1], control(0x10, body))
    fields = plain(message.fields)
    assert message.error is None and fields["client_id"] == "v5"
    [block] = fields["properties"]
    data = block["data"] + b"".join(more["data"] for more in block["length_continued"])
    assert data == properties


@pytest.mark.parametrize("payload_size", [5, 200, 20_000])  # remaining length of 1, 2 and 3 bytes
def test_mqtt_publish_after_a_remaining_length_of_any_width(mqtt, payload_size):
    payload = bytes(range(256)) * (payload_size // 256) + bytes(payload_size % 256)
    frame = control(0x3B, text("a/b") + b"\x12\x34" + payload)  # dup, QoS 1, retain
    message = decode(mqtt[1], frame)
    fields = plain(message.fields)
    assert (message.message_type, message.error) == ("PUBLISH", None)
    assert (fields["topic"], fields["packet_id"], fields["payload"]) == ("a/b", 0x1234, payload)
    assert bits(message, "fixed_header") == {"retain": 1, "qos_bit0": 1, "qos_bit1": 0, "dup": 1}
    # the remaining-length bytes walked, least significant first, add up to the body size
    length_bytes, level = [fields["remaining_length"]], fields["remaining_length_continued"]
    while level:
        [item] = level
        length_bytes.append(next(v for k, v in item.items() if k.startswith("byte_")))
        level = item.get("continued", [])
    assert sum((b & 0x7F) << 7 * i for i, b in enumerate(length_bytes)) == len(frame) - 1 - len(length_bytes)
    assert len(length_bytes) == len(varint(payload_size + 7))


def test_mqtt_publish_qos0_has_no_packet_id(mqtt):
    fields = plain(decode(mqtt[1], control(0x30, text("t") + b"hello"), S2C).fields)
    assert "packet_id" not in fields and fields["payload"] == b"hello"


@pytest.mark.parametrize(("direction", "frame", "name", "body"), [
    (S2C, control(0x20, b"\x01\x00"), "CONNACK", {"acknowledge_flags": 1, "return_code": 0, "properties": b""}),
    (C2S, control(0x82, b"\x00\x0a" + text("a/b") + b"\x01" + text("c/#") + b"\x02"), "SUBSCRIBE",
     {"packet_id": 10, "topic_filter_length": 3, "topic_filter": "a/b", "options": 1,
      "more_topic_filters": text("c/#") + b"\x02"}),
    (S2C, control(0x90, b"\x00\x0a\x01\x80"), "SUBACK", {"packet_id": 10, "return_codes": b"\x01\x80"}),
    (C2S, control(0xA2, b"\x00\x0b" + text("a/b")), "UNSUBSCRIBE",
     {"packet_id": 11, "topic_filter_length": 3, "topic_filter": "a/b", "more_topic_filters": b""}),
    (S2C, control(0xB0, b"\x00\x0b"), "UNSUBACK", {"packet_id": 11, "reason_and_properties": b""}),
    (C2S, control(0x40, b"\x00\x07"), "PUBACK", {"packet_id": 7, "reason_and_properties": b""}),
    (S2C, control(0x62, b"\x00\x07"), "PUBREL", {"packet_id": 7, "reason_and_properties": b""}),
    (C2S, control(0xC0), "PINGREQ", {}),
    (S2C, control(0xD0), "PINGRESP", {}),
    (C2S, control(0xE0), "DISCONNECT", {"reason_and_properties": b""}),
])
def test_mqtt_control_packets(mqtt, direction, frame, name, body):
    message = decode(mqtt[1], frame, direction)
    assert (message.message_type, message.error) == (name, None)
    header = {"fixed_header": frame[0], "remaining_length": frame[1]}
    if name not in ("PINGREQ", "PINGRESP"):
        header["remaining_length_continued"] = []
    assert plain(message.fields) == {**header, **body}


def test_mqtt_connack_from_the_client_is_unknown(mqtt):
    message = decode(mqtt[1], control(0x20, b"\x00\x00"), C2S)
    assert message.message_type == UNKNOWN


def packets_for_framer() -> list[bytes]:
    return [control(0x10, text("MQTT") + b"\x04\x02\x00\x3c" + text("c")),
            control(0x32, text("t") + b"\x00\x01" + bytes(300)),  # 2-byte remaining length
            control(0x30, text("big") + bytes(20_000)),  # 3-byte remaining length
            control(0xC0),  # remaining length 0
            control(0xE0)]


def test_mqtt_framer_cuts_packets_split_anywhere(mqtt):
    packets = packets_for_framer()
    stream = b"".join(packets)
    client, server = mqtt[0].create_pair("s")  # one script state for both directions
    cuts = [0, 1, 2, 5, 17, 18, 19, 20, 400, 401, 9000, len(stream) - 2, len(stream) - 1, len(stream)]
    pingresps = control(0xD0) * len(cuts)
    client_frames, server_frames = [], []
    for step, (a, b) in enumerate(zip(cuts, cuts[1:])):
        client_frames += [f.raw_bytes for f in client.feed(stream[a:b])]
        server_frames += [f.raw_bytes for f in server.feed(pingresps[step:step + 1])]  # half a PINGRESP
    assert client_frames == packets
    steps = len(cuts) - 1
    assert server_frames == [control(0xD0)] * (steps // 2)
    assert [f.raw_bytes for f in server.flush()] == [b"\xd0"] * (steps % 2)
    assert client.flush() == []


def test_mqtt_framer_flush_and_a_malformed_length(mqtt):
    framer = mqtt[0].create("s", C2S)
    partial = control(0x30, text("t") + bytes(50))[:10]
    assert framer.feed(partial) == []
    assert [f.raw_bytes for f in framer.flush()] == [partial]
    garbage = b"\x30\xff\xff\xff\xff\x01abc"  # a fifth length byte: not MQTT
    assert [f.raw_bytes for f in framer.feed(garbage)] == [garbage]
    assert [f.raw_bytes for f in framer.feed(control(0xC0))] == [control(0xC0)]


# -- Arkime's captures: frames decode to what Arkime's parsers saw ---------------------------------


def frames_by_session(pcap: Path, spec: FramerSpec, decoder: DefinitionDecoder) -> dict[tuple, list]:
    """Decoded messages of every session with payload, keyed like Arkime's sessions (source, destination)."""
    table, framers, messages, ends = SessionTable(), {}, defaultdict(list), {}
    for rec in read_pcap(pcap):
        try:
            packet = decode_frame(rec.data, rec.timestamp, rec.linktype, rec.wire_len)
        except PacketError:  # ARP and the like: no session
            continue
        for event in table.process(packet):
            if isinstance(event, PayloadDelivered):
                s = event.session
                ends[s.uid] = (s.client_ip, s.client_port, s.server_ip, s.server_port)
                pair = framers.setdefault(s.uid, spec.create_pair(s.uid))
                messages[s.uid] += [decoder.decode(f) for f in pair[event.direction_index].feed(event.data)]
    for uid, pair in framers.items():
        messages[uid] += [decoder.decode(f) for framer in pair for f in framer.flush()]
    return {ends[uid]: found for uid, found in messages.items()}


def arkime_groups(pcap: Path, group: str) -> dict[tuple, dict]:
    return {session_key(b)[:4]: b[group] for b in arkime_bodies(pcap) if group in b and b["network"]["packets"]}


def as_ints(values) -> set[int]:
    return {int(v) for v in (values if isinstance(values, list) else [values])}


@pytest.mark.parametrize(("capture", "sessions"), [("modbus", 5), ("arkime_synthetic", 3)])
def test_modbus_capture_function_and_exception_codes_match_arkime(shared_testdata, modbus, capture, sessions):
    pcap = arkime_pcap(shared_testdata, capture)
    ours = frames_by_session(pcap, *modbus)
    compared = 0
    for ends, expected in arkime_groups(pcap, "modbus").items():
        if ends[3] != 502:
            continue  # the port-502 side opened the connection: requests flow server to client
        messages = ours[ends]
        assert UNKNOWN not in {m.message_type for m in messages}
        # the scanner session sends some requests too short for their function: cut, not misread
        assert {m.error.split(" ")[0] for m in messages if m.error} <= {"Truncated"}
        requests = [plain(m.fields) for m in messages if m.frame.direction is C2S]
        assert {r["function_code"] for r in requests} == as_ints(expected.get("funccode", []))
        assert {r["transaction_id"] for r in requests} == as_ints(expected.get("transactionid", []))
        exceptions = {fields["exception_code"] for fields in map(plain, (m.fields for m in messages))
                      if "exception_code" in fields}  # an exception cut before its code has none, as in Arkime
        assert exceptions == as_ints(expected.get("exccode", []))
        compared += 1
    assert compared == sessions


@pytest.mark.parametrize("capture", ["mqtt_big", "mqtt_synthetic", "arkime_synthetic"])
def test_mqtt_capture_packet_types_match_arkime(shared_testdata, mqtt, capture):
    pcap = arkime_pcap(shared_testdata, capture)
    ours = frames_by_session(pcap, *mqtt)
    tags = arkime_groups(pcap, "tags")
    for ends, expected in arkime_groups(pcap, "mqtt").items():
        messages = ours[ends]
        assert {m.message_type for m in messages} == set(expected["type"])
        assert [m.error for m in messages] == [None] * len(messages)
        connect = plain(next(m for m in messages if m.message_type == "CONNECT").fields)
        assert [connect["client_id"]] == expected["clientId"]
        topics = {plain(m.fields)["topic"] for m in messages if m.message_type == "PUBLISH"}
        # Arkime gives up on a topic too long for its buffer; the whole frame still holds it
        if not any(t.startswith("mqtt:") for t in tags.get(ends, [])):
            assert topics <= set(expected.get("topic", []))
