"""Attaching on the lab's veths: the netlink fallback and --force."""
from __future__ import annotations

import subprocess
import sys

import pytest

from sensor.kernel.attach import attach, detach, xdp_status
from sensor.kernel.program import SensorProgram
from sensor.lab import patience
from sensor.netns import in_netns

pytestmark = pytest.mark.lab


def prog_id(lab, ifname="to-client") -> int:
    with in_netns(lab.sensor):
        return xdp_status(ifname).prog_id


def test_netlink_fallback_attaches_and_is_removed_explicitly(lab):
    program = SensorProgram()
    try:
        att = attach(program.fd, "to-client", lab.sensor, mode="generic", method="netlink")
        try:
            assert (att.method, att.mode) == ("netlink", "generic")
            assert prog_id(lab) != 0
        finally:
            detach(att)
        assert prog_id(lab) == 0
    finally:
        program.close()


def test_force_replaces_a_foreign_program(lab, tmp_path):
    foreign = SensorProgram()
    try:
        att = attach(foreign.fd, "to-client", lab.sensor, method="netlink")
        foreign_id = prog_id(lab)
        result = subprocess.run(
            [sys.executable, "-m", "sensor", "run", "--netns", lab.sensor, "-i", "to-client", "--force",
             "--port", "udp:5353", "--duration", "1", "-o", str(tmp_path / "f.jsonl")],
            capture_output=True, text=True, timeout=patience(60))
        assert result.returncode == 0, result.stderr
        # The foreign program was removed, ours detached itself on exit: the hook is free.
        assert foreign_id != 0 and prog_id(lab) == 0
    finally:
        if prog_id(lab):
            detach(att)
        foreign.close()
