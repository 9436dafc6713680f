"""Put a session body in the shape Arkime's `tests.pl --fix` compares.

The harness sorts every array of two or more values (numerically for
`vlan.id`, `http.statuscode`, `icmp.type`, `icmp.code`; as strings otherwise),
except `packetPos`, `packetLen` and `cert`, whose order means something; it
sets `@timestamp`/`rootId` to "SET" and folds a certificate's `remainingDays`
to its sign. We do the same on both sides, plus two things the harness gets
by accident: arrays of objects (DNS answers) are put in canonical-JSON order
(Perl sorts them by address), and IP strings are written in one canonical
form so `::1` and `0:0:...:1` compare equal.

Enrichment that Arkime adds from its test config (GeoIP, ASN, RIR, OUI, MAC
lookups, `rules.yaml`, tagger/wise/zeek-intel plugins) is not part of what a
sensor observes; `strip_enrichment` drops it before field groups are compared.
"""
from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

_NUMERIC_SORT = re.compile(r"vlan\.id|http\.statuscode|icmp\.type|icmp\.code")
_KEEP_ORDER = re.compile(r"packetPos|packetLen|cert")

# Top-level keys that come from enrichment or from the capture run, not from the traffic.
ENRICHMENT_KEYS = frozenset((
    "@timestamp", "rootId", "node", "fileId", "packetPos", "packetLen", "segmentCnt",
    "srcOui", "srcOuiCnt", "dstOui", "dstOuiCnt", "srcRIR", "dstRIR",
    "srcOuterOui", "srcOuterOuiCnt", "dstOuterOui", "dstOuterOuiCnt",
    "srcOuterASN", "srcOuterGEO", "srcOuterRIR", "dstOuterASN", "dstOuterGEO", "dstOuterRIR",
    "test", "zeekintel", "zeekintelCnt", "tags", "tagsCnt", "xdpsensor",
))
# Per-endpoint keys from GeoIP/ASN and MAC/OUI lookups.
ENDPOINT_ENRICHMENT_KEYS = frozenset(("geo", "as", "mac", "mac-cnt"))
# Helper fields Arkime derives from every ip-kind field (`<name>ASN`, `<name>GEO`, `<name>RIR`).
_IP_HELPER_KEY = re.compile(r"(ASN|GEO|RIR)$")


def normalise_body(body: dict) -> dict:
    """A copy of `body` with arrays sorted, run-specific values fixed and IPs canonical."""
    out = _sort_object("", body)
    for key in ("@timestamp", "rootId"):
        if key in out:
            out[key] = "SET"
    for side in ("source", "destination"):
        endpoint = out.get(side)
        if isinstance(endpoint, dict) and isinstance(endpoint.get("ip"), str):
            endpoint["ip"] = canonical_ip(endpoint["ip"])
    for cert in out.get("cert", ()) if isinstance(out.get("cert"), list) else ():
        days = cert.get("remainingDays") if isinstance(cert, dict) else None
        if isinstance(days, (int, float)):
            cert["remainingDays"] = (days > 0) - (days < 0)
    return out


def strip_enrichment(body: dict) -> dict:
    """A copy of a normalised body without what Arkime's test config adds (geo, OUI, tags, ...).

    Tags go as a whole: most of Arkime's come from the test plugins and file-name rules."""
    out: dict = {}
    for key, value in body.items():
        if key in ENRICHMENT_KEYS or _IP_HELPER_KEY.search(key):
            continue
        if key in ("source", "destination") and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in ENDPOINT_ENRICHMENT_KEYS}
        else:
            value = _strip_helpers(value)
        out[key] = value
    return out


