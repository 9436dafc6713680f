"""Real, bounded traffic across the lab: sockets made inside the lab's
namespaces talk to addresses that exist only on the lab's interfaces.
Every exchange has a fixed count and a timeout, and stops by itself."""
from __future__ import annotations

import socket
import threading
import time

from sensor.kernel.attach import xdp_status
from sensor.lab import SENSOR_IFACES, Lab, patience
from sensor.netns import in_netns

TIMEOUT = patience(5.0)


def _family(ip: str) -> int:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def udp_exchange(lab: Lab, port: int, requests: list[bytes], reply: bytes | None = b"ok",
                 v6: bool = False, client_port: int = 0) -> int:
    """Client sends each request to the server's `port` (from `client_port`,
    0: any free one); the server answers each with `reply` (None: no answer).
    Returns the replies received."""
    server_ip = lab.server_ip6 if v6 else lab.server_ip
    fam = _family(server_ip)
    with in_netns(lab.server):
        srv = socket.socket(fam, socket.SOCK_DGRAM)
        srv.bind((server_ip, port))
    with in_netns(lab.client):
        cli = socket.socket(fam, socket.SOCK_DGRAM)
        if client_port:
            cli.bind(("", client_port))
    srv.settimeout(TIMEOUT)
    cli.settimeout(TIMEOUT)
    got = 0
    try:
        for request in requests:
            cli.sendto(request, (server_ip, port))
            _, peer = srv.recvfrom(65535)
            if reply is not None:
                srv.sendto(reply, peer)
                cli.recvfrom(65535)
                got += 1
    finally:
        srv.close()
        cli.close()
    return got


def tcp_exchange(lab: Lab, port: int, request: bytes, response: bytes, v6: bool = False) -> bytes:
    """One TCP connection: the client sends `request`, the server reads it,
    answers `response` and closes; both sides close cleanly (FIN/FIN)."""
    server_ip = lab.server_ip6 if v6 else lab.server_ip
    fam = _family(server_ip)
    with in_netns(lab.server):
        listener = socket.socket(fam, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((server_ip, port))
        listener.listen(1)
    listener.settimeout(TIMEOUT)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(TIMEOUT)
                received = b""
                while len(received) < len(request):
                    chunk = conn.recv(65535)
                    if not chunk:
                        break
                    received += chunk
                conn.sendall(response)
        except OSError:
            pass

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    with in_netns(lab.client):
        cli = socket.socket(fam, socket.SOCK_STREAM)
    cli.settimeout(TIMEOUT)
    answer = b""
    try:
        cli.connect((server_ip, port))
        cli.sendall(request)
        while True:
            chunk = cli.recv(65535)
            if not chunk:
                break
            answer += chunk
    finally:
        cli.close()
        server.join(TIMEOUT)
        listener.close()
    return answer


def wait_attached(lab: Lab, timeout: float = 30.0, attached: bool = True) -> bool:
    """Wait until both sensor interfaces have (or no longer have) an XDP program."""
    deadline = time.monotonic() + patience(timeout)
    while time.monotonic() < deadline:
        with in_netns(lab.sensor):
            states = [bool(xdp_status(name).prog_id) for name in SENSOR_IFACES]
        if all(s == attached for s in states):
            return True
        time.sleep(0.1)
    return False


def _port_field(first: int, last: int) -> str:
    """A trafgen port: fixed, or stepping through first..last (trafgen refuses dinc(n, n))."""
    return str(first) if first == last else f"dinc({first}, {last})"


def udp_flood(lab: Lab, packets: int, rate: int, sports: tuple[int, int], dports: tuple[int, int],
              payload: int = 16) -> float:
    """`packets` UDP packets at `rate`/s from the lab's client to its server, sent by trafgen
    (Python cannot keep such a rate): source and destination ports step through their ranges
    (inclusive) one packet at a time; returns the seconds it took. Bounded by `packets`."""
    import subprocess
    import tempfile

    from pyroute2 import IPRoute
    with in_netns(lab.sensor), IPRoute() as ipr:
        mac = ipr.get_links(ipr.link_lookup(ifname=SENSOR_IFACES[0])[0])[0].get_attr("IFLA_ADDRESS")
    conf = (f"{{ eth(da={mac}), ipv4(saddr={lab.client_ip}, daddr={lab.server_ip}, ttl=64), "
            f"udp(sp={_port_field(*sports)}, dp={_port_field(*dports)}), "
            f"fill('x', {payload}) }}\n")
    with tempfile.NamedTemporaryFile("w", suffix=".cfg") as cfg:
        cfg.write(conf)
        cfg.flush()
        started = time.monotonic()
        subprocess.run(["ip", "netns", "exec", lab.client, "trafgen", "--dev", "eth0", "--conf", cfg.name,
                        "-n", str(packets), "-b", f"{rate}pps", "-P", "1", "-q"],
                       check=True, capture_output=True, timeout=packets / rate * 3 + 30)
        return time.monotonic() - started
