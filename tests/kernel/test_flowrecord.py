"""The lean record of a kernel-only flow, and the view plugins' save hooks get
of it, against the record the plugin runtime renders from `flow_session`'s
Session (the path every kernel-only flow took before): the same fields, values
and key order, whether a save hook adds nothing or adds fields."""
from __future__ import annotations

import json

import pytest

from sensor.arkime.runtime import PluginRuntime
from sensor.arkime.view import SessionView
from sensor.kernel.contract import (
    IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, TCPF_ZERO_LO, FlowState, make_key,
)
from sensor.kernel.flowrecord import KernelFlowView, kernel_spi
from sensor.kernel.flowsession import flow_session

OFFSET = 1_733_000_000_123_456_789   # an epoch offset with sub-millisecond digits


def rendered(key, state) -> dict:
    runtime = PluginRuntime()
    return runtime.session_ended(runtime.session_started(flow_session(key, state, 1, OFFSET)))


def state(client: int = 0, **fields) -> FlowState:
    s = FlowState()
    s.client = client
    s.first_ns, s.last_ns = 5_000_000_999, 7_500_123_456
    s.packets[0], s.packets[1] = 3, 2
    s.bytes[0], s.bytes[1] = 300, 180
    s.databytes[0], s.databytes[1] = 120, 40
    for name, value in fields.items():
        if isinstance(value, tuple):
            getattr(s, name)[:len(value)] = value
        else:
            setattr(s, name, value)
    return s


A4, B4 = ("10.0.0.2", 40000), ("10.9.0.1", 53)
A6, B6 = ("fd00::2", 40000), ("fd00:9::1", 443)
TCP_COUNTS = tuple(range(1, 13))


CASES = {
    "udp, client low": (make_key(IPPROTO_UDP, A4, B4), state(0, payload8=(0x78, 0x79), payload8_len=(2, 0))),
    "udp, client high, both payloads": (make_key(IPPROTO_UDP, A4, B4),
                                        state(1, payload8=tuple(range(16)), payload8_len=(8, 3))),
    "tcp v6 with flags": (make_key(IPPROTO_TCP, A6, B6), state(1, tcpflags=TCP_COUNTS)),
    "tcp zero windows": (make_key(IPPROTO_TCP, A4, B4), state(0, tcpflags=(0,) * TCPF_ZERO_LO + (4, 9))),
    "sctp": (make_key(IPPROTO_SCTP, A4, B4), state(0)),
    "udp without ports (no IP inside a UDP tunnel)": (make_key(IPPROTO_UDP, (A4[0], 0), (B4[0], 0)), state(1)),
    "icmp echo both sides": (make_key(IPPROTO_ICMP, (A4[0], 0), (B4[0], 0)),
                             state(1, icmp_type=(8, 0), icmp_types=2, icmp_code=(0,), icmp_codes=1)),
    "icmp, unreachables": (make_key(IPPROTO_ICMP, (A4[0], 0), (B4[0], 0)),
                           state(0, icmp_type=(3, 11), icmp_types=2, icmp_code=(1, 3, 0), icmp_codes=3)),
    "icmp, no type kept": (make_key(IPPROTO_ICMP, (A4[0], 0), (B4[0], 0)), state(0)),
    "icmpv6 one way": (make_key(IPPROTO_ICMPV6, (A6[0], 0), (B6[0], 0)),
                       state(0, icmp_type=(135,), icmp_types=1, icmp_code=(0,), icmp_codes=1)),
    "ospf (no session type)": (make_key(89, (A4[0], 0), ("224.0.0.5", 0)), state(1)),
    "vlans": (make_key(IPPROTO_UDP, A4, B4), state(0, vlan=(300, 7))),
    "one vlan": (make_key(IPPROTO_UDP, A6, B6), state(1, vlan=(0, 12))),
}


@pytest.mark.parametrize("case", CASES)
def test_the_lean_record_is_the_rendered_one(case):
    key, flow = CASES[case]
    lean, full = kernel_spi(key, flow, OFFSET), rendered(key, flow)
    assert json.dumps(lean) == json.dumps(full)     # the store keeps the text: key order too


def test_the_cases_cover_what_the_record_can_carry():
    records = [rendered(*CASES[case]) for case in CASES]
    for field in ("tcpflags", "icmp", "srcPayload8", "dstPayload8", "protocol"):
        assert any(field in r for r in records) and not all(field in r for r in records), field
    assert any("vlan" in r["network"] for r in records) and any("community_id" not in r["network"] for r in records)
    zero = rendered(*CASES["tcp zero windows"])["tcpflags"]
    assert (zero["srcZero"], zero["dstZero"]) == (4, 9)
    sources = {rendered(*CASES[case])["source"]["ip"] for case in ("udp, client low", "udp, client high, both payloads")}
    assert sources == {A4[0], B4[0]}     # either side of the key may be the client


def _ms(ts: float) -> int:
    return round(ts * 1_000_000) // 1000


@pytest.mark.parametrize("case", CASES)
def test_the_view_plugins_get_reads_as_the_session(case):
    key, flow = CASES[case]
    session, view = flow_session(key, flow, 1, OFFSET), KernelFlowView(1, "u", kernel_spi(key, flow, OFFSET))
    for name in SessionView.__annotations__:
        mine, theirs = getattr(view, name), getattr(session, name)
        if name in ("first_ts", "last_ts"):
            mine, theirs = _ms(mine), _ms(theirs)     # the record's precision, which render_spi keeps
        elif name == "vlan":
            mine, theirs = set(mine), set(theirs)     # the record keeps each id once, sorted
        assert mine == theirs, name


def saving(adds: bool) -> PluginRuntime:
    """A runtime whose save hook does nothing, or adds a tag and a protocol."""
    runtime = PluginRuntime()
    sess = runtime.modules["arkime_session"]

    def save(handle, final):
        if adds:
            sess.add_tag(handle, "seen")
            sess.add_protocol(handle, "flood")
    runtime.save_hooks.append(save)
    return runtime


@pytest.mark.parametrize("adds", [False, True], ids=["hook adds nothing", "hook adds a tag and a protocol"])
@pytest.mark.parametrize("case", CASES)
def test_a_save_hook_gets_the_same_record_through_the_view(case, adds):
    key, flow = CASES[case]
    lean, full = saving(adds), saving(adds)
    rendered = kernel_spi(key, flow, OFFSET)
    record = lean.session_ended(lean.session_started(KernelFlowView(1, "u", rendered), rendered))
    expected = full.session_ended(full.session_started(flow_session(key, flow, 1, OFFSET)))
    assert json.dumps(record) == json.dumps(expected)
    assert ("seen" in record.get("tags", ())) == adds
