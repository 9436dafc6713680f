"""Captures built with scapy, written with write_pcap, read back through a real Pipeline."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from sensor.arkime.loader import load_plugins
from sensor.arkime.runtime import PluginRuntime
from sensor.capture.pcapfile import read_pcap, write_pcap
from sensor.flows.table import SessionTable
from sensor.pipeline import Pipeline

REPO = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000.0


@dataclass
class Capture:
    """Frames in time order; each helper appends one conversation's packets."""

    frames: list[tuple[float, bytes]] = field(default_factory=list)
    clock: float = T0

    def _add(self, packet) -> None:
        self.clock += 0.001
        self.frames.append((self.clock, bytes(packet)))

    def tcp(self, client: tuple[str, int], server: tuple[str, int]) -> TcpConversation:
        return TcpConversation(self, client, server)

    def udp(self, src: tuple[str, int], dst: tuple[str, int], data: bytes) -> None:
        self._add(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src=src[0], dst=dst[0]) / UDP(sport=src[1], dport=dst[1]) / data)

    def write(self, path: Path) -> Path:
        write_pcap(path, self.frames)
        return path


class TcpConversation:
    """One TCP connection; sequence numbers are tracked so reassembly sees a real stream."""

    def __init__(self, capture: Capture, client: tuple[str, int], server: tuple[str, int]) -> None:
        self.capture = capture
        self.ends = {"c": client, "s": server}
        self.seq = {"c": 1000, "s": 5000}

    def _packet(self, side: str, flags: str, data: bytes = b"", ack: bool = True) -> None:
        other = "s" if side == "c" else "c"
        src, dst = self.ends[side], self.ends[other]
        tcp = TCP(sport=src[1], dport=dst[1], flags=flags, seq=self.seq[side], ack=self.seq[other] if ack else 0)
        self.capture._add(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src=src[0], dst=dst[0]) / tcp / data)
        self.seq[side] += len(data) + (1 if "S" in flags or "F" in flags else 0)

    def handshake(self) -> TcpConversation:
        self._packet("c", "S", ack=False)
        self._packet("s", "SA")
        self._packet("c", "A")
        return self

    def syn(self) -> TcpConversation:
        self._packet("c", "S", ack=False)
        return self

    def rst(self, side: str) -> TcpConversation:
        self._packet(side, "RA")
        return self

    def send(self, side: str, *segments: bytes) -> TcpConversation:
        for data in segments:
            self._packet(side, "PA", data)
        return self

    def fin(self, side: str) -> TcpConversation:
        self._packet(side, "FA")
        return self

    def close(self) -> TcpConversation:
        self.fin("c").fin("s")
        self._packet("c", "A")
        return self


def make_pipeline(listener, plugins: Iterable[Path] = ()) -> tuple[Pipeline, list[dict]]:
    runtime = PluginRuntime()
    files = list(plugins)
    if files:
        report = load_plugins(runtime, dirs=[], files=files)
        assert not report.errors, report.errors
    records: list[dict] = []
    return Pipeline(runtime, SessionTable(), records.append, listener=listener), records


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
