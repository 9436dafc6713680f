"""contrib/systemd/xdpsensor.service: systemd accepts it (systemd-analyze verify), it reloads with
SIGHUP and drops to its user, and its hardening keeps the exposure score low."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "contrib" / "systemd" / "xdpsensor.service"
ANALYZE = shutil.which("systemd-analyze")
pytestmark = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


@pytest.fixture
def unit(tmp_path) -> Path:
    """The unit with ExecStart pointing at this checkout's xdpsensor (verify checks it is executable)."""
    here = Path(sys.executable).parent / "xdpsensor"
    path = tmp_path / "xdpsensor.service"
    path.write_text(UNIT.read_text().replace("/opt/xdpsensor/.venv/bin/xdpsensor", str(here)))
    return path


def test_systemd_accepts_the_unit(unit):
    result = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_the_unit_reloads_with_sighup_and_runs_as_its_user():
    text = UNIT.read_text()
    assert "ExecReload=/bin/kill -HUP $MAINPID" in text
    exec_start = re.search(r"^ExecStart=((?:.*\\\n)*.*)", text, re.M).group(1)
    assert "--user xdpsensor" in exec_start and "--metrics 127.0.0.1:" in exec_start


def test_the_hardening_keeps_the_exposure_low(unit):
    result = subprocess.run([ANALYZE, "security", "--offline=yes", str(unit)], capture_output=True, text=True,
                            timeout=60)
    score = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout).group(1))
    assert score <= 4.0, result.stdout
