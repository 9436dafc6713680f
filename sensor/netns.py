"""Switch the calling thread into a named network namespace for a block.

Sockets and bpf_links made inside the block stay bound to that namespace
after the thread switches back, so tests and the sensor can work across
namespaces from one process."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pyroute2 import netns

from sensor.errors import SensorError


class NetnsError(SensorError, RuntimeError):
    """A named network namespace is missing."""


def exists(name: str) -> bool:
    return name in netns.listnetns()


@contextlib.contextmanager
def in_netns(name: str | None) -> Iterator[None]:
    """Run the block with this thread inside namespace `name` (None: stay)."""
    if name is None:
        yield
        return
    if not exists(name):
        raise NetnsError(f"network namespace {name!r} does not exist (see `ip netns list`; "
                         "`xdpsensor lab up` creates the lab's)")
    netns.pushns(name)
    try:
        yield
    finally:
        netns.popns()
