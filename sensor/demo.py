"""`xdpsensor demo`: the whole path on real traffic, in a few seconds.

Builds the lab, starts `xdpsensor run` on the sensor namespace's two
interfaces with the bundled plugins and the bundled bindings (Modbus and MQTT
framed and decoded), sends HTTP, DNS, Modbus and Redis exchanges plus traffic
no plugin wants between client and server, then shows the session records,
the decoded Modbus messages from the session store, and the kernel counters,
and takes the lab down."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sensor import lab as lab_mod
from sensor.config import BUNDLED_PROTOCOLS
from sensor.labtraffic import tcp_exchange, udp_exchange, wait_attached
from sensor.output.sqlite import SqliteStore
from sensor.output.terminal import message_lines

RUN_SECONDS = 15

# A DNS query for server.lab (A, IN) and its answer 10.77.2.2, as on the wire.
DNS_QUERY = bytes.fromhex("12340100000100000000000006736572766572036c61620000010001")
DNS_ANSWER = bytes.fromhex("12348180000100010000000006736572766572036c61620000010001"
                           "c00c000100010000003c00040a4d0202")
# Modbus/TCP: read 2 holding registers from 0, answered 42 and 7.
MODBUS_REQUEST = bytes.fromhex("000100000006010300000002")
MODBUS_REPLY = bytes.fromhex("000100000007010304002a0007")


def run_demo(lab: lab_mod.Lab, keep: bool = False, echo: Callable[[str], None] = print) -> None:
    lab_mod.up(lab)
    echo(f"lab {lab.name}: client {lab.client_ip} <-> sensor ({' '.join(lab_mod.SENSOR_IFACES)}) <-> server {lab.server_ip}")
    workdir = Path(tempfile.mkdtemp(prefix="xdpsensor-demo-"))
    records, db = workdir / "sessions.jsonl", workdir / "sessions.db"
    cmd = [sys.executable, "-m", "sensor", "run", "--netns", lab.sensor, "-i", "to-client", "-i", "to-server",
           "-c", str(BUNDLED_PROTOCOLS / "bindings.yaml"), "--duration", str(RUN_SECONDS),
           "-o", str(records), "-o", str(db)]
    echo("$ " + " ".join(cmd[2:]).replace("sensor run", "xdpsensor run", 1))
    sensor = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        if not wait_attached(lab):
            sensor.kill()
            raise SystemExit("the sensor did not attach: " + (sensor.communicate()[1] or ""))
        echo("traffic: HTTP GET on tcp/8080, DNS on udp/53, Modbus on tcp/502, Redis PING on tcp/6379,")
        echo("         a line protocol on tcp/7000 and UDP 9999 x5 (no plugin wants them)")
        tcp_exchange(lab, 8080, b"GET /demo HTTP/1.1\r\nHost: server.lab\r\nUser-Agent: demo\r\n\r\n",
                     b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        udp_exchange(lab, 53, [DNS_QUERY], DNS_ANSWER)
        tcp_exchange(lab, 502, MODBUS_REQUEST, MODBUS_REPLY)
        tcp_exchange(lab, 6379, b"*1\r\n$4\r\nPING\r\n", b"+PONG\r\n")
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
    echo("\nsession records (Arkime SPI; whole-flow counts from the kernel):")
    for line in records.read_text().splitlines():
        echo("  " + _summary(json.loads(line)))
    _show_modbus(db, echo)
    echo("\nsensor summary:")
    for line in err.strip().splitlines():
        echo("  " + line)
    echo(f"\nfull records: {records}\nsession store: {db}  (xdpsensor sessions list --db {db})")


def _summary(rec: dict) -> str:
    src, dst = rec["source"], rec["destination"]
    fields = []
    for group in ("http", "dns", "modbus", "redis"):
        for name, value in (rec.get(group) or {}).items():
            if not name.endswith("Cnt") and name in ("method", "host", "uri", "statuscode", "funccode",
                                                     "transactionid", "command", "ip"):
                fields.append(f"{group}.{name}={value}")
    return (f"{','.join(rec['protocol']):<10} {_endpoints(rec)}  "
            f"packets {src['packets']}/{dst['packets']}  bytes {src['bytes']}/{dst['bytes']}  "
            f"{' '.join(fields)}")


def _endpoints(rec: dict) -> str:
    """Who talked: ip:port per side of an IP flow, MACs of a non-IP session
    keyed by them; the kernel keys ARP and the like by kind alone (all of a
    link's ARP is one session), so those show their ethertype."""
    src, dst = rec["source"], rec["destination"]
    if "ip" not in src and "mac" not in src and "mac" not in dst:
        return f"ethertype 0x{rec.get('ethertype', 0):04x}"
    return f"{_endpoint(src)} -> {_endpoint(dst)}"


def _endpoint(side: dict) -> str:
    """ip:port of an IP flow's side; a non-IP session's side by its MAC addresses."""
    if "ip" not in side:
        return ",".join(side.get("mac", ["?"]))
    return f"{side['ip']}:{side['port']}" if "port" in side else side["ip"]


def _show_modbus(db: Path, echo: Callable[[str], None]) -> None:
    store = SqliteStore(str(db), readonly=True)
    try:
        for session in store.list_sessions(protocol="modbus"):
            echo(f"\ndecoded Modbus messages of session {session['id'][:8]} (binding modbus, protocols/modbus.yaml):")
            for message in store.get_messages(session["id"]):
                for line in message_lines(message):
                    echo("  " + line)
    finally:
        store.close()
