"""plugins/http.py: Arkime's own HTTP captures, and exchanges built by hand from RFC 9112.

Body digests are computed outside this code (`printf '%s' '<body>' | md5sum`, `sha256sum`)."""
from __future__ import annotations

from functools import partial

import pytest
from plugin_testlib import (PLUGINS, claims, comparable_group, conversation_record, drop_known_gaps, loaded_runtime,
                            ours_and_expected, sessions_by_key)

PLUGIN = PLUGINS / "http.py"

# Captures Arkime tagged `http` (protocol list of their .test files).
CAPTURES = [
    "80211http", "CVE-2018-6794", "adb_synthetic", "arkime_synthetic", "badcurveball",
    "curl-enabled-tls13", "gre-erspan-vxlan", "http-100-continue", "http-301-get",
    "http-500-head", "http-basicauth", "http-content-gzip", "http-content-zip",
    "http-digestauth", "http-empty-useragent", "http-no-length", "http-post-upload",
    "http-simple-get", "http-syn-ack", "http-tcp-seq-issue", "http-wrapped-header", "http-xff",
    "http2-nghttp2", "https-connect", "https-generalizedtime", "https3-301-get", "long-session",
    "nflog", "no-syn-ack", "ntlm_synthetic", "openvpn_synthetic", "quicietf", "quicietfooo",
    "sctp-www", "single-packets", "socks-http-example", "socks-http-pass",
    "socks-https-example", "socks5-http-302", "socks5-http-302-frag", "socks5-reverse",
    "tcp-reassembly-synthetic", "tcp_handshake_synthetic", "tls-alpn-h2",
    "tls-client-sessionid", "tls-split-client-hello", "tls13", "twovlan", "v6-http",
    "websocket", "wireshark-retrans",
]
# Sessions (capture -> client ports) that cannot agree yet, and why. The test checks
# they still disagree, so a fix elsewhere shows up as a failure asking to shrink this.
CORE = "the sensor core does not deliver this session's payload as Arkime does"
GAPS = {
    "gre-erspan-vxlan": ({65174}, CORE + " (ERSPAN/VXLAN)"),
    "sctp-www": ({32836, 32837}, CORE + " (SCTP DATA chunks are not reassembled)"),
    "single-packets": ({49749}, CORE + " (single-packet session)"),
    "http2-nghttp2": ({49570}, "HTTP/2 frames: Arkime's http2 parser, not HTTP/1"),
    **{capture: (ports, "HTTP inside SOCKS: needs a SOCKS plugin to re-classify the tunnel")
       for capture, ports in (("socks-http-example", {53533, 53534, 53535}),
                              ("socks-http-pass", {54072}), ("socks5-http-302", {1637}),
                              ("socks5-http-302-frag", {1637}), ("socks5-reverse", {54263}))},
}
# Arrays Arkime keeps with repeats; a Python plugin's fields are sets, so compare as sets.
REPEATING = ("requestHeaderField", "requestHeaderValue", "responseHeaderField", "responseHeaderValue")
# Not settable from Python: `method-GET` style plain-int counters, and ip fields (xffIp + geo).
UNSETTABLE = ("method-", "xff")


def _sessions(bodies):
    """The `http` sessions by (4-tuple, first packet): their http fields.

    (Arkime's TLS parser also writes the SNI to http.host: such sessions are not
    `http` and not compared here.)"""
    return sessions_by_key(bodies, lambda body: claims(body, "http"),
                           lambda body: comparable_group(body.get("http", {}), REPEATING,
                                                         lambda key: key.startswith(UNSETTABLE)))


@pytest.mark.parametrize("capture", CAPTURES)
def test_fields_match_arkime_on_its_captures(shared_testdata, capture):
    ours, expected = ours_and_expected(shared_testdata, capture, PLUGIN, _sessions)
    gap_ports = drop_known_gaps(capture, expected, ours, GAPS)
    for key in [k for k in ours if k[1] in gap_ports or k[3] in gap_ports]:
        del ours[key]  # e.g. the same session seen in the other direction
    assert ours == expected


conversation = partial(conversation_record, plugins=(PLUGIN,), server_port=80, server_closes=True)


REQUEST = (b"GET /a/b.html?x=1&y=%41 HTTP/1.1\r\nHost: WWW.Example.COM:8080\r\n"
           b"User-Agent: probe/1.0\r\nAccept: */*\r\n"
           b"X-Long-Header-Name-That-Goes-On-And-On-Forever: V\r\n\r\n")
REQUEST_FIELDS = {
    "clientVersion": ["1.1"], "clientVersionCnt": 1,
    "host": ["WWW.Example.COM:8080", "www.example.com"], "hostCnt": 2,
    "key": ["x", "y"], "keyCnt": 2, "method": ["GET"], "methodCnt": 1,
    "path": ["/a/b.html"], "pathCnt": 1,
    "requestHeader": ["accept", "host", "user-agent", "x-long-header-name-that-goes-on-and-on-"],
    "requestHeaderCnt": 4,
    "requestHeaderField": ["accept", "x-long-header-name-that-goes-on-and-on-"],
    "requestHeaderValue": ["*/*", "v"], "requestHeaderValueCnt": 2,
    "uri": ["www.example.com:8080/a/b.html?x=1&y=%41"], "uriCnt": 1,
    "useragent": ["probe/1.0"], "useragentCnt": 1, "value": ["1", "A"], "valueCnt": 2,
}


# Arkime classifies a direction on its first chunk only, and not on a 1-byte one: the
# first segment carries at least the method, then any split must give the same fields.
@pytest.mark.parametrize("cuts", [(3,), (4, 5, 6, 7), (17, 18), (40, 41, 42), (len(REQUEST) - 1,),
                                  tuple(range(3, len(REQUEST)))])
