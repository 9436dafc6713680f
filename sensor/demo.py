"""`xdpsensor demo`: the whole path on real traffic, in a few seconds.

Builds the lab, starts `xdpsensor run` on the sensor namespace's two
interfaces with a UDP port rule and an HTTP prefix rule, sends matched and
unmatched traffic between client and server, then shows the session records
and the kernel counters, and takes the lab down."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sensor import lab as lab_mod
from sensor.labtraffic import tcp_exchange, udp_exchange, wait_attached

RUN_SECONDS = 12


def run_demo(lab: lab_mod.Lab, keep: bool = False, echo: Callable[[str], None] = print) -> None:
    lab_mod.up(lab)
    echo(f"lab {lab.name}: client {lab.client_ip} <-> sensor ({' '.join(lab_mod.SENSOR_IFACES)}) <-> server {lab.server_ip}")
    out = Path(tempfile.mkdtemp(prefix="xdpsensor-demo-")) / "sessions.jsonl"
    cmd = [sys.executable, "-m", "sensor", "run", "--netns", lab.sensor,
           "-i", "to-client", "-i", "to-server", "--port", "udp:5353", "--prefix", "tcp:0:GET ",
           "--duration", str(RUN_SECONDS), "-o", str(out)]
    echo("$ " + " ".join(cmd[2:]).replace("sensor run", "xdpsensor run", 1))
    sensor = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        if not wait_attached(lab):
            sensor.kill()
            raise SystemExit("the sensor did not attach: " + (sensor.communicate()[1] or ""))
        echo("traffic: HTTP GET on tcp/8080 (matched by prefix), UDP 5353 x3 (matched by port),")
        echo("         a line protocol on tcp/7000 and UDP 9999 x5 (not matched)")
        tcp_exchange(lab, 8080, b"GET /demo HTTP/1.1\r\nHost: server\r\n\r\n",
                     b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        udp_exchange(lab, 5353, [b"mdns-query-%d" % i for i in range(3)], b"mdns-answer")
        tcp_exchange(lab, 7000, b"HELLO server\n", b"HELLO client\n")
        udp_exchange(lab, 9999, [b"noise-%d" % i for i in range(5)], b"ack")
        time.sleep(0.5)
        sensor.send_signal(2)  # SIGINT: flush every session and detach
        _, err = sensor.communicate(timeout=30)
    finally:
        if sensor.poll() is None:
            sensor.kill()
        if not keep:
            lab_mod.down(lab)
    echo("\nsession records (Arkime SPI core fields, whole-flow counts from the kernel):")
    for line in out.read_text().splitlines():
        rec = json.loads(line)
        src, dst = rec["source"], rec["destination"]
        echo(f"  {rec['protocol'][0]:<4} {src['ip']}:{src['port']} -> {dst['ip']}:{dst['port']}  "
             f"packets {src['packets']}/{dst['packets']}  bytes {src['bytes']}/{dst['bytes']}  "
             f"delivered {rec['xdpsensor'].get('delivered')}  ended by {rec['xdpsensor']['endReason']}")
    echo("\nsensor summary:")
    for line in err.strip().splitlines():
        echo("  " + line)
    echo(f"\nfull records: {out}")
