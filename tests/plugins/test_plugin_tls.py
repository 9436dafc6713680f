"""plugins/tls.py against Arkime's own TLS sessions, the JA3 and JA4 specs, and
hand-built hellos (split, truncated, mutated)."""
from __future__ import annotations

import hashlib
import struct
from functools import partial

import pytest
from plugin_testlib import PLUGINS, View, arkime_captures_with, feed_session, loaded_runtime, session_key

from sensor.arkime.runtime import PluginRuntime
from sensor.offline import read_records

PLUGIN = PLUGINS / "tls.py"
TLS_TAGS = {"tls:has_ech", "tls:has_esni"}
# Sessions Arkime tagged tls that the plugin cannot see as TLS on its own: TLS
# after a STARTTLS/CONNECT/SOCKS/MySQL/ADB preamble (Arkime's other parsers hand
# those over) and one PPPoE capture the flow layer does not decode.
MIN_COMPARED = 27


def _tls_view(body: dict) -> dict:
    return {"tls": body.get("tls", {}), "sni": body.get("http", {}).get("host"),
            "protocols": set(body.get("protocol", ())) & {"tls", "http2"},
            "tags": set(body.get("tags", ())) & TLS_TAGS}


def test_tls_fields_agree_with_arkime_test_sessions(shared_testdata):
    compared, disagree, unmatched = 0, [], []
    for pcap, bodies in arkime_captures_with(shared_testdata, {"tls"}):
        expected: dict[tuple, dict] = {}
        for body in bodies:
            if session_key(body) in expected:  # a later segment of a mid-saved session
                expected[session_key(body)].setdefault("tls", {}).update(body.get("tls", {}))
            else:
                expected[session_key(body)] = body
        ours = {session_key(r): r for r in read_records([pcap], plugins=[PLUGIN])}
        for key, body in expected.items():
            rec = ours.get(key)
            if rec is None or "tls" not in rec.get("protocol", ()):
                unmatched.append((pcap.name, key))
                continue
            compared += 1
            if _tls_view(rec) != _tls_view(body):
                disagree.append((pcap.name, key, _tls_view(body), _tls_view(rec)))
    assert not disagree, disagree
    assert compared >= MIN_COMPARED, (compared, unmatched)


# -- hand-built hellos ------------------------------------------------------------------

TLS_SESSION = {"ip_protocol": 6, "client_port": 50000, "server_port": 443}


@pytest.fixture
def runtime() -> PluginRuntime:
    return loaded_runtime(PLUGIN)


# Feed (direction, bytes) chunks to one TLS session and return its SPI record.
run = partial(feed_session, **TLS_SESSION)


def u16s(values) -> bytes:
    return b"".join(struct.pack(">H", v) for v in values)


def ext(etype: int, body: bytes = b"") -> bytes:
    return struct.pack(">HH", etype, len(body)) + body


def sni(host: str) -> bytes:
    name = b"\x00" + struct.pack(">H", len(host)) + host.encode()
    return ext(0x0000, struct.pack(">H", len(name)) + name)


def u16_list_ext(etype: int, values) -> bytes:
    return ext(etype, struct.pack(">H", 2 * len(values)) + u16s(values))


def alpn(*protocols: bytes) -> bytes:
    items = b"".join(bytes([len(p)]) + p for p in protocols)
    return ext(0x0010, struct.pack(">H", len(items)) + items)


def versions(*values: int) -> bytes:
    return ext(0x002B, bytes([2 * len(values)]) + u16s(values))


