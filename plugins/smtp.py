"""SMTP classifier and parser, written only with the Arkime API (after Arkime's smtp.c).

A TCP session whose first payload in a direction is `HELO `/`EHLO ` or a `220 `
greeting that mentions SMTP becomes `smtp`. Both directions run Arkime's
line state machine (lines end at CR; a lone LF does not end a line, exactly
as in Arkime): commands (HELO/EHLO host, MAIL FROM, RCPT TO, AUTH LOGIN/PLAIN
user, DATA, BDAT, STARTTLS), message headers (From/To/Cc, Subject with RFC 2047
decoding, Message-Id, Content-Type, User-Agent/X-Mailer, Mime-Version,
Received hosts, every header name, and the value of every other header) and
MIME parts (attachment file names, MD5/SHA-256 and magic of base64 parts).
After STARTTLS the bytes before the TLS handshake are reported as consumed,
so the handshake is classified afresh (as `tls` by a TLS plugin); if the
capture continues in clear text (a decrypted capture), parsing goes on.
Not possible through the Python API: `email.ip` (ip fields cannot be set from
Python) and repeated headerField/headerValue entries (Python fields are sets).
"""
import binascii
import hashlib
import re

import arkime
import arkime_session


def _define(expr, db, kind, count=True):
    return arkime.field_define(expr, f"kind:{kind};db:{db}" + (";count:true" if count else ""))


HOST = _define("host.email", "email.host", "lotermfield")
USER_AGENT = _define("email.x-mailer", "email.useragent", "termfield")
SRC = _define("email.src", "email.src", "lotermfield")
DST = _define("email.dst", "email.dst", "lotermfield")
SUBJECT = _define("email.subject", "email.subject", "textfield")
MESSAGE_ID = _define("email.message-id", "email.id", "termfield")
CONTENT_TYPE = _define("email.content-type", "email.contentType", "termfield")
MIME_VERSION = _define("email.mime-version", "email.mimeVersion", "termfield")
FILENAME = _define("email.fn", "email.filename", "termfield")
ATTACH_MD5 = _define("email.md5", "email.md5", "termfield")
ATTACH_SHA256 = _define("email.sha256", "email.sha256", "termfield")
HAS_HEADER = _define("email.has-header", "email.header", "lotermfield")
HEADER_NAME = _define("email.has-header.name", "email.headerField", "termfield", False)
HEADER_VALUE = _define("email.has-header.value", "email.headerValue", "termfield")
BODY_MAGIC = _define("email.bodymagic", "email.bodyMagic", "termfield")
HELLO = _define("email.smtp-hello", "email.smtpHello", "lotermfield")
USER = _define("user", "user", "lotermfield")

RECEIVED = "received"  # header table markers for headers with their own parsing
ADDRESSES = "addresses"
# Arkime's email header table, plus [headers-email] of Arkime's test config.
HEADERS = {
    b"cc": (ADDRESSES, DST), b"to": (ADDRESSES, DST), b"from": (ADDRESSES, SRC),
    b"message-id": ("id", MESSAGE_ID), b"content-type": ("content-type", CONTENT_TYPE),
    b"subject": ("subject", SUBJECT), b"x-mailer": ("value", USER_AGENT),
    b"user-agent": ("value", USER_AGENT), b"mime-version": ("value", MIME_VERSION),
    b"received": (RECEIVED, None),
    b"x-priority": ("int", _define("email.x-priority", "email.header-x-priority", "integer", False)),
    b"x-elnk-trace": ("value", _define("email.x-elnk-trace", "email.header-x-elnk-trace",
                                       "lotermfield", False)),
}
IP_HEADERS = (b"x-originating-ip", b"x-barracuda-apparent-source-ip")  # smtpIpHeaders → email.ip
ALL_HEADERS = True  # parseSMTPHeaderAll
STATE = "smtp.state"  # set_attr key
MAX_LINE = 1 << 20  # bytes kept of one line (Arkime has no limit)
MAX_SUBJECT = 0xFFF  # Arkime decodes into a 4095-byte buffer and keeps what fits
BASE64_LINE_MAX = 20000  # Arkime only decodes MIME lines shorter than its 20000-byte buffer

(CMD, CMD_RETURN, AUTHLOGIN, AUTHLOGIN_RETURN, AUTHPLAIN, AUTHPLAIN_RETURN,
 DATA_HEADER, DATA_HEADER_RETURN, DATA_HEADER_DONE, DATA, DATA_RETURN, IGNORE,
 TLS_OK, TLS_OK_RETURN, TLS, MIME, MIME_RETURN, MIME_DONE, MIME_DATA, MIME_DATA_RETURN) = range(20)
