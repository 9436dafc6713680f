"""MQTT classifier and packet extractor, written only with the Arkime API.

A port of Arkime's capture/parsers/mqtt.c (MQTT 3.1, 3.1.1 and 5.0) with the
same fields. TCP sessions whose first client payload is a CONNECT naming the
protocol `MQTT` or `MQIsdp` become `mqtt`. Every packet of both directions
adds its type; CONNECT adds version, client id, flags, will topic/QoS and the
user name (Arkime's `user` field, lower-cased); CONNACK its return code;
PUBLISH its topic and QoS; SUBSCRIBE/UNSUBSCRIBE their topic filters.
PUBLISH payloads are stepped over with parser_buf_skip, never buffered.
"""
import arkime
import arkime_session


def _define(expr, kind, text):
    return arkime.field_define(expr, f"kind:{kind};db:{expr};count:true;help:{text}")


CLIENT_ID = _define("mqtt.clientId", "termfield", "MQTT client identifier")
TOPIC = _define("mqtt.topic", "termfield", "MQTT topic")
VERSION = _define("mqtt.version", "termfield", "MQTT protocol version")
TYPE = _define("mqtt.type", "termfield", "MQTT packet type")
WILL_TOPIC = _define("mqtt.willTopic", "termfield", "MQTT last will topic")
QOS = _define("mqtt.qos", "integer", "MQTT Quality of Service level")
FLAGS = _define("mqtt.flags", "termfield", "MQTT connection flags")
CONNACK_CODE = _define("mqtt.connackCode", "integer", "MQTT CONNACK return/reason code (0=Accepted)")
USER = arkime.field_get("user")

PROTOCOL_LEVEL = "mqtt.version"  # set_attr key: the CONNECT's protocol level (5 adds properties)
MAX_BUFFER = 8192  # parser_buf capacity: a packet that cannot fit is given up on
PACKET_TYPES = ("Reserved", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
                "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH")
VERSIONS = {3: "3.1", 4: "3.1.1", 5: "5.0"}
PROTOCOL_NAMES = (b"MQTT", b"MQIsdp")
CONNECT, CONNACK, PUBLISH, SUBSCRIBE, UNSUBSCRIBE = 1, 2, 3, 8, 10


class _Short(Exception):
    """A read ran past the end of the data (Arkime's BSB error state)."""


class _BadVarint(Exception):
    """A remaining length longer than four bytes."""


class _Reader:
    """Big-endian cursor over `data[pos:end]` that raises _Short instead of overrunning."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data, pos=0, end=None):
        self.data, self.pos = data, pos
        self.end = len(data) if end is None else end

    @property
    def remaining(self):
        return self.end - self.pos

    def take(self, n):
        if n > self.end - self.pos:
            raise _Short
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return int.from_bytes(self.take(2), "big")

    def varint(self):
        """MQTT's variable byte integer: 7 bits a byte, least significant first, at most 4 bytes."""
        value = 0
        for shift in (0, 7, 14, 21):
            byte = self.u8()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise _BadVarint


def _text(raw):
    return raw.decode("utf-8", "replace")


def _connect(session, body):
    name = body.take(body.u16())
    if name not in PROTOCOL_NAMES:
        return
    level = body.u8()
    arkime_session.add_string(session, VERSION, VERSIONS.get(level, "unknown"))
    arkime_session.set_attr(session, PROTOCOL_LEVEL, level)
    flags = body.u8()
    has_will = flags & 0x04
    if has_will:
        arkime_session.add_string(session, FLAGS, "hasWill")
        if (flags >> 3) & 3 <= 2:
            arkime_session.add_int(session, QOS, (flags >> 3) & 3)
        if flags & 0x20:
            arkime_session.add_string(session, FLAGS, "willRetain")
    if flags & 0x02:
        arkime_session.add_string(session, FLAGS, "cleanSession")
    if flags & 0x40:
        arkime_session.add_string(session, FLAGS, "hasPassword")
    body.take(2)  # keep alive
    if level == 5:
        body.take(body.varint())  # properties
    client_id = body.take(body.u16())
    if client_id:
        arkime_session.add_string(session, CLIENT_ID, _text(client_id))
    if has_will:
        if level == 5:
            body.take(body.varint())  # will properties
        will_topic = body.take(body.u16())
        if will_topic:
            arkime_session.add_string(session, WILL_TOPIC, _text(will_topic))
        body.take(body.u16())  # will message
    if flags & 0x80:
        user = body.take(body.u16())
        if user:
            arkime_session.add_string(session, USER, _text(user).lower())


