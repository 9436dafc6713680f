"""HTTP/1.x classifier and parser, written only with the Arkime API (after Arkime's http.c).

A TCP session whose first payload in a direction starts with a request method
(Arkime registers every http_parser method name, without the trailing space)
or with `HTTP` becomes `http`. Each direction then runs its own message parser
that follows http_parser's rules: the first message fixes the direction as
requests or responses, bodies are delimited by Content-Length, chunked coding,
or (responses only) the end of the connection, so pipelined messages and bodies
split over any number of segments parse. A parse error stops that direction,
as in Arkime.

Fields use Arkime's expressions and db names (http.method, http.host,
http.uri = host + URL, http.path, http.key/value, http.statuscode,
http.clientVersion/serverVersion, requestHeader/responseHeader, body md5/sha256
and magic, cookies, auth, ...). Header tables and the "all headers" fields
follow the configuration Arkime's regression tests run with (HEADER_TABLES,
ALL_HEADERS, PARSE_QS_VALUE, PARSE_COOKIE_VALUE, MAX_REQ_BODY below).
Not possible through the Python API: `http.method-<M>` counters (plain JSON
ints), `http.xffIp` (ip fields cannot be set from Python), and duplicate
entries of the requestHeaderField/Value arrays (Python fields are sets).
"""
import binascii
import hashlib
import re

import arkime
import arkime_session


def _define(expr, db, kind, count=True):
    return arkime.field_define(expr, f"kind:{kind};db:{db}" + (";count:true" if count else ""))


HOST = _define("host.http", "http.host", "lotermfield")
URI = _define("http.uri", "http.uri", "termfield")
USER_AGENT = _define("http.user-agent", "http.useragent", "termfield")
METHOD = _define("http.method", "http.method", "termfield")
STATUS = _define("http.statuscode", "http.statuscode", "integer")
PATH = _define("http.uri.path", "http.path", "termfield")
QS_KEY = _define("http.uri.key", "http.key", "termfield")
QS_VALUE = _define("http.uri.value", "http.value", "termfield")
COOKIE_KEY = _define("http.cookie.key", "http.cookieKey", "termfield")
COOKIE_VALUE = _define("http.cookie.value", "http.cookieValue", "termfield")
VERSION = (_define("http.version.src", "http.clientVersion", "termfield"),
           _define("http.version.dst", "http.serverVersion", "termfield"))
HAS_HEADER = (_define("http.hasheader.src", "http.requestHeader", "lotermfield"),
              _define("http.hasheader.dst", "http.responseHeader", "lotermfield"))
HEADER_NAME = (_define("http.hasheader.src.field", "http.requestHeaderField", "termfield", False),
               _define("http.hasheader.dst.field", "http.responseHeaderField", "termfield", False))
HEADER_VALUE = (_define("http.hasheader.src.value", "http.requestHeaderValue", "termfield"),
                _define("http.hasheader.dst.value", "http.responseHeaderValue", "termfield"))
BODY_MD5 = _define("http.md5", "http.md5", "lotermfield")
BODY_SHA256 = _define("http.sha256", "http.sha256", "lotermfield")
BODY_MAGIC = _define("http.bodymagic", "http.bodyMagic", "termfield")
AUTH_USER = _define("http.user", "http.user", "termfield")
AUTH_TYPE = _define("http.authtype", "http.authType", "lotermfield")
REQUEST_BODY = _define("http.reqbody", "http.requestBody", "termfield", False)

