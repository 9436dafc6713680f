"""What the plugin tests share: Arkime's expected sessions, matching our records to
them, and sessions built by hand (a scapy TCP capture, or chunks fed to a runtime).

A plain module, not a package: pytest puts tests/plugins on sys.path because the
test directories have no __init__.py (its default "prepend" import mode)."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from sensor.arkime.loader import load_plugins
from sensor.arkime.runtime import PluginRuntime
from sensor.capture.pcapfile import write_pcap
from sensor.offline import read_records

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"

# -- Arkime's expected sessions ------------------------------------------------------------


def arkime_pcap(shared_testdata: Path, capture: str) -> Path:
    """One of Arkime's test captures by name (its .test file lies beside it)."""
    return shared_testdata / "arkime-pcap" / f"{capture}.pcap"


def arkime_bodies(pcap: Path) -> list[dict]:
    """The session bodies Arkime's tests.pl expects for a capture."""
    return [s["body"] for s in json.loads(pcap.with_suffix(".test").read_text())["sessions3"]]


def ours_and_expected(shared_testdata: Path, capture: str, plugin: Path,
                      view: Callable[[list[dict]], object]) -> tuple[object, object]:
    """`view` of our records of one of Arkime's captures (`plugin` loaded), and of Arkime's sessions."""
    pcap = arkime_pcap(shared_testdata, capture)
    return view(read_records([pcap], plugins=[plugin])), view(arkime_bodies(pcap))


def arkime_captures_with(shared_testdata: Path, protocols: set[str]) -> Iterator[tuple[Path, list[dict]]]:
    """Every capture Arkime gave a session of one of `protocols`, with those sessions' bodies.

    A .test file without sessions (krb-udp: it has no capture either) has none to give."""
    for test in sorted((shared_testdata / "arkime-pcap").glob("*.test")):
        bodies = [s["body"] for s in json.loads(test.read_text()).get("sessions3", ())
                  if protocols & set(s["body"].get("protocol", ()))]
        if bodies:
            yield test.with_suffix(".pcap"), bodies


def session_key(body: dict) -> tuple:
    """What matches one of our records to Arkime's session: the 4-tuple as Arkime saw it
    (ports are None for a protocol without them) and the first packet's time."""
    return (body["source"].get("ip"), body["source"].get("port"), body["destination"].get("ip"),
            body["destination"].get("port"), body["firstPacket"])


def claims(body: dict, protocol: str) -> bool:
    return protocol in body.get("protocol", ())


def sessions_by_key(bodies: Iterable[dict], keep: Callable[[dict], bool],
                    view: Callable[[dict], object]) -> dict[tuple, object]:
    """`view` of each kept session, by session_key.

    Arkime's empty linked segments (no packets) are left out: they come from its
    session saving, not from a parser."""
    return {session_key(body): view(body) for body in bodies if body["network"]["packets"] and keep(body)}


def sorted_text(value):
    """tests.pl leaves single values bare and sorted multi-values as strings: compare sorted text."""
    if isinstance(value, dict):
        return {key: sorted_text(item) for key, item in value.items()}
    return sorted(str(item) for item in (value if isinstance(value, list) else [value]))


def claim_and_group(protocol: str) -> Callable[[Iterable[dict]], dict[tuple, object]]:
    """A view of sessions as tests.pl compares them: per session that claims `protocol` or
    has its field group, the claim and the group as sorted text."""
    def view(bodies: Iterable[dict]) -> dict[tuple, object]:
        return sessions_by_key(bodies, lambda body: claims(body, protocol) or protocol in body,
                               lambda body: (claims(body, protocol), sorted_text(body.get(protocol, {}))))
    return view


def comparable_group(group: dict, repeating: tuple[str, ...], unsettable: Callable[[str], bool]) -> dict:
    """A field group as a Python plugin can reproduce it: fields it cannot set are dropped, and
    the arrays Arkime keeps with repeats are compared as sets (their counts dropped), because a
    Python plugin's fields are sets."""
    return {key: sorted(set(value)) if key in repeating else value for key, value in group.items()
            if not unsettable(key) and not (key.endswith("Cnt") and key.removesuffix("Cnt") in repeating)}


