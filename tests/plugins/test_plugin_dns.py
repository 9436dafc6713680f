"""plugins/dns.py against Arkime's own DNS sessions and hand-built messages.

Arkime 6 renders DNS as an array of per-query objects; the Python API only has
flat fields, so the plugin's `dns.*` fields must equal the union of each key
over Arkime's objects (answer IPs and `answers` are outside the API's reach)."""
from __future__ import annotations

import struct
from functools import partial

import pytest
from plugin_testlib import PLUGINS, arkime_captures_with, feed_session, loaded_runtime, session_key

from sensor.arkime.runtime import PluginRuntime
from sensor.offline import read_records

PLUGIN = PLUGINS / "dns.py"
DNS_PROTOCOLS = {"dns", "mdns", "llmnr"}
FLAT_KEYS = ("host", "nameserverHost", "mailserverHost", "puny", "status", "opcode", "qt", "qc",
             "queryHost", "headerFlags")
DNS_TAGS = {"bad-punycode", "bad-hostname"}
# Sessions Arkime saw that our flow layer cannot give the plugin: GRE, PPP, GTP
# and Geneve tunnels are not decoded. If that changes, they must agree too.
MIN_COMPARED = 76


def _arkime_flat(objects: list[dict]) -> dict[str, set]:
    """Union per key over Arkime's dns objects (str values become one-element sets)."""
    out: dict[str, set] = {}
    for obj in objects:
        for k in FLAT_KEYS:
            if k in obj:
                out.setdefault(k, set()).update(obj[k] if isinstance(obj[k], list) else [obj[k]])
    return out


def _dns_view(body: dict) -> dict:
    return {"protocols": set(body.get("protocol", ())) & DNS_PROTOCOLS,
            "tags": set(body.get("tags", ())) & DNS_TAGS,
            "fields": _arkime_flat(body["dns"]) if isinstance(body.get("dns"), list) else
            {k: set(v) for k, v in body.get("dns", {}).items() if k in FLAT_KEYS}}


def test_dns_fields_agree_with_arkime_test_sessions(shared_testdata):
    compared, disagree, unmatched, other_extent = 0, [], [], []
    for pcap, expected in arkime_captures_with(shared_testdata, DNS_PROTOCOLS):
        if not pcap.exists():
            continue
        ours = {session_key(r): r for r in read_records([pcap], plugins=[PLUGIN])}
        for body in expected:
            rec = ours.get(session_key(body))
            if rec is None:
                unmatched.append((pcap.name, session_key(body)))
            elif rec["lastPacket"] != body["lastPacket"]:
                other_extent.append((pcap.name, session_key(body)))  # session timeouts differ
            else:
                compared += 1
                if _dns_view(rec) != _dns_view(body):
                    disagree.append((pcap.name, session_key(body), _dns_view(body), _dns_view(rec)))
    assert not disagree, disagree
    assert compared >= MIN_COMPARED, (compared, unmatched, other_extent)


# -- hand-built messages -------------------------------------------------------------------

@pytest.fixture
def runtime() -> PluginRuntime:
    return loaded_runtime(PLUGIN)


# Feed (direction, bytes) chunks to one session (UDP to port 53 unless told) and return its SPI record.
run = partial(feed_session, ip_protocol=17, client_port=40000, server_port=53)


def name(text: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in text.split(".")) + b"\0"


def header(ident=0x1234, flags=0x0100, qd=1, an=0, ns=0, ar=0) -> bytes:
    return struct.pack(">HHHHHH", ident, flags, qd, an, ns, ar)


def rr(owner: bytes, rtype: int, rdata: bytes, rclass=1, ttl=60) -> bytes:
    return owner + struct.pack(">HHIH", rtype, rclass, ttl, len(rdata)) + rdata


A, NS, CNAME, MX, OPT, ANY = 1, 2, 5, 15, 41, 255
QUERY = header() + name("www.example.com") + struct.pack(">HH", A, 1)


def response(flags=0x8180, an=1, ns=0, ar=0, records=b"", qname="www.example.com") -> bytes:
    return header(flags=flags, an=an, ns=ns, ar=ar) + name(qname) + struct.pack(">HH", A, 1) + records


