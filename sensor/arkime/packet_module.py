"""The `arkime_packet` module: accepted, never driven.

Arkime calls these callbacks in its reader threads to decode unusual L2/L3
encapsulations before sessions exist. In xdpsensor the kernel and
`sensor.packet` own L2-L4 decoding, so registrations are stored on the runtime
(`ethernet_callbacks`, `ip_callbacks`) for the operator to see, a warning is
logged once, and no packet callback ever runs. Since no packet handle ever
exists, get/set/run_*_cb can only fail with ArkimeHandleError once their
arguments have been checked."""
from __future__ import annotations

import logging
from types import ModuleType
from typing import TYPE_CHECKING, Any, NoReturn

from .cargs import c_buffer, c_callable, c_int, c_str, c_uint_mask
from .errors import ArkimeHandleError

if TYPE_CHECKING:
    from .runtime import PluginRuntime

log = logging.getLogger(__name__)

PACKET_RC = {"DO_PROCESS": 0, "CORRUPT": 3, "UNKNOWN_ETHER": 4, "UNKNOWN_IP": 5,
             "DONT_PROCESS": 7, "DONT_PROCESS_OR_FREE": 8}


def _no_packet(handle: Any) -> NoReturn:
    raise ArkimeHandleError(
        f"Invalid Arkime handle: {handle!r} is not a packet (xdpsensor never runs "
        "arkime_packet callbacks, so no packet handles exist)")


def build_packet_module(rt: PluginRuntime) -> ModuleType:
    m = ModuleType("arkime_packet", "Arkime reader-thread packet API (stored, never run).")
    for name, value in PACKET_RC.items():
        setattr(m, name, value)
    warned = False

    def store(table: dict[int, Any], key: Any, cb: Any, fn: str) -> None:
        nonlocal warned
        key = c_int(key, fn, 1)
        table[key] = c_callable(cb)
        if not warned:
            warned = True
            log.warning("arkime_packet.%s(%#x): packet callbacks never run in xdpsensor "
                        "(the kernel and sensor.packet decode L2-L4)", fn, key)

    def set_ethernet_cb(ethertype: Any, cb: Any, /) -> None:
        store(rt.ethernet_callbacks, ethertype, cb, "set_ethernet_cb")

    def set_ip_cb(ipproto: Any, cb: Any, /) -> None:
        store(rt.ip_callbacks, ipproto, cb, "set_ip_cb")

    def run_ethernet_cb(batch: Any, packet: Any, buf: Any, type: Any, desc: Any, /) -> int:
        c_buffer(buf, "run_ethernet_cb", 3)
        c_int(type, "run_ethernet_cb", 4)
        c_str(desc, "run_ethernet_cb", 5)
        _no_packet(packet)

    def run_ip_cb(batch: Any, packet: Any, buf: Any, type: Any, desc: Any, /) -> int:
        c_buffer(buf, "run_ip_cb", 3)
        c_int(type, "run_ip_cb", 4)
        c_str(desc, "run_ip_cb", 5)
        _no_packet(packet)

    def get(packet: Any, name: Any, /) -> int | None:
        c_str(name, "get", 2)
        _no_packet(packet)

    def set(packet: Any, name: Any, value: Any, /) -> None:  # noqa: A001 - Arkime's name
        c_str(name, "set", 2)
        c_uint_mask(value, "set", 3)
        _no_packet(packet)

    for f in (set_ethernet_cb, set_ip_cb, run_ethernet_cb, run_ip_cb, get, set):
        setattr(m, f.__name__, f)
    return m
