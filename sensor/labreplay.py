"""Replaying a recorded capture across the lab, so the live sensor sees the
same sessions an offline read of the capture sees.

The capture's client and server addresses are rewritten to the lab's, and
every frame, both directions in capture order, leaves the client namespace's
eth0 through one tcpreplay. The sensor's XDP program sees them on `to-client`
ingress. Their destination MAC is not the sensor interface's, so the sensor
namespace's stack drops them as other-host instead of routing them to the real
server, whose TCP stack would answer with resets. Nothing is sent before the
rewritten file is checked to hold only frames between the lab's two addresses.

The rewrite is done here, not with tcprewrite: tcprewrite 4.4.1-4.4.4 sets the
IPv4 total length of a padded Ethernet frame to include the padding
(appneta/tcpreplay#845), which turns padding into TCP payload. Here only the
addresses, the MACs and the checksums covering the addresses change."""
from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Iterable
from pathlib import Path

from pyroute2 import IPRoute

from sensor.capture.pcapfile import read_pcap, write_pcap
from sensor.errors import SensorError
from sensor.lab import Lab, patience
from sensor.netns import in_netns
from sensor.packet import LINKTYPE_ETHERNET, PacketError, decode_frame

# Locally administered unicast: no interface in the lab owns it.
OTHER_HOST_MAC = "02:77:00:00:00:fe"
REPLAY_PPS = 500        # small captures: well under a second, order kept, no burst drops
REPLAY_TIMEOUT = patience(60.0)   # seconds; a replay of a few hundred frames never needs more
ETH_HEADER = 14
ETHERTYPE_IPV4 = 0x0800
# Where the checksum covering the pseudo-header sits in each L4 header.
L4_CHECKSUM_OFFSET = {socket.IPPROTO_TCP: 16, socket.IPPROTO_UDP: 6}


class ReplayError(SensorError, RuntimeError):
    """A capture cannot be replayed in the lab (or the replay did not complete)."""


def address_map(records: Iterable[dict], lab: Lab) -> dict[str, str]:
    """Each session's client address to the lab client, its server address to
    the lab server, from a capture's offline SPI records. Refuses captures
    whose addresses cannot be told apart after the mapping."""
    mapping: dict[str, str] = {}
    for rec in records:
        for side, lab_ip in (("source", lab.client_ip), ("destination", lab.server_ip)):
            ip = rec[side]["ip"]
            if ":" in ip:
                raise ReplayError(f"session {ip} is IPv6: the lab replay rewrites IPv4 captures only")
            if mapping.setdefault(ip, lab_ip) != lab_ip:
                raise ReplayError(f"{ip} is a client in one session and a server in another: "
                                  "pick a capture whose hosts keep one role")
    if not mapping:
        raise ReplayError("the capture has no sessions to replay")
    return mapping


def interface_mac(netns: str, ifname: str) -> str:
    """The MAC address of an interface in a lab namespace."""
    with in_netns(netns), IPRoute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            raise ReplayError(f"interface {ifname!r} not found in namespace {netns!r}: is the lab up?")
        return ipr.get_links(found[0])[0].get_attr("IFLA_ADDRESS")


def adjust_checksum(checksum: int, old: bytes, new: bytes) -> int:
    """An Internet checksum after `old` became `new` in the data it covers
    (RFC 1624, eqn. 3): right for fragments and partial captures too."""
    total = ~checksum & 0xFFFF
    for i in range(0, len(old), 2):
        total += (~int.from_bytes(old[i:i + 2], "big") & 0xFFFF) + int.from_bytes(new[i:i + 2], "big")
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def rewrite_frame(frame: bytes, mapping: dict[str, str], src_mac: str, dst_mac: str) -> bytes:
    """One Ethernet/IPv4 frame with its MACs set, its addresses mapped and the
    IPv4, TCP and UDP checksums adjusted (a UDP checksum of 0, "none", stays 0)."""
    if len(frame) < ETH_HEADER + 20 or int.from_bytes(frame[12:14], "big") != ETHERTYPE_IPV4:
        raise ReplayError("only untagged Ethernet/IPv4 frames can be rewritten for the lab")
    out = bytearray(frame)
    out[0:6], out[6:12] = bytes.fromhex(dst_mac.replace(":", "")), bytes.fromhex(src_mac.replace(":", ""))
    ip = ETH_HEADER
    old = bytes(out[ip + 12:ip + 20])
    src, dst = socket.inet_ntoa(old[:4]), socket.inet_ntoa(old[4:])
    new = socket.inet_aton(mapping.get(src, src)) + socket.inet_aton(mapping.get(dst, dst))
    out[ip + 12:ip + 20] = new
    out[ip + 10:ip + 12] = adjust_checksum(int.from_bytes(out[ip + 10:ip + 12], "big"), old, new).to_bytes(2, "big")
    first_fragment = int.from_bytes(out[ip + 6:ip + 8], "big") & 0x1FFF == 0
    at = L4_CHECKSUM_OFFSET.get(out[ip + 9])
    if first_fragment and at is not None:
        csum = ip + (out[ip] & 0x0F) * 4 + at
        if csum + 2 <= len(out):
            value = int.from_bytes(out[csum:csum + 2], "big")
            if value or out[ip + 9] != socket.IPPROTO_UDP:
                out[csum:csum + 2] = adjust_checksum(value, old, new).to_bytes(2, "big")
    return bytes(out)


