"""The read paths conformance measures, one capture at a time.

`none` is Arkime's way of reading a file (`xdpsensor read --no-prefilter`):
every flow goes to the plugins. `kernel` and `python` are the default
`xdpsensor read`: the pre-filter the live sensor runs in XDP (the real
program through BPF_PROG_TEST_RUN as root, its Python mirror otherwise),
with the rules the plugins register; what no rule selects gets its record
from the filter's counters when it ends. One program serves every capture
(loading it takes seconds); each read clears its flows.

Both sides run with Arkime's test configuration where it changes what a
session is: `config.test.ini` sets `icmpTimeout=60` and `sessionIdTracking=vlan`
with VLANs 50, 100, 300, 400 and 500 collapsed into one (`[vlan-vni-collapse]`)."""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from sensor.flows.key import VlanKeying
from sensor.flows.table import FlowTimeouts
from sensor.kernel.program import ProgramOptions, SensorProgram
from sensor.kernel.rules import RuleSet
from sensor.offline import read_records
from sensor.prefilter import PythonFlowTable

NO_PREFILTER, KERNEL, PYTHON = "none", "kernel", "python"
PATHS = (NO_PREFILTER, KERNEL, PYTHON)
ARKIME_TEST_TIMEOUTS = FlowTimeouts(icmp=60.0)
ARKIME_TEST_VLAN_KEY = VlanKeying(dict.fromkeys((50, 100, 300, 400, 500), 0))
_DESCRIPTIONS = {
    NO_PREFILTER: "--no-prefilter (every flow to the plugins, as Arkime reads a file)",
    KERNEL: "default read, kernel pre-filter (the real XDP program by BPF_PROG_TEST_RUN)",
    PYTHON: "default read, Python pre-filter (the kernel's mirror: not root)",
}


def default_path() -> str:
    """What `xdpsensor read` runs by default here: the kernel as root, else its mirror."""
    return KERNEL if os.geteuid() == 0 else PYTHON


def describe(path: str) -> str:
    return _DESCRIPTIONS[path]


class ReadPath:
    """Reads captures as `xdpsensor read` does with pre-filter `path` and
    only the given plugins (their registrations are the kernel rules). Close it."""

    def __init__(self, path: str, plugins: tuple[str, ...]) -> None:
        if path not in PATHS:
            raise ValueError(f"read path must be one of {', '.join(PATHS)}, not {path!r}")
        self.path = path
        self.plugins = plugins
        self.rules = RuleSet()
        self.options = ProgramOptions()
        self.bypass = False
        self._program: SensorProgram | None = None
        if path != NO_PREFILTER:
            from sensor.app import Sensor   # the composition root derives the rules as `read` does
            from sensor.config import SensorConfig
            sensor = Sensor(SensorConfig(plugins=[Path(p) for p in plugins], default_plugins=False), outputs=[])
            try:
                self.rules = sensor.rules
                self.options = replace(sensor.program_options(), vlan_key=ARKIME_TEST_VLAN_KEY)
                self.bypass = bool(sensor.load_report.loaded)   # as Sensor._new_pipeline decides
            finally:
                sensor.close()
        if path == KERNEL:
            self._program = SensorProgram(self.options)
            self._program.set_rules(self.rules)

    def records(self, pcap: Path) -> list[dict]:
        """The SPI records of one capture."""
        frame_filter = (self._program if self.path == KERNEL
                        else PythonFlowTable(self.rules, self.options) if self.path == PYTHON else None)
        return read_records([pcap], self.plugins, frame_filter, bypass=self.bypass,
                            timeouts=ARKIME_TEST_TIMEOUTS, vlan_key=ARKIME_TEST_VLAN_KEY)

    def close(self) -> None:
        if self._program is not None:
            self._program.close()
            self._program = None

    def __enter__(self) -> ReadPath:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
