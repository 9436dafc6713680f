"""`xdpsensor conformance` reports the default read path beside --no-prefilter,
per category, and says which pre-filter the default path ran."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from sensor.cli import main

CAPTURES = ("wireshark-esp", "ospf", "smtp-data-250")   # ESP, other IP + ICMPv6, a late-selected TCP flow


@pytest.fixture
def corpus(shared_testdata: Path, tmp_path: Path) -> Path:
    source = shared_testdata / "arkime-pcap"
    if not source.is_dir():
        pytest.skip(f"{source} is absent: Arkime's test captures live in ../shared/testdata")
    for name in CAPTURES:
        for suffix in (".pcap", ".test"):
            shutil.copy(source / f"{name}{suffix}", tmp_path / f"{name}{suffix}")
    return tmp_path


def test_both_paths_are_reported_per_category(corpus: Path) -> None:
    result = CliRunner().invoke(main, ["conformance", str(corpus), "--prefilter", "python", "--min-core", "0"])
    assert result.exit_code == 0, result.output
    assert "== default read, Python pre-filter" in result.output
    assert "== --no-prefilter" in result.output
    table = result.output[result.output.rindex("category "):].splitlines()
    assert "python: found" in table[0] and "none: found" in table[0]
    rows = {line.split()[0] for line in table[2:] if line.strip() and "|" in line}
    assert {"tcp/udp", "icmp", "other-ip"} <= rows


def test_json_holds_one_report_per_path_and_a_failing_minimum_exits_1(corpus: Path) -> None:
    result = CliRunner().invoke(main, ["conformance", str(corpus), "--prefilter", "python", "--json",
                                       "--min-core", "1.01"])
    assert result.exit_code == 1
    reports = json.loads(result.output)["paths"]
    assert [r["path"] for r in reports] == ["python", "none"]
    for report in reports:
        categories = report["totals"]["categories"]
        assert categories["other-ip"]["expected"] > 0 and 0 <= categories["other-ip"]["agreement"] <= 1
