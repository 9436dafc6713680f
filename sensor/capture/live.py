"""Live capture: the XDP program attached to interfaces. Detaches everything
it attached, whatever happens. Its rings are read with sensor.capture.ring."""
from __future__ import annotations

from collections.abc import Sequence

from sensor.capture.ring import RingReader
from sensor.kernel.attach import Attachment, attach, detach
from sensor.kernel.program import SensorProgram


class LiveCapture:
    def __init__(self, program: SensorProgram, interfaces: Sequence[str], netns: str | None = None,
                 mode: str = "auto", force: bool = False) -> None:
        if not interfaces:
            raise ValueError("no interface given: pass -i IFACE (repeatable)")
        self.program = program
        self.interfaces = list(interfaces)
        self.netns = netns
        self.mode = mode
        self.force = force
        self.attachments: list[Attachment] = []

    def ring(self, index: int) -> RingReader:
        """A reader of ring `index` (one per worker), mapped into this process."""
        return RingReader(self.program.ring_fds[index], self.program.ring_size)

    def start(self) -> list[Attachment]:
        """Attach to every interface, all or none (once: a started capture stays as it is)."""
        if self.attachments:
            return self.attachments
        try:
            for ifname in self.interfaces:
                self.attachments.append(attach(self.program.fd, ifname, self.netns, self.mode, self.force))
        except Exception:
            self.stop()
            raise
        return self.attachments

    def stop(self) -> None:
        """Detach from every interface (the rings keep what they hold)."""
        while self.attachments:
            detach(self.attachments.pop())