def test_kernel_offload_gets_port_rules_only(runtime):
    rules = runtime.offload_rules()
    assert set(rules.ports) == {(17, 53, "src"), (17, 53, "dst"), (17, 5353, "src"),
                                (17, 5353, "dst"), (17, 5355, "src"), (17, 5355, "dst"),
                                (6, 53, "dst")}
    assert rules.prefixes == () and not rules.match_all


def test_query_and_response_over_udp(runtime):
    answers = (rr(b"\xc0\x0c", CNAME, name("Edge.Example.NET"))
               + rr(b"\xc0\x0c", A, bytes([192, 0, 2, 1])))
    authority = rr(name("example.com"), NS, name("ns1.example.com"))
    extra = rr(name("example.com"), MX, struct.pack(">H", 10) + name("mail.example.com"))
    rec = run(runtime, [(0, QUERY), (1, response(an=2, ns=1, ar=1,
                                                  records=answers + authority + extra))])
    assert rec["protocol"] == ["udp", "dns"]
    assert rec["dns"] == {
        "host": ["edge.example.net", "www.example.com"], "hostCnt": 2,
        "nameserverHost": ["ns1.example.com"], "nameserverHostCnt": 1,
        "mailserverHost": ["mail.example.com"], "mailserverHostCnt": 1,
        "opcode": ["QUERY"], "opcodeCnt": 1, "qt": ["A"], "qtCnt": 1, "qc": ["IN"], "qcCnt": 1,
        "queryHost": ["www.example.com"], "queryHostCnt": 1,
        "status": ["NOERROR"], "statusCnt": 1,
        "headerFlags": ["RA", "RD"], "headerFlagsCnt": 2}


def test_compression_loop_is_cut_after_six_pointers(runtime):
    # The question name at offset 12 points at itself: a loop that must end.
    looped = header() + b"\xc0\x0c" + struct.pack(">HH", A, 1)
    rec = run(runtime, [(0, looped + b"\0" * 4)])
    assert rec["protocol"] == ["udp", "dns"] and "dns" not in rec


def query_through_pointers(depth: int) -> bytes:
    """A query whose name "a.b" is reached through `depth` compression pointers:
    the question is a pointer to the last of a chain of pointers after it."""
    data_at = 12 + 2 + 4  # after the question (a pointer, then type and class)
    data = name("a.b")
    target = data_at
    for _ in range(depth - 1):
        data += struct.pack(">H", 0xC000 | target)
        target = data_at + len(data) - 2
    return header() + struct.pack(">HHH", 0xC000 | target, A, 1) + data


def test_pointer_chain_of_six_resolves_and_seven_fails(runtime):
    assert run(runtime, [(0, query_through_pointers(6))])["dns"]["queryHost"] == ["a.b"]
    seven = run(runtime, [(0, query_through_pointers(7))])
    assert "dns" not in seven and seven["protocol"] == ["udp", "dns"]


def test_truncated_response_keeps_what_came_before_the_cut(runtime):
    records = rr(b"\xc0\x0c", CNAME, name("first.example.org")) + rr(b"\xc0\x0c", CNAME, name("x.y"))
    cut = response(an=3, records=records)[:-3]  # second record's rdata runs past the end
    rec = run(runtime, [(1, cut)])
    assert rec["dns"]["host"] == ["first.example.org", "www.example.com"]
    assert rec["dns"]["status"] == ["NOERROR"]


def test_messages_shorter_than_17_bytes_are_ignored(runtime):
    rec = run(runtime, [(0, QUERY[:16]), (1, b"\xff" * 3)])
    assert rec["protocol"] == ["udp"]


def test_label_bytes_are_escaped_and_lowercased_like_arkime(runtime):
    # 0x01 is not printable: "^" + chr(0x01 ^ 0x40) = "^A"; 0xE9 is not ASCII:
    # "M-" + chr(0xE9 & 0x7F) = "M-i"; g_hostname_to_unicode then lower-cases.
    q = header() + b"\x03a\x01B\x02\xe9c\x03com\x00" + struct.pack(">HH", A, 1)
    assert run(runtime, [(0, q)])["dns"]["host"] == ["a^ab.m-ic.com"]