# States that collect a line until CR, and the state each moves to on the CR.
COLLECT = {CMD: CMD_RETURN, AUTHLOGIN: AUTHLOGIN_RETURN, AUTHPLAIN: AUTHPLAIN_RETURN,
           DATA_HEADER: DATA_HEADER_RETURN, DATA: DATA_RETURN, TLS_OK: TLS_OK_RETURN,
           MIME: MIME_RETURN, MIME_DATA: MIME_DATA_RETURN}
SPACE = b" \t\n\v\f\r"
B64_ALPHABET = re.compile(rb"[^A-Za-z0-9+/]")


def _text(raw):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _add(session, field, raw):
    arkime_session.add_string(session, field, _text(raw.split(b"\0", 1)[0]))


def _add_lower(session, field, raw):
    arkime_session.add_string(session, field, _text(raw.split(b"\0", 1)[0]).lower())


def _remove_matching(raw, start, stop):
    """Arkime's smtp_remove_matching: skip spaces and one `start`, cut at `stop`."""
    raw = raw.lstrip(SPACE)
    if raw[:1] == start:
        raw = raw[1:]
    end = raw.find(stop)
    return raw if end < 0 else raw[:end]


def _b64decode(raw):
    """g_base64_decode: skips characters outside the alphabet, stops at padding."""
    clean = B64_ALPHABET.sub(b"", raw.split(b"=", 1)[0])
    clean = clean[:len(clean) - len(clean) % 4 if len(clean) % 4 == 1 else len(clean)]
    return binascii.a2b_base64(clean + b"=" * (-len(clean) % 4)) if clean else b""


# -- Arkime's basic magic (magicMode=basic); the same code as plugins/http.py, because
#    an Arkime plugin is a single file (its directory is not on sys.path) ----------------
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


# -- header values ---------------------------------------------------------------------
def _quoted_printable(raw):
    """Arkime's smtp_quoteable_decode_inplace for RFC 2047 Q words."""
    out = bytearray()
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == 0x3D:  # '='
            pair = raw[i + 1:i + 3]
            if len(pair) < 2 or pair[:1] == b"\n":
                break
            try:
                out.append(int(pair, 16))
            except ValueError:
                out.append(0)
            i += 3
            continue
        if ch == 0x5F:  # '_'
            out.append(0x20)
        elif ch == 0x3F and raw[i + 1:i + 2] == b"=":
            break
        else:
            out.append(ch)
        i += 1
    return bytes(out)


def decode_encoded_words(raw):
    """RFC 2047 text as Arkime decodes it, or None where Arkime keeps the raw bytes."""
    raw = raw.split(b"\0", 1)[0]
    out = []
    pos = 0
    try:
        while pos < len(raw):
            start = raw.find(b"=?", pos)
            if start != pos:
                end = len(raw) if start < 0 else start
                skip = 1 if start == pos + 1 and raw[pos:pos + 1] == b" " else 0
                out.append(raw[pos + skip:end].decode("cp1252"))
                pos = end
                continue
            question = raw.find(b"?", pos + 2)
            if question < 0:
                return None
            end_q = raw.find(b"?=", question + 3)
            if end_q < 0:
                return None
            charset = raw[pos + 2:question].decode("ascii")
            encoding = raw[question + 1:question + 2]
            payload = raw[question + 3:end_q]
            if question + 3 == end_q:
                pass  # an empty encoded word
            elif encoding in (b"B", b"b"):
                out.append(_b64decode(payload).decode(charset))
            elif encoding in (b"Q", b"q"):
                out.append(_quoted_printable(raw[question + 3:]).decode(charset))
            else:
                return None
            pos = end_q + 2
    except (LookupError, UnicodeDecodeError, ValueError, binascii.Error):
        return None
    text = "".join(out)
    encoded = text.encode("utf-8")
    if len(encoded) > MAX_SUBJECT:
        text = encoded[:MAX_SUBJECT].decode("utf-8", "ignore")
    return text


def add_encoded(session, field, raw):
    text = decode_encoded_words(raw)
    if text is None:
        _add(session, field, raw)
    else:
        arkime_session.add_string(session, field, text)