# Arkime's header tables: request side (the side that sent the URL), response side.
# Built-ins plus [headers-http-request]/[headers-http-response] of Arkime's test config.
HEADER_TABLES = (
    {b"user-agent": USER_AGENT, b"host": HOST, b"x-forwarded-for": None,  # http.xffIp: an ip field
     b"referer": _define("http.referer", "http.request-referer", "termfield"),
     b"authorization": _define("http.authorization", "http.request-authorization", "termfield")},
    {b"location": _define("http.location", "http.response-location", "termfield", False)},
)
ALL_HEADERS = True  # parseHTTPHeaderRequestAll / parseHTTPHeaderResponseAll
PARSE_QS_VALUE = True  # parseQSValue
PARSE_COOKIE_VALUE = True  # parseCookieValue
MAX_REQ_BODY = 2000  # maxReqBody: first body piece of a request up to this size is kept
MAX_URL_LENGTH = 4096
MAX_HEADER_BYTES = 80 * 1024  # http_parser's HTTP_MAX_HEADER_SIZE
HEADER_NAME_MAX = 39  # Arkime keeps header names in a 40-byte buffer
STATE = "http.state"  # set_attr key

# http_parser's method table (the names Arkime registers as classifiers).
METHODS = ("DELETE", "GET", "HEAD", "POST", "PUT", "CONNECT", "OPTIONS", "TRACE", "COPY",
           "LOCK", "MKCOL", "MOVE", "PROPFIND", "PROPPATCH", "SEARCH", "UNLOCK", "BIND",
           "REBIND", "UNBIND", "ACL", "REPORT", "MKACTIVITY", "CHECKOUT", "MERGE", "M-SEARCH",
           "NOTIFY", "SUBSCRIBE", "UNSUBSCRIBE", "PATCH", "PURGE", "MKCALENDAR", "LINK",
           "UNLINK", "SOURCE", "PRI")  # PRI: the HTTP/2 preface, which Arkime parses as HTTP/1
METHOD_SET = frozenset(m.encode() for m in METHODS)
REQUEST_LINE = re.compile(rb"([A-Z-]+) +([^ ]+)(?: +HTTP/(\d)\.(\d))? *$")
STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) +(\d{1,3})(?:[ \t].*)?$", re.S)
HEADER_NAME_BAD = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f()<>@,;:\\\"/\[\]?={}]")
HEX = re.compile(rb"[0-9a-fA-F]+")
PASSWORD_MARKERS = (b"password=", b"passwd=", b"pass=")

# Direction parser states.
# TUNNEL: after CONNECT or an upgrade the bytes belong to another protocol.
START, HEAD, BODY, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, TRAILER, BODY_EOF, TUNNEL, DEAD = range(10)
STOPPED = (TUNNEL, DEAD)


class ParseError(Exception):
    """The bytes break HTTP/1.x framing; Arkime stops parsing that direction."""


def _text(raw):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _add(session, field, raw):
    arkime_session.add_string(session, field, _text(raw.split(b"\0", 1)[0]))  # a C string


# -- Arkime's basic magic (magicMode=basic): a few signatures, no libmagic ------------
def _magic(d):
    """The MIME type Arkime's basic magic gives the first body bytes, or None.

    A (prefix, mime, longer_than) table plus the few signatures that need more."""
    n = len(d)
    if n < 5:
        return None
    c = d[0]
    if c == 0x00 and n > 10 and d[4:8] == b"ftyp":
        if d[8:10] in FTYP:
            return FTYP[d[8:10]]
    elif c == 0x1A and d.startswith(b"\x1a\x45\xdf\xa3"):
        if n > 8 and b"webm" in d[4:]:
            return "video/webm"
        if n > 12 and b"matroska" in d[4:]:
            return "video/x-matroska"
    elif c == 0x23 and d[1] == 0x21:  # "#!"
        for word, mime in SCRIPTS:
            if n > len(word) + 3 and word in d[3:]:
                return mime
        return "text/x-shellscript"
    elif c == 0x3C:  # "<"
        low = d[:16].lower()
        if low.startswith(b"<?xml"):
            return "image/svg+xml" if n > 9 and b"<svg" in d[5:] else "text/xml"
        for prefix, mime, longer in MARKUP:
            if low.startswith(prefix) and n > longer:
                return mime
    elif c == 0x7B and d[1] == 0x22 and d[2:3].isalpha():  # '{"x'
        return "application/json"
    elif c == 0x4F and n > 40 and d.startswith(b"OggS"):
        if d[28:36] == b"Speex   " or d[29:33] == b"FLAC" or d[28:35] == b"\x01vorbis":
            return "audio/ogg"
        if d[28:35] == b"\x80theora":
            return "video/ogg"
    elif c == 0x47 and n > 188 and d[188] == 0x47 and not d.startswith(b"GIF8"):
        return "video/mp2t"  # MPEG-TS: sync byte every 188 bytes
    for prefix, mime, longer in SIGNATURES:
        if d.startswith(prefix) and n > longer:
            return mime
    if n > 262 and d[257:262] == b"ustar":
        return "application/x-tar"
    if (n > 14 and b"document.write" in d) or (n > 12 and b"'use strict'" in d):
        return "text/javascript"
    return None


