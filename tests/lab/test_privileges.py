"""`run --user`: attached as root, then the whole process runs as the user with
no capability left, plugins loaded only after the switch, and capture, bypass
(a map update) and output still work."""
from __future__ import annotations

import json
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from sensor.labtraffic import tcp_exchange, wait_attached
from sensor.netns import in_netns

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


def udp_flow_with_a_pause(lab, port: int, before: int, after: int) -> None:
    """One UDP flow (one socket pair): `before` datagrams, a pause for the sensor to decide, `after` more."""
    with in_netns(lab.server):
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        server.bind((lab.server_ip, port))
    with in_netns(lab.client):
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.settimeout(5)
    try:
        for i in range(before + after):
            if i == before:
                time.sleep(0.5)
            client.sendto(b"datagram %d" % i, (lab.server_ip, port))
            server.recvfrom(100)
    finally:
        client.close()
        server.close()


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
    proc = subprocess.Popen([sys.executable, "-m", "sensor", "run", "--netns", lab.sensor, "-i", "to-client",
                             "-i", "to-server", "--no-default-plugins", "--flows", "selected", "-p", str(plugin), "--port", "udp:9999",
                             "--user", "nobody", "-o", str(out), "--duration", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_attached(lab)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and status(proc.pid)["Uid"].split()[0] == "0":
            time.sleep(0.1)
        seen = status(proc.pid)
        assert seen["Uid"].split() == [str(nobody.pw_uid)] * 4
        assert seen["Gid"].split() == [str(nobody.pw_gid)] * 4
        assert int(seen["CapEff"], 16) == int(seen["CapPrm"], 16) == 0
        assert seen["NoNewPrivs"] == "1"
        time.sleep(1)  # the plugins load after the switch: let the rules reach the kernel
        assert tcp_exchange(lab, 7100, b"PING me", b"PONG") == b"PONG"
        udp_flow_with_a_pause(lab, 9999, before=1, after=3)
    finally:
        proc.send_signal(2)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
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
