"""DNS, mDNS and LLMNR over UDP, and DNS over TCP, written only with the Arkime API.

Follows Arkime 6's capture/parsers/dns.c: UDP port 53 is `dns`, 5353 `mdns`,
5355 `llmnr`; TCP to port 53 is `dns` with the 2-byte length prefix, messages
reassembled across segments. Names are decompressed with Arkime's limit of six
pointers (so loops end), escaped like Arkime (`M-` for high bytes, `^` for
control bytes), lower-cased and punycode-decoded like g_hostname_to_unicode.
Settings match Arkime's test config: parseDNSRecordAll=true (NS and MX targets
go to their own host fields).

Arkime 6 stores each query as one object of a `dns` object array. Python has no
object fields, so here the same db names are flat session fields holding the
union over the session's queries. Left out, because the API cannot hold them:
answer IPs (dns.ip, dns.nameserverIp, dns.mailserverIp are kind:ip fields, which
Python cannot set) and the per-answer `answers` list (dnsOutputAnswers).
Malformed messages never raise: they are skipped or tagged as Arkime does.
"""
import arkime
import arkime_session

HOST = arkime.field_define("host.dns", "kind:lotermfield;db:dns.host;count:true;category:host")
NS_HOST = arkime.field_define(
    "host.dns.nameserver", "kind:lotermfield;db:dns.nameserverHost;count:true;category:host")
MX_HOST = arkime.field_define(
    "host.dns.mailserver", "kind:lotermfield;db:dns.mailserverHost;count:true;category:host")
PUNY = arkime.field_define("dns.puny", "kind:lotermfield;db:dns.puny;count:true")
STATUS = arkime.field_define("dns.status", "kind:uptermfield;db:dns.status;count:true")
OPCODE = arkime.field_define("dns.opcode", "kind:uptermfield;db:dns.opcode;count:true")
QTYPE = arkime.field_define("dns.query.type", "kind:uptermfield;db:dns.qt;count:true")
QCLASS = arkime.field_define("dns.query.class", "kind:uptermfield;db:dns.qc;count:true")
QHOST = arkime.field_define(
    "dns.query.host", "kind:lotermfield;db:dns.queryHost;count:true;category:host")
FLAGS = arkime.field_define("dns.header_flags", "kind:uptermfield;db:dns.headerFlags;count:true")

OPCODES = ("QUERY", "IQUERY", "STATUS", "3", "NOTIFY", "UPDATE")  # Arkime ignores opcodes > 5
RCODES = ("NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMPL", "REFUSED", "YXDOMAIN",
          "YXRRSET", "NXRRSET", "NOTAUTH", "NOTZONE", "DSOTYPENI", "12", "13", "14", "15",
          "BADSIG_VERS", "BADKEY", "BADTIME", "BADMODE", "BADNAME", "BADALG", "BADTRUNC",
          "BADCOOKIE")  # 16 and up need the EDNS OPT record's extended rcode
HEADER_FLAGS = ("AA", "TC", "RD", "RA", "Z", "AD", "CD")  # bit 6 down to bit 0
QCLASSES = {1: "IN", 2: "CS", 3: "CH", 4: "HS", 255: "ANY"}
QTYPES = {
    1: "A", 2: "NS", 3: "MD", 4: "MF", 5: "CNAME", 6: "SOA", 7: "MB", 8: "MG", 9: "MR",
    10: "NULL", 11: "WKS", 12: "PTR", 13: "HINFO", 14: "MINFO", 15: "MX", 16: "TXT", 17: "RP",
    18: "AFSDB", 19: "X25", 20: "ISDN", 21: "RT", 22: "NSAP", 23: "NSAPPTR", 24: "SIG",
    25: "KEY", 26: "PX", 27: "GPOS", 28: "AAAA", 29: "LOC", 30: "NXT", 31: "EID", 32: "NIMLOC",
    33: "SRV", 34: "ATMA", 35: "NAPTR", 36: "KX", 37: "CERT", 38: "A6", 39: "DNAME",
    40: "SINK", 41: "OPT", 42: "APL", 43: "DS", 44: "SSHFP", 46: "RRSIG", 47: "NSEC",
    48: "DNSKEY", 49: "DHCID", 50: "NSEC3", 51: "NSEC3PARAM", 52: "TLSA", 55: "HIP",
    65: "HTTPS", 99: "SPF", 249: "TKEY", 250: "TSIG", 252: "AXFR", 253: "MAILB", 254: "MAILA",
    255: "ANY", 257: "CAA"}
CLASS_IN, TYPE_NS, TYPE_CNAME, TYPE_MX, TYPE_OPT = 1, 2, 5, 15, 41
MIN_MESSAGE = 17  # Arkime skips shorter messages; a shorter TCP length prefix ends parsing
MAX_POINTERS = 6  # compression pointers followed per name; the seventh fails the name
MAX_NAME = 8000  # Arkime's name buffer
TCP_BUFFERS = "dns.tcp"  # set_attr key: [client bytes, server bytes] of partial messages