def test_request_split_across_segments(tmp_path, cuts):
    bounds = [0, *cuts, len(REQUEST)]
    record = conversation(tmp_path, [(0, REQUEST[a:b]) for a, b in zip(bounds, bounds[1:])])
    assert "http" in record["protocol"]
    assert record["http"] == REQUEST_FIELDS


def test_pipelined_messages_and_bodies_are_skipped(tmp_path):
    """Two requests in one segment; a Content-Length body that looks like a response,
    then a chunked body whose chunk-size line is split across segments."""
    requests = (b"GET /one HTTP/1.1\r\nHost: h\r\n\r\n"
                b"POST /two HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab\0cd")
    first = b"<html>HTTP/1.1 500 Fake</html>"
    responses = (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(first), first)
                 + b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n7\r\nhello, \r\n")
    rest = b"\r\nchunked world\r\n0\r\n\r\n"
    record = conversation(tmp_path, [(0, requests), (1, responses + b"d"), (1, rest)])
    http = record["http"]
    assert http["method"] == ["GET", "POST"] and http["path"] == ["/one", "/two"]
    assert http["statuscode"] == [200, 404]
    assert http["md5"] == sorted(["dff07e8484ff324ebf25050a5e22bfe0",  # first response body
                                  "0ca52fc5649d4d700d069151d2a75ec7",  # "hello, chunked world"
                                  "5d622b3d4d8cc07754fd386e7f29326e"])  # b"ab\0cd"
    assert http["sha256"] == sorted([
        "781215aa30deb26dba1c54cc64180b94f9a0a177808389b49b7b817f3fd0762e",
        "0d0ae4f49508422067cfc0ed303a7278954ec03dc5a21b77625be9686e7c566f",
        "1bd95cf6379b94fd3b6ceb1390b70b822c76442c4bfb8273b941e09d8dfd9b56"])
    assert http["bodyMagic"] == ["text/html"]
    assert "requestBody" not in http  # a body with a NUL is not UTF-8 to g_utf8_validate
    assert http["responseHeader"] == ["content-length", "transfer-encoding"]


def test_body_delimited_by_close_is_hashed_at_the_end(tmp_path):
    record = conversation(tmp_path, [(0, b"GET / HTTP/1.0\r\n\r\n"),
                                     (1, b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nuntil "),
                                     (1, b"the end")])
    assert record["http"]["md5"] == ["15c97885f033007e322907c25b5356b8"]
    assert record["http"]["sha256"] == ["e87fbeaf9ee88a0d807204967f0f42acb4c4fe7e3fdafcf66671da0a89377fc1"]
    assert record["http"]["serverVersion"] == ["1.0"]


def test_request_body_auth_and_cookies(tmp_path):
    request = (b"POST /login HTTP/1.1\r\nHost: h\r\nAuthorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n"
               b"Cookie: a=1; b = two;c\r\nContent-Length: 13\r\n\r\npassword=open")
    http = conversation(tmp_path, [(0, request)])["http"]
    assert http["user"] == ["Aladdin"]  # RFC 7617 section 2 example
    assert http["authType"] == ["basic"]
    assert http["request-authorization"] == ["Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="]
    assert http["cookieKey"] == ["a", "b "] and http["cookieValue"] == ["1", "two"]
    assert http["requestBody"] == ["password=open"]


def test_digest_user(tmp_path):
    request = (b'GET /dir/index.html HTTP/1.1\r\nHost: h\r\nAuthorization: Digest username="Mufasa",'
               b' realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093"\r\n\r\n')
    http = conversation(tmp_path, [(0, request)])["http"]
    assert http["user"] == ["Mufasa"] and http["authType"] == ["digest"]  # RFC 2617 section 3.5


def test_query_string_keys_and_values_follow_arkime(tmp_path):
    request = b"GET /q?a=1&b=%41&c&d=x=y&e=%zz HTTP/1.1\r\nHost: h\r\n\r\n"
    http = conversation(tmp_path, [(0, request)])["http"]
    assert http["key"] == ["a", "b", "c", "d", "e"]
    assert http["value"] == ["%zz", "1", "A", "x", "y"]  # a bad escape is kept as it came


def test_connect_tunnel_is_classified_afresh(tmp_path, tls_probe):
    record = conversation(tmp_path, [
        (0, b"CONNECT example.com:443 HTTP/1.1\r\nUser-Agent: c\r\n\r\n"),
        (1, b"HTTP/1.1 200 Connection established\r\n\r\n"),
        (0, b"\x16\x03\x01\x00\x05hello"), (1, b"\x16\x03\x03\x00\x02hi")],
        plugins=(PLUGIN, tls_probe), server_port=8080)
    assert {"http", "tlsprobe"} <= set(record["protocol"])
    assert record["http"]["uri"] == ["example.com:443"] and record["http"]["statuscode"] == [200]
    assert "md5" not in record["http"]  # the tunnel is not an HTTP body


def test_a_bad_message_stops_only_its_direction(tmp_path):
    record = conversation(tmp_path, [(0, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
                                     (1, b"HTTP/1.1 abc\r\n\r\n"),
                                     (0, b"GET /again HTTP/1.1\r\nHost: h\r\n\r\n")])
    assert record["http"]["path"] == ["/", "/again"]
    assert "statuscode" not in record["http"]


def test_classifiers_are_byte_prefixes_for_the_kernel():
    rules = loaded_runtime(PLUGIN).offload_rules()
    assert {(6, 0, b"GET"), (6, 0, b"POST"), (6, 0, b"HTTP"), (132, 0, b"GET")} <= set(rules.prefixes)
    assert not rules.match_all