FTYP = {b"qt": "video/quicktime", b"3g": "video/3gpp"}
SCRIPTS = ((b"node", "application/javascript"), (b"perl", "text/x-perl"),
           (b"ruby", "text/x-ruby"), (b"python", "text/x-python"))
MARKUP = ((b"<!doctype html", "text/html", 14), (b"<!doctype svg", "text/svg+xml", 13),
          (b"<?php", "text/x-php", 5), (b"<? php", "text/x-php", 6), (b"<body", "text/html", 0),
          (b"<head", "text/html", 0), (b"<html", "text/html", 0), (b"<svg", "image/svg", 0))
SIGNATURES = (
    (b"\0\1\0\0\0", "application/x-font-ttf", 0), (b"\x1f\x8b", "application/x-gzip", 0),
    (b"\x1f\x9d", "application/x-compress", 0), (b"%PDF-", "application/pdf", 0),
    (b"8BPS", "image/vnd.adobe.photoshop", 0), (b"BM", "application/x-ms-bmp", 0),
    (b"BZh", "application/x-bzip2", 0), (b"CWS", "application/x-shockwave-flash", 0),
    (b"FLV\x01", "video/x-flv", 0), (b"GIF8", "image/gif", 0), (b"icns", "image/x-icns", 0),
    (b"ID3", "audio/mpeg", 0), (b"MZ", "application/x-dosexec", 0),
    (b"MSCF\0\0", "application/vnd.ms-cab-compressed", 6),
    (b"OTTO", "application/vnd.ms-opentype", 0), (b"PK\x03\x04", "application/zip", 0),
    (b"PK\x05\x06", "application/zip", 0),
    (b"PK\x07\x008PK", "application/zip", 7),  # Arkime's C literal "PK\007\008PK" is 7 bytes
    (b"RIFF", "audio/x-wav", 0), (b"Rar!\x1a", "application/x-rar", 0),
    (b"WAVE", "audio/x-wav", 0), (b"d8:announce", "application/x-bittorrent", 11),
    (b"wOFF", "application/font-woff", 0), (b"wOF2", "application/font-woff2", 0),
    (b"\x89PNG", "image/png", 0), (b"\xfd7zXZ", "application/x-xz", 5),
    (b"\xff\xd8\xff", "image/jpeg", 10), (b"\xed\xab\xee\xdb", "application/x-rpm", 10),
)


# -- session-level field extraction (Arkime's on_headers_complete) --------------------
def _unescape(raw):
    """g_uri_unescape_segment: %XX decoding; None for a bad escape or %00."""
    if b"%" not in raw:
        return raw
    out = bytearray()
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == 0x25:
            pair = raw[i + 1:i + 3]
            if len(pair) < 2 or not HEX.fullmatch(pair):
                return None
            value = int(pair, 16)
            if value == 0:
                return None
            out.append(value)
            i += 3
        else:
            out.append(ch)
            i += 1
    return bytes(out)


