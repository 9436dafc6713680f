"""Captures built with scapy for tests in any folder: conversations with real
sequence numbers, written with sensor's own pcap writer. Frames carry fixed
MAC addresses, so scapy never resolves one (it would ARP on the host)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from sensor.capture.pcapfile import write_pcap

T0 = 1_700_000_000.0


def ether() -> Ether:
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


@dataclass
class Capture:
    """Frames in time order; each helper appends one conversation's packets."""

    frames: list[tuple[float, bytes]] = field(default_factory=list)
    clock: float = T0

    def _add(self, packet) -> None:
        self.clock += 0.001
        self.frames.append((self.clock, bytes(packet)))

    def tcp(self, client: tuple[str, int], server: tuple[str, int]) -> TcpConversation:
        return TcpConversation(self, client, server)

    def udp(self, src: tuple[str, int], dst: tuple[str, int], data: bytes) -> None:
        self._add(ether() / IP(src=src[0], dst=dst[0]) / UDP(sport=src[1], dport=dst[1]) / data)

    def write(self, path: Path) -> Path:
        write_pcap(path, self.frames)
        return path


class TcpConversation:
    """One TCP connection; sequence numbers are tracked so reassembly sees a real stream."""

    def __init__(self, capture: Capture, client: tuple[str, int], server: tuple[str, int]) -> None:
        self.capture = capture
        self.ends = {"c": client, "s": server}
        self.seq = {"c": 1000, "s": 5000}

    def _packet(self, side: str, flags: str, data: bytes = b"", ack: bool = True) -> None:
        other = "s" if side == "c" else "c"
        src, dst = self.ends[side], self.ends[other]
        tcp = TCP(sport=src[1], dport=dst[1], flags=flags, seq=self.seq[side], ack=self.seq[other] if ack else 0)
        self.capture._add(ether() / IP(src=src[0], dst=dst[0]) / tcp / data)
        self.seq[side] += len(data) + (1 if "S" in flags or "F" in flags else 0)

    def handshake(self) -> TcpConversation:
        self._packet("c", "S", ack=False)
        self._packet("s", "SA")
        self._packet("c", "A")
        return self

    def syn(self) -> TcpConversation:
        self._packet("c", "S", ack=False)
        return self

    def rst(self, side: str) -> TcpConversation:
        self._packet(side, "RA")
        return self

    def send(self, side: str, *segments: bytes) -> TcpConversation:
        for data in segments:
            self._packet(side, "PA", data)
        return self

    def fin(self, side: str) -> TcpConversation:
        self._packet(side, "FA")
        return self

    def close(self) -> TcpConversation:
        self.fin("c").fin("s")
        self._packet("c", "A")
        return self
