"""A flow's counters add up exactly however its packets spread over CPUs:
the CPU that created a flow counts apart without atomics, the others
atomically, and userspace reads the sums. BPF_PROG_TEST_RUN runs on the
calling thread's CPU, so each test pins its threads."""
from __future__ import annotations

import os
import threading

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from sensor.kernel.contract import IPPROTO_TCP, IPPROTO_UDP, TCPFLAG_NAMES, make_key
from sensor.kernel.program import ProgramOptions

pytestmark = pytest.mark.kernel

ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
C, S = "10.7.0.1", "10.7.0.2"       # C < S: the client is the LO side
CPUS = sorted(os.sched_getaffinity(0))
two_cpus = pytest.mark.skipif(len(CPUS) < 2, reason="needs two CPUs to run the program on")


@pytest.fixture
def pinned():
    """Pin the calling thread to a CPU; the old affinity comes back after the test."""
    before = os.sched_getaffinity(0)
    yield lambda cpu: os.sched_setaffinity(0, {cpu})
    os.sched_setaffinity(0, before)


def tcp(src: str, dst: str, sport: int, dport: int, flags: str, seq: int, ack: int = 0, data: bytes = b"") -> bytes:
    return bytes(ETH / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack) / data)


@two_cpus
def test_a_connection_whose_packets_alternate_cpus_counts_every_packet_byte_and_flag(make_harness, pinned):
    xdp = make_harness(ProgramOptions())
    hello, reply = b"hello", b"world!!"
    # (CPU, frame) in wire order: the SYN creates the flow on the first CPU.
    steps = [
        (0, tcp(C, S, 40000, 7000, "S", 100)),
        (1, tcp(S, C, 7000, 40000, "SA", 500, 101)),
        (1, tcp(C, S, 40000, 7000, "A", 101, 501)),
        (0, tcp(C, S, 40000, 7000, "PA", 101, 501, hello)),
        (1, tcp(S, C, 7000, 40000, "PA", 501, 106, reply)),
        (0, tcp(C, S, 40000, 7000, "A", 106, 508)),
        (1, tcp(C, S, 40000, 7000, "FA", 106, 508)),
        (0, tcp(S, C, 7000, 40000, "FA", 508, 107)),
    ]
    for cpu, frame in steps:
        pinned(CPUS[cpu])
        xdp.run(frame)
    client = [frame for _, frame in steps if IP(frame[14:]).src == C]
    server = [frame for _, frame in steps if IP(frame[14:]).src == S]
    state = xdp.program.flow(make_key(IPPROTO_TCP, (C, 40000), (S, 7000)))
    assert list(state.packets) == [len(client), len(server)]
    assert list(state.bytes) == [sum(map(len, client)), sum(map(len, server))]
    assert list(state.databytes) == [len(hello), len(reply)]
    flags = dict(zip(TCPFLAG_NAMES, state.tcpflags))
    assert flags == {"syn": 1, "syn-ack": 1, "ack": 2, "psh": 2, "fin": 2, "rst": 0, "urg": 0, "ece": 0, "cwr": 0,
                     "ae": 0}
    # A batch read sums the same way as a single lookup.
    [(_, scanned)] = list(xdp.program.flows())
    assert bytes(scanned) == bytes(state)


@two_cpus
def test_two_cpus_counting_one_flow_at_the_same_time_lose_no_packet(make_harness, pinned):
    xdp = make_harness(ProgramOptions())
    frame = bytes(ETH / IP(src=C, dst=S) / UDP(sport=40001, dport=9999) / (b"x" * 32))
    pinned(CPUS[0])
    xdp.run(frame)      # created on the first CPU
    repeat, rounds = 200_000, 3
    start = threading.Barrier(2)

    def hammer(cpu: int) -> None:
        os.sched_setaffinity(0, {cpu})
        for _ in range(rounds):
            start.wait()
            xdp.program.test_run(frame, repeat)

    threads = [threading.Thread(target=hammer, args=(cpu,)) for cpu in CPUS[:2]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    packets = 1 + 2 * rounds * repeat
    state = xdp.program.flow(make_key(IPPROTO_UDP, (C, 40001), (S, 9999)))
    assert list(state.packets) == [packets, 0]
    assert list(state.bytes) == [packets * len(frame), 0]
    assert list(state.databytes) == [packets * 32, 0]
