"""Prometheus metrics of a running sensor (`--metrics ADDR:PORT`, loopback
by default): every scrape takes a fresh `status.snapshot`, so nothing is
counted on the packet path for them."""
from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

from sensor.errors import SensorError
from sensor.kernel.contract import Stat
from sensor.status import Snapshot

_USERSPACE = {  # Snapshot.userspace name -> (metric name, help)
    "frames": ("frames", "frames given to the userspace pipeline"),
    "undecodable": ("undecodable_frames", "frames the pipeline could not decode"),
    "sessions": ("sessions", "sessions started"),
    "records": ("records", "session records produced"),
    "bypassed": ("sessions_bypassed", "sessions bypassed in the kernel (no plugin wanted more)"),
    "evicted": ("sessions_evicted", "sessions ended early because max_sessions was reached (still recorded)"),
    "muted_packets": ("terminated_flow_packets", "packets of flows ended by terminate_session"),
    "plugin_timeouts": ("plugin_timeouts", "plugin callbacks interrupted for running past their time budget"),
}


class MetricsError(SensorError):
    """The metrics endpoint cannot be served (address in use, not local, no permission)."""


class SensorCollector:
    """A prometheus_client collector over a snapshot function (none yet: no sensor metrics)."""

    def __init__(self) -> None:
        self.snapshot: Callable[[], Snapshot] | None = None

    def collect(self) -> Iterator[Metric]:
        if self.snapshot is None:
            return
        snap = self.snapshot()
        kernel = CounterMetricFamily("xdpsensor_kernel_packets", "XDP program counters (all CPUs)",
                                     labels=["counter"])
        for stat in Stat:
            kernel.add_metric([stat.name.lower()], snap.kernel[stat])
        yield kernel
        drops = CounterMetricFamily("xdpsensor_ring_drops", "packets of selected flows lost: ring buffer full")
        drops.add_metric([], snap.kernel[Stat.RINGBUF_FULL])
        yield drops
        for attr, (name, text) in _USERSPACE.items():
            family = CounterMetricFamily(f"xdpsensor_{name}", text)
            family.add_metric([], snap.userspace[attr])
            yield family
        open_sessions = GaugeMetricFamily("xdpsensor_open_sessions", "sessions in the table now")
        open_sessions.add_metric([], snap.userspace["open_sessions"])
        yield open_sessions
        outputs = CounterMetricFamily("xdpsensor_output_sessions", "finished sessions per output, by outcome",
                                      labels=["output", "outcome"])
        for name, counts in snap.outputs.items():
            for outcome, n in counts.items():
                outputs.add_metric([name, outcome], n)
        yield outputs
        plugins = CounterMetricFamily("xdpsensor_plugin_errors", "plugin callback failures",
                                      labels=["kind", "callback"])
        for key, n in snap.plugin_errors.items():
            kind, _, callback = key.partition(":")
            plugins.add_metric([kind, callback], n)
        yield plugins


class MetricsServer:
    """The HTTP endpoint on a thread of its own. Bind it before dropping privileges (a port
    below 1024 needs them), then `serve(snapshot)` once the sensor exists."""

    def __init__(self, host: str, port: int) -> None:
        self.registry = CollectorRegistry()
        self._collector = SensorCollector()
        self.registry.register(self._collector)
        ProcessCollector(registry=self.registry)
        try:
            self._server, self._thread = start_http_server(port, host, registry=self.registry)
        except OSError as e:
            raise MetricsError(f"cannot serve metrics on {host}:{port}: {e.strerror}") from None
        self.address: tuple[str, int] = self._server.server_address[:2]

    def serve(self, snapshot: Callable[[], Snapshot]) -> None:
        self._collector.snapshot = snapshot

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
