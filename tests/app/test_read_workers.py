"""`read --workers K`: capture records dealt to worker processes by the
kernel's flow hash give the same sessions as one process, each made by the
worker its flow hashes to, with the frames and messages of bound sessions.

One documented difference: like Arkime's packet threads, each worker's
session table keeps its own clock (the time of the previous packet *it*
saw), so a session whose last packets were followed by nothing else of its
worker may end at shutdown where one process ended it on time, or the other
way round. Everything else in the record is the same."""
from __future__ import annotations

import json
import os
import signal
import time

import pytest
from scapy.layers.inet import IP, UDP, fragment
from scapy.layers.vxlan import VXLAN

from sensor import Sensor
from sensor.config import BUNDLED_PROTOCOLS
from sensor.kernel.contract import make_key
from sensor.lab import patience
from sensor.prefilter import flow_hash
from tests.capturelib import Capture, ether


def _read(tmp_path, name: str, files, workers: int, prefilter: str, config: dict | None = None):
    out = tmp_path / f"{name}.jsonl"
    sensor = Sensor({**(config or {}), "workers": workers, "outputs": [f"spi:{out}"]})
    try:
        summary = sensor.read_pcap(files, prefilter=prefilter)
    finally:
        sensor.close()
    return summary, [json.loads(line) for line in out.read_text().splitlines()]


TIMED = {"timeout", "fin", "rst", "shutdown"}   # ends decided by the clock (or its absence)


def _comparable(record: dict) -> tuple[str, str]:
    """(the record without what differs by design, its end reason)."""
    ours = {k: v for k, v in record["xdpsensor"].items() if k not in ("sessionId", "worker", "endReason")}
    shared = {k: v for k, v in record.items() if k != "rootId"}   # a uuid, new in every run
    return json.dumps({**shared, "xdpsensor": ours}, sort_keys=True), record["xdpsensor"].get("endReason", "mid-save")


@pytest.mark.parametrize("prefilter", ["python", "none"])
def test_two_workers_give_the_same_sessions_as_one(shared_testdata, tmp_path, prefilter):
    files = sorted((shared_testdata / "arkime-pcap").glob("*.pcap"))[:60]
    one_summary, one = _read(tmp_path, "one", files, 1, prefilter)
    two_summary, two = _read(tmp_path, "two", files, 2, prefilter)
    ones, twos = sorted(map(_comparable, one)), sorted(map(_comparable, two))
    assert [record for record, _ in twos] == [record for record, _ in ones]
    for (_, end_two), (_, end_one) in zip(twos, ones):
        assert end_two == end_one or ("shutdown" in (end_one, end_two) and {end_one, end_two} <= TIMED)
    assert {r["xdpsensor"]["worker"] for r in two} == {0, 1}
    for key in ("frames", "delivered", "sessions", "records", "undecodable", "unfilterable"):
        assert getattr(two_summary, key) == getattr(one_summary, key), key


def test_each_session_is_made_by_the_worker_its_flow_hashes_to(shared_testdata, tmp_path):
    files = sorted((shared_testdata / "arkime-pcap").glob("*.pcap"))[:60]
    _, records = _read(tmp_path, "two", files, 2, "python")
    checked = 0
    for r in records:
        src, dst = r["source"], r["destination"]
        if r["ipProtocol"] in (6, 17) and not r.get("tags"):
            key = make_key(r["ipProtocol"], (src["ip"], src["port"]), (dst["ip"], dst["port"]))
            assert r["xdpsensor"]["worker"] == flow_hash(bytes(key)) % 2
            checked += 1
    assert checked > 20


def test_the_api_lists_every_workers_sessions_with_frames_and_messages(shared_testdata, tmp_path):
    files = [shared_testdata / "arkime-pcap" / name for name in ("modbus.pcap", "mqtt_synthetic.pcap")]
    config = BUNDLED_PROTOCOLS / "bindings.yaml"
    expected = {}
    for workers in (1, 2):
        sensor = Sensor(config, outputs=[])
        sensor.config.workers = workers
        try:
            sensor.read_pcap(files, prefilter="python")
            expected[workers] = sorted(
                (s.client_port, s.server_port, s.state.value, s.frame_count,
                 tuple(f.raw_bytes for f in sensor.api.get_frames(s.id)),
                 tuple(m.message_type for m in sensor.api.decode_session_frames(s.id)))
                for s in sensor.api.list_sessions())
        finally:
            sensor.close()
    assert any(frames for *_, frames, _ in expected[1])      # bound sessions framed
    assert expected[2] == expected[1]


