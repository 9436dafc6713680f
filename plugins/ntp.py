"""NTP classifier and header extractor, written only with the Arkime API.

UDP sessions on port 123 whose first datagram is a well-formed NTP header
(version 1-4, mode 1-5, at least 48 bytes) become `ntp`; every datagram then
adds its version, mode and (from servers) stratum. The parser gives up after a
few datagrams (-1), which lets the sensor hand long NTP flows back to the kernel.
"""
import arkime
import arkime_session

VERSION = arkime.field_define("ntp.version", "kind:integer;db:ntp.version;count:true")
MODE = arkime.field_define("ntp.mode", "kind:termfield;db:ntp.mode;count:true")
STRATUM = arkime.field_define("ntp.stratum", "kind:integer;db:ntp.stratum")
MODES = {1: "symmetric-active", 2: "symmetric-passive", 3: "client", 4: "server", 5: "broadcast"}
MAX_DATAGRAMS = 8


def _header(data, length):
    """(version, mode, stratum) of an NTP datagram, or None if it is not one."""
    if length < 48:
        return None
    version, mode = (data[0] >> 3) & 7, data[0] & 7
    if not 1 <= version <= 4 or mode not in MODES:
        return None
    return version, mode, data[1]


def parse(session, data, length, which):
    seen = (arkime_session.get_attr(session, "ntp.seen") or 0) + 1
    arkime_session.set_attr(session, "ntp.seen", seen)
    header = _header(data, length)
    if header is None:
        arkime_session.add_tag(session, "ntp:bad-packet")
    else:
        version, mode, stratum = header
        arkime_session.add_int(session, VERSION, version)
        arkime_session.add_string(session, MODE, MODES[mode])
        if mode in (2, 4, 5):
            arkime_session.add_int(session, STRATUM, stratum)
    return -1 if seen >= MAX_DATAGRAMS else 0


def classify(session, data, length, which):
    if _header(data, length) is None:
        return
    arkime_session.add_protocol(session, "ntp")
    arkime_session.register_parser(session, parse)  # the same callable twice is ignored


arkime.register_port_classifier("ntp", 123, arkime.PORT_UDP_DST | arkime.PORT_UDP_SRC, classify)
