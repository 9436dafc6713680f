"""Render the Arkime SPI session record (the `sessions3` document body).

A pure function of the session view and its plugin field values. Only the core
fields a passive sensor can know exactly are produced (no geo/ASN/OUI, no
packetPos/fileId, no node or @timestamp: the writer adds those). Keys are
sorted and arrays sorted, so the same session always renders the same JSON."""
from __future__ import annotations

from typing import Collection, Mapping

from .fields import FieldRegistry
from .session import TRANSPORTS
from .view import SessionView
from sensor.walk import tunnel_protocols

# Core parts are built with their keys already in sorted order; only the groups
# plugin fields touch are re-sorted, which keeps rendering cheap.
TCP_FLAG_KEYS = tuple(sorted(("syn", "syn-ack", "ack", "psh", "fin", "rst", "urg", "ece", "cwr",
                              "ae", "srcZero", "dstZero")))


def _ms(ts: float) -> int:
    # Arkime: tv_sec * 1000 + tv_usec / 1000 (truncating); go via µs to avoid float error
    return round(ts * 1_000_000) // 1000


def _put(record: dict, touched: set[str], db: str, values: list, count: bool,
         ecs_cnt: bool) -> None:
    """Place a field by Arkime's rule: text before the first '.' is a nested object."""
    group, dot, key = db.partition(".")
    if dot:
        target = record.setdefault(group, {})
        if not isinstance(target, dict):  # a core key of the same name wins
            return
        touched.add(group)
    else:
        target, key = record, group
    target[key] = values
    if count:
        target[f"{key}-cnt" if ecs_cnt else f"{key}Cnt"] = len(values)


def _put_outer(record: dict, outer) -> None:
    """Arkime's outer fields (an OuterSeen), under Arkime's keys."""
    for key, values in (("srcOuterIp", outer.src_ips), ("dstOuterIp", outer.dst_ips)):
        if values:
            record[key], record[f"{key}Cnt"] = sorted(values), len(values)
    for key, values in (("srcOuterMac", outer.src_macs), ("dstOuterMac", outer.dst_macs)):
        if values:
            record[key], record[f"{key}-cnt"] = sorted(values), len(values)
    if outer.vnis:
        record["vni"], record["vniCnt"] = sorted(outer.vnis), len(outer.vnis)


def render_spi(view: SessionView, registry: FieldRegistry,
               values: Mapping[int, Collection]) -> dict:
    """The SPI body for one session (or one mid-save segment)."""
    first, last = _ms(view.first_ts), _ms(view.last_ts)
    pkts, byts, data = view.packets, view.bytes, view.databytes
    network: dict = {"bytes": byts[0] + byts[1]}
    if view.community_id:
        network["community_id"] = view.community_id
    network["packets"] = pkts[0] + pkts[1]
    record: dict = {
        "firstPacket": first,
        "lastPacket": last,
        "length": last - first,
        "packetRange": {"gte": first, "lte": last},
        "ipProtocol": view.ip_protocol,
        "source": {"bytes": byts[0], "ip": view.client_ip, "packets": pkts[0],
                   "port": view.client_port},
        "destination": {"bytes": byts[1], "ip": view.server_ip, "packets": pkts[1],
                        "port": view.server_port},
        "network": network,
        "client": {"bytes": data[0]},
        "server": {"bytes": data[1]},
        "totDataBytes": data[0] + data[1],
    }
    if view.ip_protocol == 6:
        record["tcpflags"] = {k: view.tcpflags.get(k, 0) for k in TCP_FLAG_KEYS}
    if view.icmp_types:
        record["icmp"] = {"type": sorted(view.icmp_types), "code": sorted(view.icmp_codes)}
    for key, payload in (("srcPayload8", view.first_payload[0]),
                         ("dstPayload8", view.first_payload[1])):
        if payload:
            record[key] = payload[:8].hex()

    vlan_field = registry.by_expr["vlan"]
    vlans = set(view.vlan) | set(values.get(vlan_field.pos, ()))
    if vlans:
        network["vlan"] = {"id": sorted(vlans), "id-cnt": len(vlans)}

    protocols = registry.protocols
    transport = TRANSPORTS.get(view.ip_protocol)
    outer = getattr(view, "outer", None)
    names = set(values.get(protocols.pos, ()))
    if outer is not None:
        names.update(tunnel_protocols(outer.tunnels))
        _put_outer(record, outer)
    protos = sorted(names - {transport})
    if transport:
        protos.insert(0, transport)
    touched: set[str] = set()
    if protos:
        _put(record, touched, protocols.db, protos, True, False)

    tags = sorted(set(values.get(registry.tags.pos, ())) | set(view.tags))
    if tags:
        _put(record, touched, registry.tags.db, tags, True, False)

    special = {protocols.pos, registry.tags.pos, vlan_field.pos}
    for pos, vals in values.items():
        if pos in special or not vals:
            continue
        fd = registry.by_pos[pos]
        _put(record, touched, fd.db, sorted(vals), fd.count, fd.ecs_cnt)
    for group in touched:
        record[group] = dict(sorted(record[group].items()))
    return dict(sorted(record.items()))
