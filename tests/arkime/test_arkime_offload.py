"""What the kernel gets: offload rules and the per-session bypass decision."""


def test_offload_rules_from_registrations(rt, ark, caplog):
    cb = lambda *a: None  # noqa: E731

    def other(*a):
        pass
    ark.register_port_classifier("redis", 6379, ark.PORT_TCP_DST | ark.PORT_TCP_SRC, cb)
    ark.register_port_classifier("ntp", 123, ark.PORT_UDP_DST, other)
    ark.register_tcp_classifier("get", 0, b"GET ", cb)
    ark.register_udp_classifier("x", 4, b"\xab", cb)
    rules = rt.offload_rules()
    assert set(rules.ports) == {(6, 6379, "dst"), (6, 6379, "src"), (17, 123, "dst")}
    assert set(rules.prefixes) == {(6, 0, b"GET "), (17, 4, b"\xab")}
    assert rules.match_all == frozenset()
    ark.register_sctp_classifier("all", 0, b"", cb)
    assert rt.offload_rules().match_all == frozenset({132})
    assert "matches every sctp session" in caplog.text


def test_wants_more_follows_parsers_and_pending_classification(rt, ark, sess, start):
    def classify(session, mv, n, which):
        if bytes(mv).startswith(b"KEEP"):
            sess.register_parser(session, lambda s, m, n, w: -1 if bytes(m) == b"STOP" else 0)
    ark.register_tcp_classifier("c", 0, b"", classify)

    plain = start()
    assert rt.wants_more(plain)  # nothing seen yet: classifiers may still fire
    rt.payload(plain, 0, b"nope")
    assert rt.wants_more(plain)  # the server side has not been classified
    rt.payload(plain, 1, b"nope")
    assert not rt.wants_more(plain)

    kept = start()
    rt.payload(kept, 0, b"KEEP")
    rt.payload(kept, 1, b"more")
    assert rt.wants_more(kept)
    rt.payload(kept, 1, b"STOP")
    assert not rt.wants_more(kept)


def test_wants_more_false_without_applicable_classifiers(rt, ark, start):
    ark.register_port_classifier("p", 6379, ark.PORT_TCP_DST, lambda *a: None)
    ark.register_udp_classifier("u", 0, b"\x01", lambda *a: None)
    assert rt.wants_more(start(server_port=6379))
    assert not rt.wants_more(start(server_port=80))
    assert not rt.wants_more(start(ip_protocol=17, server_port=53))  # byte classifiers blind
    assert rt.wants_more(start(ip_protocol=17, server_port=5353))
    assert not rt.wants_more(start(ip_protocol=1))