def handshake(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + len(body).to_bytes(3, "big") + body


def record(payload: bytes, content_type: int = 0x16) -> bytes:
    return bytes([content_type]) + struct.pack(">HH", 0x0301, len(payload)) + payload


def client_hello(ciphers, extensions, version=0x0303, session_id=b"") -> bytes:
    """A ClientHello handshake message (header included)."""
    body = struct.pack(">H", version) + bytes(range(32)) + bytes([len(session_id)]) + session_id
    body += struct.pack(">H", 2 * len(ciphers)) + u16s(ciphers) + b"\x01\x00"
    exts = b"".join(extensions)
    return handshake(1, body + struct.pack(">H", len(exts)) + exts)


def server_hello(version, cipher, extensions, session_id=b"") -> bytes:
    body = struct.pack(">H", version) + bytes(32) + bytes([len(session_id)]) + session_id
    body += struct.pack(">H", cipher) + b"\x00"
    exts = b"".join(extensions)
    return handshake(2, body + struct.pack(">H", len(exts)) + exts)


def test_kernel_offload_gets_the_handshake_prefix_only(runtime):
    rules = runtime.offload_rules()
    assert rules.prefixes == ((6, 0, b"\x16\x03"),)
    assert rules.ports == () and not rules.match_all


def test_ja3_and_session_id_of_a_hand_built_hello(runtime):
    """JA3 = md5 of "version,ciphers,extensions,groups,point formats", GREASE removed."""
    hello = client_hello(
        [0x0A0A, 0xC02B, 0xC02F, 0x009C],
        [ext(0x1A1A), sni("example.com"), ext(0x0017), u16_list_ext(0x000A, [0x2A2A, 0x001D, 0x0017]),
         ext(0x000B, b"\x01\x00"), u16_list_ext(0x000D, [0x0403, 0x0804]), alpn(b"h2", b"http/1.1"),
         versions(0x3A3A, 0x0304, 0x0303), ext(0xFF01, b"\x00")],
        session_id=bytes.fromhex("c0ffee"))
    tls = run(runtime, [(0, record(hello))])["tls"]
    ja3 = "771,49195-49199-156,0-23-10-11-13-16-43-65281,29-23,0"
    assert tls["ja3string"] == [ja3]
    assert tls["ja3"] == [hashlib.md5(ja3.encode()).hexdigest()]
    assert tls["srcSessionId"] == ["c0ffee"]
    assert tls["ja4"][0].startswith("t13d0308h2_")


# The example in FoxIO-LLC/ja4 technical_details/JA4.md: 15 ciphers and 16
# extensions in this order, plus GREASE that JA4 must ignore.
FOXIO_CIPHERS = [0x8A8A, 0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8,
                 0xC013, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035]
FOXIO_SIG_ALGS = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]
FOXIO_EXTENSIONS = [
    ext(0x5A5A), ext(0x001B, b"\x02\x00\x02"), sni("example.org"), ext(0x0033, b"\x00\x02\x00\x00"),
    alpn(b"h2", b"http/1.1"), ext(0x4469, b"\x00\x03\x02h2"), ext(0x0017), ext(0x002D, b"\x01\x01"),
    u16_list_ext(0x000D, FOXIO_SIG_ALGS), ext(0x0005, b"\x01\x00\x00\x00\x00"), ext(0x0023),
    ext(0x0012), versions(0x6A6A, 0x0304, 0x0303), ext(0xFF01, b"\x00"), ext(0x000B, b"\x01\x00"),
    u16_list_ext(0x000A, [0x4A4A, 0x001D, 0x0017, 0x0018]), ext(0x0015, bytes(20)), ext(0xFAFA)]
FOXIO_HELLO = client_hello(FOXIO_CIPHERS, FOXIO_EXTENSIONS)
FOXIO_JA4 = "t13d1516h2_8daaf6152771_e5627efa2ab1"
FOXIO_JA4_R = ("t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,"
               "cca9_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,"
               "0804,0401,0503,0805,0501,0806,0601")


def test_ja4_reproduces_the_foxio_published_example(runtime):
    rec = run(runtime, [(0, record(FOXIO_HELLO))])
    assert rec["tls"]["ja4"] == [FOXIO_JA4]
    assert rec["tls"]["ja4_r"] == [FOXIO_JA4_R]
    assert rec["http"]["host"] == ["example.org"]
    assert rec["protocol"] == ["tcp", "tls"]


