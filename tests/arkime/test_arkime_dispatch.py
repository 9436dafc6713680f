"""Classify-before-parse dispatch and parser return codes (spec b)."""
import logging

import pytest

from sensor.arkime.runtime import MAX_PARSERS_PER_SESSION


def recorder(log, tag):
    def cb(session, mv, n, which):
        log.append((tag, bytes(mv), n, which))
    cb.__name__ = f"cb_{tag}"
    return cb


def test_dispatch_order_and_all_matches_run(rt, ark, start):
    log = []
    # registered deliberately out of the order they must run in
    ark.register_tcp_classifier("two", 0, b"GE", recorder(log, "two"))
    ark.register_tcp_classifier("one", 0, b"G", recorder(log, "one"))
    ark.register_tcp_classifier("off", 1, b"ET", recorder(log, "off"))
    ark.register_tcp_classifier("empty", 0, b"", recorder(log, "empty"))
    ark.register_port_classifier("dst", 80, ark.PORT_TCP_DST, recorder(log, "dst"))
    ark.register_port_classifier("src", 40000, ark.PORT_TCP_SRC, recorder(log, "src"))
    ark.register_tcp_classifier("three", 0, b"GET", recorder(log, "three"))
    ark.register_tcp_classifier("nomatch", 0, b"POST", recorder(log, "nomatch"))
    ark.register_port_classifier("udp80", 80, ark.PORT_UDP_DST, recorder(log, "udp80"))
    rt.payload(start(), 0, b"GET / HTTP/1.1")
    assert [t for t, *_ in log] == ["src", "dst", "off", "empty", "one", "two", "three"]
    assert log[0][1:] == (b"GET / HTTP/1.1", 14, 0)


def test_classifier_runs_once_per_direction(rt, ark, start):
    log = []
    ark.register_tcp_classifier("e", 0, b"", recorder(log, "e"))
    h = start()
    rt.payload(h, 0, b"hello")
    rt.payload(h, 0, b"again")  # no parser consumed "hello": not classified again
    rt.payload(h, 1, b"world")
    assert [(t, w) for t, _, _, w in log] == [("e", 0), ("e", 1)]


def test_short_chunks_are_never_classified(rt, ark, start):
    log = []
    ark.register_tcp_classifier("e", 0, b"", recorder(log, "e"))
    ark.register_port_classifier("p", 80, ark.PORT_TCP_DST, recorder(log, "p"))
    h = start()
    rt.payload(h, 0, b"x")
    rt.payload(h, 0, b"yz")  # totals no longer equal consumed: Arkime never classifies again
    rt.payload(h, 1, b"")
    rt.payload(h, 1, b"ok")
    assert [(t, w) for t, _, _, w in log] == [("p", 1), ("e", 1)]


def test_udp_byte_classifiers_blind_to_port_53(rt, ark, start):
    log = []
    ark.register_udp_classifier("u", 0, b"", recorder(log, "bytes"))
    ark.register_port_classifier("p", 53, ark.PORT_UDP_DST, recorder(log, "port"))
    rt.payload(start(ip_protocol=17, server_port=53), 0, b"\x12\x34query")
    rt.payload(start(ip_protocol=17, client_port=53, server_port=5353), 0, b"\x12\x34")
    rt.payload(start(ip_protocol=17, server_port=5353), 0, b"\x12\x34")
    assert [t for t, *_ in log] == ["port", "bytes"]


def test_udp_classifies_only_first_datagram_per_direction(rt, ark, sess, start):
    log = []

    def classify(session, mv, n, which):
        log.append(which)
        sess.register_parser(session, lambda s, m, n, w: n)  # consumes everything
    ark.register_udp_classifier("u", 0, b"\x01", classify)
    h = start(ip_protocol=17, server_port=123)
    for _ in range(3):
        rt.payload(h, 0, b"\x01\x02")
    rt.payload(h, 1, b"\x01\x02")
    assert log == [0, 1]


def test_tcp_reclassifies_after_parsers_consumed_everything(rt, ark, sess, start):
    log = []

    def starttls(session, mv, n, which):
        log.append(("plain", bytes(mv)))

        def parser(session, mv, n, which):
            return n if bytes(mv).startswith(b"STARTTLS") else 0
        sess.register_parser(session, parser)
    ark.register_tcp_classifier("st", 0, b"STARTTLS", starttls)
    ark.register_tcp_classifier("tls", 0, b"\x16\x03", lambda s, m, n, w: log.append(("tls", bytes(m))))
    h = start()
    rt.payload(h, 0, b"STARTTLS\r\n")
    rt.payload(h, 0, b"\x16\x03\x01hello")  # everything so far consumed: classified again
    rt.payload(h, 0, b"\x16\x03\x01again")  # parser returned 0 last time: not again
    assert log == [("plain", b"STARTTLS\r\n"), ("tls", b"\x16\x03\x01hello")]


def test_classify_before_parse_parser_gets_same_chunk(rt, ark, sess, start):
    got = []

    def classify(session, mv, n, which):
        sess.register_parser(session, lambda s, m, n, w: got.append(bytes(m)))
    ark.register_tcp_classifier("c", 0, b"AB", classify)
    h = start()
    rt.payload(h, 0, b"ABCD")
    rt.payload(h, 1, b"EF")
    assert got == [b"ABCD", b"EF"]


