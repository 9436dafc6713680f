"""Pair Arkime's sessions with ours.

Two sessions are candidates when they have the same IP protocol and the same
two endpoints in either order (our client may be Arkime's server: direction is
compared later, not used to match). Among candidates, equal `firstPacket`
pairs first, then the nearest ones (ties broken by the nearest `lastPacket`),
so a 5-tuple reused by several connections pairs connection by connection. What is left of both sides is
tried once more on Community ID plus `firstPacket`, which catches endpoint
spellings the first pass missed."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sensor.conformance.normalise import canonical_ip

FlowIdentity = tuple[int, frozenset]


@dataclass(slots=True)
class Matching:
    """Index pairs (expected, actual) and the indexes left unpaired on each side."""

    pairs: list[tuple[int, int]] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)  # expected sessions we did not report
    extra: list[int] = field(default_factory=list)  # our sessions Arkime did not report


def flow_identity(body: dict) -> FlowIdentity | None:
    """(ipProtocol, {(ip, port), (ip, port)}); for a session without IPs (non-IP)
    (0, {ethertype}), paired by time; None when it has neither."""
    src, dst = body.get("source") or {}, body.get("destination") or {}
    if "ip" not in src or "ip" not in dst:
        return None if body.get("ipProtocol") or "ethertype" not in body else (0, frozenset((body["ethertype"],)))
    endpoints = frozenset(((canonical_ip(src["ip"]), src.get("port", 0)),
                           (canonical_ip(dst["ip"]), dst.get("port", 0))))
    return (body.get("ipProtocol", 0), endpoints)


def match_sessions(expected: list[dict], actual: list[dict]) -> Matching:
    """Pair normalised bodies; see the module docstring for the rule."""
    result = Matching()
    left_e, left_a = _pair_by(expected, actual, flow_identity, range(len(expected)),
                              range(len(actual)), result.pairs)
    left_e, left_a = _pair_by(expected, actual, _community_id, left_e, left_a, result.pairs)
    result.missing, result.extra = sorted(left_e), sorted(left_a)
    result.pairs.sort()
    return result


def _community_id(body: dict) -> str | None:
    return (body.get("network") or {}).get("community_id")


def _pair_by(expected, actual, key_of, e_idx, a_idx, pairs) -> tuple[list[int], list[int]]:
    groups: dict = defaultdict(lambda: ([], []))
    left_e: list[int] = []
    left_a: list[int] = []
    for i in e_idx:
        key = key_of(expected[i])
        (left_e if key is None else groups[key][0]).append(i)
    for j in a_idx:
        key = key_of(actual[j])
        (left_a if key is None else groups[key][1]).append(j)
    for es, as_ in groups.values():
        paired = _pair_by_time(expected, actual, es, as_)
        pairs.extend(paired)
        used_e = {i for i, _ in paired}
        used_a = {j for _, j in paired}
        left_e.extend(i for i in es if i not in used_e)
        left_a.extend(j for j in as_ if j not in used_a)
    return left_e, left_a


def _pair_by_time(expected, actual, es: list[int], as_: list[int]) -> list[tuple[int, int]]:
    """Closest firstPacket first (exact ties first of all, then closest lastPacket);
    each session used once."""
    candidates = sorted(
        (abs(expected[i].get("firstPacket", 0) - actual[j].get("firstPacket", 0)),
         abs(expected[i].get("lastPacket", 0) - actual[j].get("lastPacket", 0)), i, j)
        for i in es for j in as_)
    used_e: set[int] = set()
    used_a: set[int] = set()
    pairs = []
    for _, _, i, j in candidates:
        if i not in used_e and j not in used_a:
            used_e.add(i)
            used_a.add(j)
            pairs.append((i, j))
    return pairs
