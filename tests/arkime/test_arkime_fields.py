"""field_define syntax and the registry (spec c)."""
import pytest

from sensor.arkime.errors import ArkimeFieldDefinitionError, ArkimeFieldError
from sensor.arkime.fields import FieldRegistry, FieldType, parse_definition


def test_parse_splits_on_semicolon_then_first_colon():
    opts = parse_definition("kind:termfield;db:a.b;help:x:y;junk;count:true")
    assert opts == {"kind": "termfield", "db": "a.b", "help": "x:y", "count": "true"}


def test_define_returns_new_positions_and_kinds():
    reg = FieldRegistry()
    n = len(reg.by_pos)
    s = reg.define("my.str", "kind:lotermfield;db:my.str")
    i = reg.define("my.int", "kind:integer;db:my.int")
    sec = reg.define("my.sec", "kind:seconds;db:my.sec")
    ip = reg.define("my.ip", "kind:ip;db:my.ip")
    fl = reg.define("my.fl", "kind:float;db:my.fl")
    assert (s, i, sec, ip, fl) == (n, n + 1, n + 2, n + 3, n + 4)
    assert [reg.by_pos[p].type for p in (s, i, sec, ip, fl)] == [
        FieldType.STR, FieldType.INT, FieldType.INT, FieldType.IP, FieldType.FLOAT]
    assert reg.by_pos[ip].category == "ip"
    assert reg.by_pos[s].group == "my" and reg.by_pos[s].friendly == "my.str"
    assert reg.by_pos[reg.define("flat", "kind:termfield;db:flat")].group == "general"


def test_booleans_are_true_only_for_exact_true():
    reg = FieldRegistry()
    a = reg.by_pos[reg.define("a.x", "kind:termfield;db:a.x;count:true;nolinked:true")]
    b = reg.by_pos[reg.define("b.x", "kind:termfield;db:b.x;count:True;nolinked:1")]
    assert a.count and not a.linked
    assert not b.count and b.linked


def test_missing_kind_returns_minus_one_and_defines_nothing():
    reg = FieldRegistry()
    assert reg.define("nokind.x", "db:nokind.x") == -1
    with pytest.raises(ArkimeFieldError):
        reg.position("nokind.x")


def test_missing_db_looks_up_existing_expression():
    reg = FieldRegistry()
    assert reg.define("host.http", "kind:termfield") == reg.position("host.http")
    with pytest.raises(ArkimeFieldError, match="nothere"):
        reg.define("nothere", "kind:termfield")


def test_field_key_overrides_expression():
    reg = FieldRegistry()
    pos = reg.define("ignored", "field:real.name;kind:termfield;db:real.name")
    assert reg.position("real.name") == pos
    with pytest.raises(ArkimeFieldError):
        reg.position("ignored")


def test_redefinition_keeps_original_type_and_position(caplog):
    reg = FieldRegistry()
    pos = reg.define("re.x", "kind:termfield;db:re.x")
    assert reg.define("re.x", "kind:integer;db:re.x") == pos
    assert reg.by_pos[pos].type is FieldType.STR
    assert "already defined" in caplog.text


def test_fake_returns_minus_one():
    assert FieldRegistry().define("f.x", "kind:termfield;db:f.x;fake:true") == -1
    assert FieldRegistry().define("f.x", "kind:termfield;db:f.x;viewerOnly:true") == -1


def test_count_adds_cnt_expression_with_no_position():
    reg = FieldRegistry()
    reg.define("c.x", "kind:termfield;db:c.x;count:true")
    assert reg.position("c.x.cnt") == -1
    reg.define("d.x", "kind:termfield;db:d.x")
    with pytest.raises(ArkimeFieldError):
        reg.position("d.x.cnt")


def test_termfield_with_term_in_db_is_rejected():
    with pytest.raises(ArkimeFieldDefinitionError, match="-term"):
        FieldRegistry().define("t.x", "kind:termfield;db:t.x-term")


def test_too_many_fields_is_rejected():
    reg = FieldRegistry()
    with pytest.raises(ArkimeFieldDefinitionError, match="1024"):
        for i in range(2000):
            reg.define(f"many.f{i}", f"kind:integer;db:many.f{i}")


@pytest.mark.parametrize("expr,db", [
    ("protocols", "protocol"), ("tags", "tags"), ("host.http", "http.host"),
    ("http.uri", "http.uri"), ("http.user-agent", "http.useragent"), ("http.method", "http.method"),
    ("http.statuscode", "http.statuscode"), ("host.dns", "dns.host"), ("ip.dns", "dns.ip"),
    ("dns.query.type", "dns.qt"), ("tls.ja3", "tls.ja3"), ("tls.ja4", "tls.ja4"),
    ("tls.cipher", "tls.cipher"), ("tls.version", "tls.version"), ("ssh.ver", "ssh.version"),
    ("ssh.hassh", "ssh.hassh"), ("email.subject", "email.subject"), ("user", "user"),
    ("asset", "asset"), ("mac.src", "source.mac"), ("vlan", "network.vlan.id"),
    ("ttl.src", "srcTTL"), ("ip.xff", "http.xffIp"), ("host.quic", "quic.host"),
])
def test_builtin_expressions(expr, db):
    reg = FieldRegistry()
    assert reg.by_pos[reg.position(expr)].db == db


def test_virtual_and_special_fields_have_no_usable_position():
    reg = FieldRegistry()
    assert reg.position("ip.src") == -1
    assert reg.position("_closeNow") < -1


def test_aliases_resolve_to_the_same_field():
    reg = FieldRegistry()
    pos = reg.define("al.x", 'kind:termfield;db:al.x;aliases:["al.y","al.z"]')
    assert reg.position("al.y") == reg.position("al.z") == pos