def _b64decode(raw):
    """g_base64_decode: characters outside the alphabet are skipped, padding ends it."""
    clean = re.sub(rb"[^A-Za-z0-9+/]", b"", raw.split(b"=", 1)[0])
    if len(clean) % 4 == 1:
        clean = clean[:-1]
    return binascii.a2b_base64(clean + b"=" * (-len(clean) % 4)) if clean else b""


def _add_qs(session, field, raw):
    decoded = _unescape(raw)
    _add(session, field, raw if decoded is None else decoded)


def add_query(session, query):
    """Keys and values of a query string, with Arkime's exact splitting rules."""
    start = 0
    field = QS_KEY
    for i, ch in enumerate(query):
        if ch == 0x26 or ch == 0x3D:  # '&' or '='
            if i != start and (PARSE_QS_VALUE or field == QS_KEY):
                _add_qs(session, field, query[start:i])
            start = i + 1
            field = QS_KEY if ch == 0x26 else QS_VALUE
    if PARSE_QS_VALUE and field == QS_VALUE and len(query) > start:
        _add_qs(session, field, query[start:])


def add_cookies(session, cookie):
    pos = 0
    while True:
        while pos < len(cookie) and cookie[pos] in b" \t\r\n\v\f":
            pos += 1
        equal = cookie.find(b"=", pos)
        if equal < 0:
            return
        _add(session, COOKIE_KEY, cookie[pos:equal])
        semi = cookie.find(b";", equal + 1)
        if PARSE_COOKIE_VALUE:
            v = equal + 1
            while v < len(cookie) and cookie[v] in b" \t\r\n\v\f":
                v += 1
            end = len(cookie) if semi < 0 else semi
            if v < len(cookie) and v != semi:
                _add(session, COOKIE_VALUE, cookie[v:end])
        if semi < 0:
            return
        pos = semi + 1


def add_authorization(session, auth):
    auth = auth.lstrip()
    space = auth.find(b" ")
    if space < 0:
        return
    arkime_session.add_string(session, AUTH_TYPE, _text(auth[:space]).lower())
    scheme = auth[:6].lower()
    if scheme.startswith(b"basic"):
        rest = auth[5:].lstrip()
        if rest.startswith(b"token="):
            return
        user = _b64decode(rest)
        _add(session, AUTH_USER, user.split(b":", 1)[0])
    elif scheme == b"digest":
        rest = auth[5:]
        at = rest.find(b"username")
        if at < 0:
            return
        rest = rest[at + 8:].lstrip()
        if not rest.startswith(b"="):
            return
        rest = rest[1:].lstrip()
        if rest.startswith(b'"'):
            end = rest.find(b'"', 1)
            _add(session, AUTH_USER, rest[1:] if end < 0 else rest[1:end])
        else:
            end = rest.find(b",")
            _add(session, AUTH_USER, rest if end < 0 else rest[:end])


class HttpState:
    """What Arkime's HTTPInfo_t shares between the two directions of a session."""

    __slots__ = ("dirs", "url", "url_which", "host", "cookie", "auth", "connect")

    def __init__(self):
        self.dirs = (Direction(0), Direction(1))
        self.connect = False  # a CONNECT request was seen: its 2xx answer opens a tunnel
        self.url = None  # bytearray while a request's URL waits for its headers
        self.url_which = 0
        self.host = None
        self.cookie = None
        self.auth = None

    def headers_complete(self, session, d):
        if d.status is None:
            arkime_session.add_string(session, METHOD, d.method.decode("ascii"))
        else:
            arkime_session.add_int(session, STATUS, d.status)
        arkime_session.add_string(session, VERSION[0 if d.status is None else 1], d.version)
        if self.url is not None and any(b < 32 or b >= 128 for b in self.url):  # C: signed char
            arkime_session.add_tag(session, "http:control-char")
        if self.cookie:
            add_cookies(session, bytes(self.cookie))
            self.cookie = None
        if self.auth:
            add_authorization(session, bytes(self.auth))
            self.auth = None
        host = bytes(self.host).lower() if self.host is not None else None
        url = bytes(self.url) if self.url is not None else None
        uri = None
        if url is not None and host is not None:
            _add(session, HOST, host.split(b":", 1)[0])
            path, question, query = url.partition(b"?")
            _add(session, PATH, path)
            if question:
                add_query(session, query)
            if url[:1] != b"/":
                found = url.find(host)
                uri = url if 0 <= found <= 8 else host + b";" + url
            else:
                uri = host + url
            self.url = self.host = None
        elif url is not None:
            uri = url
            self.url = None
        elif host is not None:
            _add(session, HOST, host.split(b":", 1)[0])
            self.host = None
        if uri is not None:
            if len(uri) > MAX_URL_LENGTH:
                uri = uri[:MAX_URL_LENGTH]
                arkime_session.add_tag(session, "http:url-truncated")
            _add(session, URI, uri)


