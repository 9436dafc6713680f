"""The pcap output live: a session's packets, extracted while the sensor runs, are the frames
tcpdump saw arrive on the sensor's interfaces, byte for byte."""
from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
from click.testing import CliRunner

from sensor import Sensor
from sensor.capture.pcapfile import read_pcap
from sensor.cli import main
from sensor.lab import patience
from sensor.labtraffic import tcp_exchange
from sensor.output.sqlite import SqliteStore

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed (setup-host)")]

PORT = 8123


def start_tcpdump(netns: str, interface: str, out) -> subprocess.Popen:
    """An independent capture of what arrives on `interface` (ingress only, as the XDP hook sees it)."""
    proc = subprocess.Popen(["ip", "netns", "exec", netns, "tcpdump", "-i", interface, "-Q", "in", "-U", "-n",
                             "-w", str(out), f"tcp port {PORT}"], stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()  # "listening on ..." once the capture runs
    assert "listening on" in line, line
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=10)
    proc.stderr.close()


def test_live_session_extract_equals_what_tcpdump_saw(lab, tmp_path):
    db, pcaps = tmp_path / "s.db", tmp_path / "pcap"
    sensor = Sensor({"default_plugins": False, "ports": [f"tcp:{PORT}"], "workers": 1,
                     "timeouts": {"tcp_closing": 1}, "outputs": [f"sqlite:{db}", f"pcap:{pcaps}?node=lab"]})
    dumps = {name: tmp_path / f"{name}.pcap" for name in ("to-client", "to-server")}
    tcpdumps = [start_tcpdump(lab.sensor, name, out) for name, out in dumps.items()]
    try:
        sensor.start(["to-client", "to-server"], netns=lab.sensor)
        assert tcp_exchange(lab, PORT, b"request " * 100, b"response " * 400) == b"response " * 400
        stored = None
        deadline = time.monotonic() + patience(15)
        while stored is None and time.monotonic() < deadline:  # closed, recorded and committed
            time.sleep(0.2)
            if db.exists():
                with SqliteStore(db, readonly=True) as store:
                    stored = next(iter(store.list_sessions(port=PORT)), None)
        assert stored is not None, "the session was not stored"
        out = tmp_path / "extract.pcap"
        result = CliRunner(mix_stderr=False).invoke(main, ["sessions", "pcap", stored["id"], "--db", str(db),
                                                           "-o", str(out)])
        assert result.exit_code == 0, result.stderr  # extracted while the sensor still runs
    finally:
        sensor.stop()
        sensor.close()
        for proc in tcpdumps:
            stop(proc)
    extracted = [rec.data for rec in read_pcap(out)]
    from_client = [rec.data for rec in read_pcap(dumps["to-client"])]
    from_server = [rec.data for rec in read_pcap(dumps["to-server"])]
    assert len(from_client) >= 4 and len(from_server) >= 3  # handshake, data, FIN exchange
    # Each direction in the order it arrived; both directions together, nothing more.
    client_ip = bytes(int(b) for b in lab.client_ip.split("."))
    assert [f for f in extracted if f[26:30] == client_ip] == from_client
    assert [f for f in extracted if f[26:30] != client_ip] == from_server
    record = json.loads(json.dumps(stored["record"]))
    assert record["fileId"] == [1] and len(record["packetPos"]) == len(extracted) + 1
