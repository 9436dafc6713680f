"""The header walk's vocabulary is defined once, in bpf/sensor.h: the Python
mirror (sensor/kernel/contract.py) must carry the same names and values."""
from __future__ import annotations

import re

import pytest

from sensor.kernel import contract

HEADER = (contract.BPF_DIR / "sensor.h").read_text()


def _enum(name: str) -> dict[str, int]:
    body = re.search(r"enum " + name + r" \{(.*?)\};", HEADER, re.S)
    assert body, f"enum {name} is gone from sensor.h"
    values, value = {}, -1
    for line in body.group(1).splitlines():
        m = re.match(r"\s*(\w+)(?:\s*=\s*(\w+))?,", line)
        if m:
            value = int(m.group(2), 0) if m.group(2) else value + 1
            values[m.group(1)] = value
    return values


def _define(name: str) -> int:
    m = re.search(r"#define " + name + r" (\w+)", HEADER)
    assert m, f"#define {name} is gone from sensor.h"
    return int(m.group(1), 0)


@pytest.mark.parametrize("c_enum,prefix,mirror", [
    ("walk_result", "WALK_", contract.WalkResult),
    ("sensor_tunnel", "TUNNEL_", contract.Tunnel),
    ("udp_tunnel", "UDP_TUNNEL_", contract.UdpTunnel),
    ("sensor_ether_kind", "ETHER_", contract.EtherKind),
    ("sensor_flow_flag", "FLOW_", contract.FlowFlag),
])
def test_enums_match(c_enum: str, prefix: str, mirror) -> None:
    ours = {prefix + m.name: int(m) for m in mirror.__members__.values()}
    assert ours == _enum(c_enum)


@pytest.mark.parametrize("c_name,value", [
    ("SENSOR_WALK_STEPS", contract.WALK_STEPS), ("SENSOR_VLAN_MAX", contract.VLAN_MAX),
    ("SENSOR_MPLS_MAX", contract.MPLS_MAX), ("SENSOR_GTP_EXT_MAX", contract.GTP_EXT_MAX),
    ("SENSOR_IPV6_EXT_MAX", contract.IPV6_EXT_MAX), ("SENSOR_WALK_OFFSET_MAX", contract.WALK_OFFSET_MAX),
    ("SENSOR_ETHER_VLAN_MAX", contract.ETHER_VLAN_MAX),
    ("SENSOR_ICMP_MAX", contract.ICMP_MAX), ("SENSOR_REUSE_MAX", contract.REUSE_MAX),
])
def test_depths_match(c_name: str, value: int) -> None:
    assert _define(c_name) == value


def test_tcp_flag_bits_match() -> None:
    for flag in contract.TcpFlag:
        if flag.name != "AE":  # AE lives in another byte: the kernel reads it apart
            assert _define(f"TCP_FLAG_{flag.name}") == int(flag)
