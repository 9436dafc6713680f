"""plugins/postgresql.py: Arkime's own PostgreSQL captures, and startup packets built from the protocol docs."""
from __future__ import annotations

from functools import partial

import pytest
from plugin_testlib import PLUGINS, claim_and_group, conversation_record, ours_and_expected

PLUGIN = PLUGINS / "postgresql.py"


@pytest.mark.parametrize("capture", ["postgres-good", "postgres-badpass", "postgres-no-sslrequest", "arkime_synthetic"])
def test_fields_match_arkime_on_its_captures(shared_testdata, capture):
    ours, expected = ours_and_expected(shared_testdata, capture, PLUGIN, claim_and_group("postgresql"))
    assert ours == expected


conversation = partial(conversation_record, plugins=(PLUGIN,), server_port=5432)


def startup(**parameters):
    """StartupMessage (protocol 3.0): Int32 length, Int32 196608, name/value C strings, a final NUL."""
    body = (196608).to_bytes(4, "big") + b"".join(
        k.encode() + b"\x00" + v.encode() + b"\x00" for k, v in parameters.items()) + b"\x00"
    return (len(body) + 4).to_bytes(4, "big") + body


SSL_REQUEST = (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")
AUTH_OK = b"R" + (8).to_bytes(4, "big") + (0).to_bytes(4, "big")


def test_startup_message_fields(tmp_path):
    record = conversation(tmp_path, [(0, startup(user="Alice", database="shop", application_name="psql",
                                                 client_encoding="UTF8")), (1, AUTH_OK)])
    assert "postgresql" in record["protocol"]
    assert record["postgresql"] == {"user": ["Alice"], "db": ["shop"], "app": ["psql"]}


def test_ssl_refused_then_startup(tmp_path):
    record = conversation(tmp_path, [(0, SSL_REQUEST), (1, b"N"), (0, startup(user="bob", database="bob")),
                                     (1, AUTH_OK)])
    assert record["postgresql"] == {"user": ["bob"], "db": ["bob"]}


def test_ssl_accepted_claims_the_session_without_fields(tmp_path):
    client_hello = bytes.fromhex("16030100a5010000a10303") + bytes(160)
    record = conversation(tmp_path, [(0, SSL_REQUEST), (1, b"S"), (0, client_hello)])
    assert "postgresql" in record["protocol"] and "postgresql" not in record


def test_startup_without_user_is_not_claimed(tmp_path):
    # Arkime claims the session on the user parameter (or an SSLRequest), not on the shape alone
    record = conversation(tmp_path, [(0, startup(database="shop"))])
    assert "postgresql" not in record["protocol"]
    assert record["postgresql"] == {"db": ["shop"]}


@pytest.mark.parametrize("payload", [
    (20).to_bytes(4, "big") + (131072).to_bytes(4, "big") + b"user\x00x\x00\x00" + bytes(3),  # protocol 2
    b"\x00\x00\x00\x00binary junk that starts with zeros",
])
def test_other_payloads_are_not_postgresql(tmp_path, payload):
    record = conversation(tmp_path, [(0, payload)])
    assert "postgresql" not in record["protocol"] and "postgresql" not in record
