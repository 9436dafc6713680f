"""The SPI record of a kernel-only flow, straight from its counters (sans-I/O).

A flood is mostly flows no rule selects: their record is all the kernel's
counters. When no plugin has a save hook to run, building a `Session` and a
plugin session for each of them only to render them again is most of a
flood's cost, so this renders the same record directly: the fields,
values and key order `flow_session` + `render_spi` give (tests hold the two
together)."""
from __future__ import annotations

import ctypes as ct
import socket
import struct

from sensor.arkime.session import TRANSPORTS
from sensor.arkime.spi import TCP_FLAG_KEYS
from sensor.flows.accounting import has_session_type
from sensor.flows.key import community_id_packed
from sensor.kernel.contract import (
    IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, TCPF_ZERO_HI, TCPF_ZERO_LO, TCPFLAG_NAMES, FlowKey, FlowState,
)

_SIZE_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}


def _unpacker(cls: type[ct.Structure]) -> tuple[struct.Struct, dict[str, int | slice]]:
    """One struct for a whole ctypes structure's integer fields and arrays, and where each
    lands in its tuple (a nested structure is skipped): a single unpack costs less than
    reading two of its ctypes arrays."""
    fmt, where, at, n = ["="], {}, 0, 0
    for name, ctype in cls._fields_:
        is_array = issubclass(ctype, ct.Array)
        item, count = (ctype._type_, ctype._length_) if is_array else (ctype, 1)
        if issubclass(item, ct.Structure):
            continue
        field = getattr(cls, name)
        fmt.append(f"{field.offset - at}x{count}{_SIZE_CODES[ct.sizeof(item)]}")
        where[name] = slice(n, n + count) if is_array else n
        at, n = field.offset + field.size, n + count
    fmt.append(f"{ct.sizeof(cls) - at}x")
    return struct.Struct("".join(fmt)), where


_STATE, _AT = _unpacker(FlowState)
_PACKETS, _BYTES, _DATABYTES, _TCPFLAGS, _PAYLOAD_LEN, _ICMP_TYPE, _ICMP_CODE, _VLAN = (
    _AT[name] for name in ("packets", "bytes", "databytes", "tcpflags", "payload8_len", "icmp_type", "icmp_code",
                           "vlan"))
_FIRST, _LAST, _CLIENT, _ICMP_TYPES, _ICMP_CODES = (
    _AT[name] for name in ("first_ns", "last_ns", "client", "icmp_types", "icmp_codes"))
_PAYLOAD = FlowState.payload8.offset
_ADDR, _PORTS = FlowKey.addr.offset, struct.Struct(f"!{FlowKey.port.offset}xHH")   # ports in network order
_ntop = socket.inet_ntop
_AF_INET, _AF_INET6 = socket.AF_INET, socket.AF_INET6
_ICMP_PROTOCOLS = (IPPROTO_ICMP, IPPROTO_ICMPV6)
_FLAG_ORDER = tuple(TCP_FLAG_KEYS.index(name) for name in TCPFLAG_NAMES)  # kernel slot -> sorted place
_SRC_ZERO, _DST_ZERO = TCP_FLAG_KEYS.index("srcZero"), TCP_FLAG_KEYS.index("dstZero")


def _ms(ns: int, clock_offset_ns: int) -> int:
    # As spi._ms of flow_session's float seconds: the same rounding, so the same milliseconds.
    return round((ns + clock_offset_ns) / 1e9 * 1_000_000) // 1000


