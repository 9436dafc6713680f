"""plugins/mqtt.py: Arkime's own MQTT captures, and packets built from the OASIS MQTT specs."""
from __future__ import annotations

from functools import partial

import pytest
from plugin_testlib import PLUGINS, claims, conversation_record, ours_and_expected, sessions_by_key, sorted_text
from spec_frames import control, text, varint

PLUGIN = PLUGINS / "mqtt.py"


def _plugin_view(bodies):
    """Per session: the mqtt claim, the mqtt group, the `user` field and mqtt:* tags."""
    return sessions_by_key(bodies, lambda body: claims(body, "mqtt") or "mqtt" in body,
                           lambda body: (claims(body, "mqtt"), sorted_text(body.get("mqtt", {})),
                                         sorted_text(body.get("user", [])),
                                         sorted(t for t in body.get("tags", ()) if t.startswith("mqtt:"))))


@pytest.mark.parametrize("capture", ["mqtt_big", "mqtt_synthetic", "arkime_synthetic"])
def test_fields_match_arkime_on_its_captures(shared_testdata, capture):
    ours, expected = ours_and_expected(shared_testdata, capture, PLUGIN, _plugin_view)
    assert ours == expected


conversation = partial(conversation_record, plugins=(PLUGIN,), server_port=1883)


def connect(level=4, flags=0x02, payload=b"", name="MQTT", properties=b""):
    return control(0x10, text(name) + bytes([level, flags]) + (60).to_bytes(2, "big") + properties + payload)


def publish(topic, payload, qos=0, packet_id=1):
    return control(0x30 | qos << 1, text(topic) + (packet_id.to_bytes(2, "big") if qos else b"") + payload)


def test_a_311_session_with_every_packet_type(tmp_path):
    # flags: user name, password, will retain, will QoS 1, will flag, clean session
    login = connect(flags=0xEE, payload=text("Sensor-7") + text("status/sensor-7") + text("offline")
                    + text("Operator") + text("s3cret"))
    big = publish("big/data", bytes(300), qos=1, packet_id=10)  # 2-byte remaining length
    huge = publish("huge", bytes(20000))  # 3-byte remaining length, larger than the parser buffer
    record = conversation(tmp_path, [
        (0, login),
        (1, control(0x20, b"\x00\x00")),
        (0, control(0x82, b"\x00\x01" + text("a/b") + b"\x00" + text("c/#") + b"\x02")),
        (1, control(0x90, b"\x00\x01\x00\x02")),
        (0, big[:2]), (0, big[2:40]), (0, big[40:]),  # cut inside the header and the payload
        (1, control(0x40, b"\x00\x0a")),
        (0, huge[:1400]), (0, huge[1400:9000]), (0, huge[9000:] + publish("after/huge", b"x", qos=2, packet_id=11)),
        (0, control(0xA2, b"\x00\x02" + text("a/b") + text("c/#"))),
        (1, control(0xB0, b"\x00\x02")),
        (0, control(0xC0)), (1, control(0xD0)), (0, control(0xE0)),
    ])
    assert record["protocol"] == ["tcp", "mqtt"]
    mqtt = record["mqtt"]
    assert mqtt["version"] == ["3.1.1"] and mqtt["clientId"] == ["Sensor-7"]
    assert mqtt["willTopic"] == ["status/sensor-7"]
    assert sorted(mqtt["flags"]) == ["cleanSession", "hasPassword", "hasWill", "willRetain"]
    assert record["user"] == ["operator"]  # Arkime lower-cases the login
    assert mqtt["connackCode"] == [0]
    assert sorted(mqtt["topic"]) == ["a/b", "after/huge", "big/data", "c/#", "huge"]
    assert mqtt["qos"] == [0, 1, 2]  # will QoS 1, PUBLISH QoS 1, 0, 2
    assert sorted(mqtt["type"]) == sorted(["CONNECT", "CONNACK", "SUBSCRIBE", "SUBACK", "PUBLISH", "PUBACK",
                                           "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT"])
    assert "tags" not in record


def test_mqtt5_properties_are_stepped_over(tmp_path):
    session_expiry = b"\x11" + (3600).to_bytes(4, "big")
    login = connect(level=5, flags=0x02, properties=varint(len(session_expiry)) + session_expiry,
                    payload=text("v5-client"))
    # SUBSCRIBE in 5.0: packet id, then properties (none), then filters
    subscribe = control(0x82, b"\x00\x01" + varint(0) + text("v5/#") + b"\x01")
    record = conversation(tmp_path, [(0, login), (1, control(0x20, b"\x00\x00" + varint(0))), (0, subscribe)])
    mqtt = record["mqtt"]
    assert mqtt["version"] == ["5.0"] and mqtt["clientId"] == ["v5-client"]
    assert mqtt["topic"] == ["v5/#"] and mqtt["connackCode"] == [0]


def test_mqtt31_protocol_name(tmp_path):
    record = conversation(tmp_path, [(0, connect(level=3, name="MQIsdp", payload=text("legacy")))])
    assert record["mqtt"]["version"] == ["3.1"] and record["mqtt"]["clientId"] == ["legacy"]


def test_a_fifth_remaining_length_byte_is_tagged_and_parsing_stops(tmp_path):
    record = conversation(tmp_path, [
        (0, connect(payload=text("c"))),
        (0, b"\x30\xff\xff\xff\xff\x01" + bytes(20)),
        (0, publish("never/seen", b"")),
    ])
    assert record["tags"] == ["mqtt:bad-varint"]
    assert "topic" not in record["mqtt"]


def test_a_packet_too_big_for_the_buffer_is_tagged(tmp_path):
    filters = b"".join(text(f"t/{i:05}") + b"\x00" for i in range(1200))  # ~11 kB SUBSCRIBE
    subscribe = control(0x82, b"\x00\x01" + filters)
    record = conversation(tmp_path, [(0, connect(payload=text("c"))), (0, subscribe[:4000]), (0, subscribe[4000:])])
    assert record["tags"] == ["mqtt:message-too-long"]


@pytest.mark.parametrize("payload", [
    b"\x10\x0c\x00\x04HTTP\x04\x02\x00\x3c\x00\x00",  # CONNECT-shaped, wrong protocol name
    b"\x10" + bytes(3),  # too short
    b"\x20\x02\x00\x00" + bytes(8),  # a CONNACK first: not a client opening
])
def test_other_payloads_are_not_mqtt(tmp_path, payload):
    record = conversation(tmp_path, [(0, payload)])
    assert "mqtt" not in record["protocol"]