def add_addresses(session, field, raw):
    """Arkime's smtp_parse_email_addresses: the <...> part, or the bare address."""
    pos = 0
    end = len(raw)
    while pos < end:
        while pos < end and raw[pos] in SPACE:
            pos += 1
        start = pos
        if pos < end and raw[pos] == 0x22:  # quoted display name
            pos += 1
            while pos < end and raw[pos] != 0x22:
                pos += 1
            pos += 1
            while pos < end and raw[pos] in SPACE:
                pos += 1
            start = pos
        while pos < end and raw[pos] not in b"<,":
            pos += 1
        if pos < end and raw[pos] == 0x3C:
            pos += 1
            start = pos
            while pos < end and raw[pos] != 0x3E:
                pos += 1
        _add_lower(session, field, raw[start:pos])
        while pos < end and raw[pos] != 0x2C:
            pos += 1
        if pos < end:
            pos += 1


def add_received(session, raw):
    """Arkime's smtp_parse_email_received: `from`/`by` host names (IPs need an ip field)."""
    pos = 0
    end = len(raw)
    while pos < end:
        if end - pos > 10:
            by = raw.startswith(b"by ", pos)
            if (raw.startswith(b"from ", pos) and (pos == 0 or raw[pos - 1] != 0x2D)) or by:
                pos += 3 if by else 5
                while pos < end and raw[pos] in SPACE:
                    pos += 1
                if not by and pos < end and raw[pos] == 0x5B:  # from [ip]
                    close = raw.find(b"]", pos)
                    pos = end if close < 0 else close + 1
                    continue
                start = pos
                while pos < end and raw[pos] not in b" )":
                    if raw[pos] == 0x40:
                        start = pos + 1
                    pos += 1
                _add_lower(session, HOST, raw[start:pos])
        if pos < end and raw[pos] == 0x5B:
            close = raw.find(b"]", pos)
            pos = end if close < 0 else close
        pos += 1


