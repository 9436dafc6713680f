"""The arkime / arkime_session / arkime_packet modules (spec a)."""
import types

import pytest

from sensor.arkime.errors import ArkimeFieldError, ArkimeFieldTypeError, ArkimeHandleError
from sensor.arkime.runtime import PluginRuntime


def test_module_constants(rt, ark):
    assert isinstance(ark, types.ModuleType) and ark.__name__ == "arkime"
    assert ark.VERSION == "6.7.0" and ark.API_VERSION == 607
    assert ark.CONFIG_PREFIX == "/opt/arkime"
    assert (ark.PORT_UDP_SRC, ark.PORT_UDP_DST, ark.PORT_TCP_SRC, ark.PORT_TCP_DST,
            ark.PORT_SCTP_SRC, ark.PORT_SCTP_DST) == (1, 2, 4, 8, 16, 32)
    pkt = rt.modules["arkime_packet"]
    assert (pkt.DO_PROCESS, pkt.CORRUPT, pkt.UNKNOWN_ETHER, pkt.UNKNOWN_IP, pkt.DONT_PROCESS,
            pkt.DONT_PROCESS_OR_FREE) == (0, 3, 4, 5, 7, 8)


def test_every_spec_name_exists(rt):
    names = {
        "arkime": "register_tcp_classifier register_udp_classifier register_sctp_classifier "
                  "register_sctp_protocol_classifier register_port_classifier register_pre_save "
                  "register_save field_define field_get",
        "arkime_session": "register_parser register_parser_buf parser_buf_del parser_buf_skip "
                          "add_tag add_protocol has_protocol add_string add_int get set_attr "
                          "get_attr incref decref",
        "arkime_packet": "set_ethernet_cb set_ip_cb run_ethernet_cb run_ip_cb get set",
    }
    for mod, fns in names.items():
        for fn in fns.split():
            assert callable(getattr(rt.modules[mod], fn)), f"{mod}.{fn}"


def test_functions_are_positional_only(ark, sess, start):
    h = start()
    with pytest.raises(TypeError):
        sess.add_tag(session=h, tag="x")
    with pytest.raises(TypeError):
        ark.field_get(expr="tags")


@pytest.mark.parametrize("args,exc", [
    ((1, 0, b"x", lambda *a: None), TypeError),            # name not str
    (("n", "0", b"x", lambda *a: None), TypeError),        # offset not int
    (("n", 0, "x", lambda *a: None), TypeError),           # match str, not bytes
    (("n", 0, bytearray(b"x"), lambda *a: None), TypeError),
    (("n", 0, b"x", "notcallable"), TypeError),
    (("n", 2 ** 31, b"x", lambda *a: None), OverflowError),
    (("n", -1, b"x", lambda *a: None), ValueError),          # deliberate: negative offset
    (("n\0", 0, b"x", lambda *a: None), ValueError),        # embedded NUL
])
def test_byte_classifier_argument_errors(ark, args, exc):
    with pytest.raises(exc):
        ark.register_tcp_classifier(*args)


def test_port_classifier_errors(ark):
    cb = lambda *a: None  # noqa: E731
    with pytest.raises(ValueError, match="portKind"):
        ark.register_port_classifier("p", 80, 0, cb)
    with pytest.raises(ValueError, match="65535"):
        ark.register_port_classifier("p", 70000, ark.PORT_TCP_DST, cb)
    with pytest.raises(TypeError):
        ark.register_port_classifier("p", 80, ark.PORT_TCP_DST, None)
    with pytest.raises(ValueError, match="0-255"):
        ark.register_sctp_protocol_classifier("s", 256, cb)


def test_registration_dedupe_by_name_and_callback_name(rt, ark):
    def cb(*a):
        pass
    ark.register_tcp_classifier("dup", 0, b"AB", cb)
    ark.register_tcp_classifier("dup", 0, b"CD", cb)  # same key: silently dropped
    ark.register_udp_classifier("dup", 0, b"EF", cb)  # one key space for all kinds
    ark.register_tcp_classifier("other", 0, b"GH", cb)
    ark.register_tcp_classifier("l", 0, b"IJ", lambda *a: None)
    ark.register_tcp_classifier("l", 0, b"KL", lambda *a: None)  # two lambdas: same key
    assert {m for _, _, m in rt.offload_rules().prefixes} == {b"AB", b"GH", b"IJ"}

    def hook(s, f):
        pass
    ark.register_save(hook)
    ark.register_save(hook)
    ark.register_pre_save(hook)
    assert rt.save_hooks == [hook] and rt.pre_save_hooks == [hook]


