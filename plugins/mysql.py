"""MySQL classifier and login extractor, written only with the Arkime API.

A port of Arkime's capture/parsers/mysql.c with the same fields. A TCP
session whose server speaks first with a protocol-10 handshake (sequence 0)
carrying a printable version string gets a parser for the client's reply; a
well-formed HandshakeResponse makes it `mysql` and adds the server version
(mysql.ver) and the lower-cased login name (mysql.user).
"""
import arkime
import arkime_session

USER = arkime.field_define("mysql.user", "kind:lotermfield;db:mysql.user;category:user;help:Mysql user name")
VERSION = arkime.field_define("mysql.ver", "kind:termfield;db:mysql.version;help:Mysql server version string")

SERVER_VERSION = "mysql.version"  # set_attr key: version from the server greeting, until the login
SSL = "mysql.ssl"  # set_attr key: the client asked for TLS, so its next packet is a ClientHello
VERSION_OFFSET = 5  # 3-byte length, sequence id, protocol version 10
USER_OFFSET = 36  # header, capabilities, max packet size, charset, 23 reserved bytes
CLIENT_SSL = 0x08  # CLIENT_SSL (0x0800) in the second capability byte


def _printable_run(data, start):
    """End of the NUL-terminated printable ASCII text at `start`, or None if a byte is not printable."""
    for pos in range(start, len(data)):
        byte = data[pos]
        if byte == 0:
            return pos
        if not 0x20 <= byte <= 0x7E:
            return None
    return max(start, len(data))  # unterminated: the text runs to the end (empty when start is past it)


def parse(session, data, length, which):
    if which != 0:
        return 0
    if arkime_session.get_attr(session, SSL):
        # Arkime re-runs its classifiers on this ClientHello; the Python API cannot.
        return -1
    data = bytes(data)
    if (length < 35 and length != 8) or data[1] != 0 or data[2] != 0 or data[3] > 2:
        return -1
    end = _printable_run(data, USER_OFFSET)
    if end is None:
        return -1
    arkime_session.add_protocol(session, "mysql")
    arkime_session.add_string(session, VERSION, arkime_session.get_attr(session, SERVER_VERSION))
    if end > USER_OFFSET:
        arkime_session.add_string(session, USER, data[USER_OFFSET:end].lower().decode("ascii"))
    if data[5] & CLIENT_SSL:
        arkime_session.set_attr(session, SSL, True)
        return 0
    return -1


def classify(session, data, length, which):
    if which != 1 or arkime_session.has_protocol(session, "mysql"):
        return
    data = bytes(data)
    end = _printable_run(data, VERSION_OFFSET)
    if end is None or end in (len(data), VERSION_OFFSET):
        return  # not printable, not terminated, or empty
    arkime_session.set_attr(session, SERVER_VERSION, data[VERSION_OFFSET:end].decode("ascii"))
    arkime_session.register_parser(session, parse)


arkime.register_tcp_classifier("mysql", 1, b"\x00\x00\x00\x0a", classify)
