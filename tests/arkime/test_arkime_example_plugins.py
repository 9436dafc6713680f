"""The bundled example plugins, loaded like a user's and fed synthetic payloads."""
from pathlib import Path

import pytest

from sensor.arkime.loader import load_plugins

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


def resp(*args: bytes) -> bytes:
    out = b"*%d\r\n" % len(args)
    for a in args:
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


@pytest.fixture
def loaded(rt):
    report = load_plugins(rt, dirs=[PLUGINS])
    assert report.ok, [str(e) for e in report.errors]
    assert {p.name for p in report.loaded} >= {"redis.py", "ntp.py"}
    return rt


def test_redis_commands_split_across_segments_and_large_values(loaded, view_cls):
    rt = loaded
    h = rt.session_started(view_cls(server_port=6380))
    stream = resp(b"set", b"k", b"v" * 20000) + resp(b"GET", b"k") + resp(b"ping")
    cut = [0, 5, 9, 100, 9000, 20030, 20040, len(stream)]
    for a, b in zip(cut, cut[1:]):
        rt.payload(h, 0, stream[a:b])
        rt.payload(h, 1, b"+OK\r\n")
    rec = rt.session_ended(h)
    assert rec["protocol"] == ["tcp", "redis"]
    assert rec["redis"] == {"command": ["GET", "PING", "SET"], "commandCnt": 3}
    assert "tags" not in rec  # no bad-resp: the 20 kB value was skipped, not parsed
    assert rt.errors.total == 0


def test_redis_not_claimed_for_other_star_payloads(loaded, view_cls):
    rt = loaded
    h = rt.session_started(view_cls(server_port=6379))
    rt.payload(h, 0, b"*hello there")
    assert rt.wants_more(h)  # the server side may still be classified
    rt.payload(h, 1, b"+OK\r\n")
    assert not rt.wants_more(h)  # both sides seen, nothing claimed: kernel may bypass
    assert rt.session_ended(h)["protocol"] == ["tcp"]


def test_redis_bad_resp_unregisters_and_tags(loaded, view_cls):
    rt = loaded
    h = rt.session_started(view_cls())
    rt.payload(h, 0, resp(b"GET", b"a"))
    rt.payload(h, 1, b"$-1\r\n")
    rt.payload(h, 0, b"*2\r\n#oops\r\n")
    assert not rt.wants_more(h)
    rec = rt.session_ended(h)
    assert rec["tags"] == ["redis:bad-resp"] and rec["redis"]["command"] == ["GET"]


def ntp_packet(version: int, mode: int, stratum: int = 0) -> bytes:
    return bytes([(version << 3) | mode, stratum]) + bytes(46)


def test_ntp_extracts_version_mode_stratum(loaded, view_cls):
    rt = loaded
    h = rt.session_started(view_cls(ip_protocol=17, client_port=50000, server_port=123))
    rt.payload(h, 0, ntp_packet(4, 3))
    rt.payload(h, 1, ntp_packet(4, 4, stratum=2))
    rt.payload(h, 0, ntp_packet(3, 3))
    rec = rt.session_ended(h)
    assert rec["protocol"] == ["udp", "ntp"]
    assert rec["ntp"] == {"version": [3, 4], "versionCnt": 2, "mode": ["client", "server"],
                          "modeCnt": 2, "stratum": [2]}


def test_ntp_rejects_non_ntp_and_bounds_work(loaded, view_cls):
    rt = loaded
    junk = rt.session_started(view_cls(ip_protocol=17, server_port=123))
    rt.payload(junk, 0, b"\x00" * 48)  # mode 0: not NTP
    assert "ntp" not in rt.session_ended(junk)["protocol"]

    h = rt.session_started(view_cls(ip_protocol=17, server_port=123))
    for i in range(10):
        rt.payload(h, i % 2, ntp_packet(4, 3 + i % 2))
    assert not rt.wants_more(h)  # parser gave up after 8 datagrams: kernel may bypass


def test_example_plugins_offload_rules(loaded):
    rules = loaded.offload_rules()
    assert (6, 6379, "dst") in rules.ports and (6, 0, b"*") in rules.prefixes
    assert {(17, 123, "src"), (17, 123, "dst")} <= set(rules.ports)
    assert rules.match_all == frozenset()