def test_field_define_and_get(ark):
    pos = ark.field_define("test.python", "kind:lotermfield;db:test.python")
    assert ark.field_get("test.python") == pos
    assert ark.field_define("test.python", "kind:lotermfield;db:test.python") == pos
    with pytest.raises(ArkimeFieldError):
        ark.field_get("no.such.field")
    with pytest.raises(KeyError):  # ArkimeFieldError is a KeyError
        ark.field_get("no.such.field")


def test_field_define_inside_callback_is_runtime_error(rt, ark, start):
    seen = []

    def classify(session, mv, n, which):
        try:
            ark.field_define("late.x", "kind:termfield;db:late.x")
        except RuntimeError as exc:
            seen.append(str(exc))
    ark.register_tcp_classifier("late", 0, b"GE", classify)
    rt.payload(start(), 0, b"GET /")
    assert seen and "start up" in seen[0]


def test_handles_are_validated(rt, sess, start):
    h = start()
    assert isinstance(h, int) and h != 0
    with pytest.raises(ValueError):
        sess.add_tag(0, "x")
    with pytest.raises(TypeError):
        sess.add_tag("notint", "x")
    with pytest.raises(ArkimeHandleError):
        sess.add_tag(h + 1, "x")
    with pytest.raises(TypeError):
        sess.add_tag(h, 5)
    rt.session_ended(h)
    with pytest.raises(ValueError, match="Invalid Arkime handle"):
        sess.get(h, "tags")


def test_add_string_rules(rt, ark, sess, start):
    h = start()
    pos = ark.field_define("my.s", "kind:uptermfield;db:my.s")
    assert sess.add_string(h, pos, "Mixed") is True
    assert sess.add_string(h, "my.s", "Mixed") is False  # duplicate
    assert sess.add_string(h, str(pos), "Other") is True  # digit string position
    assert sess.get(h, "my.s") == ["Mixed", "Other"]  # no case folding for up kinds
    assert sess.add_string(h, -1, "x") is False
    assert sess.add_string(h, 99999, "x") is False
    assert sess.add_string(h, "ip.src", "1.2.3.4") is False  # internal/virtual
    assert sess.add_string(h, "_closeNow", "x") is False  # special action field
    ark.field_define("my.c", "kind:termfield;db:my.c;count:true")
    assert sess.add_string(h, "my.c.cnt", "x") is False  # .cnt companions are not storable
    with pytest.raises(ArkimeFieldError):
        sess.add_string(h, "unknown.field", "x")
    with pytest.raises(ArkimeFieldTypeError):
        sess.add_string(h, "http.statuscode", "200")
    with pytest.raises(ArkimeFieldTypeError):
        sess.add_string(h, "ip.dns", "1.2.3.4")
    with pytest.raises(TypeError):
        sess.add_string(h, 1.5, "x")


def test_add_string_truncates_long_values_and_tags(rt, ark, sess, start):
    h = start()
    ark.field_define("long.v", "kind:termfield;db:long.v")
    assert sess.add_string(h, "long.v", "a" * 20000) is True
    (value,) = sess.get(h, "long.v")
    assert len(value) == 16384
    assert "truncated-field-long.v" in sess.get(h, "tags")


def test_disabled_field_add_returns_false(view_cls):
    rt = PluginRuntime(disabled_fields=frozenset({"http.uri"}))
    h = rt.session_started(view_cls())
    assert rt.modules["arkime_session"].add_string(h, "http.uri", "/x") is False


def test_add_int_rules(sess, ark, start):
    h = start()
    assert sess.add_int(h, "http.statuscode", 200) is True
    assert sess.add_int(h, "http.statuscode", 200) is False
    assert sess.add_int(h, "http.statuscode", -1) is True
    assert sorted(sess.get(h, "http.statuscode")) == [200, 0xFFFFFFFF]  # unsigned
    with pytest.raises(OverflowError):
        sess.add_int(h, "http.statuscode", 2 ** 31)
    with pytest.raises(TypeError):
        sess.add_int(h, "http.statuscode", 1.0)
    with pytest.raises(ArkimeFieldTypeError):
        sess.add_int(h, "host.http", 1)
    with pytest.raises(ArkimeFieldTypeError):
        sess.add_int(h, "ip.dns", 1)
    fl = ark.field_define("f.fl", "kind:float;db:f.fl")
    with pytest.raises(ArkimeFieldTypeError):
        sess.add_int(h, fl, 1)
    assert sess.add_int(h, "port.src", 5) is False
    assert sess.add_int(h, "_maxPacketsToSave", 5) is False