def canonical_ip(text: str) -> str:
    """One spelling per address (compressed IPv6); anything unparsable is kept as is."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _strip_helpers(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_helpers(v) for k, v in value.items() if not _IP_HELPER_KEY.search(k)}
    if isinstance(value, list):
        return [_strip_helpers(v) for v in value]
    return value


def _sort_object(parent: str, obj: dict) -> dict:
    out: dict = {}
    for key, value in obj.items():
        if isinstance(value, dict):
            value = _sort_object(key, value)
        elif isinstance(value, list):
            value = _sort_array(parent, key, value)
        out[key] = value
    return out


def sort_like_harness(parent: str, key: str, values: list) -> list:
    """An array in the order `normalise_body` gives the array `key` of group `parent`."""
    return _sort_array(parent, key, values)


def _sort_array(parent: str, key: str, values: list) -> list:
    values = [_sort_object(key, v) if isinstance(v, dict) else v for v in values]
    if len(values) < 2 or _KEEP_ORDER.search(key):
        return values
    if any(isinstance(v, (dict, list)) for v in values):
        return sorted(values, key=canonical_json)
    if _NUMERIC_SORT.search(f"{parent}.{key}"):
        return sorted(values, key=_number_or_text)
    return sorted(values, key=str)


def _number_or_text(value: Any) -> tuple:
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


# Protocol names Arkime's test `rules.yaml` adds ("protocols" ops), not parsers.
TEST_RULE_PROTOCOLS = frozenset(("tlsrulestest", "socksipset", "iprulztest"))


def undo_test_rules(body: dict) -> dict:
    """Undo what Arkime's test `rules.yaml` did to a session: the protocol names
    its rules add, and its "flip test" rule (`_flipSrcDst`), which swapped the
    endpoints' addresses and ports, not their counters."""
    out = dict(body)
    protocols = out.get("protocol")
    if protocols and TEST_RULE_PROTOCOLS.intersection(protocols):
        out["protocol"] = [p for p in protocols if p not in TEST_RULE_PROTOCOLS]
        out["protocolCnt"] = len(out["protocol"])
    if "flip test" not in (body.get("tags") or ()):
        return out
    src, dst = dict(out.get("source") or {}), dict(out.get("destination") or {})
    for key in ("ip", "port"):
        if key in src or key in dst:
            src[key], dst[key] = dst.get(key), src.get(key)
    out["source"], out["destination"] = src, dst
    return out


_SUMMED = (("source", "bytes"), ("source", "packets"), ("destination", "bytes"), ("destination", "packets"),
           ("network", "bytes"), ("network", "packets"), ("client", "bytes"), ("server", "bytes"))


def merge_segments(bodies: list[dict]) -> tuple[list[dict], int]:
    """Join the documents of one session that Arkime saved in several segments
    (a mid-save: long sessions, a parser's request, a jump in capture time),
    so sessions compare with sessions. Segments share the flow and firstPacket
    and number themselves with `segmentCnt`. Returns the bodies and how many
    documents were folded into an earlier one."""
    groups: dict[tuple, list[dict]] = {}
    order: list[tuple] = []
    for i, body in enumerate(bodies):
        key = _segment_key(body, i)
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(body)
    merged = [_merge(sorted(groups[k], key=lambda b: b.get("segmentCnt", 1))) for k in order]
    return merged, len(bodies) - len(merged)


def _segment_key(body: dict, index: int) -> tuple:
    src, dst = body.get("source") or {}, body.get("destination") or {}
    if "ip" not in src:
        return ("unkeyed", index)
    return (body.get("ipProtocol"), src.get("ip"), src.get("port"), dst.get("ip"), dst.get("port"),
            body.get("firstPacket"))


def _merge(segments: list[dict]) -> dict:
    if len(segments) == 1:
        return segments[0]
    out = json.loads(json.dumps(segments[0]))  # a deep copy
    for seg in segments[1:]:
        for group, key in _SUMMED:
            if isinstance(seg.get(group), dict) and key in seg[group]:
                out.setdefault(group, {})[key] = out.get(group, {}).get(key, 0) + seg[group][key]
        for flag, n in (seg.get("tcpflags") or {}).items():
            out.setdefault("tcpflags", {})[flag] = out["tcpflags"].get(flag, 0) + n
        for key in ("srcPayload8", "dstPayload8"):
            if key not in out and key in seg:
                out[key] = seg[key]
        if seg.get("protocol"):
            out["protocol"] = sorted(set(out.get("protocol") or ()) | set(seg["protocol"]))
            out["protocolCnt"] = len(out["protocol"])
        out["lastPacket"] = seg.get("lastPacket", out.get("lastPacket"))
        out["segmentCnt"] = seg.get("segmentCnt", out.get("segmentCnt"))
    return out
