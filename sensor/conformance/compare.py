"""Field-by-field comparison of one matched pair of normalised session bodies."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sensor.conformance.normalise import canonical_json, sort_like_harness, strip_enrichment

TCP_FLAGS = ("syn", "syn-ack", "ack", "psh", "fin", "rst", "urg", "ece", "cwr", "ae", "srcZero", "dstZero")
# What a sensor observes of every session, by dotted path in the SPI body.
CORE_FIELDS = (
    "ipProtocol", "firstPacket", "lastPacket",
    "source.ip", "source.port", "source.bytes", "source.packets",
    "destination.ip", "destination.port", "destination.bytes", "destination.packets",
    "network.packets", "network.bytes", "network.community_id", "network.vlan.id",
    "client.bytes", "server.bytes", "srcPayload8", "dstPayload8", "icmp.type", "icmp.code",
    *(f"tcpflags.{flag}" for flag in TCP_FLAGS),
)
TRANSPORT_PROTOCOLS = frozenset(("tcp", "udp", "sctp", "icmp"))
# Protocols whose fields Arkime writes under other groups than the protocol's name.
PROTOCOL_GROUPS: dict[str, tuple[str, ...]] = {
    "smtp": ("email",),
    "imap": ("email",),
    "pop3": ("email",),
    "tls": ("tls", "cert"),
    "quic": ("quic", "tls"),
}


class _Missing:
    def __repr__(self) -> str:
        return "<absent>"


MISSING: Any = _Missing()


@dataclass(frozen=True, slots=True)
class FieldDifference:
    path: str
    expected: Any
    actual: Any


def get_path(body: dict, path: str) -> Any:
    """The value at a dotted path, or MISSING."""
    value: Any = body
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def core_differences(expected: dict, actual: dict) -> list[FieldDifference]:
    """Core fields that differ. A TCP flag Arkime leaves out counts as 0."""
    diffs = []
    for path in CORE_FIELDS:
        e, a = get_path(expected, path), get_path(actual, path)
        if path.startswith("tcpflags.") and expected.get("ipProtocol") == 6:
            e = 0 if e is MISSING else e
            a = 0 if a is MISSING else a
        if e != a:
            diffs.append(FieldDifference(path, e, a))
    return diffs


def protocol_list(body: dict) -> list[str]:
    return sorted(body.get("protocol") or ())


def protocols_agree(expected: dict, actual: dict, only: frozenset[str] | None = None) -> bool:
    """Whether the protocol lists are equal; with `only`, both lists are first cut to
    those names plus the transports (what the shipped plugins could have claimed)."""
    e, a = set(protocol_list(expected)), set(protocol_list(actual))
    if only is not None:
        keep = only | TRANSPORT_PROTOCOLS
        e, a = e & keep, a & keep
    return e == a


def protocol_field_differences(expected: dict, actual: dict, protocol: str
                               ) -> tuple[int, list[FieldDifference]]:
    """(fields compared, differences) over the field groups of `protocol`, enrichment stripped.

    A group is compared key by key over the union of both sides' keys, with
    `<group>Cnt` beside it at top level. A group Arkime writes as an array of
    objects (`dns`: one per query) is flattened first: each key gets the union
    of its values (plugin fields are flat sets), and `<group>Cnt`, the number
    of objects, has nothing to compare with."""
    e_body, a_body = strip_enrichment(expected), strip_enrichment(actual)
    compared = 0
    diffs: list[FieldDifference] = []
    for group in PROTOCOL_GROUPS.get(protocol, (protocol,)):
        e_group, a_group = e_body.get(group, MISSING), a_body.get(group, MISSING)
        paths = (group, f"{group}Cnt")
        if _is_object_array(e_group) or _is_object_array(a_group):
            e_body = {**e_body, group: flatten_objects(e_group, group)}
            a_body = {**a_body, group: flatten_objects(a_group, group)}
            paths = (group,)
        for path in paths:
            e, a = e_body.get(path, MISSING), a_body.get(path, MISSING)
            if isinstance(e, dict) or isinstance(a, dict):
                e = e if isinstance(e, dict) else {}
                a = a if isinstance(a, dict) else {}
                for key in sorted(set(e) | set(a)):
                    compared += 1
                    ev, av = e.get(key, MISSING), a.get(key, MISSING)
                    if ev != av:
                        diffs.append(FieldDifference(f"{group}.{key}", ev, av))
            elif e is not MISSING or a is not MISSING:
                compared += 1
                if e != a:
                    diffs.append(FieldDifference(path, e, a))
    return compared, diffs


def _is_object_array(value: Any) -> bool:
    return isinstance(value, list) and any(isinstance(v, dict) for v in value)


def flatten_objects(value: Any, group: str = "") -> Any:
    """An array of objects as one flat group: key -> the union of the values, sorted
    as the harness sorts a flat field; `<key>Cnt` -> the union's size where the
    objects counted that key."""
    if not _is_object_array(value):
        return value
    union: dict[str, dict[str, Any]] = {}
    counted: set[str] = set()
    for obj in value:
        if not isinstance(obj, dict):
            continue
        for key, v in obj.items():
            if key.endswith("Cnt") and key[:-3] in obj:
                counted.add(key[:-3])
                continue
            bucket = union.setdefault(key, {})
            for item in v if isinstance(v, list) else [v]:
                bucket[canonical_json(item)] = item
    flat: dict[str, Any] = {}
    for key, bucket in union.items():
        flat[key] = sort_like_harness(group, key, list(bucket.values()))
        if key in counted:
            flat[f"{key}Cnt"] = len(bucket)
    return flat
