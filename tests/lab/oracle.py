"""The lab tests' independent oracle: what arrived on the sensor's interfaces,
read from AF_PACKET sockets rather than from the sensor under test."""
from __future__ import annotations

import socket
from collections.abc import Iterator

from sensor import lab as lab_mod
from sensor.netns import in_netns

PACKET_OUTGOING = 4     # linux/if_packet.h: a frame the interface sent, not one it received


class IngressFrames:
    """IPv4 frames arriving on the sensor's interfaces from the moment it is
    made; open it before the traffic, read it once after."""

    def __init__(self, lab) -> None:
        with in_netns(lab.sensor):
            self.socks = []
            for ifname in lab_mod.SENSOR_IFACES:
                s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
                s.bind((ifname, 0))
                s.setblocking(False)
                self.socks.append(s)

    def frames(self) -> Iterator[bytes]:
        """Every ingress frame queued so far, then the sockets are closed."""
        for s in self.socks:
            while True:
                try:
                    frame, addr = s.recvfrom(65535)
                except BlockingIOError:
                    break
                if addr[2] != PACKET_OUTGOING:
                    yield frame
            s.close()