def test_hello_split_across_segments_and_records_gives_the_same_fingerprints(runtime):
    whole = run(runtime, [(0, record(FOXIO_HELLO))])["tls"]
    stream = record(FOXIO_HELLO)
    segments = run(runtime, [(0, stream[:7]), (0, stream[7:100]), (0, stream[100:])])["tls"]
    records = run(runtime, [(0, record(FOXIO_HELLO[:150]) + record(FOXIO_HELLO[150:]))])["tls"]
    assert segments == whole and records == whole


def test_ja4_without_sni_or_alpn_and_tls12(runtime):
    hello = client_hello([0x002F], [u16_list_ext(0x000D, [0x0401])])
    tls = run(runtime, [(0, record(hello))])["tls"]
    ciphers = hashlib.sha256(b"002f").hexdigest()[:12]
    exts = hashlib.sha256(b"000d_0401").hexdigest()[:12]
    assert tls["ja4"] == [f"t12i010100_{ciphers}_{exts}"]


def test_tls13_server_hello(runtime):
    sid = bytes(range(32))
    hello = server_hello(0x0303, 0x1301, [versions_server(0x0304), ext(0x0033, b"\x00\x1d\x00\x00")],
                         session_id=sid)
    tls = run(runtime, [(0, record(FOXIO_HELLO)), (1, record(hello))])["tls"]
    assert tls["version"] == ["TLSv1.3"] and tls["cipher"] == ["TLS_AES_128_GCM_SHA256"]
    assert tls["ja3sstring"] == ["771,4865,43-51"]
    assert tls["ja3s"] == [hashlib.md5(b"771,4865,43-51").hexdigest()]
    assert tls["dstSessionId"] == [sid.hex()]


def versions_server(version: int) -> bytes:
    return ext(0x002B, struct.pack(">H", version))


def test_tls12_server_hello_with_h2_and_unnamed_cipher(runtime):
    h2 = server_hello(0x0303, 0xC02F, [alpn(b"h2")])
    rec = run(runtime, [(1, record(h2))])
    assert rec["tls"]["version"] == ["TLSv1.2"]
    assert rec["tls"]["cipher"] == ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]
    assert rec["protocol"] == ["tcp", "http2", "tls"]
    # TLS 1.3 draft 18 ServerHello: no session id, no compression byte
    draft = handshake(2, struct.pack(">H", 0x7F12) + bytes(32) + struct.pack(">HH", 0x0A0A, 0))
    odd = run(runtime, [(1, record(draft))])["tls"]
    assert odd["version"] == ["TLSv1.3-draft-18"] and odd["cipher"] == ["0x0a0a"]


def test_non_hello_handshakes_and_other_records_are_not_tls(runtime):
    assert run(runtime, [(0, record(handshake(11, b"\x00\x00\x00")))])["protocol"] == ["tcp"]
    assert run(runtime, [(0, record(b"\x01", content_type=0x14))])["protocol"] == ["tcp"]


def test_parser_lets_go_once_both_hellos_are_seen(runtime):
    handle = runtime.session_started(View(**TLS_SESSION))
    runtime.payload(handle, 0, record(FOXIO_HELLO))
    assert runtime.wants_more(handle)
    runtime.payload(handle, 1, record(server_hello(0x0303, 0xC02F, [])))
    assert not runtime.wants_more(handle)  # the kernel may take the rest of the flow


def test_no_truncation_or_mutation_of_a_hello_raises(runtime):
    """Every cut and single-byte change of both hellos is parsed or skipped
    without an exception escaping a callback."""
    server = record(server_hello(0x0303, 0x1301, [versions_server(0x0304)], session_id=b"\x01" * 32))
    for stream, which in ((record(FOXIO_HELLO), 0), (server, 1)):
        for cut in range(6, len(stream)):
            run(runtime, [(which, stream[:cut])])
        for at in range(5, len(stream)):
            for value in (0x00, 0x01, 0x7F, 0xFF):
                run(runtime, [(which, stream[:at] + bytes([value]) + stream[at + 1:])])
