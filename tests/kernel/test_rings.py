"""The ring buffers as the real program fills them: the mmap reader, the
wakeup threshold, full rings, and flows sharded over several rings."""
from __future__ import annotations

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from sensor.kernel.contract import Stat
from sensor.kernel.program import ProgramOptions
from sensor.prefilter import flow_hash

pytestmark = pytest.mark.kernel

ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
ONE_PAGE = ProgramOptions(ringbuf_pages=1, wakeup_bytes=1024)


def udp(sport: int, dport: int, payload: bytes, src: str = "10.1.0.1", dst: str = "10.2.0.1") -> bytes:
    return bytes(ETH / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / Raw(payload))


def test_records_come_out_whole_and_in_order_across_the_ring_end(make_harness):
    xdp = make_harness(ONE_PAGE, ports=("udp:5353",))
    # 4 KiB ring, records of 100-800 bytes read three at a time: it wraps many times,
    # and records that straddle the end must read as one piece.
    frames = [udp(40000, 5353, bytes([i]) * (50 + (i * 97) % 700)) for i in range(60)]
    got = []
    for start in range(0, len(frames), 3):
        got += [r.frame for r in xdp.run(*frames[start:start + 3])]
    assert got == frames
    assert xdp.readers[0].held() == 0


def test_a_full_ring_counts_what_it_lost(make_harness):
    xdp = make_harness(ONE_PAGE, ports=("udp:5353",))
    for i in range(20):
        xdp.program.test_run(udp(40000, 5353, bytes([i]) * 500))
    emitted, full = xdp.delta(Stat.EMITTED), xdp.delta(Stat.RINGBUF_FULL)
    assert emitted + full == 20 and full > 0
    xdp.collect()
    assert [r.frame[-1] for r in xdp.records] == list(range(emitted))  # the first ones, in order


def test_a_flow_that_lost_records_at_the_ring_says_how_many_and_is_counted_once(make_harness):
    xdp = make_harness(ONE_PAGE, ports=("udp:5353",))
    for i in range(20):
        xdp.program.test_run(udp(40000, 5353, bytes([i]) * 500))
    whole = udp(40001, 5353, b"w" * 500)    # a second flow, also past a full ring
    xdp.program.test_run(whole)
    xdp.program.test_run(whole)
    lost = {bytes(k): s.ring_lost for k, s in xdp.program.flows() if s.ring_lost}
    xdp.collect()
    emitted = len(xdp.records)
    assert sum(lost.values()) == 22 - emitted == xdp.delta(Stat.RINGBUF_FULL)
    assert len(lost) == xdp.delta(Stat.FLOW_RING_LOST) == 2


def test_the_record_of_a_flow_that_lost_packets_at_the_ring_says_how_many(make_harness):
    from sensor.arkime.runtime import PluginRuntime
    from sensor.flows.table import SessionTable
    from sensor.hooks import FinishedCollector
    from sensor.pipeline import Pipeline
    xdp = make_harness(ONE_PAGE, ports=("udp:5353",))
    for i in range(20):
        xdp.program.test_run(udp(40000, 5353, bytes([i]) * 500))
    xdp.collect()
    collected = FinishedCollector()
    pipeline = Pipeline(PluginRuntime(), SessionTable(), [collected], kernel=xdp.program)
    for n, record in enumerate(xdp.records):
        pipeline.feed(record.frame, 1.0 + n / 1000, bytes(record.header.key))
    pipeline.close()
    [rec] = [r for r in collected.records if r["source"]["port"] == 40000]
    assert rec["source"]["packets"] == 20                        # the kernel counted every packet
    assert rec["xdpsensor"]["delivered"] == len(xdp.records)
    assert rec["xdpsensor"]["ringLost"] == 20 - len(xdp.records) == xdp.delta(Stat.RINGBUF_FULL) > 0


def test_the_reader_is_woken_only_once_the_ring_holds_a_batch(make_harness):
    xdp = make_harness(ONE_PAGE, ports=("udp:5353",))
    reader = xdp.readers[0]
    frame = udp(40000, 5353, b"q" * 100)
    woken_at = None
    for n in range(1, 12):
        xdp.program.test_run(frame)
        if reader.wait(0.05):
            woken_at = reader.held()
            break
        assert reader.held() < 1024  # no wakeup below the threshold
    assert woken_at is not None and woken_at >= 1024
    assert len(reader.read()) == n
    assert not reader.wait(0.05)  # read empty: nothing left to announce


def _exchange(xdp, client_port: int) -> list:
    ask = udp(client_port, 5353, b"ask")
    answer = udp(5353, client_port, b"answer", src="10.2.0.1", dst="10.1.0.1")
    return xdp.run(ask, answer)


def test_both_directions_of_a_flow_reach_the_same_ring_and_flows_spread(make_harness):
    xdp = make_harness(ProgramOptions(rings=2), ports=("udp:5353",))
    used = set()
    for port in range(41000, 41032):
        ask, answer = _exchange(xdp, port)
        assert ask.header.flow_hash == answer.header.flow_hash == flow_hash(bytes(ask.header.key))
        ring = ask.header.flow_hash % 2
        assert ask in xdp.rings[ring] and answer in xdp.rings[ring]
        used.add(ring)
    assert used == {0, 1}


def test_a_removed_ring_bypasses_its_flows_at_their_first_record_counted(make_harness):
    xdp = make_harness(ProgramOptions(rings=2), ports=("udp:5353",))
    xdp.program.remove_ring(1)
    for port in range(42000, 42032):
        _exchange(xdp, port)
    assert xdp.rings[1] == []
    assert all(r.header.flow_hash % 2 == 0 for r in xdp.rings[0])
    gone = xdp.delta(Stat.RING_GONE)
    assert len(xdp.rings[0]) == 2 * (32 - gone) and gone > 0
    # The answer of each flow whose ring was gone is counted as bypassed, not sent.
    assert xdp.delta(Stat.BYPASSED_PKTS) == gone
