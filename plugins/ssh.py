"""SSH classifier and parser, written only with the Arkime API (after Arkime's ssh.c).

Sessions whose first payload in a direction starts with `SSH` become `ssh`.
Each side's identification banner goes to `ssh.version` (lowercased, up to the
line end, as Arkime stores it). Binary packets are framed per direction; a
KEXINIT gives the HASSH (client) or HASSH-server fingerprint: the MD5 of
`kex;enc;mac;comp` name-lists for that side. The host key of a KEX reply
(message 33) goes to `ssh.key` in base64. Arkime's quirks are kept on purpose:
a segment that starts with the banner is not searched for a KEXINIT, and
parsing of both sides stops once a key is seen or a length is implausible.
"""
import base64
import hashlib

import arkime
import arkime_session

VERSION = arkime.field_define("ssh.ver", "kind:lotermfield;db:ssh.version;count:true")
HASSH = arkime.field_define("ssh.hassh", "kind:lotermfield;db:ssh.hassh;count:true")
HASSH_SERVER = arkime.field_define(
    "ssh.hasshServer", "kind:lotermfield;db:ssh.hasshServer;count:true;help:SSH HASSH Server field")
KEY = arkime.field_define("ssh.key", "kind:termfield;db:ssh.key;count:true;help:SSH Key")

STATE = "ssh.state"  # set_attr key
MAX_BUFFER = 8196  # Arkime's MAX_SSH_BUFFER: bytes past it in one direction are dropped
MSG_KEXINIT = 20
MSG_KEX_REPLY = 33  # SSH_MSG_KEX_DH_GEX_REPLY: its first string is the server host key
REVERSE_SHELL_FROM, REVERSE_SHELL_TO = 5, 15  # packets examined for the reverse-shell tag


class SshState:
    """Per-session parse state: one packet buffer per direction, shared `done`."""

    __slots__ = ("bufs", "done", "packets", "counts", "done_rs")

    def __init__(self):
        self.bufs = [bytearray(), bytearray()]
        self.done = False
        self.packets = [0, 0]
        self.counts = [[0, 0], [0, 0]]  # per direction: packets < 50 bytes, 50..99 bytes
        self.done_rs = False


def _name_lists(body):
    """The ten KEXINIT name-lists after the 16-byte cookie, or None if truncated."""
    pos = 16
    lists = []
    for _ in range(10):
        if pos + 4 > len(body):
            return None
        n = int.from_bytes(body[pos:pos + 4], "big")
        pos += 4
        if pos + n > len(body):
            return None
        lists.append(bytes(body[pos:pos + n]))
        pos += n
    return lists


def hassh_string(body, server):
    """HASSH input: kex;encryption;mac;compression, the side's own direction of each."""
    lists = _name_lists(body)
    if lists is None:
        return None
    kex = lists[0]
    side = 1 if server else 0  # lists 2..9 alternate client->server, server->client
    return b";".join((kex, lists[2 + side], lists[4 + side], lists[6 + side]))


def _add_kexinit(session, body, which):
    text = hassh_string(body, which == 1)
    if text is not None:
        digest = hashlib.md5(text).hexdigest()
        arkime_session.add_string(session, HASSH_SERVER if which == 1 else HASSH, digest)


def _track_reverse_shell(session, st, which, length):
    """Arkime's `ssh-reverse-shell` tag: in packets 6-15 of each side, more 50-99 byte
    packets than smaller ones in both directions looks like an interactive reverse shell.
    Returns True on the packet that decides (Arkime parses nothing more from it)."""
    if st.done_rs or st.packets[which] <= REVERSE_SHELL_FROM:
        return False
    if length < 50:
        st.counts[which][0] += 1
    elif length < 100:
        st.counts[which][1] += 1
    if st.packets[which] <= REVERSE_SHELL_TO:
        return False
    if all(st.counts[d][1] > st.counts[d][0] for d in (0, 1)):
        arkime_session.add_tag(session, "ssh-reverse-shell")
    st.done_rs = True
    return True


def parse(session, data, length, which):
    st = arkime_session.get_attr(session, STATE)
    if st is None:
        return -1
    st.packets[which] += 1
    if _track_reverse_shell(session, st, which, length) or st.done:
        return 0
    if length > 3 and data[:3] == b"SSH":
        chunk = bytes(data)
        end = chunk.find(b"\n", 3)
        if end >= 0:
            if chunk[end - 1:end] == b"\r":
                end -= 1
            arkime_session.add_string(session, VERSION, chunk[:end].decode("latin-1").lower())
        return 0

    buf = st.bufs[which]
    room = MAX_BUFFER - len(buf)
    if room > 0:
        buf += data[:room]
    while len(buf) > 6:
        size = int.from_bytes(buf[:4], "big")
        if size < 2 or size > MAX_BUFFER - 4:
            st.done = True
            return 0
        if size > len(buf) - 4:
            return 0
        code = buf[5]
        if code == MSG_KEXINIT:
            _add_kexinit(session, bytes(buf[6:]), which)  # Arkime reads on past the message
        elif code == MSG_KEX_REPLY:
            st.done = True
            if len(buf) >= 10:
                key_len = int.from_bytes(buf[6:10], "big")
                if len(buf) - 10 >= key_len:
                    key = base64.b64encode(bytes(buf[10:10 + key_len])).decode("ascii")
                    arkime_session.add_string(session, KEY, key)
            return 0
        del buf[:size + 4]
    return 0


def classify(session, data, length, which):
    if arkime_session.has_protocol(session, "ssh"):
        return
    arkime_session.add_protocol(session, "ssh")
    arkime_session.set_attr(session, STATE, SshState())
    arkime_session.register_parser(session, parse)


arkime.register_tcp_classifier("ssh", 0, b"SSH", classify)