class SmtpState:
    """Arkime's SMTPInfo_t: per-direction line state plus MIME bookkeeping."""

    __slots__ = ("state", "line", "need_status", "boundaries", "base64", "b64_carry",
                 "first_in_content", "seen_headers", "in_bdat", "bdat_remaining", "md5",
                 "sha256", "seen", "tls_at")

    def __init__(self):
        self.state = [CMD, CMD]
        self.line = [bytearray(), bytearray()]
        self.need_status = [False, False]
        self.boundaries = []
        self.base64 = [False, False]
        self.b64_carry = [b"", b""]
        self.first_in_content = [False, False]
        self.seen_headers = [False, False]
        self.in_bdat = [False, False]
        self.bdat_remaining = [0, 0]
        self.md5 = [hashlib.md5(), hashlib.md5()]
        self.sha256 = [hashlib.sha256(), hashlib.sha256()]
        self.seen = [0, 0]  # bytes fed per direction before the current chunk
        self.tls_at = [None, None]  # stream offset where TLS may start, per direction

    # -- the byte loop ---------------------------------------------------------------
    def feed(self, session, which, data):
        pos = 0
        n = len(data)
        line = self.line[which]
        while pos < n:
            state = self.state[which]
            if state == IGNORE:
                return
            ret = COLLECT.get(state)
            if ret is not None:
                limit = n if not self.in_bdat[which] else min(n, pos + self.bdat_remaining[which])
                cr = data.find(b"\r", pos, limit)
                stop = limit if cr < 0 else cr
                if len(line) < MAX_LINE:
                    line += data[pos:stop]
                if cr >= 0:
                    self.state[which] = ret
                    stop += 1
                self._consumed(which, stop - pos)
                pos = stop
                continue
            if state == TLS:
                self._tls(session, which, data, pos)
                return
            if self._handle(session, which, state, line, data[pos]):
                self._consumed(which, 1)
                pos += 1
                if state in (TLS_OK_RETURN, CMD_RETURN) and self.state[which] == TLS:
                    self.tls_at[which] = self.seen[which] + pos

    def _consumed(self, which, k):
        if self.in_bdat[which]:
            self.bdat_remaining[which] -= k
            if self.bdat_remaining[which] <= 0:
                self.state[which] = CMD
                self.in_bdat[which] = False

    def _tls(self, session, which, data, pos):
        """Arkime stops at a TLS handshake; a decrypted capture goes on in clear text."""
        if data[pos] == 0x16:
            self.state[which] = IGNORE
        else:
            self.state[which] = CMD
            self.feed(session, which, data[pos:])

    def _handle(self, session, which, state, line, ch):
        """One byte in a non-collecting state; False when the byte must be seen again."""
        if state == CMD_RETURN:
            self._command(session, which, line)
            line.clear()
            return ch == 0x0A
        if state in (AUTHLOGIN_RETURN, AUTHPLAIN_RETURN):
            self._auth(session, line, state == AUTHPLAIN_RETURN)  # the line is not cleared:
            self.state[which] = CMD  # Arkime's quirk, the next line is appended to it
            return True
        if state == DATA_HEADER_RETURN:
            if line == b".":
                self.need_status[which] = True
                self.state[which] = CMD
            elif not line:
                self.state[which] = DATA
            else:
                self.state[which] = DATA_HEADER_DONE
            return ch == 0x0A
        if state == DATA_HEADER_DONE:
            self.state[which] = DATA_HEADER
            if ch in (0x20, 0x09):
                line.append(0x20)  # a folded header continues on this line
                return True
            self._header(session, line)
            line.clear()
            return ch == 0x0A
        if state in (DATA_RETURN, MIME_DATA_RETURN):
            self._data_line(session, which, state, line)
            line.clear()
            return ch == 0x0A
        if state == TLS_OK_RETURN:
            self.state[which] = TLS
            line.clear()
            return ch == 0x0A
        if state == MIME_RETURN:
            if not line:
                self.state[which] = MIME_DATA
            elif line == b".":
                self.need_status[which] = True
                self.state[which] = CMD
            else:
                self.state[which] = MIME_DONE
            return ch == 0x0A
        if state == MIME_DONE:
            self.state[which] = MIME
            if ch in (0x20, 0x09):
                line.append(ch)
                return True
            self._mime_header(which, line, session)
            line.clear()
            return ch == 0x0A
        return True

    # -- line handlers -------------------------------------------------------------
    def _command(self, session, which, line):
        other = 1 - which
        upper = bytes(line[:10]).upper()
        self.state[which] = CMD
        if self.need_status[other]:
            self.need_status[other] = False
            m = re.match(rb"\s*([+-]?\d+)", line)
            arkime_session.add_tag(session, f"smtp:statuscode:{int(m.group(1)) if m else 0}")
        elif upper.startswith((b"HELO ", b"EHLO ")):
            _add_lower(session, HELLO, bytes(line[5:]).strip(SPACE))
        elif upper.startswith(b"MAIL FROM:"):
            _add_lower(session, SRC, _remove_matching(bytes(line[10:]), b"<", b">"))
        elif upper.startswith(b"RCPT TO:"):
            _add_lower(session, DST, _remove_matching(bytes(line[8:]), b"<", b">"))
        elif upper.startswith(b"DATA"):
            self.state[which] = DATA_HEADER
            self.seen_headers[which] = True
        elif upper.startswith(b"BDAT"):
            self.in_bdat[which] = True
            m = re.match(rb"\s*([+-]?\d+)", line[5:])
            # +1: the LF after this line is counted too
            self.bdat_remaining[which] = (int(m.group(1)) if m else 0) + 1
            self.state[which] = DATA if self.seen_headers[which] else DATA_HEADER
            self.seen_headers[which] = True
        elif upper.startswith(b"AUTH LOGIN"):
            arkime_session.add_tag(session, "smtp:authlogin")
            if len(line) > 11:
                user = _b64decode(bytes(line[11:]))
                if user:
                    _add_lower(session, USER, user)
            else:
                self.state[which] = AUTHLOGIN
        elif upper.startswith(b"AUTH PLAIN"):
            arkime_session.add_tag(session, "smtp:authplain")
            if len(line) > 11:
                self._plain_user(session, _b64decode(bytes(line[11:])))
            else:
                self.state[which] = AUTHPLAIN
        elif upper.startswith(b"STARTTLS"):
            arkime_session.add_tag(session, "smtp:starttls")
            self.state[which] = TLS  # the next byte tells TLS from a decrypted capture
            self.state[other] = TLS_OK

    def _auth(self, session, line, plain):
        decoded = _b64decode(bytes(line)) if line else b""
        if plain:
            self._plain_user(session, decoded)
        elif decoded:
            _add_lower(session, USER, decoded)

    @staticmethod
    def _plain_user(session, decoded):
        parts = decoded.split(b"\0")  # authzid NUL authcid NUL password
        if len(parts) >= 3:
            _add_lower(session, USER, parts[1])

    def _header(self, session, line):
        colon = line.find(b":")
        if colon < 0:
            return
        raw = bytes(line)
        name = raw[:colon].lower()
        value = raw[colon + 1:]
        arkime_session.add_string(session, HAS_HEADER, _text(name))
        entry = HEADERS.get(name)
        if entry is not None:
            how, field = entry
            if how == "subject":
                if raw[8:9] != b" ":
                    arkime_session.add_tag(session, "smtp:missing-subject-space")
                    add_encoded(session, field, raw[8:])
                else:
                    add_encoded(session, field, raw[9:])
            elif how == ADDRESSES:
                add_addresses(session, field, value)
            elif how == "id":
                _add(session, field, _remove_matching(value, b"<", b">"))
            elif how == RECEIVED:
                add_received(session, value)
            elif how == "content-type":
                ctype = raw[13:].lstrip(SPACE)
                _add(session, field, ctype)
                self._boundary(ctype)
            elif how == "int":
                m = re.match(rb"\s*([+-]?\d+)", value)
                arkime_session.add_int(session, field, int(m.group(1)) if m else 0)
            else:
                _add(session, field, value.lstrip(SPACE))
            return
        if name in IP_HEADERS:
            return  # email.ip: an ip field, which Python cannot set
        if ALL_HEADERS:
            _add(session, HEADER_NAME, name)
            _add(session, HEADER_VALUE, value.lstrip(SPACE))

    def _boundary(self, ctype):
        at = ctype.lower().find(b"boundary=")
        if at >= 0:
            self.boundaries.append(_remove_matching(ctype[at + 9:], b'"', b'"').split(b"\0")[0])

    def _mime_header(self, which, line, session):
        lower = bytes(line[:26]).lower()
        if lower.startswith(b"content-type:"):
            self._boundary(bytes(line[13:]).lstrip(SPACE))
        elif lower.startswith(b"content-disposition:"):
            rest = bytes(line[13:])
            at = rest.lower().find(b"filename=")
            if at >= 0:
                add_encoded(session, FILENAME, _remove_matching(rest[at + 9:], b'"', b'"'))
        elif lower.startswith(b"content-transfer-encoding:"):
            if b"base64" in bytes(line[26:]).lower():
                self.base64[which] = True

    def _data_line(self, session, which, state, line):
        if not self.in_bdat[which] and line == b".":
            self.need_status[which] = True
            self.state[which] = CMD
            return
        if line[:1] == b"-" and any(line.startswith(b, 2) for b in self.boundaries):
            if self.base64[which]:
                _add(session, ATTACH_MD5, self.md5[which].hexdigest().encode())
                _add(session, ATTACH_SHA256, self.sha256[which].hexdigest().encode())
            self.first_in_content[which] = True
            self.base64[which] = False
            self.b64_carry[which] = b""
            self.md5[which] = hashlib.md5()
            self.sha256[which] = hashlib.sha256()
            self.state[which] = MIME
        elif state == MIME_DATA_RETURN:
            if self.base64[which] and len(line) < BASE64_LINE_MAX:
                decoded = self._decode_step(which, bytes(line))
                self.md5[which].update(decoded)
                self.sha256[which].update(decoded)
                if self.first_in_content[which]:
                    self.first_in_content[which] = False
                    magic = _magic(decoded)
                    if magic:
                        arkime_session.add_string(session, BODY_MAGIC, magic)
            self.state[which] = MIME_DATA
        else:
            self.state[which] = DATA

    def _decode_step(self, which, raw):
        """g_base64_decode_step: a stream decode that carries partial quads across lines."""
        clean = self.b64_carry[which] + re.sub(rb"[^A-Za-z0-9+/=]", b"", raw)
        cut = len(clean) - len(clean) % 4
        self.b64_carry[which] = clean[cut:]
        try:
            return binascii.a2b_base64(clean[:cut]) if cut else b""
        except binascii.Error:
            return b""


