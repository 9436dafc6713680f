"""The test topology: a client and a server routed through a sensor namespace.

    NAME-client            NAME-sensor                    NAME-server
    eth0 10.77.1.2 ---- to-client 10.77.1.1
                             to-server 10.77.2.1 ---- eth0 10.77.2.2
    (and fd77:1::/64, fd77:2::/64 likewise)

The sensor attached to `to-client` and `to-server` sees each direction on
ingress. Everything lives in the lab's own namespaces: nothing is added to
the root namespace, and the addresses exist only on these interfaces."""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

from pyroute2 import IPRoute, netns

from sensor.errors import SensorError
from sensor.netns import exists, in_netns

DEFAULT_NAME = "xs"
SENSOR_IFACES = ("to-client", "to-server")
# Every wait in the lab is bounded. Under QEMU's emulation (`make vm-test` without KVM)
# everything is ~20x slower; XDPSENSOR_SLOWDOWN stretches every bound by that factor.
SLOWDOWN = float(os.environ.get("XDPSENSOR_SLOWDOWN", "1"))


def patience(seconds: float) -> float:
    """A bound on a wait in the lab, stretched on slow machines."""
    return seconds * SLOWDOWN


@dataclass(frozen=True, slots=True)
class Lab:
    name: str = DEFAULT_NAME
    client_ip: str = "10.77.1.2"
    server_ip: str = "10.77.2.2"
    client_ip6: str = "fd77:1::2"
    server_ip6: str = "fd77:2::2"

    @property
    def client(self) -> str:
        return f"{self.name}-client"

    @property
    def sensor(self) -> str:
        return f"{self.name}-sensor"

    @property
    def server(self) -> str:
        return f"{self.name}-server"

    @property
    def namespaces(self) -> tuple[str, str, str]:
        return (self.client, self.sensor, self.server)


class LabError(SensorError, RuntimeError):
    """The lab could not be built or torn down."""


def _sysctl(ns: str, *settings: str) -> None:
    for setting in settings:
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", setting], check=True)


def _address(ipr: IPRoute, ifname: str, *cidrs: str) -> int:
    index = ipr.link_lookup(ifname=ifname)[0]
    for cidr in cidrs:
        addr, plen = cidr.split("/")
        ipr.addr("replace", index=index, address=addr, prefixlen=int(plen))
    ipr.link("set", index=index, state="up")
    return index


def up(lab: Lab = Lab()) -> Lab:
    """Build the lab; does nothing to a lab that is already complete."""
    if is_up(lab):
        return lab
    down(lab)  # a half-built lab is rebuilt from scratch
    try:
        for ns in lab.namespaces:
            netns.create(ns)
            # No duplicate address detection: addresses are usable at once.
            _sysctl(ns, "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
        with in_netns(lab.sensor), IPRoute() as ipr:
            ipr.link("add", ifname="to-client", kind="veth", peer={"ifname": "eth0", "net_ns_fd": lab.client})
            ipr.link("add", ifname="to-server", kind="veth", peer={"ifname": "eth0", "net_ns_fd": lab.server})
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            _address(ipr, "to-client", "10.77.1.1/24", "fd77:1::1/64")
            _address(ipr, "to-server", "10.77.2.1/24", "fd77:2::1/64")
        _sysctl(lab.sensor, "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        for ns, v4, v6, gw4, gw6 in (
            (lab.client, lab.client_ip, lab.client_ip6, "10.77.1.1", "fd77:1::1"),
            (lab.server, lab.server_ip, lab.server_ip6, "10.77.2.1", "fd77:2::1"),
        ):
            with in_netns(ns), IPRoute() as ipr:
                ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
                _address(ipr, "eth0", f"{v4}/24", f"{v6}/64")
                ipr.route("replace", dst="default", gateway=gw4)
                ipr.route("replace", dst="default", gateway=gw6, family=10)
    except Exception as e:
        down(lab)
        raise LabError(f"building lab {lab.name!r} failed: {e}") from e
    return lab


def is_up(lab: Lab = Lab()) -> bool:
    if not all(exists(ns) for ns in lab.namespaces):
        return False
    with in_netns(lab.sensor), IPRoute() as ipr:
        return all(ipr.link_lookup(ifname=name) for name in SENSOR_IFACES)


def down(lab: Lab = Lab()) -> None:
    """Remove the lab's namespaces (their veths go with them)."""
    for ns in lab.namespaces:
        if exists(ns):
            netns.remove(ns)


def status(lab: Lab = Lab()) -> dict[str, list[str]]:
    """Per namespace, its interfaces with addresses and XDP state."""
    report: dict[str, list[str]] = {}
    for ns in lab.namespaces:
        if not exists(ns):
            report[ns] = ["(missing)"]
            continue
        lines = []
        with in_netns(ns), IPRoute() as ipr:
            for link in ipr.get_links():
                name = link.get_attr("IFLA_IFNAME")
                addrs = [f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
                         for a in ipr.get_addr(index=link["index"]) if a["scope"] == 0]
                xdp = link.get_attr("IFLA_XDP")
                prog = xdp.get_attr("IFLA_XDP_PROG_ID") if xdp else None
                lines.append(f"{name}: {' '.join(addrs) or '-'}" + (f" xdp prog {prog}" if prog else ""))
        report[ns] = lines
    return report
