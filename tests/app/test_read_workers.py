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

import pytest

from sensor import Sensor
from sensor.config import BUNDLED_PROTOCOLS
from sensor.kernel.contract import make_key
from sensor.prefilter import flow_hash


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
