"""`xdpsensor check`: can this host run the sensor? Each finding carries a
one-line fix when it blocks."""
from __future__ import annotations

import os
import platform
import uuid
from dataclasses import dataclass
from pathlib import Path

from sensor.kernel.features import XDP_LINK_SINCE, features, minimum_kernel, version_tuple


@dataclass(frozen=True, slots=True)
class Finding:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _headers() -> Finding:
    build = Path(f"/lib/modules/{platform.release()}/build")
    if not build.exists():
        return Finding("kernel headers", False, f"{build} missing", "run `make setup` (installs headers or the fallback)")
    target = build.resolve()
    fallback = platform.release() not in target.name
    return Finding("kernel headers", True, f"{target}" + (" (distribution fallback)" if fallback else ""))


def _bcc() -> Finding:
    try:
        import bcc
    except ImportError:
        return Finding("bcc", False, "not importable", "run `make setup` (apt python3-bpfcc) and use .venv/bin/xdpsensor")
    return Finding("bcc", True, getattr(bcc, "__version__", "unknown version"))


def _xdp_probe() -> list[Finding]:
    """Load the real program and link it to a veth in a throwaway namespace
    in each mode; nothing outside that namespace is touched."""
    from pyroute2 import IPRoute, netns

    from sensor.kernel.attach import AttachError, attach, detach
    from sensor.kernel.program import SensorProgram
    from sensor.netns import in_netns

    try:
        program = SensorProgram()
    except Exception as e:
        # As root, EACCES from loading is the verifier's refusal, whatever the probes above found.
        fix = ("the kernel's verifier refused it: the log printed above ends with the reason; "
               "the README (Kernels) lists the kernels the program was run on"
               if "Permission denied" in str(e) else "see the findings above")
        return [Finding("XDP program", False, str(e), fix)]
    name = f"xdpsensor-check-{uuid.uuid4().hex[:6]}"
    findings = [Finding("XDP program", True, "compiled and verified")]
    try:
        netns.create(name)
        with in_netns(name), IPRoute() as ipr:
            ipr.link("add", ifname="probe0", kind="veth", peer="probe1")
            for ifname in ("probe0", "probe1"):
                ipr.link("set", index=ipr.link_lookup(ifname=ifname)[0], state="up")
        for mode in ("native", "generic"):
            try:
                att = attach(program.fd, "probe0", name, mode)
                findings.append(Finding(f"XDP {mode} on veth", True, f"obtained {att.mode} via {att.method}"))
                if mode == "native":
                    findings.append(Finding(f"bpf_link for XDP (Linux {XDP_LINK_SINCE}+)", att.method == "link",
                                            "XDP links work: the program detaches when the sensor dies"
                                            if att.method == "link" else "unsupported: netlink fallback",
                                            "" if att.method == "link" else f"use a kernel >= {XDP_LINK_SINCE}"))
                detach(att)
            except AttachError as e:
                findings.append(Finding(f"XDP {mode} on veth", False, str(e), "use --mode auto"))
    finally:
        if name in netns.listnetns():
            netns.remove(name)
        program.close()
    return findings


def _kernel() -> Finding:
    """Informational: distributions backport, so the feature probes decide."""
    release, needed = platform.release(), minimum_kernel()
    older = version_tuple(release) < version_tuple(needed)
    return Finding("kernel", True, f"{release} (the sensor needs Linux {needed}+"
                   + ("; this one is older, so the feature probes below decide)" if older else ")"))


def _feature_probes() -> list[Finding]:
    """Each feature the program needs, probed with a tiny map or program."""
    release = platform.release()
    return [Finding(f"{f.name} (Linux {f.since}+)", ok, f"available, for {f.used_for}" if ok
                    else f"missing on {release}, needed for {f.used_for}",
                    f"use Linux >= {f.since} (Debian 12's 6.1 has every feature), or the VM in vagrant/")
            for f in features() for ok in (f.probe(),)]


def run_checks() -> list[Finding]:
    root = os.geteuid() == 0
    findings = [
        _kernel(),
        Finding("BTF", True, "/sys/kernel/btf/vmlinux " + ("present" if Path("/sys/kernel/btf/vmlinux").exists()
                                                           else "absent (bcc does not need it)")),
        _headers(),
        _bcc(),
        Finding("privileges", root, "root" if root else f"uid {os.geteuid()}", "run as root (sudo)"),
    ]
    if root:
        findings += _feature_probes()
    if all(f.ok for f in findings):
        findings += _xdp_probe()
    return findings
