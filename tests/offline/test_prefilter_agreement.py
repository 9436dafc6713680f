"""The Python pre-filter against the real XDP program (BPF_PROG_TEST_RUN):
every frame of every Arkime test capture, and mutated copies of them, under
several rule sets; same records frame by frame, same flow tables, same stats."""
from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting
from scapy.layers.ipsec import AH
from scapy.layers.l2 import ARP, LLC, Dot1AD, Dot1Q, Dot3, Ether
from scapy.packet import Raw

from sensor.capture.pcapfile import PcapError, read_pcap
from sensor.flows.key import VlanKeying
from sensor.kernel.contract import IPPROTO_TCP, IPPROTO_UDP, Stat, Verdict
from sensor.kernel.program import ProgramOptions, SensorProgram
from sensor.kernel.rules import RuleSet
from sensor.offline import TestRunTable, program_frame
from sensor.prefilter import PythonFlowTable

pytestmark = pytest.mark.kernel


@dataclass(frozen=True)
class Case:
    options: ProgramOptions
    ports: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    select_all: tuple[int, ...] = ()

    def rules(self) -> RuleSet:
        return RuleSet(select_all=set(self.select_all)).add_specs(self.ports, self.prefixes)


CASES = {
    "ports-prefixes-emit-undecided": Case(
        ProgramOptions(emit_undecided=True, max_undecided_payloads=4),
        ports=("tcp:80", "tcp:443", "tcp:53", "udp:53"), prefixes=("tcp:0:GET ", "tcp:0:0x16030")),
    "select-all-tcp-udp-prefixes-snaplen": Case(
        ProgramOptions(snaplen=96, max_undecided_payloads=1),
        prefixes=("udp:0:0x0", "udp:2:0x01", "udp:4:0x2112a442", "tcp:0:SSH-"), select_all=(IPPROTO_TCP,)),
    "nothing-selected-all-undecided-vlan-keyed": Case(ProgramOptions(
        emit_undecided=True, max_undecided_payloads=0, vlan_key=VlanKeying({50: 0, 100: 0, 300: 7}))),
    "select-all": Case(ProgramOptions(snaplen=2048), select_all=(IPPROTO_TCP, IPPROTO_UDP)),
}


