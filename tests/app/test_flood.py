"""A flood of one-packet flows, many more than `max_sessions`: memory stays
bounded by the configured limits (a flood four times longer peaks no higher),
and every flow is either recorded or counted as shed."""
from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path

import pytest

from sensor.app import Sensor
from sensor.output import SqliteStore
from sensor.output.writer import OutputWriter
from sensor.pipeline import Pipeline
from sensor.arkime.runtime import PluginRuntime
from sensor.flows.table import SessionTable
from sensor.offline import replay

MAX_SESSIONS = 300
SPACING = 0.001             # one new flow per millisecond of capture time
CONFIG = {"default_plugins": False, "ports": ["udp:9999"], "max_sessions": MAX_SESSIONS, "timeouts": {"udp": 0.2}}
_ETH = bytes.fromhex("020000000002020000000001") + b"\x08\x00"


def flood(path: Path, flows: int) -> Path:
    """`flows` one-packet UDP flows to port 53 from 200 addresses, each from its own source port (the
    decoder's bounded cache of address texts is then full from the start, in the short flood too)."""
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(flows):
            src = bytes((10, 1, 0, 1 + i % 200))
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 29, 0, 0, 64, 17, 0, src, bytes((10, 255, 0, 1)))
            frame = _ETH + ip + struct.pack("!HHHH", 1024 + i, 53, 9, 0) + b"q"
            ts = 1_700_000_000 + i * SPACING
            out.write(struct.pack("<IIII", int(ts), round(ts % 1 * 1e6), len(frame), len(frame)) + frame)
    return path


def read_flood(tmp_path: Path, flows: int, prefilter: str) -> tuple[int, int, int]:
    """(peak bytes traced while reading, sessions stored, sessions the outputs lost)."""
    db = tmp_path / f"{prefilter}-{flows}.db"
    sensor = Sensor(CONFIG, outputs=[SqliteStore(db, batch_size=50)])
    # Bounds of their own, made small so that the short flood reaches them too: the API's list of
    # closed sessions and the sessions queued for the store.
    sensor.registry.sessions_kept = 50
    sensor.writer = OutputWriter(sensor.outputs, capacity=50)
    capture = flood(tmp_path / f"flood-{flows}.pcap", flows)
    tracemalloc.start()
    try:
        summary = sensor.read_pcap(capture, prefilter=prefilter)
        sensor.close()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert summary.complete
    with SqliteStore(db, readonly=True) as reader:
        stored = len(reader.list_sessions(limit=None))
    return peak, stored, sum(s.lost for s in sensor.output_stats())


@pytest.mark.parametrize("prefilter", ["none", "python", pytest.param("kernel", marks=pytest.mark.kernel)])
def test_a_flood_is_bounded_in_memory_and_every_flow_is_recorded(tmp_path, prefilter):
    small, large = 1500, 4500
    peak_small, stored_small, lost_small = read_flood(tmp_path, small, prefilter)
    peak_large, stored_large, lost_large = read_flood(tmp_path, large, prefilter)
    assert (stored_small, lost_small) == (small, 0)
    assert (stored_large, lost_large) == (large, 0)
    assert peak_large < 1.25 * peak_small, (peak_small, peak_large)


class SlowStore(SqliteStore):
    """A store that cannot keep up: the writer's queue fills and sessions are shed."""

    def write(self, finished) -> None:
        import time
        time.sleep(0.0005)
        super().write(finished)


def test_a_flood_the_outputs_cannot_take_is_shed_and_counted(tmp_path):
    """Live capture does not wait for the outputs: what a full queue cannot take is shed, and counted."""
    flows = 3000
    store = SlowStore(tmp_path / "s.db")
    writer = OutputWriter([store], ["slow"], capacity=16)
    pipeline = Pipeline(PluginRuntime(), SessionTable(max_sessions=MAX_SESSIONS), [writer])
    replay([flood(tmp_path / "flood.pcap", flows)], pipeline, None)
    writer.close()
    stats = writer.stats()[0]
    with SqliteStore(tmp_path / "s.db", readonly=True) as reader:
        stored = len(reader.list_sessions(limit=None))
    assert pipeline.stats.records == flows
    assert stats.dropped > 0
    assert (stored, stored + stats.dropped + stats.failed) == (stats.written, flows)