def _escape_byte(c):
    out = b""
    if c >= 0x80:
        out, c = b"M-", c & 0x7F
    if c < 0x20 or c == 0x7F:
        out, c = out + b"^", c ^ 0x40
    return out + bytes((c,))


ESCAPED = tuple(_escape_byte(c) for c in range(256))


class Reader:
    """A bounds-checked cursor like Arkime's BSB: a short read returns 0 and
    leaves the reader in error with nothing remaining."""

    __slots__ = ("data", "pos", "end", "error")

    def __init__(self, data, pos, end):
        self.data, self.pos, self.end, self.error = data, pos, end, False

    def remaining(self):
        return 0 if self.error else max(self.end - self.pos, 0)

    def take(self, n):
        if self.error or self.pos + n > self.end:
            self.error = True
            return None
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u16(self):
        chunk = self.take(2)
        return chunk[0] << 8 | chunk[1] if chunk else 0

    def u32(self):
        chunk = self.take(4)
        return int.from_bytes(chunk, "big") if chunk else 0

    def sub(self, n):
        """A reader over the next n bytes, which this reader steps over."""
        start = self.pos
        self.take(n)
        return Reader(self.data, start, start + n)


def read_name(msg, rd):
    """The (escaped, ASCII) name at `rd`, or None after too many pointers.

    `rd` moves past the name's bytes, or past the first pointer; pointers are
    offsets into the whole message `msg`."""
    out = bytearray()
    cur = rd
    pointers = 0
    while cur.remaining():
        ch = cur.data[cur.pos]
        if ch == 0:
            cur.pos += 1
            break
        if ch & 0xC0:
            if pointers >= MAX_POINTERS:
                return None
            pointers += 1
            target = cur.u16() & 0x3FFF
            cur = Reader(msg, target, len(msg))
            continue
        if out:
            out.append(0x2E)
        cur.pos += 1
        if ch > cur.remaining():  # Arkime drops the dot and reads on from the next byte
            if out:
                del out[-1]
            continue
        out += b"".join(map(ESCAPED.__getitem__, cur.take(ch)))
    return out[:MAX_NAME].decode("ascii")


def to_unicode(name):
    """g_hostname_to_unicode: lower-case labels, decode `xn--` ones; None if invalid."""
    labels = name.split(".")
    if name.endswith("."):
        labels.pop()
    out = []
    for label in labels:
        if label[:4].lower() == "xn--":
            try:
                label = label[4:].encode("ascii").decode("punycode")
            except UnicodeError:
                return None
        else:
            label = label.lower()
        out.append(label)
    text = ".".join(out)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # punycode decoded to a surrogate
        return None
    return text


def _bad_name_tag(name):
    return "bad-punycode" if len(name) > 4 and "xn--" in name else "bad-hostname"


class Findings:
    """What one message adds to the session: (field, value) pairs and tags."""

    __slots__ = ("values", "tags")

    def __init__(self):
        self.values = []
        self.tags = []

    def add_host(self, field, name):
        """dns_add_host: a decoded host name, or a tag when it does not decode."""
        host = to_unicode(name)
        if host is None:
            self.tags.append(_bad_name_tag(name))
            return
        self.values.append((field, host))
        if "xn--" in name:
            self.values.append((PUNY, name.lower()))


def _add_answer(found, msg, rtype, rdata):
    """Host names from one IN-class record (A/AAAA IPs cannot be stored)."""
    if rtype not in (TYPE_NS, TYPE_CNAME, TYPE_MX):
        return
    if rtype == TYPE_MX:
        rdata.u16()  # preference
    name = read_name(msg, rdata)
    if not name or rdata.error:
        return
    found.add_host({TYPE_NS: NS_HOST, TYPE_CNAME: HOST, TYPE_MX: MX_HOST}[rtype], name)


def _read_records(found, msg, rd, counts, class_mask):
    """Answer, authority and additional sections, stopping where Arkime stops.

    Returns the EDNS extended-rcode bits (OPT ttl high byte, shifted) or 0."""
    rcode_high = 0
    for count in counts:
        for _ in range(count):
            if rd.error:
                return rcode_high
            name = read_name(msg, rd)
            if name is None or rd.error:
                break
            if name and "xn--" in name:
                found.values.append((PUNY, name.lower()))
            rtype, rclass, ttl, rdlength = rd.u16(), rd.u16(), rd.u32(), rd.u16()
            if rd.remaining() < rdlength:
                break
            rdata = rd.sub(rdlength)
            if rtype == TYPE_OPT:
                rcode_high = ttl >> 24 << 4
            elif rclass & class_mask == CLASS_IN:
                _add_answer(found, msg, rtype, rdata)
    return rcode_high