class Pair:
    """One real program and a fresh Python table per capture, fed alike."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.program = SensorProgram(case.options)
        self.program.set_rules(case.rules())
        self.kernel = TestRunTable(self.program)

    def reset(self) -> None:
        """A fresh flow table in the kernel: no flows, no remembered fragments."""
        for key, _ in list(self.program.flows()):
            self.program.delete_flow(key)
        self.program.bpf[b"frags"].clear()
        self.base = self.kernel.stats()
        self.python = PythonFlowTable(self.case.rules(), self.case.options)

    def stats_since_reset(self) -> dict[Stat, int]:
        return {stat: n - self.base[stat] for stat, n in self.kernel.stats().items()}


@pytest.fixture(scope="module", params=sorted(CASES))
def pair(request):
    made = Pair(CASES[request.param])
    yield made
    made.program.close()


@pytest.fixture(scope="module")
def captures(shared_testdata) -> dict[str, list[tuple[int, bytes]]]:
    """(capture ns, program frame) of every frame of every Arkime test capture."""
    corpus = {}
    for path in sorted((shared_testdata / "arkime-pcap").glob("*.pcap*")):
        frames = []
        try:
            for rec in read_pcap(path):
                frame = program_frame(rec.linktype, rec.data)
                if frame is not None:
                    frames.append((round(rec.timestamp * 1e9), frame))
        except PcapError:
            pass  # a cut capture: keep the frames before the cut
        corpus[path.name] = frames
    assert len(corpus) >= 60, "expected the Arkime test captures in ../shared/testdata/arkime-pcap"
    return corpus


def records_differ(pair: Pair, frames, act=None) -> list[str]:
    """Run both on the frames; describe each frame whose record differs.
    `act(record, table)` may then change verdicts or delete flows, on both."""
    differences = []
    for index, (ts_ns, frame) in enumerate(frames):
        got = [table.process(frame, ts_ns) for table in (pair.kernel, pair.python)]
        kernel, python = ((None if r is None else (bytes(r.header), r.frame)) for r in got)
        if kernel != python:
            differences.append(f"frame {index}: kernel {kernel and kernel[0].hex()} "
                               f"python {python and python[0].hex()}")
        elif act is not None and got[0] is not None:
            for table in (pair.kernel, pair.python):
                act(got[0], table)
    return differences


def flow_tables(pair: Pair) -> tuple[dict, dict]:
    return ({bytes(k): bytes(s) for k, s in pair.kernel.flows()},
            {bytes(k): bytes(s) for k, s in pair.python.flows()})


def test_every_capture_gives_the_same_records_flows_and_stats(pair, captures):
    mismatched = {}
    frames_run = flows_compared = 0
    for name, frames in captures.items():
        pair.reset()
        problems = records_differ(pair, frames)
        kernel_flows, python_flows = flow_tables(pair)
        if kernel_flows != python_flows:
            problems.append(f"flow tables differ: {len(kernel_flows)} kernel, {len(python_flows)} python, "
                            f"{sum(kernel_flows.get(k) != v for k, v in python_flows.items())} unequal")
        if pair.stats_since_reset() != pair.python.stats():
            problems.append(f"stats differ: kernel {pair.stats_since_reset()} python {pair.python.stats()}")
        if problems:
            mismatched[name] = problems[:5]
        frames_run += len(frames)
        flows_compared += len(kernel_flows)
    assert not mismatched, mismatched
    assert frames_run > 5000 and flows_compared > 500  # the corpus really was run


def test_mutated_frames_and_userspace_verdicts_agree(pair, captures):
    """Frames cut anywhere and with header bytes changed, while flows are
    bypassed and deleted as the pipeline would."""
    rng = random.Random(20240611)
    frames = []
    for capture in captures.values():
        for ts_ns, frame in capture:
            frames.append((ts_ns, frame))
            if rng.random() < 0.5:
                mutated = bytearray(frame)
                for _ in range(rng.randint(1, 3)):
                    mutated[rng.randrange(12, min(len(mutated), 120))] = rng.randrange(256)
                frames.append((ts_ns, bytes(mutated)))
            if rng.random() < 0.3:
                frames.append((ts_ns, frame[:rng.randint(14, len(frame))]))

    def act(record, table):
        if record.header.flow_hash % 5 == 0:
            table.set_verdict(record.header.key, Verdict.BYPASSED)
        elif record.header.flow_hash % 7 == 0:
            table.delete_flow(record.header.key)

    pair.reset()
    problems = records_differ(pair, frames, act)
    kernel_flows, python_flows = flow_tables(pair)
    assert not problems[:5], f"{len(problems)} frames differ"
    assert kernel_flows == python_flows
    assert pair.stats_since_reset() == pair.python.stats()


def crafted_frames() -> list[bytes]:
    """Parse edge cases, each also cut at every length: VLAN depth, IPv4
    options and fragments, IPv6 extension chains (AH, fragments, the limit),
    non-IP frames of every kind (up to and past Arkime's VLAN tag bound)."""
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")  # explicit: no ARP lookups
    v4, v6 = IP(src="10.0.0.1", dst="10.0.0.2", id=99), IPv6(src="fd00::1", dst="fd00::2")
    l4 = [TCP(sport=40000, dport=80, flags="PA") / Raw(b"GET / HTTP/1.1\r\n"),
          UDP(sport=40000, dport=53) / Raw(b"\x00\x01query")]
    whole = []
    for tags in ((), (Dot1Q(vlan=5),), (Dot1AD(vlan=6), Dot1Q(vlan=7)), (Dot1Q(vlan=1),) * 3):
        link = eth
        for tag in tags:
            link = link / tag
        for payload in l4:
            whole.append(link / v4 / payload)
            whole.append(link / IP(src="10.0.0.1", dst="10.0.0.2", options=b"\x01" * 8) / payload)
            whole.append(link / v6 / payload)
    for count in range(0, 11):
        chain = v6
        for i in range(count):
            chain = chain / (IPv6ExtHdrHopByHop, IPv6ExtHdrDestOpt, IPv6ExtHdrRouting)[i % 3]()
        whole.append(eth / chain / l4[1])
    whole.append(eth / v6 / AH(nh=17, payloadlen=4, icv=b"\0" * 12) / l4[1])
    non_ip = [ARP(op=1, psrc="10.0.0.1", pdst="10.0.0.2"), ARP(op=2, psrc="10.0.0.2", pdst="10.0.0.1"),
              ARP(op=3), Raw(b"\x02\x07\x04" + b"\x00" * 20)]
    macs = bytes(eth)[:12]
    for tags in range(0, 10):
        stack = (b"\x81\x00" + tags.to_bytes(2, "big")) * tags
        whole += [Raw(macs + stack + b"\x08\x06" + bytes(non_ip[0])), Raw(macs + stack + b"\x88\xcc" + bytes(non_ip[3]))]
    whole += [eth / payload for payload in non_ip]
    whole += [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", type=0x88B5) / Raw(b"\x00" * 46),
              Dot3(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / LLC(dsap=0, ssap=1, ctrl=0xAF) / Raw(b"\x81"),
              Dot3(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / LLC(dsap=0xFE, ssap=0xFE, ctrl=3)
              / Raw(b"\x83" + b"\x00" * 20),
              Dot3(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / LLC(dsap=0x42, ssap=0x42, ctrl=3)
              / Raw(b"\x00" * 35)]
    udp = bytes(l4[1])
    frames = [bytes(f) for f in whole]
    frames += [bytes(eth / IP(src="10.0.0.1", dst="10.0.0.2", id=99, flags="MF", proto=17) / Raw(udp[:16])),
               bytes(eth / IP(src="10.0.0.1", dst="10.0.0.2", id=99, frag=2, proto=17) / Raw(udp[16:])),
               bytes(eth / v6 / IPv6ExtHdrFragment(nh=17, m=1, id=7) / Raw(udp[:16])),
               bytes(eth / v6 / IPv6ExtHdrFragment(nh=17, offset=2, id=7) / Raw(udp[16:]))]
    return frames + [f[:cut] for f in frames for cut in range(14, len(f))]


def test_crafted_edge_frames_cut_at_every_length_agree(pair):
    frames = crafted_frames()
    pair.reset()
    problems = records_differ(pair, [(1_000 + i, f) for i, f in enumerate(frames)])
    assert not problems[:5], f"{len(problems)} frames differ"
    kernel_flows, python_flows = flow_tables(pair)
    assert kernel_flows == python_flows
    stats = pair.python.stats()
    assert stats == pair.stats_since_reset()
    assert stats[Stat.IPV6_EXT_LIMIT] and stats[Stat.TRUNCATED] and stats[Stat.NOT_IP]
