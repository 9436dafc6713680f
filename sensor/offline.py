"""`xdpsensor read`: capture files through the same pipeline as live traffic."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from sensor.arkime.loader import load_plugins
from sensor.arkime.runtime import PluginRuntime
from sensor.capture.pcapfile import read_pcap
from sensor.flows.table import SessionTable
from sensor.pipeline import Pipeline

EXPIRE_EVERY = 1.0  # capture seconds between idle-session expiries


def read_records(pcaps: Iterable[str | Path], plugins: Iterable[str | Path] = ()) -> list[dict]:
    """Every session of the captures as SPI records, every flow sent to the
    plugins (no pre-filter), like Arkime reading a file."""
    runtime = PluginRuntime()
    paths = [Path(p) for p in plugins]
    load_plugins(runtime, dirs=[p for p in paths if p.is_dir()], files=[p for p in paths if not p.is_dir()])
    records: list[dict] = []
    pipeline = Pipeline(runtime, SessionTable(), records.append)
    next_expire = 0.0
    for pcap in pcaps:
        for rec in read_pcap(pcap):
            pipeline.feed(rec.data, rec.timestamp, linktype=rec.linktype, wire_len=rec.wire_len)
            if rec.timestamp >= next_expire:  # idle timeouts run on capture time
                pipeline.expire(rec.timestamp)
                next_expire = rec.timestamp + EXPIRE_EVERY
    pipeline.close()
    return records
