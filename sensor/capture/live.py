"""Live capture: the XDP program attached to interfaces, records read from
its ring buffer. Detaches everything it attached, whatever happens."""
from __future__ import annotations

from collections.abc import Callable, Sequence

from sensor.kernel.attach import Attachment, attach, detach
from sensor.kernel.program import Record, SensorProgram, parse_record


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

    def start(self, on_record: Callable[[Record], None]) -> list[Attachment]:
        """Attach to every interface (all or none) and route records to `on_record`."""
        self.program.open_ring(lambda raw: on_record(parse_record(raw)))
        try:
            for ifname in self.interfaces:
                self.attachments.append(attach(self.program.fd, ifname, self.netns, self.mode, self.force))
        except Exception:
            self.stop()
            raise
        return self.attachments

    def poll(self, timeout_ms: int) -> None:
        self.program.poll(timeout_ms)

    def stop(self) -> None:
        """Detach, then read what the ring still holds."""
        while self.attachments:
            detach(self.attachments.pop())
        self.program.drain()