def parse(session, data, length, which):
    st = arkime_session.get_attr(session, STATE)
    if st is None:
        return -1
    if st.state[0] == IGNORE and st.state[1] == IGNORE:
        return -1
    which &= 1
    before = st.tls_at[which]
    try:
        st.feed(session, which, bytes(data))
    finally:
        st.seen[which] += length
    after = st.tls_at[which]
    if after is not None and after != before:
        # Everything up to the STARTTLS exchange is SMTP: report it consumed, so the
        # next chunk (the TLS handshake) is classified afresh, as Arkime re-classifies.
        return after
    return 0


def classify(session, data, length, which):
    if length < 5:
        return
    head = bytes(data)
    if not (head[:5] in (b"HELO ", b"EHLO ") or (head[:4] == b"220 " and b"SMTP" in head)):
        return
    if arkime_session.has_protocol(session, "smtp"):
        return
    arkime_session.add_protocol(session, "smtp")
    arkime_session.set_attr(session, STATE, SmtpState())
    arkime_session.register_parser(session, parse)


arkime.register_tcp_classifier("smtp-helo", 0, b"HELO", classify)
arkime.register_tcp_classifier("smtp-ehlo", 0, b"EHLO", classify)
arkime.register_tcp_classifier("smtp-greeting", 0, b"220 ", classify)