def test_punycode_is_decoded_and_kept_in_puny(runtime):
    q = header() + name("xn--bcher-kva.example") + struct.pack(">HH", A, 1)
    dns = run(runtime, [(0, q)])["dns"]
    assert dns["host"] == ["bücher.example"] and dns["puny"] == ["xn--bcher-kva.example"]


def test_bad_punycode_is_tagged_not_recorded(runtime):
    q = header() + name("xn--a-?.example") + struct.pack(">HH", A, 1)
    rec = run(runtime, [(0, q)])
    assert rec["tags"] == ["bad-punycode"] and "dns" not in rec


def test_edns_extended_rcode_names_badvers(runtime):
    opt = b"\x00" + struct.pack(">HHIH", OPT, 4096, 0x01000000, 0)  # extended rcode 1 -> 16
    rec = run(runtime, [(1, response(flags=0x8180, an=0, ar=1, records=opt))])
    assert rec["dns"]["status"] == ["BADSIG_VERS"]


def test_opcodes_above_update_are_ignored(runtime):
    notify = header(flags=4 << 11) + name("zone.example") + struct.pack(">HH", 6, 1)
    assert run(runtime, [(0, notify)])["dns"]["opcode"] == ["NOTIFY"]
    dso = header(flags=6 << 11) + name("zone.example") + struct.pack(">HH", 6, 1)
    assert run(runtime, [(0, dso)])["protocol"] == ["udp"]


def test_no_mutation_of_a_response_raises(runtime):
    """Every truncation and every single-byte change of a rich response is parsed
    or skipped without an exception escaping the callback."""
    records = (rr(b"\xc0\x0c", CNAME, name("c.example.net")) + rr(b"\xc0\x2d", MX, b"\x00\x05\xc0\x0c")
               + rr(name("example.com"), NS, b"\x02ns\xc0\x10") + b"\x00" + struct.pack(">HHIH", OPT, 512, 0, 0))
    msg = response(an=2, ns=1, ar=1, records=records)
    for cut in range(len(msg)):
        run(runtime, [(1, msg[:cut])])
    for at in range(len(msg)):
        for value in (0x00, 0x3F, 0xC0, 0xFF):
            run(runtime, [(1, msg[:at] + bytes([value]) + msg[at + 1:])])


def test_mdns_and_llmnr_ports_name_their_protocols(runtime):
    assert run(runtime, [(0, QUERY)], client_port=5353, server_port=5353)["protocol"] == ["udp", "mdns"]
    assert run(runtime, [(0, QUERY)], server_port=5355)["protocol"] == ["udp", "llmnr"]
    assert run(runtime, [(0, QUERY)], server_port=5354)["protocol"] == ["udp"]


def framed(msg: bytes) -> bytes:
    return struct.pack(">H", len(msg)) + msg


def test_tcp_messages_split_and_joined_across_segments(runtime):
    second = header(ident=7) + name("two.example") + struct.pack(">HH", MX, 1)
    stream = framed(QUERY) + framed(second)
    chunks = [(0, stream[i:i + 5]) for i in range(0, len(stream), 5)]
    rec = run(runtime, chunks, ip_protocol=6)
    assert rec["protocol"] == ["tcp", "dns"]
    assert rec["dns"]["queryHost"] == ["two.example", "www.example.com"]
    assert rec["dns"]["qt"] == ["A", "MX"]


def test_tcp_length_prefix_too_short_for_dns_stops_parsing(runtime):
    later = header(ident=9) + name("late.example") + struct.pack(">HH", A, 1)
    rec = run(runtime, [(0, framed(QUERY)), (0, b"\x00\x05hello"), (0, framed(later))],
              ip_protocol=6)
    assert rec["dns"]["queryHost"] == ["www.example.com"]


def test_tcp_to_another_port_is_not_dns(runtime):
    assert run(runtime, [(0, framed(QUERY))], ip_protocol=6, server_port=5353)["protocol"] == ["tcp"]
