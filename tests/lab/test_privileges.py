"""`run --user`: attached as root, then the whole process runs as the user with
no capability left, plugins loaded only after the switch, and capture, bypass
(a map update) and output still work."""
from __future__ import annotations

import json
import pwd
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

import pytest

from sensor.lab import patience
from sensor.labtraffic import tcp_exchange, wait_attached
from sensor.netns import in_netns
from tests.lab.sensorproc import SensorProcess

pytestmark = pytest.mark.lab

PLUGIN = '''\
import os
import arkime
import arkime_session

LOADED_AS = os.getuid()


def parse(session, data, remaining, which):
    arkime_session.add_tag(session, f"loaded-as-{LOADED_AS}")
    arkime_session.add_tag(session, f"called-as-{os.getuid()}")
    return -1


def classify(session, data, remaining, which):
    arkime_session.register_parser(session, parse)


arkime.register_tcp_classifier("uidprobe", 0, b"PING", classify)
'''


def udp_flow_with_a_pause(lab, sensor: SensorProcess, port: int, before: int, after: int) -> None:
    """One UDP flow (one socket pair): `before` datagrams, then, once the sensor has bypassed
    the flow (its verdict is in the kernel's map), `after` more."""
    with in_netns(lab.server):
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        server.bind((lab.server_ip, port))
    with in_netns(lab.client):
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.settimeout(patience(5))
    try:
        for i in range(before + after):
            if i == before:
                wait_bypassed(sensor)
            client.sendto(b"datagram %d" % i, (lab.server_ip, port))
            server.recvfrom(100)
    finally:
        client.close()
        server.close()


def wait_bypassed(sensor: SensorProcess, timeout: float = 20) -> None:
    """Until the sensor says it bypassed a flow (it counts one after the kernel's map update)."""
    deadline = time.monotonic() + patience(timeout)
    while sensor.counter("userspace.bypassed") == 0:
        assert time.monotonic() < deadline, f"no flow bypassed; stderr:\n{sensor.stderr}"
        time.sleep(0.1)


def status(pid: int) -> dict[str, str]:
    lines = open(f"/proc/{pid}/status").read().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


@pytest.fixture
def public_dir():
    """A directory the unprivileged user can read (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="xdpsensor-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def test_the_sensor_runs_as_the_user_without_capabilities(lab, tmp_path, public_dir):
    nobody = pwd.getpwnam("nobody")
    plugin = public_dir / "uidprobe.py"
    plugin.write_text(PLUGIN)
    out = tmp_path / "out.jsonl"
    sensor = SensorProcess(lab, "--no-default-plugins", "--flows", "selected", "-p", str(plugin), "--port", "udp:9999",
                           "--user", "nobody", "-o", str(out), duration=60)
    try:
        assert wait_attached(lab)
        deadline = time.monotonic() + patience(20)
        while time.monotonic() < deadline and status(sensor.proc.pid)["Uid"].split()[0] == "0":
            time.sleep(0.1)
        seen = status(sensor.proc.pid)
        assert seen["Uid"].split() == [str(nobody.pw_uid)] * 4
        assert seen["Gid"].split() == [str(nobody.pw_gid)] * 4
        assert int(seen["CapEff"], 16) == int(seen["CapPrm"], 16) == 0
        assert seen["NoNewPrivs"] == "1"
        sensor.wait_for("attached:")  # the plugins load after the switch; their rules are in the kernel after this
        udp_flow_with_a_pause(lab, sensor, 9999, before=1, after=3)  # first: the only flow that can be bypassed yet
        assert tcp_exchange(lab, 7100, b"PING me", b"PONG") == b"PONG"
    finally:
        code = sensor.stop(signal.SIGINT)
    err = sensor.stderr
    assert code == 0, err
    assert "running as nobody" in err
    by_port = {r["destination"]["port"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(by_port) == {7100, 9999}, err
    tags = set(by_port[7100]["tags"])
    assert {f"loaded-as-{nobody.pw_uid}", f"called-as-{nobody.pw_uid}"} <= tags
    udp = by_port[9999]
    # Nothing wants the UDP flow after its first packet: bypassed through a map update made as nobody,
    # and its record still has the kernel's whole-flow counts.
    assert "xdp-bypassed" in udp["tags"]
    assert udp["source"]["packets"] == 4
    assert udp["xdpsensor"]["delivered"] == 1
    assert out.stat().st_uid == nobody.pw_uid
