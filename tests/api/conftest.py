"""Captures (tests/capturelib.py) read back through a real Pipeline."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from capturelib import Capture

from sensor.arkime.loader import load_plugins
from sensor.arkime.runtime import PluginRuntime
from sensor.capture.pcapfile import read_pcap
from sensor.flows.table import SessionTable
from sensor.hooks import FinishedCollector
from sensor.pipeline import Pipeline

REPO = Path(__file__).resolve().parents[2]


def make_pipeline(listener, plugins: Iterable[Path] = ()) -> tuple[Pipeline, list[dict]]:
    runtime = PluginRuntime()
    files = list(plugins)
    if files:
        report = load_plugins(runtime, dirs=[], files=files)
        assert not report.errors, report.errors
    collected = FinishedCollector()
    return Pipeline(runtime, SessionTable(), [listener, collected]), collected.records


def replay(pipeline: Pipeline, path: Path, after: Callable[[int], None] | None = None) -> None:
    """Feed a pcap frame by frame, expiring idle sessions on capture time like `xdpsensor read`;
    ``after(n)`` runs after the n-th frame (1-based)."""
    for count, rec in enumerate(read_pcap(path), 1):
        pipeline.feed(rec.data, rec.timestamp, linktype=rec.linktype, wire_len=rec.wire_len)
        pipeline.expire(rec.timestamp)
        if after is not None:
            after(count)


@pytest.fixture
def capture() -> Capture:
    return Capture()


@pytest.fixture
def redis_plugin() -> Path:
    path = REPO / "plugins" / "redis.py"
    if not path.is_file():
        pytest.skip("plugins/redis.py is absent")
    return path


@pytest.fixture(name="make_pipeline")
def make_pipeline_fixture() -> Callable[..., tuple[Pipeline, list[dict]]]:
    return make_pipeline


@pytest.fixture(name="replay")
def replay_fixture() -> Callable[..., None]:
    return replay
