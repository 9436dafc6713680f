"""Attach the XDP program to an interface, possibly in another network
namespace. A bpf_link is preferred: it detaches by itself when the sensor
dies, even by SIGKILL. Netlink attach is the fallback on kernels without XDP
links, and must then be detached explicitly."""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from pyroute2 import IPRoute

from sensor.errors import SensorError
from sensor.kernel import bpfsys
from sensor.netns import in_netns

MODES = {"auto": 0, "native": bpfsys.XDP_FLAGS_DRV_MODE, "generic": bpfsys.XDP_FLAGS_SKB_MODE}
_MODE_FLAGS = {"native": bpfsys.XDP_FLAGS_DRV_MODE, "generic": bpfsys.XDP_FLAGS_SKB_MODE}
_NO_XDP_LINKS = {errno.EINVAL, 524}  # 524: the kernel's ENOTSUPP
# IFLA_XDP_ATTACHED: pyroute2 0.7 decodes it to iproute2's words, later ones to ints.
_ATTACHED_MODE = {1: "native", 2: "generic", 3: "offload", 4: "multi",
                  "xdp": "native", "xdpgeneric": "generic", "xdpoffload": "offload", "xdpmulti": "multi"}


class AttachError(SensorError, RuntimeError):
    """The program could not be attached; the message says what to do."""


@dataclass(slots=True)
class Attachment:
    ifname: str
    netns: str | None
    ifindex: int
    mode: str            # native / generic, as the kernel reports it
    method: str          # link / netlink
    link_fd: int = -1

    @property
    def where(self) -> str:
        return f"{self.ifname}" + (f" (netns {self.netns})" if self.netns else "")


@dataclass(frozen=True, slots=True)
class XdpStatus:
    ifindex: int
    prog_id: int         # 0 when nothing is attached
    mode: str | None


def xdp_status(ifname: str) -> XdpStatus:
    """What XDP program, if any, the interface has (current netns)."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            raise AttachError(f"interface {ifname!r} not found" + _netns_hint())
        link = ipr.get_links(found[0])[0]
    xdp = link.get_attr("IFLA_XDP")
    attached = xdp.get_attr("IFLA_XDP_ATTACHED") if xdp else 0
    prog_id = (xdp.get_attr("IFLA_XDP_PROG_ID") or 0) if xdp else 0
    return XdpStatus(found[0], prog_id, _ATTACHED_MODE.get(attached or 0))


def _netns_hint() -> str:
    return " (is it in another network namespace? pass --netns NAME)"


def _foreign_link_fd(ifindex: int, prog_id: int) -> int | None:
    """An fd for the bpf_link holding `prog_id` on `ifindex`, if a link holds it."""
    for link_id in bpfsys.link_ids():
        try:
            fd = bpfsys.link_get_fd_by_id(link_id)
        except bpfsys.BpfError:
            continue
        info = bpfsys.link_info(fd)
        if info.type == bpfsys.BPF_LINK_TYPE_XDP and info.prog_id == prog_id and info.ifindex == ifindex:
            return fd
        os.close(fd)
    return None


def _remove_foreign(status: XdpStatus, ifname: str) -> None:
    link_fd = _foreign_link_fd(status.ifindex, status.prog_id)
    if link_fd is not None:
        try:
            bpfsys.link_detach(link_fd)
        finally:
            os.close(link_fd)
        return
    _netlink_set_xdp(ifname, -1, _MODE_FLAGS.get(status.mode, 0))


def attach(prog_fd: int, ifname: str, netns_name: str | None = None, mode: str = "auto",
           force: bool = False, method: str = "link") -> Attachment:
    """Attach to `ifname`; refuses an interface that has a foreign XDP
    program unless `force`. `method="netlink"` forces the fallback path."""
    if mode not in MODES:
        raise AttachError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    with in_netns(netns_name):
        status = xdp_status(ifname)
        if status.prog_id:
            if not force:
                raise AttachError(
                    f"{ifname} already has an XDP program (id {status.prog_id}, {status.mode}); "
                    "another sensor or tool owns the hook. Stop it, or pass --force to replace it.")
            _remove_foreign(status, ifname)
        if method == "link":
            try:
                link_fd = bpfsys.link_create_xdp(prog_fd, status.ifindex, MODES[mode])
            except bpfsys.BpfError as e:
                if e.errno not in _NO_XDP_LINKS:
                    raise AttachError(_explain(e, ifname, mode)) from e
                method = "netlink"  # kernel without XDP links
        if method == "netlink":
            link_fd = -1
            _netlink_attach(prog_fd, status.ifindex, MODES[mode], ifname)
        obtained = xdp_status(ifname).mode or "unknown"
    return Attachment(ifname, netns_name, status.ifindex, obtained, method, link_fd)


def _netlink_set_xdp(ifname: str, prog_fd: int, flags: int) -> None:
    """IFLA_XDP through libbpf (bcc): pyroute2 0.7 encodes IFLA_XDP_FLAGS in
    two bytes, which the kernel rejects. prog_fd -1 removes the program."""
    from bcc import BPF
    if prog_fd < 0:
        BPF.remove_xdp(ifname.encode(), flags)
    else:
        BPF.attach_xdp(ifname.encode(), BPF.Function(None, b"xdp_sensor", prog_fd), flags)


def _netlink_attach(prog_fd: int, ifindex: int, flags: int, ifname: str) -> None:
    try:
        _netlink_set_xdp(ifname, prog_fd, flags)
    except Exception as e:
        raise AttachError(f"netlink XDP attach to {ifname} failed: {e}") from e


def _explain(e: bpfsys.BpfError, ifname: str, mode: str) -> str:
    if e.errno == errno.EBUSY:
        return f"{ifname}: the XDP hook is busy (another program attached meanwhile); retry or use --force"
    if e.errno == errno.EOPNOTSUPP and mode == "native":
        return f"{ifname}: the driver has no native XDP; use --mode generic or --mode auto"
    if e.errno == errno.EPERM:
        return "attaching XDP needs root (CAP_NET_ADMIN and CAP_BPF): run with sudo"
    return f"attaching XDP to {ifname} ({mode}) failed: {e.strerror}"


def detach(att: Attachment) -> None:
    """Undo `attach`: closing a link fd detaches; netlink needs a request."""
    if att.method == "link":
        if att.link_fd >= 0:
            os.close(att.link_fd)
            att.link_fd = -1
        return
    with in_netns(att.netns):
        _netlink_set_xdp(att.ifname, -1, _MODE_FLAGS.get(att.mode, 0))
