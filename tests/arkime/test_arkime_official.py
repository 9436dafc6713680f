"""Equivalents of Arkime's own Python-bridge tests (tests/python.t), fed synthetic sessions."""
import gc
import weakref

from sensor.arkime.loader import load_plugins

PYTHONTEST = """\
import arkime
import arkime_session
import arkime_packet

value_pos = arkime.field_define("test.python", "kind:lotermfield;db:test.python")


def pre_save(session, final):
    if arkime_session.get(session, "ip.src") == "10.0.0.1":
        arkime_session.add_string(session, value_pos, "my value")
        arkime_session.add_int(session, "http.statuscode", 12345)


arkime.register_pre_save(pre_save)
"""

GILREPRO = """\
import arkime
import arkime_session


def classify(session, data, remaining, which):
    marker = list(range(1000))

    def parser(session, data, remaining, which):
        _ = marker
        return 0

    PARSERS.append(parser)
    arkime_session.register_parser(session, parser)
    arkime_session.add_protocol(session, "pygilrepro")


PARSERS = []
arkime.register_tcp_classifier("pygilrepro", 0, b"GET ", classify)
"""


def test_pythontest_pre_save_adds_fields_for_10_0_0_1(rt, write_plugin, view_cls):
    assert load_plugins(rt, files=[write_plugin("pythontest.py", PYTHONTEST)]).ok
    one = rt.session_started(view_cls(client_ip="10.0.0.1", server_ip="10.0.0.2",
                                      client_port=53226, server_port=3000))
    two = rt.session_started(view_cls(id=2, client_ip="10.0.0.4", server_ip="10.0.0.3",
                                      client_port=43178, server_port=3000))
    for h in (one, two):
        rt.payload(h, 0, bytes.fromhex("0201000000000023") + b"\0" * 78)
    rec1, rec2 = rt.session_ended(one), rt.session_ended(two)
    assert rec1["test"] == {"python": ["my value"]}
    assert rec1["http"] == {"statuscode": [12345], "statuscodeCnt": 1}
    assert "test" not in rec2 and "http" not in rec2
    assert rt.errors.total == 0


def test_pythongilrepro_closure_parser(rt, write_plugin, view_cls):
    report = load_plugins(rt, files=[write_plugin("pythongilrepro.py", GILREPRO)])
    assert report.ok
    plugin_globals = report.modules[next(iter(report.modules))].__dict__
    view = view_cls(client_ip="10.180.156.141", server_ip="192.30.252.130", client_port=62341,
                    server_port=80, databytes=[145, 107])
    h = rt.session_started(view)
    rt.payload(h, 0, b"GET / HTTP/1.1\r\nHost: www.github.com\r\n"
                     b"User-Agent: curl/7.24.0\r\nAccept: */*\r\n\r\n")
    rt.payload(h, 1, b"HTTP/1.1 301 Moved Permanently\r\nContent-length: 0\r\n\r\n")
    assert rt.wants_more(h)  # the closure parser is still registered
    (parser,) = plugin_globals["PARSERS"]
    ref = weakref.ref(parser)
    plugin_globals["PARSERS"].clear()
    del parser
    record = rt.session_ended(h)
    gc.collect()
    assert record["protocol"] == ["tcp", "pygilrepro"] and record["protocolCnt"] == 2
    assert ref() is None  # the runtime held the only reference and freed it cleanly
    assert rt.errors.total == 0

    other = rt.session_started(view_cls())
    rt.payload(other, 0, b"POST / HTTP/1.1\r\n")
    assert rt.session_ended(other)["protocol"] == ["tcp"]
