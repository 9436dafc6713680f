"""The flow table as userspace reads and empties it: batch reads and deletes,
and the count of flows the LRU table evicted before userspace ended them,
held to the test's own ledger of what it created, deleted and found."""
from __future__ import annotations

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from sensor.kernel.contract import IPPROTO_UDP, Stat, make_key
from sensor.kernel.program import FLOW_BATCH, ProgramOptions

pytestmark = pytest.mark.kernel

ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def udp_flow(n: int) -> bytes:
    return bytes(ETH / IP(src=f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", dst="10.200.0.1")
                 / UDP(sport=1000, dport=2000) / b"x")


def key(n: int):
    return make_key(IPPROTO_UDP, (f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", 1000), ("10.200.0.1", 2000))


def test_a_scan_reads_every_flow_across_batches_and_deletes_skip_what_is_gone(make_harness):
    xdp = make_harness(ProgramOptions(flow_entries=3 * FLOW_BATCH))
    made = FLOW_BATCH + 100
    for n in range(made):
        xdp.program.test_run(udp_flow(n))
    assert {bytes(k) for k, _ in xdp.program.flows()} == {bytes(key(n)) for n in range(made)}
    gone = key(made + 1)     # never created: the batch steps over it
    xdp.program.delete_flows([key(0), gone, key(1), key(2)])
    left = {bytes(k) for k, _ in xdp.program.flows()}
    assert len(left) == made - 3 and bytes(key(1)) not in left and bytes(key(5)) in left


def test_flows_evicted_before_userspace_ended_them_are_counted(make_harness):
    entries = 512
    xdp = make_harness(ProgramOptions(flow_entries=entries))
    made = 3 * entries
    for n in range(made):
        xdp.program.test_run(udp_flow(n))
    deleted = [key(n) for n in range(made - 40, made - 20)]   # recent ones: still in the table
    present_before = {bytes(k) for k, _ in xdp.program.flows()}
    assert all(bytes(k) in present_before for k in deleted)
    xdp.program.delete_flows(deleted)
    present = {bytes(k) for k, _ in xdp.program.flows()}
    # The ledger: every flow made is present, deleted by us, or was evicted.
    evicted = {bytes(key(n)) for n in range(made)} - present - {bytes(k) for k in deleted}
    assert xdp.delta(Stat.FLOW_NEW) == made
    assert len(evicted) >= made - entries
    assert xdp.program.stat(Stat.FLOW_EVICTED) == len(evicted)
