"""The command line checks every option before any side effect: a mistake
is one line on stderr, exit status 2, and no file appears anywhere."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from capturelib import Capture
from click.testing import CliRunner

from sensor.cli import main
from test_yamlload import laughs


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    """An empty working directory; inputs live beside it."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


@pytest.fixture
def pcap(tmp_path) -> Path:
    capture = Capture()
    capture.udp(("10.0.0.1", 5000), ("10.0.0.2", 53), b"q")
    return capture.write(tmp_path / "in.pcap")


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def one_line_error(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("xdpsensor: "), result.output
    return lines[0]


@pytest.mark.parametrize("args, words", [
    (["--snaplen", "0"], "snaplen must be between 1 and 2048"),
    (["--snaplen", "5000"], "snaplen must be between 1 and 2048"),
    (["--port", "udp:99999"], "PROTO:PORT"),
    (["-o", "x.txt"], "cannot tell the output format"),
    (["-o", "spi:{tmp}"], "is a directory"),
    (["-o", "{tmp}/missing/out.jsonl"], "does not exist"),
    (["-o", "/proc/out.jsonl"], "kernel file system"),
    (["-o", "good.db", "-o", "x.txt"], "cannot tell the output format"),
    (["-c", "{tmp}/bomb.yaml"], "more than 200,000 nodes"),
    (["-c", "{tmp}/snap0.yaml"], "snaplen must be between"),
    (["-c", "{tmp}/ports.yaml"], "need 1026 port table entries (a port rule takes one per end) but the kernel's "
                                 "port table holds at most 1024"),
    (["-c", "{tmp}/ports.yaml", "--prefilter", "kernel"], "need 1026 port table entries"),
])
def test_a_bad_option_is_one_line_and_creates_nothing(work, pcap, tmp_path, args, words):
    (tmp_path / "bomb.yaml").write_text(laughs(9).replace("l0:", "ports:", 1))
    (tmp_path / "snap0.yaml").write_text("snaplen: 0\n")
    (tmp_path / "ports.yaml").write_text(f"default_plugins: false\nports: [{', '.join(f'udp:{p}' for p in range(1000, 1513))}]\n")
    before = files_under(tmp_path)
    args = [a.format(tmp=tmp_path) for a in args]
    result = CliRunner().invoke(main, ["read", str(pcap), "--prefilter", "python", *args])
    assert words in one_line_error(result)
    assert files_under(tmp_path) == before


def test_run_on_a_missing_interface_touches_nothing(work, tmp_path):
    before = files_under(tmp_path)
    result = CliRunner().invoke(main, ["run", "-i", "no-such-if0", "--duration", "1"])
    line = one_line_error(result)
    assert ("no-such-if0" in line) if os.geteuid() == 0 else ("needs root" in line)
    assert files_under(tmp_path) == before


def test_an_output_that_fails_to_open_removes_the_ones_it_created(work, tmp_path):
    from sensor.output import StoreError, open_outputs
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a sqlite file at all" * 100)
    with pytest.raises(StoreError, match="bad.db"):
        open_outputs(["first.jsonl", "sqlite:first.db", f"sqlite:{bad}"])
    assert files_under(work) == set()
