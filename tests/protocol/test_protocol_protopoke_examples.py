"""ProtoPoke's own example definitions load unchanged and decode frames built here."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from sensor.flows.state import Direction
from sensor.models import Frame
from sensor.protocol import DefinitionDecoder, load_definition_file

EXAMPLES = Path(__file__).resolve().parents[2] / ".." / "shared" / "testdata" / "protopoke-protocols"
pytestmark = pytest.mark.skipif(
    not EXAMPLES.is_dir(), reason=f"ProtoPoke example definitions not found at {EXAMPLES} (../shared/testdata is absent)"
)
C2S, S2C = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT


@pytest.fixture(scope="module")
def chat():
    return DefinitionDecoder(load_definition_file(EXAMPLES / "chat.proto.yaml"))


@pytest.fixture(scope="module")
def dns():
    return DefinitionDecoder(load_definition_file(EXAMPLES / "dns.proto.yaml"))


@pytest.fixture(scope="module")
def pwn3():
    return DefinitionDecoder(load_definition_file(EXAMPLES / "pwn3_gs.proto.yaml"))


def decode(decoder, data, direction=C2S, seq=1):
    return decoder.decode(Frame.create("s", direction, data, seq))


def children(parsed_field):
    return [(c.name, c.value) for c in parsed_field.children]


# -- chat -------------------------------------------------------------------


def test_chat_banner_is_the_first_server_frame(chat):
    message = decode(chat, b"ChatServer v2 ready", S2C, seq=0)
    assert (message.protocol_name, message.message_type) == ("ChatProtocol", "ServerBanner")
    assert message.as_dict() == {"banner": "ChatServer v2 ready"}
    # not the first server frame: no magic matches 'C', so the catch-all takes it
    later = decode(chat, b"ChatServer v2 ready", S2C, seq=1)
    assert later.message_type == "Unknown" and later.as_dict() == {"raw": b"ChatServer v2 ready"}


def test_chat_login_request(chat):
    user, password = "zoë".encode(), b"s3cret"
    data = struct.pack(">BH", 1, len(user)) + user + struct.pack(">H", len(password)) + password
    message = decode(chat, data)
    assert message.message_type == "LoginRequest" and message.error is None
    assert message.as_dict() == {"opcode": 1, "username_len": 4, "username": "zoë", "password_len": 6, "password": password}
    assert message.field_by_name("password").display_value == password.hex(" ").upper()
    assert message.field_by_name("opcode").display_value == "0x01"
    assert message.display_name == f"[{len(data)}B] LoginRequest"
    # LoginRequest is client_to_server only: from the server the catch-all wins
    assert decode(chat, data, S2C).message_type == "Unknown"


def test_chat_login_response_enum_and_token(chat):
    token = bytes(range(16))
    message = decode(chat, struct.pack(">BB", 2, 1) + token, S2C)
    status = message.field_by_name("status")
    assert (message.message_type, status.value, status.display_hint, status.display_value) == ("LoginResponse", 1, "enum", "Invalid credentials")
    assert message.field_by_name("session_token").value == token
    unknown_status = decode(chat, struct.pack(">BB", 2, 9) + token, S2C).field_by_name("status")
    assert unknown_status.display_value == "<unknown: 0x9>"


def test_chat_tlv_message(chat):
    attrs = (
        struct.pack(">HHI", 1, 4, 7)
        + struct.pack(">HH", 2, 7) + b"general"
        + struct.pack(">HH", 3, 2) + b"hi"
        + struct.pack(">HHQ", 4, 8, 1_700_000_000)
        + struct.pack(">HH", 5, 3) + b"\x00\x01\x02"
    )
    data = struct.pack(">BI", 0x10, 5 + len(attrs)) + attrs + b"TRAILER"
    for direction in (C2S, S2C):
        message = decode(chat, data, direction)
        assert message.message_type == "Message" and message.error is None
        block = message.field_by_name("attributes")
        assert block.size == len(attrs) and block.display_value == "(5 TLV entries)"
        assert children(block) == [
            ("ChannelID", 7),
            ("ChannelName", "general"),
            ("MessageText", "hi"),
            ("Timestamp", 1_700_000_000),
            ("Attachment", b"\x00\x01\x02"),
        ]
        assert block.children[4].display_value == "[0x0005] 00 01 02"


def test_chat_user_list_with_bitfield_flags(chat):
    users = [(1001, b"alice", 0b001), (1002, b"bob", 0b110)]
    data = struct.pack(">BH", 0x20, len(users)) + b"".join(
        struct.pack(">IB", uid, len(name)) + name + bytes([flags]) for uid, name, flags in users
    )
    message = decode(chat, data, S2C)
    assert message.message_type == "UserList" and message.error is None
    items = message.field_by_name("users").children
    assert [(c.name, c.value) for c in items[0].children[:3]] == [("user_id", 1001), ("name_len", 5), ("name", "alice")]
    assert [children(item.children[3]) for item in items] == [
        [("online", 1), ("away", 0), ("admin", 0)],
        [("online", 0), ("away", 1), ("admin", 1)],
    ]


def test_chat_disconnect_and_truncation(chat):
    assert decode(chat, b"\xff\x03bye", S2C).as_dict() == {"opcode": 255, "reason_len": 3, "reason": "bye"}
    cut = decode(chat, b"\xff\x09by")
    assert cut.message_type == "Disconnect"
    assert [f.name for f in cut.fields] == ["opcode", "reason_len"]
    assert cut.error == "Truncated data parsing field 'reason': need 9 bytes at offset 2, but frame is only 4 bytes"


# -- dns --------------------------------------------------------------------

QNAME = b"\x03www\x07example\x03com\x00"


def dns_header(ident, flags, qd=1, an=0, ns=0, ar=0):
    return struct.pack(">HHHHHH", ident, flags, qd, an, ns, ar)


def test_dns_recursive_query(dns):
    data = dns_header(0xBEEF, 0x0100) + QNAME + struct.pack(">HH", 28, 1)
    message = decode(dns, data)
    assert message.message_type == "QueryRD" and message.error is None
    assert message.field_by_name("id").display_value == "0xBEEF"
    flags = {c.name: c.value for c in message.field_by_name("flags").children}
    assert flags["rd"] == 1 and flags["qr"] == 0 and sum(flags.values()) == 1
    (question,) = message.field_by_name("questions").children
    assert [(c.name, c.value, c.display_value) for c in question.children] == [
        ("qname", "\x03www\x07example\x03com", "\x03www\x07example\x03com"),
        ("qtype", 28, "AAAA (IPv6 address)"),
        ("qclass", 1, "IN (Internet)"),
    ]
    assert question.children[0].size == len(QNAME)
    assert message.field_by_name("extra_sections").value == b""


def test_dns_plain_query(dns):
    assert decode(dns, dns_header(1, 0x0000) + QNAME + struct.pack(">HH", 1, 1)).message_type == "Query"


def test_dns_response_with_answers(dns):
    answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 300, 4) + bytes([8, 8, 4, 4])
    opt = b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00"
    data = dns_header(0x1234, 0x8180, qd=1, an=1, ar=1) + QNAME + struct.pack(">HH", 1, 1) + answer + opt
    message = decode(dns, data, S2C)
    assert message.message_type == "ResponseRA" and message.error is None
    (record,) = message.field_by_name("answers").children
    values = {c.name: (c.value, c.display_value) for c in record.children}
    assert values["name_ptr"] == (b"\xc0\x0c", "C0 0C")
    assert values["rrtype"] == (1, "A (IPv4 address)")
    assert values["ttl"] == (300, "300")
    assert values["rdata"] == (bytes([8, 8, 4, 4]), "08 08 04 04")
    assert message.field_by_name("extra_sections").value == opt
    assert decode(dns, dns_header(2, 0x8000, qd=0), S2C).message_type == "Response"


def test_dns_nxdomain_comes_before_response_ra(dns):
    data = dns_header(7, 0x8183) + QNAME + struct.pack(">HH", 1, 1)
    message = decode(dns, data, S2C)
    assert message.message_type == "NXDOMAIN"
    assert {c.name: c.value for c in message.field_by_name("flags").children}["rcode_0"] == 1


def test_dns_catch_all(dns):
    message = decode(dns, dns_header(9, 0x2800, qd=0), C2S)  # UPDATE opcode
    assert message.message_type == "Unknown" and message.error is None
    assert message.as_dict()["flags"] == 0x2800


# -- pwn3 -------------------------------------------------------------------


def test_pwn3_loads_bare_little_endian_definition():
    definition = load_definition_file(EXAMPLES / "pwn3_gs.proto.yaml")
    assert (definition.name, definition.endianness) == ("Pwn Adventure 3 - Game Server", "little")
    assert definition.messages[-1].name == "Unknown"


def test_pwn3_authentication(pwn3):
    data = b"\x02\x00" + bytes([0xAA, 0xBB]) + struct.pack("<H", 5) + b"hacker"
    message = decode(pwn3, data)
    assert message.message_type == "Authentication"
    assert message.as_dict() == {"opcode": b"\x02\x00", "unknown_1": 0xAA, "unknown_2": 0xBB, "username_len": 5, "username": "hacke"}
    assert message.field_by_name("unknown_1").display_value == "0xAA"


def test_pwn3_update_location(pwn3):
    data = b"mv" + struct.pack("<fffHHHBB", 1.5, -2.0, 100.25, 1, 2, 3, 0x7F, 0x81)
    message = decode(pwn3, data)
    assert message.message_type == "Update Location" and message.error is None
    values = message.as_dict()
    assert (values["pos_x"], values["pos_y"], values["pos_z"]) == (1.5, -2.0, 100.25)
    assert (values["dir_roll"], values["dir_yaw"], values["dir_pitch"]) == (1, 2, 3)
    assert message.field_by_name("move").display_value == "Forward"
    assert message.field_by_name("strafe").display_value == "Left"


def test_pwn3_fire_and_unknown(pwn3):
    data = b"*i" + struct.pack("<H", 4) + b"Bow!" + struct.pack("<III", 1, 2, 0xFFFFFFFF)
    message = decode(pwn3, data)
    assert message.message_type == "Fire"
    assert [message.as_dict()[k] for k in ("weapon", "vector_x", "vector_z")] == ["Bow!", 1, 0xFFFFFFFF]
    other = decode(pwn3, b"zz\x01\x02")
    assert other.message_type == "Unknown" and other.as_dict() == {"payload": b"zz\x01\x02"}