class Direction:
    """One direction's http_parser: HTTP_BOTH until the first message fixes its type."""

    __slots__ = ("which", "state", "kind", "line", "head_bytes", "method", "status", "version",
                 "header", "content_length", "chunked", "upgrade", "conn_upgrade", "remaining",
                 "in_body", "md5", "sha256", "seen", "offset", "switch_at")

    def __init__(self, which):
        self.which = which
        self.seen = 0  # bytes fed before the current chunk
        self.offset = 0  # stream offset just past the line being handled
        self.switch_at = None  # stream offset where another protocol may start
        self.state = START
        self.kind = None  # b"req" or b"res" once the first message is seen
        self.line = bytearray()
        self.header = None  # [lower name, value bytearray] until the next line decides
        self.in_body = False
        self.md5 = self.sha256 = None
        self._reset()

    def _reset(self):
        self.head_bytes = 0
        self.method = None
        self.status = None
        self.version = None
        self.content_length = None
        self.chunked = False
        self.upgrade = False
        self.conn_upgrade = False
        self.remaining = 0

    # -- byte feeding ----------------------------------------------------------------
    def feed(self, session, st, data):
        try:
            self._feed(session, st, data)
        finally:
            self.seen += len(data)

    def _feed(self, session, st, data):
        pos = 0
        n = len(data)
        while pos < n and self.state not in STOPPED:
            state = self.state
            if state in (START, HEAD, CHUNK_SIZE, CHUNK_END, TRAILER):
                end = data.find(b"\n", pos)
                if state == START and not self.line:
                    while pos < n and data[pos] in b"\r\n":  # blank lines between messages
                        pos += 1
                    if pos == n:
                        return
                    end = data.find(b"\n", pos)
                stop = n if end < 0 else end + 1
                if state in (START, HEAD):
                    self.head_bytes += stop - pos
                if self.head_bytes > MAX_HEADER_BYTES or len(self.line) > MAX_HEADER_BYTES:
                    raise ParseError("header section or line over 80 KiB")
                self.line += data[pos:stop]
                pos = stop
                if end < 0:
                    return
                line = bytes(self.line[:-1])
                if line.endswith(b"\r"):
                    line = line[:-1]
                self.line.clear()
                self.offset = self.seen + pos
                self._line(session, st, line)
            elif state == BODY_EOF:
                self._body(session, st, data[pos:])
                return
            else:  # BODY or CHUNK_DATA
                take = min(self.remaining, n - pos)
                self._body(session, st, data[pos:pos + take])
                pos += take
                self.remaining -= take
                if self.remaining == 0:
                    if state == BODY:
                        self._message_complete(session)
                    else:
                        self.state = CHUNK_END

    def _line(self, session, st, line):
        state = self.state
        if state == START:
            self._start_line(session, st, line)
        elif state == HEAD:
            self._header_line(session, st, line)
        elif state == CHUNK_SIZE:
            m = HEX.match(line)
            if not m:
                raise ParseError("bad chunk size")
            self.remaining = int(m.group(), 16)
            self.state = CHUNK_DATA if self.remaining else TRAILER
        elif state == CHUNK_END:
            if line:
                raise ParseError("chunk data longer than its size")
            self.state = CHUNK_SIZE
        elif state == TRAILER and not line:
            self._message_complete(session)

    def _start_line(self, session, st, line):
        self._reset()
        self.in_body = False
        self.md5 = self.sha256 = None
        is_response = line.startswith(b"HT") and self.kind != b"req"
        if is_response:
            m = STATUS_LINE.match(line)
            if not m:
                raise ParseError("bad status line")
            self.kind = b"res"
            self.status = int(m.group(3))
            self.version = f"{int(m.group(1))}.{int(m.group(2))}"
        else:
            m = REQUEST_LINE.match(line)
            if not m or m.group(1) not in METHOD_SET or self.kind == b"res":
                raise ParseError("bad request line")
            self.kind = b"req"
            self.method = m.group(1)
            major, minor = (m.group(3), m.group(4)) if m.group(3) else (b"0", b"9")
            self.version = f"{int(major)}.{int(minor)}"
            if st.url is None:
                st.url = bytearray(m.group(2))
                st.url_which = self.which
            else:
                st.url += m.group(2)
        self.state = HEAD

    def _header_line(self, session, st, line):
        if line[:1] in (b" ", b"\t") and self.header is not None:
            self._header_value(st, line.lstrip(b" \t"))  # obs-fold: value continues
            return
        self._flush_header(session, st)
        if not line:
            self._headers_complete(session, st)
            return
        colon = line.find(b":")
        if colon <= 0 or HEADER_NAME_BAD.search(line, 0, colon):
            raise ParseError("bad header line")
        name = line[:colon].lower()
        value = line[colon + 1:].lstrip(b" \t")
        request_side = self.which == st.url_which
        arkime_session.add_string(session, HAS_HEADER[0 if request_side else 1],
                                  _text(name[:HEADER_NAME_MAX]))
        self.header = [name, bytearray()]
        self._framing_header(name, value)
        self._header_value(st, value)

    def _header_value(self, st, value):
        name, acc = self.header
        acc += value
        if self.kind == b"req" and self.method != b"DELETE":  # Arkime: `if (parser->method)`
            if name == b"host":
                st.host = bytearray(value) if st.host is None else st.host + value
            elif name == b"cookie":
                st.cookie = bytearray(value) if st.cookie is None else st.cookie + value
            elif name == b"authorization":
                st.auth = bytearray(value) if st.auth is None else st.auth + value

    def _flush_header(self, session, st):
        """A header's value is complete: store it in its table field, or the "all" fields."""
        if self.header is None:
            return
        name, value = self.header
        self.header = None
        side = 0 if self.which == st.url_which else 1
        field = HEADER_TABLES[side].get(name[:HEADER_NAME_MAX])
        if field is not None:
            _add(session, field, bytes(value).lstrip())
        elif ALL_HEADERS and name[:HEADER_NAME_MAX] not in HEADER_TABLES[side]:
            _add(session, HEADER_NAME[side], name[:HEADER_NAME_MAX])
            _add(session, HEADER_VALUE[side], bytes(value).lstrip().lower())

    def _framing_header(self, name, value):
        """The headers http_parser itself acts on."""
        if name == b"content-length":
            digits = value.rstrip(b" \t")
            if self.content_length is not None or not digits.isdigit():
                raise ParseError("bad or repeated Content-Length")
            self.content_length = int(digits)
        elif name == b"transfer-encoding":
            self.chunked = value.rstrip(b" \t").lower().split(b",")[-1].strip() == b"chunked"
        elif name == b"connection":
            self.conn_upgrade = b"upgrade" in value.lower()
        elif name == b"upgrade":
            self.upgrade = True

    def _headers_complete(self, session, st):
        if self.chunked and self.content_length is not None:
            raise ParseError("both chunked and Content-Length")
        st.headers_complete(session, self)
        if self.upgrade and self.conn_upgrade:
            upgrade = self.kind == b"req" or self.status == 101
        else:
            upgrade = self.method == b"CONNECT"
        if self.method == b"CONNECT":
            st.connect = True
        elif self.status is not None and st.connect and 200 <= self.status < 300:
            upgrade = True
        has_body = self.chunked or (self.content_length or 0) > 0
        if upgrade and (self.method == b"CONNECT" or not has_body):
            # Another protocol may follow: the caller reports these bytes consumed, so
            # the next chunk is classified afresh. A request asking to upgrade goes on
            # being parsed (the server may refuse); a tunnel or a 101 answer stops it.
            self._message_complete(session)
            self.switch_at = self.offset
            if self.method == b"CONNECT" or self.kind == b"res":
                self.state = TUNNEL
        elif self.chunked:
            self.state = CHUNK_SIZE
        elif self.content_length is not None:
            self.remaining = self.content_length
            if self.remaining:
                self.state = BODY
            else:
                self._message_complete(session)
        elif self.kind == b"req" or self.status // 100 == 1 or self.status in (204, 304):
            self._message_complete(session)
        else:
            self.state = BODY_EOF

    def _body(self, session, st, piece):
        if not piece:
            return
        if not self.in_body:
            self.in_body = True
            low = piece.lower()
            if any(m in low for m in PASSWORD_MARKERS):
                arkime_session.add_tag(session, "http:password")
            magic = _magic(piece)
            if magic:
                arkime_session.add_string(session, BODY_MAGIC, magic)
            if self.which == st.url_which and 0 < len(piece) <= MAX_REQ_BODY and b"\0" not in piece:
                try:  # Arkime keeps it only if g_utf8_validate accepts it (no NUL either)
                    arkime_session.add_string(session, REQUEST_BODY, piece.decode("utf-8"))
                except UnicodeDecodeError:
                    pass
            self.md5 = hashlib.md5()
            self.sha256 = hashlib.sha256()
        self.md5.update(piece)
        self.sha256.update(piece)

    def _message_complete(self, session):
        if self.in_body:
            arkime_session.add_string(session, BODY_MD5, self.md5.hexdigest())
            arkime_session.add_string(session, BODY_SHA256, self.sha256.hexdigest())
        self.in_body = False
        self.state = START

    def finish(self, session):
        """End of connection: a response delimited by close is complete now."""
        if self.state == BODY_EOF:
            self._message_complete(session)