def rewrite(pcap: Path, out: Path, mapping: dict[str, str], src_mac: str, dst_mac: str) -> Path:
    """A copy of `pcap` (Ethernet, IPv4) with every frame rewritten by `rewrite_frame`."""
    frames = []
    for index, rec in enumerate(read_pcap(pcap), 1):
        if rec.linktype != LINKTYPE_ETHERNET:
            raise ReplayError(f"{pcap} frame {index} has link type {rec.linktype}: the lab replay needs Ethernet")
        if len(rec.data) != rec.wire_len:
            raise ReplayError(f"{pcap} frame {index} was captured truncated: a replay cannot send what is missing")
        try:
            frames.append((rec.timestamp, rewrite_frame(rec.data, mapping, src_mac, dst_mac)))
        except ReplayError as e:
            raise ReplayError(f"{pcap} frame {index}: {e}") from e
    write_pcap(out, frames)
    return out


def check_lab_only(pcap: Path, lab: Lab, mtu: int = 1500) -> int:
    """Frames in `pcap`, after checking each is IPv4 between the lab's client and
    server and fits the veth: the guard that keeps foreign addresses off the wire."""
    allowed = {lab.client_ip, lab.server_ip}
    count = 0
    for count, rec in enumerate(read_pcap(pcap), 1):
        try:
            packet = decode_frame(rec.data, rec.timestamp, rec.linktype, rec.wire_len)
        except PacketError as e:
            raise ReplayError(f"{pcap} frame {count} is not an IP packet ({e}): not replayed") from e
        if packet.ip_version != 4 or {packet.src_ip, packet.dst_ip} != allowed:
            raise ReplayError(f"{pcap} frame {count} is {packet.src_ip} -> {packet.dst_ip}, not between "
                              f"{lab.client_ip} and {lab.server_ip}: not replayed")
        if len(rec.data) > mtu + ETH_HEADER:
            raise ReplayError(f"{pcap} frame {count} is larger than the lab's MTU {mtu}: not replayed")
    return count


def replay(lab: Lab, pcap: Path, pps: int = REPLAY_PPS) -> int:
    """Send every frame of `pcap` out of the client namespace's eth0, in order;
    returns how many tcpreplay sent. Only a lab-checked file is sent."""
    expected = check_lab_only(pcap, lab)
    cmd = ["ip", "netns", "exec", lab.client, "tcpreplay", "--intf1=eth0", f"--pps={pps}", str(pcap)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=REPLAY_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        raise ReplayError(f"tcpreplay of {pcap} did not finish in {REPLAY_TIMEOUT:.0f}s") from e
    sent = re.search(r"Successful packets:\s+(\d+)", done.stdout)
    failed = re.search(r"Failed packets:\s+(\d+)", done.stdout)
    if done.returncode != 0 or not sent or not failed:
        raise ReplayError(f"tcpreplay of {pcap} failed: {done.stderr.strip() or done.stdout.strip()}")
    if int(sent.group(1)) != expected or int(failed.group(1)):
        raise ReplayError(f"tcpreplay sent {sent.group(1)} of {expected} frames of {pcap} "
                          f"({failed.group(1)} failed)")
    return expected


def prepare(pcap: Path, records: Iterable[dict], lab: Lab, workdir: Path) -> tuple[Path, dict[str, str]]:
    """The lab copy of a capture and the address map used, from its offline records."""
    mapping = address_map(records, lab)
    out = rewrite(pcap, workdir / f"{pcap.stem}.lab.pcap", mapping,
                  src_mac=interface_mac(lab.client, "eth0"), dst_mac=OTHER_HOST_MAC)
    if interface_mac(lab.sensor, "to-client") == OTHER_HOST_MAC:
        raise ReplayError(f"the sensor interface owns {OTHER_HOST_MAC}: replayed frames would be routed")
    check_lab_only(out, lab)
    return out, mapping