def _split_prone_capture(path, vxlan_port: int = 4789):
    """UDP flows in both directions, interleaved: plain ones, ones whose
    datagrams are IP fragments (later fragments carry no ports), and ones
    inside VXLAN whose outer source port changes with every packet (the flow
    is the inner one). Returns the path and, per flow, what a record of it
    must count: (client address, port, server address, port) ->
    (client packets, server packets, client data bytes, server data bytes)."""
    capture, expected, rounds = Capture(), {}, []
    for n in range(30):
        client, server = (f"10.1.{n}.1", 20000 + n), (f"10.2.{n % 7}.1", 53)
        sent, answered = [b"q" * (10 + n)] * (n % 3 + 1), [b"a" * (20 + n)] * (n % 4 + 1)
        expected[(*client, *server)] = (len(sent), len(answered), sum(map(len, sent)), sum(map(len, answered)))
        rounds.append([ether() / IP(src=client[0], dst=server[0]) / UDP(sport=client[1], dport=server[1]) / data
                       for data in sent]
                      + [ether() / IP(src=server[0], dst=client[0]) / UDP(sport=server[1], dport=client[1]) / data
                         for data in answered])
    for n in range(4):
        client, server = (f"10.3.{n}.1", 30000 + n), ("10.4.0.1", 2049)
        ask = ether() / IP(src=client[0], dst=server[0]) / UDP(sport=client[1], dport=server[1]) / (b"r" * 3000)
        reply = ether() / IP(src=server[0], dst=client[0]) / UDP(sport=server[1], dport=client[1]) / (b"w" * 2000)
        expected[(*client, *server)] = (1, 1, 3000, 2000)   # Arkime counts a reassembled datagram once
        rounds.append(fragment(ask, fragsize=1200) + fragment(reply, fragsize=1200))
    for n in range(4):
        client, server = (f"10.5.{n}.1", 40000 + n), ("10.6.0.1", 8125)
        packets = []
        for i in range(2):
            for src, dst, data in ((client, server, b"up%d" % n), (server, client, b"down!%d" % n)):
                inner = ether() / IP(src=src[0], dst=dst[0]) / UDP(sport=src[1], dport=dst[1]) / data
                outer = ("192.0.2.1", "192.0.2.2") if src is client else ("192.0.2.2", "192.0.2.1")
                packets.append(ether() / IP(src=outer[0], dst=outer[1])
                               / UDP(sport=50000 + 10 * n + i + (src is server), dport=vxlan_port) / VXLAN(vni=7, flags=8)
                               / inner)
        expected[(*client, *server)] = (2, 2, 2 * len(b"up0"), 2 * len(b"down!0"))
        rounds.append(packets)
    while any(rounds):          # round-robin: the flows' packets interleave, as on a busy link
        for packets in rounds:
            if packets:
                capture._add(packets.pop(0))
    return capture.write(path), expected


@pytest.mark.parametrize("prefilter", ["none", "python"])
@pytest.mark.parametrize("vxlan_port", [4789, 4790])
def test_with_two_workers_every_flow_is_counted_whole_once(tmp_path, prefilter, vxlan_port):
    """Also inside VXLAN on a port of the config's own (udp_tunnels): the
    flows are dealt by their inner addresses, as the filters key them."""
    pcap, expected = _split_prone_capture(tmp_path / "flows.pcap", vxlan_port)
    _, records = _read(tmp_path, "two", [pcap], 2, prefilter,
                       {"default_plugins": False, "udp_tunnels": f"vxlan:{vxlan_port}"})
    counted = [((r["source"]["ip"], r["source"]["port"], r["destination"]["ip"], r["destination"]["port"]),
                (r["source"]["packets"], r["destination"]["packets"], r["client"]["bytes"], r["server"]["bytes"]))
               for r in records if r.get("ipProtocol") == 17]
    assert len(counted) == len(expected)          # a split flow has two records, a lost one none
    assert dict(counted) == expected
    assert {r["xdpsensor"]["worker"] for r in records} == {0, 1}


def test_a_worker_killed_mid_read_is_reported_and_loses_only_its_own_flows(tmp_path):
    """Worker 1 is killed mid-read, once it has fed some records: worker 0's
    flows are all recorded whole, worker 1's open sessions are counted as
    lost (as many as it had opened), and the frames it never fed are counted."""
    capture, flows = Capture(), [(f"10.7.{n}.1", 21000 + n) for n in range(40)]
    server = ("10.8.0.1", 5000)
    for _ in range(40):        # every flow open from the start, its datagrams spread over the capture
        for client in flows:
            capture.udp(client, server, b"ping")
            capture.udp(server, client, b"pong!")
    pcap = capture.write(tmp_path / "flows.pcap")
    worker_of = {client[1]: flow_hash(bytes(make_key(17, client, server))) % 2 for client in flows}
    out = tmp_path / "out.jsonl"
    sensor = Sensor({"default_plugins": False, "workers": 2, "outputs": [f"spi:{out}"]})
    errors, opened, killed, runs = [], [], [], []
    sensor.api.on_capture_error(errors.append)
    sensor.api.on_session_opened(lambda event: opened.append(event.session.client_port))

    def kill_worker_1(done: int, total: int) -> None:
        """After the 4th run dealt (1024 of 3200 records), once worker 1 has fed a batch."""
        runs.append(done)
        if len(runs) == 4:
            worker = sensor._pool.workers[1]
            deadline = time.monotonic() + patience(30)
            while not worker.fed and time.monotonic() < deadline:
                time.sleep(0.01)
            killed.append(worker.process.pid)
            os.kill(worker.process.pid, signal.SIGKILL)
    try:
        summary = sensor.read_pcap(pcap, prefilter="none", on_progress=kill_worker_1)
    finally:
        sensor.close()
    records = [json.loads(line) for line in out.read_text().splitlines()]
    kept = sorted(port for port, worker in worker_of.items() if worker == 0)
    lost = [port for port, worker in worker_of.items() if worker == 1]
    assert kept and lost and killed
    assert sorted(r["source"]["port"] for r in records) == kept
    assert all((r["source"]["packets"], r["destination"]["packets"]) == (40, 40) for r in records)
    assert [e.kind for e in errors] == ["worker"] and f"pid {killed[0]}" in errors[0].error
    assert sorted(port for port in opened if port in lost) == sorted(lost)    # it had opened them all
    assert f" its {len(lost)} open session(s) are lost" in errors[0].error
    assert summary.delivered == 80 * len(kept)       # what worker 0 fed; worker 1 sent no summary
    assert 0 < summary.dead_worker_frames < 80 * len(lost)
    assert not summary.complete
