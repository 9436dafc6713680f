"""What a running sensor says about itself: one snapshot of its counters,
rendered as the periodic status line, the SIGUSR1 dump and Prometheus metrics.

The kernel's counters are read from the program's map; the userspace ones
from the pipeline, or from each worker process (asked, then summed). Nothing
is counted on the packet path for this."""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sensor.kernel.contract import Stat

if TYPE_CHECKING:
    from sensor.app import Sensor

USERSPACE = ("frames", "undecodable", "sessions", "open_sessions", "records", "bypassed", "evicted",
             "muted_packets", "plugin_timeouts")


@dataclass(slots=True)
class Snapshot:
    kernel: dict[Stat, int]
    userspace: dict[str, int]                           # USERSPACE names, summed over workers
    plugin_errors: dict[str, int] = field(default_factory=dict)        # "kind:callback" -> failures
    outputs: dict[str, dict[str, int]] = field(default_factory=dict)   # output -> outcome -> sessions
    taken_at: float = field(default_factory=time.time)


def local_counters(sensor: Sensor) -> dict[str, Any]:
    """This process's userspace counters (a worker answers its parent with them)."""
    counts = dict.fromkeys(USERSPACE, 0)
    pipeline = sensor.pipeline_stats()
    if pipeline is not None:
        for name in ("frames", "undecodable", "sessions", "records", "bypassed"):
            counts[name] = getattr(pipeline, name)
    table = sensor.session_table()
    if table is not None:
        counts["open_sessions"], counts["evicted"], counts["muted_packets"] = (
            len(table), table.evicted, table.muted_packets)
    budget = sensor.runtime.budget
    counts["plugin_timeouts"] = budget.fired if budget is not None else 0
    return {"counts": counts, "plugin_errors": dict(sensor.runtime.errors.counts)}


def snapshot(sensor: Sensor) -> Snapshot:
    kernel = sensor.live_stats() or dict.fromkeys(Stat, 0)
    userspace: Counter[str] = Counter(dict.fromkeys(USERSPACE, 0))
    errors: Counter[str] = Counter()
    for part in sensor.worker_answers("counters") or [local_counters(sensor)]:
        userspace.update(part["counts"])
        errors.update(part["plugin_errors"])
    outputs = {s.name: {"written": s.written, "dropped": s.dropped, "failed": s.failed}
               for s in sensor.output_stats()}
    return Snapshot(kernel, dict(userspace), dict(errors), outputs)


def status_line(snap: Snapshot) -> str:
    """One line for the log, every `status_interval` seconds."""
    k, u = snap.kernel, snap.userspace
    written = sum(o["written"] for o in snap.outputs.values())
    lost = sum(o["dropped"] + o["failed"] for o in snap.outputs.values())
    return (f"seen {k[Stat.SEEN]} pkts, selected {k[Stat.SELECTED]} flows, delivered {k[Stat.EMITTED]}, "
            f"ring drops {k[Stat.RINGBUF_FULL]}, bypassed {k[Stat.BYPASSED_PKTS]} pkts; sessions open "
            f"{u['open_sessions']}, records {u['records']}, written {written}, not written {lost}, "
            f"plugin errors {sum(snap.plugin_errors.values())}, evicted {u['evicted']}")


def counter_lines(snap: Snapshot) -> list[str]:
    """Every counter, one `name value` per line (SIGUSR1)."""
    lines = [f"kernel.{stat.name.lower()} {snap.kernel[stat]}" for stat in Stat]
    lines += [f"userspace.{name} {snap.userspace[name]}" for name in USERSPACE]
    lines += [f"plugin_errors.{key} {n}" for key, n in sorted(snap.plugin_errors.items())]
    lines += [f"output.{name}.{key} {n}" for name, counts in snap.outputs.items() for key, n in counts.items()]
    return lines