def test_tags_and_protocols(sess, start):
    h = start()
    assert sess.add_tag(h, "t1") is None
    sess.add_tag(h, "t1")
    assert sess.get(h, "tags") == ["t1"]
    assert sess.add_protocol(h, "redis") is None
    assert sess.has_protocol(h, "redis") is True
    assert sess.has_protocol(h, "Redis") is False  # exact, case-sensitive
    assert sess.has_protocol(h, "tcp") is True  # transport is added at session start
    assert sess.get(h, "protocols") == ["tcp", "redis"]
    assert sess.add_string(h, "protocols", "redis") is False


def test_flow_layer_tags_are_visible_to_get(sess, start):
    h = start(tags={"incomplete-tcp"})
    sess.add_tag(h, "mine")
    assert sorted(sess.get(h, "tags")) == ["incomplete-tcp", "mine"]


def test_get_return_shapes(sess, ark, start):
    h = start(client_ip="::ffff:10.1.2.3", server_ip="10.0.0.2", client_port=1234,
              server_port=80, packets=[5, 0], databytes=[10, 0])
    assert sess.get(h, "host.http") is None  # unset
    sess.add_string(h, "host.http", "example.com")
    assert sess.get(h, "host.http") == ["example.com"]
    sess.add_int(h, "http.statuscode", 301)
    assert sess.get(h, "http.statuscode") == [301]
    assert sess.get(h, "ip.src") == "10.1.2.3"  # v4-mapped printed as v4
    assert sess.get(h, "ip.dst") == "10.0.0.2"
    assert sess.get(h, "port.src") == 1234 and sess.get(h, "port.dst") == 80
    assert sess.get(h, "packets.src") == 5
    assert sess.get(h, "packets.dst") is None  # quirk: virtual int 0 reads as None
    assert sess.get(h, "databytes.src") == 10 and sess.get(h, "databytes.dst") is None
    assert sess.get(h, "tcpflags.syn") == 1 and sess.get(h, "tcpflags.urg") is None
    assert sess.get(h, "tcpflags.syn-ack") == 1
    assert sess.get(h, "tcp.synSet") == 3
    assert sess.get(h, "communityId") == "hqeHY06nR5NH3ELRiceo1VcM3Fk="
    assert sess.get(h, "ip.dst:port") == "10.0.0.2:80"
    assert sess.get(h, "dst.ip:port") == "10.0.0.2:80"
    assert sess.get(h, "http.statuscode.cnt") is None
    assert sess.get(h, "_closeNow") is None
    assert sess.get(h, "ip.dns") is None
    pos = ark.field_get("host.http")
    assert sess.get(h, str(pos)) == ["example.com"]  # digit string works
    with pytest.raises(TypeError):
        sess.get(h, pos)  # an int does not
    with pytest.raises(ArkimeFieldError):
        sess.get(h, "no.such")


def test_get_ipv6_and_non_ip(sess, start):
    h = start(server_ip="2001:db8::1", server_port=443, community_id="")
    assert sess.get(h, "ip.dst:port") == "2001:db8::1.443"
    assert sess.get(h, "communityId") is None


def test_attrs(sess, start):
    h1, h2 = start(), start()
    obj = object()
    sess.set_attr(h1, "k", obj)
    assert sess.get_attr(h1, "k") is obj
    assert sess.get_attr(h2, "k") is None
    assert sess.get_attr(h1, "missing") is None


def test_register_parser_rejects_non_callable(sess, start):
    with pytest.raises(TypeError):
        sess.register_parser(start(), 42)
    with pytest.raises(TypeError):
        sess.register_parser_buf(start(), None)


def test_packet_module_accepts_registration_but_never_runs(rt, caplog):
    pkt = rt.modules["arkime_packet"]
    cb = lambda *a: 0  # noqa: E731
    pkt.set_ethernet_cb(0x88B5, cb)
    pkt.set_ip_cb(47, cb)
    assert rt.ethernet_callbacks == {0x88B5: cb} and rt.ip_callbacks == {47: cb}
    assert "never run" in caplog.text
    with pytest.raises(TypeError):
        pkt.set_ip_cb(47, "x")
    with pytest.raises(TypeError):
        pkt.run_ethernet_cb(1, 2, 3, 0x800, "x")  # buf is not a buffer
    with pytest.raises(ArkimeHandleError):
        pkt.run_ethernet_cb(1, 2, b"abc", 0x800, "x")
    with pytest.raises(ArkimeHandleError):
        pkt.run_ip_cb(1, 2, memoryview(b"abc"), 17, "x")
    with pytest.raises(ArkimeHandleError):
        pkt.get(2, "vlan")
    with pytest.raises(TypeError):
        pkt.set(2, "vlan", "x")
