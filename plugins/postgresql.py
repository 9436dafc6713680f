"""PostgreSQL classifier and startup-message extractor, written only with the Arkime API.

A port of Arkime's capture/parsers/postgresql.c with the same fields. A TCP
session whose first payload in some direction starts with three zero bytes and
is an SSLRequest or looks like a protocol-3 StartupMessage gets a parser for
that direction. The session becomes `postgresql` on an SSLRequest or on a
StartupMessage naming a user; the StartupMessage's user, database and
application_name parameters fill postgresql.user/db/app. The parser stops
after the StartupMessage (or the first thing that is not one).
"""
import arkime
import arkime_session

USER = arkime.field_define(
    "postgresql.user", "kind:termfield;db:postgresql.user;category:user;help:Postgresql user name")
DATABASE = arkime.field_define("postgresql.db", "kind:termfield;db:postgresql.db;help:Postgresql database")
APPLICATION = arkime.field_define("postgresql.app", "kind:termfield;db:postgresql.app;help:Postgresql application")

DIRECTION = "postgresql.which"  # set_attr key: the direction that sent the startup packet
SSL_REQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"  # length 8, code 80877103
MIN_STARTUP_LEN = 16
PARAMETERS = {b"user": USER, b"database": DATABASE, b"application_name": APPLICATION}


def _parameters(data, pos):
    """The NUL-terminated key/value pairs from `pos` up to the empty key that ends them."""
    while pos < len(data) and data[pos] != 0:
        key_end = data.find(b"\x00", pos)
        value_end = data.find(b"\x00", key_end + 1) if key_end >= 0 else -1
        if value_end < 0:
            return
        yield data[pos:key_end], data[key_end + 1:value_end]
        pos = value_end + 1


def parse(session, data, length, which):
    if which != arkime_session.get_attr(session, DIRECTION):
        return 0
    data = bytes(data)
    if data == SSL_REQUEST:
        arkime_session.add_protocol(session, "postgresql")
        return 0  # the StartupMessage (or TLS) follows
    if length < 8:
        return -1
    declared = int.from_bytes(data[:4], "big")
    if declared > length or declared < MIN_STARTUP_LEN or data[4:6] != b"\x00\x03":
        return -1
    for key, value in _parameters(data, 8):
        field = PARAMETERS.get(key)
        if field is None:
            continue
        arkime_session.add_string(session, field, value.decode("utf-8", "replace"))
        if field == USER:
            arkime_session.add_protocol(session, "postgresql")
    return -1


def classify(session, data, length, which):
    if arkime_session.has_protocol(session, "postgresql"):
        return
    head = bytes(data[:8])
    ssl_request = length == 8 and head[3:] == SSL_REQUEST[3:]
    startup = length > 8 and head[3] <= length and head[4:7] == b"\x00\x03\x00"
    if ssl_request or startup:
        arkime_session.set_attr(session, DIRECTION, which)
        arkime_session.register_parser(session, parse)


arkime.register_tcp_classifier("postgresql", 0, b"\x00\x00\x00", classify)
