"""Shared fixtures: a dataclass SessionView and a fresh runtime per test."""
from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from sensor.arkime.loader import LoadReport, load_plugins
from sensor.arkime.runtime import PluginRuntime


@dataclass
class FakeSession:
    """Implements sensor.arkime.view.SessionView for tests."""

    id: int = 1
    ip_protocol: int = 6
    client_ip: str = "10.0.0.1"
    server_ip: str = "10.0.0.2"
    client_port: int = 40000
    server_port: int = 80
    vlan: tuple = ()
    first_ts: float = 1466097898.472
    last_ts: float = 1466097973.153
    packets: list[int] = field(default_factory=lambda: [7, 3])
    bytes: list[int] = field(default_factory=lambda: [588, 198])
    databytes: list[int] = field(default_factory=lambda: [86, 0])
    tcpflags: dict[str, int] = field(default_factory=lambda: {
        "syn": 1, "syn-ack": 1, "ack": 3, "psh": 2, "fin": 1, "rst": 2, "urg": 0, "ece": 2,
        "cwr": 1, "ae": 0, "srcZero": 0, "dstZero": 0})
    first_payload: list[bytes] = field(default_factory=lambda: [b"\x02\x01\x00\x00\x00\x00\x00\x23", b""])
    icmp_types: set[int] = field(default_factory=set)
    icmp_codes: set[int] = field(default_factory=set)
    community_id: str = "1:hqeHY06nR5NH3ELRiceo1VcM3Fk="
    tags: set[str] = field(default_factory=set)


@pytest.fixture
def view_cls() -> type[FakeSession]:
    return FakeSession


@pytest.fixture
def rt() -> PluginRuntime:
    return PluginRuntime()


@pytest.fixture
def ark(rt):
    return rt.modules["arkime"]


@pytest.fixture
def sess(rt):
    return rt.modules["arkime_session"]


@pytest.fixture
def start(rt) -> Callable[..., int]:
    """Start a session built from FakeSession keyword arguments; returns the handle."""
    def _start(**kw) -> int:
        return rt.session_started(FakeSession(**kw))
    return _start


@pytest.fixture
def write_plugin(tmp_path) -> Callable[[str, str], Path]:
    def _write(name: str, source: str, directory: Path | None = None) -> Path:
        d = directory or tmp_path
        d.mkdir(parents=True, exist_ok=True)
        p = d / name
        p.write_text(textwrap.dedent(source))
        return p
    return _write


@pytest.fixture
def load(rt) -> Callable[..., LoadReport]:
    def _load(*files: Path) -> LoadReport:
        report = load_plugins(rt, files=files)
        return report
    return _load