def _topic_filters(session, body, with_options):
    """SUBSCRIBE entries carry an options byte after each filter; UNSUBSCRIBE ones do not."""
    body.take(2)  # packet identifier
    if arkime_session.get_attr(session, PROTOCOL_LEVEL) == 5:
        body.take(body.varint())  # properties
    while body.remaining > 2:
        topic = body.take(body.u16())
        if topic:
            arkime_session.add_string(session, TOPIC, _text(topic))
        if with_options:
            body.take(1)


def _body(session, packet_type, body):
    """Fields of one whole non-PUBLISH packet; a short packet keeps what was read before the cut."""
    try:
        if packet_type == CONNECT:
            _connect(session, body)
        elif packet_type == CONNACK and body.remaining >= 2:
            body.take(1)  # acknowledge flags
            arkime_session.add_int(session, CONNACK_CODE, body.u8())
        elif packet_type in (SUBSCRIBE, UNSUBSCRIBE):
            _topic_filters(session, body, packet_type == SUBSCRIBE)
    except (_Short, _BadVarint):
        pass


def _publish(session, reader, flags, remaining):
    """The offset just past this PUBLISH, None when its header is not all here, -1 if malformed."""
    qos = (flags >> 1) & 3
    if reader.remaining < 2:
        return None
    body_start = reader.pos
    header_needed = 2 + (reader.data[body_start] << 8 | reader.data[body_start + 1]) + (2 if qos else 0)
    if header_needed > remaining or header_needed > MAX_BUFFER:
        return -1
    if reader.remaining < header_needed:
        return None
    topic = reader.take(reader.u16())
    if topic:
        arkime_session.add_string(session, TOPIC, _text(topic))
    if qos <= 2:
        arkime_session.add_int(session, QOS, qos)
    return body_start + remaining


def _give_up(session, tag):
    arkime_session.add_tag(session, tag)
    return -1


def parse(session, pb, buf, which):
    data = bytes(buf)
    full = len(data) >= MAX_BUFFER  # bytes past the cap were dropped: a waiting packet never completes
    pos = 0
    while len(data) - pos >= 2:
        reader = _Reader(data, pos)
        first = reader.u8()
        packet_type, flags = first >> 4, first & 0x0F
        try:
            remaining = reader.varint()
        except _Short:
            break
        except _BadVarint:
            return _give_up(session, "mqtt:bad-varint")
        arkime_session.add_string(session, TYPE, PACKET_TYPES[packet_type])
        if packet_type == PUBLISH:
            end = _publish(session, reader, flags, remaining)
            if end is None:
                if full:
                    return _give_up(session, "mqtt:message-too-long")
                break
            if end < 0:
                return _give_up(session, "mqtt:bad-publish")
            pos = end  # may lie beyond the buffer: parser_buf_skip covers the rest of the payload
            continue
        if remaining > MAX_BUFFER:
            return _give_up(session, "mqtt:message-too-long")
        if remaining > reader.remaining:
            if full:
                return _give_up(session, "mqtt:message-too-long")
            break
        _body(session, packet_type, _Reader(data, reader.pos, reader.pos + remaining))
        pos = reader.pos + remaining
    arkime_session.parser_buf_skip(pb, which, pos)
    return 0


def _is_connect(head):
    """A CONNECT fixed header followed by the protocol name MQTT (3.1.1, 5) or MQIsdp (3.1)."""
    reader = _Reader(head, 1)
    try:
        reader.varint()
        return reader.take(reader.u16()) in PROTOCOL_NAMES
    except (_Short, _BadVarint):
        return False


def classify(session, data, length, which):
    if arkime_session.has_protocol(session, "mqtt") or length < 10:
        return
    if _is_connect(bytes(data[:13])):
        arkime_session.add_protocol(session, "mqtt")
        arkime_session.register_parser_buf(session, parse)


arkime.register_tcp_classifier("mqtt", 0, b"\x10", classify)