def drop_known_gaps(capture: str, expected: dict[tuple, object], ours: dict[tuple, object],
                    gaps: dict[str, tuple[set[int], str]]) -> set[int]:
    """Take the sessions `gaps` lists for `capture` (by client port) out of both sides and return
    those ports. Each must still disagree, so a fix elsewhere shows up as a failure asking to
    shrink the list."""
    ports, reason = gaps.get(capture, (set(), ""))
    for key in [k for k in expected if k[1] in ports]:
        agreed = ours.pop(key, None) == expected.pop(key)
        assert not agreed, f"{capture} {key} agrees now: drop it from GAPS ({reason})"
    return ports


# -- sessions built by hand ----------------------------------------------------------------


def conversation_record(tmp_path: Path, segments: Iterable[tuple[int, bytes]], *, plugins: Iterable[Path],
                        server_port: int, client_port: int = 40001, server_closes: bool = False) -> dict:
    """The SPI record of one TCP connection, read back from a capture: handshake, each
    (direction, payload) as a segment, then FINs (the client's first unless `server_closes`).

    MAC addresses are given so that scapy never sends ARP to find them."""
    ends = [("02:00:00:00:00:01", "10.1.0.1", client_port), ("02:00:00:00:00:02", "10.1.0.2", server_port)]
    seq = [1000, 5000]

    def segment(which: int, flags: str, payload: bytes = b""):
        (src_mac, src, sport), (dst_mac, dst, dport) = ends[which], ends[1 - which]
        ack = seq[1 - which] if "A" in flags else 0
        tcp = TCP(sport=sport, dport=dport, flags=flags, seq=seq[which], ack=ack)
        packet = Ether(src=src_mac, dst=dst_mac) / IP(src=src, dst=dst) / tcp / payload
        seq[which] += len(payload) + ("S" in flags or "F" in flags)
        return packet

    closer = 1 if server_closes else 0
    packets = [segment(0, "S"), segment(1, "SA"), segment(0, "A")]
    packets += [segment(which, "PA", payload) for which, payload in segments]
    packets += [segment(closer, "FA"), segment(1 - closer, "FA"), segment(closer, "A")]
    path = tmp_path / "conversation.pcap"
    write_pcap(path, [(1_700_000_000 + index / 1000, bytes(packet)) for index, packet in enumerate(packets)])
    (record,) = read_records([path], plugins=list(plugins))
    return record


@dataclass
class View:
    """A sensor.arkime.view.SessionView for feeding a runtime directly."""

    ip_protocol: int
    client_port: int
    server_port: int
    id: int = 1
    client_ip: str = "10.0.0.1"
    server_ip: str = "10.0.0.2"
    vlan: tuple = ()
    first_ts: float = 1700000000.0
    last_ts: float = 1700000001.0
    packets: list[int] = field(default_factory=lambda: [1, 1])
    bytes: list[int] = field(default_factory=lambda: [100, 100])
    databytes: list[int] = field(default_factory=lambda: [50, 50])
    tcpflags: dict[str, int] = field(default_factory=dict)
    first_payload: list[bytes] = field(default_factory=lambda: [b"", b""])
    icmp_types: set[int] = field(default_factory=set)
    icmp_codes: set[int] = field(default_factory=set)
    community_id: str = ""
    tags: set[str] = field(default_factory=set)


def loaded_runtime(*plugins: Path) -> PluginRuntime:
    """A runtime with `plugins` loaded, failing on any load error."""
    runtime = PluginRuntime()
    report = load_plugins(runtime, files=plugins)
    assert report.ok, [str(e) for e in report.errors]
    return runtime


def feed_session(runtime: PluginRuntime, chunks: Iterable[tuple[int, bytes]], **view) -> dict:
    """Feed (direction, bytes) chunks to one session (a View of `view`) and return its SPI
    record, failing if any plugin callback raised."""
    handle = runtime.session_started(View(**view))
    for which, data in chunks:
        runtime.payload(handle, which, data)
    record = runtime.session_ended(handle)
    assert runtime.errors.total == 0, runtime.errors.counts
    return record