def parse(session, data, length, which):
    st = arkime_session.get_attr(session, STATE)
    if st is None:
        return -1
    d = st.dirs[which & 1]
    if d.state in STOPPED:
        return -1 if all(x.state in STOPPED for x in st.dirs) else 0
    switch_at = d.switch_at
    try:
        d.feed(session, st, bytes(data))
    except ParseError:
        d.state = DEAD
    if d.switch_at != switch_at:
        # Every byte up to the protocol switch is HTTP: report it consumed, so the next
        # chunk of this direction is classified afresh (TLS after CONNECT, WebSocket after 101).
        return d.switch_at
    return 0


def pre_save(session, final):
    if not final:
        return
    st = arkime_session.get_attr(session, STATE)
    if st is not None:
        for d in st.dirs:
            d.finish(session)


def classify(session, data, length, which):
    if arkime_session.has_protocol(session, "http"):
        return
    arkime_session.add_protocol(session, "http")
    arkime_session.set_attr(session, STATE, HttpState())
    arkime_session.register_parser(session, parse)


# One registration per prefix: Arkime dedupes registrations by "<name>:<callback>".
for _method in METHODS:
    arkime.register_tcp_classifier(f"http-{_method}", 0, _method.encode(), classify)
    arkime.register_sctp_classifier(f"http-sctp-{_method}", 0, _method.encode(), classify)
arkime.register_tcp_classifier("http-response", 0, b"HTTP", classify)
arkime.register_sctp_classifier("http-sctp-response", 0, b"HTTP", classify)
arkime.register_pre_save(pre_save)
