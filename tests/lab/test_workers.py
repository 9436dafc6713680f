"""Two worker processes on live lab traffic: flows split between them by the
kernel's symmetric hash, each counted exactly once with both directions, and
a worker killed mid-run costs only its own open sessions."""
from __future__ import annotations

import json
import os
import signal
import time

import pytest

from sensor import Sensor
from sensor.events import CaptureErrorEvent
from sensor.kernel.contract import IPPROTO_UDP, Stat, Verdict, make_key
from sensor.lab import patience
from sensor.labtraffic import udp_exchange
from sensor.prefilter import flow_hash

pytestmark = pytest.mark.lab

PORT = 5353
FRAME = 14 + 20 + 8     # Ethernet + IPv4 + UDP headers


def _sensor(tmp_path, out):
    config = {"default_plugins": False, "ports": [f"udp:{PORT}"], "workers": 2, "outputs": [f"spi:{out}"],
              "timeouts": {"udp": 600}}
    return Sensor(config)


def _exchanges(lab, first_port: int, count: int, requests: int) -> None:
    """`count` flows from distinct client ports (an ephemeral port may come back and join two flows)."""
    for port in range(first_port, first_port + count):
        assert udp_exchange(lab, PORT, [b"ask-%d" % i for i in range(requests)], b"answer!",
                            client_port=port) == requests


def _records(path) -> list[dict]:
    """The records of the test's UDP flows (the lab's own ARP and neighbour discovery have records too)."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in records if r.get("ipProtocol") == 17 and r["destination"].get("port") == PORT]


def _shard(lab, client_port: int) -> int:
    key = make_key(IPPROTO_UDP, (lab.client_ip, client_port), (lab.server_ip, PORT))
    return flow_hash(bytes(key)) % 2


def test_two_workers_share_the_flows_and_count_each_exactly_once(lab, tmp_path):
    out = tmp_path / "sessions.jsonl"
    sensor = _sensor(tmp_path, out)
    try:
        sensor.start(["to-client", "to-server"], netns=lab.sensor)
        _exchanges(lab, 41000, 24, 3)
        summary = sensor.stop()
    finally:
        sensor.close()
    recs = _records(out)
    ports = [r["source"]["port"] for r in recs]
    assert len(recs) == 24 and len(set(ports)) == 24          # none lost, none doubled
    for r in recs:
        assert (r["source"]["packets"], r["destination"]["packets"]) == (3, 3)
        assert (r["source"]["bytes"], r["destination"]["bytes"]) == (3 * (FRAME + 5), 3 * (FRAME + 7))
        assert r["xdpsensor"]["delivered"] == 6
        assert r["xdpsensor"]["worker"] == _shard(lab, r["source"]["port"])
    assert {r["xdpsensor"]["worker"] for r in recs} == {0, 1}
    assert summary.workers == 2 and summary.records >= 24 and summary.frames >= 144   # + the lab's own flows
    assert summary.kernel[Stat.RINGBUF_FULL] == 0 and not summary.deaths


def test_a_killed_worker_is_reported_and_loses_only_its_open_sessions(lab, tmp_path):
    out = tmp_path / "sessions.jsonl"
    sensor = _sensor(tmp_path, out)
    errors: list[CaptureErrorEvent] = []
    sensor.api.on_capture_error(errors.append)
    try:
        sensor.start(["to-client", "to-server"], netns=lab.sensor)
        _exchanges(lab, 42000, 16, 1)                # 16 sessions open (UDP, 600 s timeout)
        deadline = time.monotonic() + patience(10)
        while len(sensor.api.list_active_sessions()) < 16 and time.monotonic() < deadline:
            time.sleep(0.05)
        before = {s.client_port: s for s in sensor.api.list_active_sessions()}
        assert len(before) == 16
        victim = sensor._pool.workers[1].process.pid
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + patience(10)
        while not any(e.kind == "worker" for e in errors) and time.monotonic() < deadline:
            time.sleep(0.05)
        _exchanges(lab, 43000, 16, 2)                # new flows: those of ring 1 find it gone
        summary = sensor.stop()
    finally:
        sensor.close()
    lost = sorted(p for p in before if _shard(lab, p) == 1)
    kept = sorted(p for p in before if _shard(lab, p) == 0)
    assert lost and kept
    [death] = summary.deaths
    assert (death.index, death.pid, death.exitcode) == (1, victim, -signal.SIGKILL)
    assert death.sessions_lost == len(lost)
    assert [e.error for e in errors if e.kind == "worker"] == [death.message()]
    recs = _records(out)
    assert {r["xdpsensor"]["worker"] for r in recs} == {0}
    by_port = {r["source"]["port"]: r for r in recs}
    assert sorted(p for p in by_port if p in before) == kept           # worker 0's sessions all finished
    assert all(by_port[p]["source"]["packets"] == 1 for p in kept)
    new_ports = [p for p in by_port if p not in before]
    assert all(by_port[p]["source"]["packets"] == 2 for p in new_ports)
    assert len(new_ports) + summary.kernel[Stat.RING_GONE] == 16       # ring 1's new flows: one record lost each
    assert summary.kernel[Stat.RING_GONE] > 0
    assert summary.kernel[Stat.BYPASSED_PKTS] >= 3 * summary.kernel[Stat.RING_GONE]