def test_parser_return_codes(rt, sess, start):
    h = start()
    calls = []

    def unreg(s, m, n, w):
        calls.append("unreg")
        return -1

    def none(s, m, n, w):
        calls.append("none")

    def partial(s, m, n, w):
        calls.append("partial")
        return 1

    def last(s, m, n, w):
        calls.append("last")
        return "not an int"
    for cb in (unreg, none, partial, last):
        sess.register_parser(h, cb)
    rt.payload(h, 0, b"abc")
    rt.payload(h, 0, b"def")
    assert calls == ["unreg", "none", "partial", "last", "none", "partial", "last"]
    st = rt.state(h)
    assert st.consumed == [2, 0] and st.total == [6, 0]


def test_consumed_at_least_len_stops_later_parsers(rt, sess, start):
    h = start()
    calls = []
    sess.register_parser(h, lambda s, m, n, w: calls.append("a") or 10)
    sess.register_parser(h, lambda s, m, n, w: calls.append("b"))
    rt.payload(h, 0, b"abc")     # 10 >= 3: b is skipped
    assert calls == ["a"]


def test_parser_exception_unregisters_and_is_reported(rt, sess, start, caplog):
    h = start()
    calls = []

    def boom(s, m, n, w):
        calls.append("boom")
        raise RuntimeError("parser bug")
    sess.register_parser(h, boom)
    sess.register_parser(h, lambda s, m, n, w: calls.append("next"))
    with caplog.at_level(logging.ERROR):
        rt.payload(h, 0, b"abc")
        rt.payload(h, 0, b"def")
    assert calls == ["boom", "next", "next"]
    assert rt.errors.total == 1
    assert any(k.startswith("parser:") and "boom" in k for k in rt.errors.counts)
    assert "parser bug" in caplog.text and __file__ in caplog.text


def test_classifier_exception_does_not_stop_others(rt, ark, start):
    log = []
    ark.register_tcp_classifier("bad", 0, b"", lambda *a: 1 / 0)
    ark.register_tcp_classifier("good", 0, b"GE", lambda *a: log.append("good"))
    rt.payload(start(), 0, b"GET")
    assert log == ["good"] and rt.errors.counts["classify:bad"] == 1


def test_memoryviews_are_read_only_and_released(rt, ark, sess, start):
    kept = []

    def classify(session, mv, n, which):
        assert mv.readonly
        with pytest.raises(TypeError):
            mv[0] = 0
        kept.append(mv)
        sess.register_parser(session, lambda s, m, n, w: kept.append(m))
    ark.register_tcp_classifier("c", 0, b"", classify)
    rt.payload(start(), 0, b"data")
    assert len(kept) == 2
    for mv in kept:
        with pytest.raises(ValueError):  # released after the call
            bytes(mv)


def test_same_parser_twice_is_ignored_and_parser_cap(rt, sess, start, caplog):
    h = start()
    calls = []

    def p(s, m, n, w):
        calls.append(1)
    sess.register_parser(h, p)
    sess.register_parser(h, p)
    for i in range(MAX_PARSERS_PER_SESSION + 5):
        sess.register_parser(h, lambda s, m, n, w: None)
    rt.payload(h, 0, b"ab")
    assert calls == [1]
    assert rt.state(h).live_parsers() == MAX_PARSERS_PER_SESSION
    assert "parsers" in caplog.text


def test_parser_registered_by_a_parser_gets_the_chunk(rt, sess, start):
    h = start()
    got = []

    def outer(s, m, n, w):
        sess.register_parser(s, lambda s2, m2, n2, w2: got.append(bytes(m2)))
        return -1
    sess.register_parser(h, outer)
    rt.payload(h, 0, b"xyz")
    assert got == [b"xyz"]


def test_payload_validates(rt, start):
    with pytest.raises(ValueError):
        rt.payload(start(), 2, b"ab")
    with pytest.raises(ValueError):
        rt.payload(12345, 0, b"ab")


def test_payload_accepts_bytes_like(rt, sess, start):
    h = start()
    got = []
    sess.register_parser(h, lambda s, m, n, w: got.append(bytes(m)))
    rt.payload(h, 0, memoryview(b"abc"))
    rt.payload(h, 0, bytearray(b"de"))
    assert got == [b"abc", b"de"]


def test_sctp_ppid_classifier(rt, ark, start):
    log = []
    ark.register_sctp_protocol_classifier("m3ua", 3, lambda s, m, n, w: log.append(n))
    ark.register_sctp_classifier("bytes", 0, b"\x01\x00", lambda s, m, n, w: log.append("b"))
    h = start(ip_protocol=132, server_port=2905)
    rt.payload(h, 0, b"\x01\x00\x00\x00", sctp_ppid=3)
    rt.payload(start(ip_protocol=132), 0, b"\x01\x00\x00\x00", sctp_ppid=4)
    assert log == [4, "b", "b"]