def _skip_questions(msg, rd, count):
    for _ in range(count):
        if read_name(msg, rd) is None:
            return
        rd.take(4)


def parse_message(msg, mdns=False):
    """Everything Arkime records from one DNS message, or None if it ignores it.

    Only the first question is recorded; a message without one (mDNS answers)
    counts as a question for `<root>`. mDNS classes lose their cache-flush bit."""
    if len(msg) < MIN_MESSAGE:
        return None
    opcode = msg[2] >> 3 & 0xF
    if opcode >= len(OPCODES):
        return None
    found = Findings()
    qdcount, ancount, nscount, arcount = (int.from_bytes(msg[i:i + 2], "big") for i in (4, 6, 8, 10))
    rd = Reader(msg, 12, len(msg))
    name, qtype, qclass = "", 0, 0
    if qdcount:
        name = read_name(msg, rd)
        if name is None or rd.error:
            return found
        qtype, qclass = rd.u16(), rd.u16()
        _skip_questions(msg, rd, qdcount - 1)
    host = to_unicode(name) if name else "<root>"
    if host is None:
        found.tags.append(_bad_name_tag(name))
        return found
    found.values.append((OPCODE, OPCODES[opcode]))
    if qclass in QCLASSES:
        found.values.append((QCLASS, QCLASSES[qclass]))
    if qtype in QTYPES:
        found.values.append((QTYPE, QTYPES[qtype]))
    if host != "<root>":
        found.values.append((HOST, host))
        if "xn--" in name:
            found.values.append((PUNY, name.lower()))
    found.values.append((QHOST, host))
    if not msg[2] & 0x80:  # a query: nothing more
        return found
    class_mask = 0x7FFF if mdns else 0xFFFF
    rcode = _read_records(found, msg, rd, (ancount, nscount, arcount), class_mask) | msg[3] & 0xF
    found.values.append((STATUS, RCODES[rcode] if rcode < len(RCODES) else str(rcode)))
    bits = (msg[2] & 0x07) << 4 | msg[3] >> 4
    found.values.extend((FLAGS, flag) for i, flag in enumerate(HEADER_FLAGS) if bits >> (6 - i) & 1)
    return found


def record(session, protocol, msg):
    """Parse one message and add what it yields to the session."""
    found = parse_message(msg, mdns=protocol == "mdns")
    if found is None:
        return
    arkime_session.add_protocol(session, protocol)
    for field, value in found.values:
        arkime_session.add_string(session, field, value)
    for tag in found.tags:
        arkime_session.add_tag(session, tag)


def parse_dns_udp(session, data, length, which):
    record(session, "dns", bytes(data))
    return 0


def parse_mdns_udp(session, data, length, which):
    record(session, "mdns", bytes(data))
    return 0


def parse_llmnr_udp(session, data, length, which):
    record(session, "llmnr", bytes(data))
    return 0


def parse_dns_tcp(session, data, length, which):
    """Split the stream on its 2-byte length prefixes; -1 (give up) on a prefix
    too short to be DNS, as Arkime does."""
    buffers = arkime_session.get_attr(session, TCP_BUFFERS)
    buf = buffers[which]
    buf += data
    while len(buf) >= 2:
        size = buf[0] << 8 | buf[1]
        if size < MIN_MESSAGE:
            return -1
        if len(buf) < 2 + size:
            break
        record(session, "dns", bytes(buf[2:2 + size]))
        del buf[:2 + size]
    return 0


def _port53(session):
    return 53 in (arkime_session.get(session, "port.src"), arkime_session.get(session, "port.dst"))


def classify_dns_udp(session, data, length, which):
    arkime_session.register_parser(session, parse_dns_udp)


def classify_mdns_udp(session, data, length, which):
    if not _port53(session):  # Arkime leaves port-53 sessions to the dns parser
        arkime_session.register_parser(session, parse_mdns_udp)


def classify_llmnr_udp(session, data, length, which):
    if not _port53(session):
        arkime_session.register_parser(session, parse_llmnr_udp)


def classify_dns_tcp(session, data, length, which):
    if arkime_session.has_protocol(session, "dns"):
        return
    arkime_session.add_protocol(session, "dns")
    arkime_session.set_attr(session, TCP_BUFFERS, [bytearray(), bytearray()])
    arkime_session.register_parser(session, parse_dns_tcp)


UDP_EITHER = arkime.PORT_UDP_SRC | arkime.PORT_UDP_DST
arkime.register_port_classifier("dns", 53, UDP_EITHER, classify_dns_udp)
arkime.register_port_classifier("mdns", 5353, UDP_EITHER, classify_mdns_udp)
arkime.register_port_classifier("llmnr", 5355, UDP_EITHER, classify_llmnr_udp)
arkime.register_port_classifier("dns-tcp", 53, arkime.PORT_TCP_DST, classify_dns_tcp)