def kernel_spi(key: FlowKey, state: FlowState, clock_offset_ns: int) -> dict:
    """The record of an IP flow (key.family 4 or 6) the kernel counted alone,
    as the plugin runtime renders it for a session no plugin touched; the
    caller adds its `xdpsensor` part. `state` is folded (as a FlowFilter gives
    it: `own` is not read); `clock_offset_ns` turns the table's times into epoch time."""
    raw_key, raw = bytes(key), bytes(state)
    v = _STATE.unpack(raw)
    if key.family == 4:
        addrs = (raw_key[_ADDR:_ADDR + 4], raw_key[_ADDR + 16:_ADDR + 20])
        ips = (_ntop(_AF_INET, addrs[0]), _ntop(_AF_INET, addrs[1]))
    else:
        addrs = (raw_key[_ADDR:_ADDR + 16], raw_key[_ADDR + 16:_ADDR + 32])
        ips = (_ntop(_AF_INET6, addrs[0]), _ntop(_AF_INET6, addrs[1]))
    ports = _PORTS.unpack_from(raw_key)
    c = v[_CLIENT]
    s = 1 - c
    proto = key.proto
    first, last = _ms(v[_FIRST], clock_offset_ns), _ms(v[_LAST], clock_offset_ns)
    pkts, byts = v[_PACKETS], v[_BYTES]
    typed = has_session_type(proto, ports[0], ports[1])
    if typed:
        packets, bytes_ = (pkts[c], pkts[s]), (byts[c], byts[s])
        data = v[_DATABYTES]
        databytes = (data[c], data[s])
    else:   # Arkime's "other" session: no direction, no databytes
        packets, bytes_, databytes = (pkts[0] + pkts[1], 0), (byts[0] + byts[1], 0), (0, 0)
    # The kernel keeps the first ICMP_MAX distinct types and codes, in order.
    icmp_types, icmp_codes = v[_ICMP_TYPE][:v[_ICMP_TYPES]], v[_ICMP_CODE][:v[_ICMP_CODES]]
    network: dict = {"bytes": bytes_[0] + bytes_[1]}
    if typed:
        if proto in _ICMP_PROTOCOLS:
            # Community ID hashes the first message's type and code in place of ports.
            if icmp_types:
                cid = community_id_packed(addrs[c], addrs[s], icmp_types[0], v[_ICMP_CODE][0], proto)
            else:
                cid = community_id_packed(addrs[c], addrs[s], None, None, proto)
        else:
            cid = community_id_packed(addrs[c], addrs[s], ports[c], ports[s], proto)
        network["community_id"] = cid
    network["packets"] = packets[0] + packets[1]
    vlans = {vlan for vlan in v[_VLAN] if vlan}
    if vlans:
        network["vlan"] = {"id": sorted(vlans), "id-cnt": len(vlans)}
    record: dict = {
        "client": {"bytes": databytes[0]},
        "destination": {"bytes": bytes_[1], "ip": ips[s], "packets": packets[1], "port": ports[s]},
    }
    lengths = v[_PAYLOAD_LEN]
    if lengths[s]:
        record["dstPayload8"] = raw[_PAYLOAD + s * 8:_PAYLOAD + s * 8 + lengths[s]].hex()
    record["firstPacket"] = first
    if icmp_types:
        record["icmp"] = {"type": sorted(set(icmp_types)), "code": sorted(set(icmp_codes))}
    record["ipProtocol"] = proto
    record["lastPacket"] = last
    record["length"] = last - first
    record["network"] = network
    record["packetRange"] = {"gte": first, "lte": last}
    transport = TRANSPORTS.get(proto)
    if transport:
        record["protocol"] = [transport]
        record["protocolCnt"] = 1
    record["server"] = {"bytes": databytes[1]}
    record["source"] = {"bytes": bytes_[0], "ip": ips[c], "packets": packets[0], "port": ports[c]}
    if lengths[c]:
        record["srcPayload8"] = raw[_PAYLOAD + c * 8:_PAYLOAD + c * 8 + lengths[c]].hex()
    if proto == IPPROTO_TCP:
        counts = [0] * len(TCP_FLAG_KEYS)
        tcpflags = v[_TCPFLAGS]
        for slot, place in enumerate(_FLAG_ORDER):
            counts[place] = tcpflags[slot]
        zero = (tcpflags[TCPF_ZERO_LO], tcpflags[TCPF_ZERO_HI])
        counts[_SRC_ZERO], counts[_DST_ZERO] = zero[c], zero[s]
        record["tcpflags"] = dict(zip(TCP_FLAG_KEYS, counts))
    record["totDataBytes"] = databytes[0] + databytes[1]
    return record


class KernelFlowView:
    """A kernel-only flow as the plugin runtime sees a session (`arkime.view.SessionView`),
    read from its lean record: plugins' save hooks get their session without one being
    built for every flow of a flood. `uid` is the record's session id."""

    __slots__ = ("id", "uid", "record", "tags")
    outer = None

    def __init__(self, session_id: int, uid: str, record: dict) -> None:
        self.id, self.uid, self.record = session_id, uid, record
        self.tags: set[str] = set()

    ip_protocol = property(lambda self: self.record["ipProtocol"])
    client_ip = property(lambda self: self.record["source"]["ip"])
    client_port = property(lambda self: self.record["source"]["port"])
    server_ip = property(lambda self: self.record["destination"]["ip"])
    server_port = property(lambda self: self.record["destination"]["port"])
    first_ts = property(lambda self: self.record["firstPacket"] / 1000)
    last_ts = property(lambda self: self.record["lastPacket"] / 1000)
    community_id = property(lambda self: self.record["network"].get("community_id", ""))

    @property
    def packets(self) -> list[int]:
        return [self.record["source"]["packets"], self.record["destination"]["packets"]]

    @property
    def bytes(self) -> list[int]:
        return [self.record["source"]["bytes"], self.record["destination"]["bytes"]]

    @property
    def databytes(self) -> list[int]:
        return [self.record["client"]["bytes"], self.record["server"]["bytes"]]

    @property
    def tcpflags(self) -> dict[str, int]:
        return dict(self.record.get("tcpflags") or dict.fromkeys(TCP_FLAG_KEYS, 0))

    @property
    def first_payload(self) -> list[bytes]:
        return [bytes.fromhex(self.record.get("srcPayload8", "")), bytes.fromhex(self.record.get("dstPayload8", ""))]

    @property
    def icmp_types(self) -> set[int]:
        return set(self.record["icmp"]["type"]) if "icmp" in self.record else set()

    @property
    def icmp_codes(self) -> set[int]:
        return set(self.record["icmp"]["code"]) if "icmp" in self.record else set()

    @property
    def vlan(self) -> tuple[int, ...]:
        return tuple(self.record["network"].get("vlan", {}).get("id", ()))
