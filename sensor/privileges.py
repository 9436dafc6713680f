"""Dropping root after the XDP program is loaded and attached.

Everything that needs privileges happens first, as root: loading the
program, creating its maps and ring buffers, attaching (bpf_link), opening
the outputs and the metrics socket. What the running sensor then does with
those objects needs no capability on Linux >= 6.5 (measured on 6.18, see
`tests/lab/test_privileges.py`): map lookups, updates and deletes (bypass
verdicts, counters, flow sweeps) and ring-buffer reads act on file
descriptors it already holds (the unprivileged_bpf_disabled check applies
only to loading programs and creating maps), and closing a bpf_link detaches
it. So the switch keeps no capability at all: `setuid` without
PR_SET_KEEPCAPS clears the permitted and effective sets of every thread
(glibc changes the ids of all threads of the process at once), and
`no_new_privs` keeps a plugin from regaining any through a setuid program.

Not available after the drop: the netlink attach fallback's explicit detach
(needs CAP_NET_ADMIN; bpf_link detaches by itself when its fd closes, so only
kernels without XDP links are affected: use no --user there), switching
network namespaces, and writing files the user may not write (a rotated
output is re-created by the new user: give it the output directory)."""
from __future__ import annotations

import ctypes
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from sensor.errors import SensorError

_PR_SET_NO_NEW_PRIVS = 38
_libc = ctypes.CDLL(None, use_errno=True)


class PrivilegeError(SensorError):
    """The switch to the configured user failed; the sensor stops rather than run as root."""


@dataclass(frozen=True, slots=True)
class Identity:
    uid: int
    gid: int
    name: str


def identity(uid: int, gid: int) -> Identity:
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    return Identity(uid, gid, name)


def hand_over(paths: list[str], who: Identity) -> None:
    """Give the user the output files root created, so it can append to them and
    re-create them after a rotation (directories are left as they are)."""
    for path in paths:
        for suffix in ("", "-wal", "-shm"):
            target = Path(path + suffix)
            if target.is_file() and target.stat().st_uid == 0:
                os.chown(target, who.uid, who.gid)


def drop_privileges(who: Identity) -> None:
    """Become `who` for good: supplementary groups, gid, uid (real, effective and
    saved), no capability left in any thread, no new privileges."""
    if os.geteuid() != 0:
        raise PrivilegeError("dropping privileges needs to start as root")
    try:
        os.initgroups(who.name, who.gid) if _named(who) else os.setgroups([who.gid])
        os.setresgid(who.gid, who.gid, who.gid)
        os.setresuid(who.uid, who.uid, who.uid)
    except OSError as e:
        raise PrivilegeError(f"cannot switch to user {who.name} (uid {who.uid}, gid {who.gid}): {e.strerror}") \
            from None
    if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise PrivilegeError(f"prctl(PR_SET_NO_NEW_PRIVS) failed: {os.strerror(ctypes.get_errno())}")
    if who.uid != 0 and capabilities()["CapEff"]:
        raise PrivilegeError("capabilities survived the switch of user; refusing to go on as "
                             f"{who.name} with CapEff={capabilities()['CapEff']:#x}")


def _named(who: Identity) -> bool:
    try:
        pwd.getpwnam(who.name)
    except KeyError:
        return False
    return True


def capabilities(pid: int | str = "self") -> dict[str, int]:
    """CapInh/CapPrm/CapEff/CapBnd/CapAmb of a process, from /proc/PID/status."""
    caps = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.startswith("Cap"):
            caps[key] = int(value.strip(), 16)
    return caps
