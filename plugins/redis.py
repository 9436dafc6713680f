"""Redis (RESP) classifier and command extractor, written only with the Arkime API.

Classifies TCP sessions whose first client payload is a RESP array (`*<n>\\r\\n$`),
or that go to port 6379, as `redis`, and records each command name in the
`redis.command` field. A buffered parser (register_parser_buf) is used because
commands may be split across segments; argument values are never kept: they
are stepped over with parser_buf_skip, so a multi-megabyte SET costs nothing.
"""
import arkime
import arkime_session

COMMAND = arkime.field_define(
    "redis.command", "kind:uptermfield;db:redis.command;count:true;help:Redis command names")
PENDING = "redis.pending"  # set_attr key: arguments of the current command still to skip
MAX_ARGS = 1 << 20


def _line(data, start):
    """The CRLF-terminated line at `start` and the offset after it, or None if incomplete."""
    end = data.find(b"\r\n", start)
    if end < 0:
        return None
    return data[start:end], end + 2


def _bulk_len(header):
    if header[:1] != b"$" or not header[1:].isdigit():
        raise ValueError(header)
    return int(header[1:])


def parse(session, pb, buf, which):
    if which == 1:  # replies are not parsed; drop them
        arkime_session.parser_buf_del(pb, which, len(buf))
        return 0
    data = bytes(buf)
    pos = 0
    pending = arkime_session.get_attr(session, PENDING) or 0
    try:
        while pos < len(data):
            if pending:
                got = _line(data, pos)
                if got is None:
                    break
                header, body = got
                pos = body + _bulk_len(header) + 2  # may lie beyond the buffer: skip covers it
                pending -= 1
                if pos > len(data):
                    break
                continue
            got = _line(data, pos)
            if got is None:
                break
            header, first = got
            if header[:1] != b"*" or not header[1:].isdigit():
                raise ValueError(header)
            count = int(header[1:])
            if not 0 < count <= MAX_ARGS:
                raise ValueError(header)
            got = _line(data, first)
            if got is None:
                break
            name_len = _bulk_len(got[0])
            end = got[1] + name_len
            if end + 2 > len(data):
                break  # command name incomplete: wait for more
            arkime_session.add_string(session, COMMAND, data[got[1]:end].decode("latin-1").upper())
            pos = end + 2
            pending = count - 1
    except ValueError:
        arkime_session.add_tag(session, "redis:bad-resp")
        return -1
    if pos == 0 and len(data) >= 8192:
        arkime_session.add_tag(session, "redis:line-too-long")
        return -1
    arkime_session.parser_buf_skip(pb, which, pos)
    arkime_session.set_attr(session, PENDING, pending)
    return 0


def _looks_like_resp(head):
    count, sep, rest = head.partition(b"\r\n")
    return count[:1] == b"*" and count[1:].isdigit() and bool(sep) and rest[:1] == b"$"


def classify(session, data, length, which):
    if which != 0 or arkime_session.has_protocol(session, "redis"):
        return
    if _looks_like_resp(bytes(data[:16])):
        arkime_session.add_protocol(session, "redis")
        arkime_session.register_parser_buf(session, parse)


# Two names: registrations are deduped by "<name>:<callback name>". The port rule
# lets the kernel pick port-6379 flows cheaply; the content check decides.
arkime.register_tcp_classifier("redis", 0, b"*", classify)
arkime.register_port_classifier("redis-port", 6379, arkime.PORT_TCP_DST, classify)
