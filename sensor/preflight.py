"""Checks that a live run can start, made before anything is created or
attached: privileges, the namespace, each interface, and whether its XDP
hook is free (or `--force` was given). Reads only."""
from __future__ import annotations

import os
from collections.abc import Sequence

from sensor.errors import SensorError
from sensor.kernel.attach import xdp_status
from sensor.netns import in_netns


class PreflightError(SensorError):
    """A live run cannot start; the message says why and what to do."""


def check_live(interfaces: Sequence[str], netns: str | None, force: bool) -> None:
    """Raise PreflightError (or the netns/attach error) for the first reason
    `run` would fail to attach."""
    if os.geteuid() != 0:
        raise PreflightError("loading and attaching XDP needs root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON): "
                             "run with sudo; add --user NAME to drop to an unprivileged user after attaching")
    if len(set(interfaces)) != len(interfaces):
        raise PreflightError(f"an interface is named twice in -i {' -i '.join(interfaces)}")
    with in_netns(netns):
        for ifname in interfaces:
            status = xdp_status(ifname)
            if status.prog_id and not force:
                raise PreflightError(
                    f"{ifname} already has an XDP program (id {status.prog_id}, {status.mode}); "
                    "another sensor or tool owns the hook. Stop it, or pass --force to replace it.")
