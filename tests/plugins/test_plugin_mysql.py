"""plugins/mysql.py: Arkime's own MySQL captures, and handshakes built from the protocol docs."""
from __future__ import annotations

from functools import partial

import pytest
from plugin_testlib import PLUGINS, claim_and_group, conversation_record, ours_and_expected

PLUGIN = PLUGINS / "mysql.py"


@pytest.mark.parametrize("capture", ["mysql-allow", "mysql-deny", "mysql-tls", "no-syn-ack", "arkime_synthetic"])
def test_fields_match_arkime_on_its_captures(shared_testdata, capture):
    ours, expected = ours_and_expected(shared_testdata, capture, PLUGIN, claim_and_group("mysql"))
    assert ours == expected


conversation = partial(conversation_record, plugins=(PLUGIN,), server_port=3306)


def packet(sequence_id, payload):
    """A MySQL packet: 3-byte little-endian payload length, sequence id, payload."""
    return len(payload).to_bytes(3, "little") + bytes([sequence_id]) + payload


CLIENT_PROTOCOL_41, CLIENT_SSL, CLIENT_SECURE_CONNECTION, CLIENT_PLUGIN_AUTH = 0x200, 0x800, 0x8000, 0x80000


def greeting(version=b"8.0.36"):
    """Protocol::HandshakeV10."""
    capabilities = CLIENT_PROTOCOL_41 | CLIENT_SSL | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH
    return packet(0, b"\x0a" + version + b"\x00" + (7).to_bytes(4, "little") + b"abcdefgh\x00"
                  + (capabilities & 0xFFFF).to_bytes(2, "little") + b"\xff" + b"\x02\x00"
                  + (capabilities >> 16).to_bytes(2, "little") + b"\x15" + bytes(10) + b"ijklmnopqrst\x00"
                  + b"caching_sha2_password\x00")


def login(user, ssl=False):
    """Protocol::HandshakeResponse41 (or, with ssl, the SSLRequest that precedes TLS)."""
    capabilities = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH | (CLIENT_SSL if ssl else 0)
    fixed = capabilities.to_bytes(4, "little") + (1 << 24).to_bytes(4, "little") + b"\xff" + bytes(23)
    if ssl:
        return packet(1, fixed)
    return packet(1, fixed + user + b"\x00" + b"\x14" + bytes(range(20)) + b"caching_sha2_password\x00")


def test_login_fields(tmp_path):
    ok = packet(2, b"\x00\x00\x00\x02\x00\x00\x00")
    record = conversation(tmp_path, [(1, greeting()), (0, login(b"Admin")), (1, ok)])
    assert "mysql" in record["protocol"]
    assert record["mysql"] == {"version": ["8.0.36"], "user": ["admin"]}  # lower-cased as in Arkime


def test_ssl_login_has_the_version_but_no_user(tmp_path):
    client_hello = bytes.fromhex("16030100a5010000a10303") + bytes(160)
    record = conversation(tmp_path, [(1, greeting(b"5.7.16")), (0, login(b"", ssl=True)), (0, client_hello)])
    assert record["mysql"] == {"version": ["5.7.16"]}


@pytest.mark.parametrize("segments", [
    [(1, greeting(b"8.0\x01bad")), (0, login(b"admin"))],  # version not printable
    [(1, greeting()), (0, login(b"ad\x07min"))],  # user name not printable
    [(1, greeting()), (0, packet(9, bytes(40)))],  # not the login's sequence id
    [(0, greeting()), (1, login(b"admin"))],  # the greeting must come from the server
])
def test_other_exchanges_are_not_mysql(tmp_path, segments):
    record = conversation(tmp_path, segments)
    assert "mysql" not in record["protocol"] and "mysql" not in record
