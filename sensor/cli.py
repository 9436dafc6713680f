"""Command line: parse options, build library objects, call them."""
from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING

import click

from sensor import gcpolicy
from sensor import lab as lab_mod
from sensor.errors import SensorError
from sensor.sessions_cli import sessions

if TYPE_CHECKING:
    from sensor.app import Sensor
    from sensor.config import SensorConfig


def _fail(message: str) -> None:
    click.echo(f"xdpsensor: {message}", err=True)
    sys.exit(2)


class _Commands(click.Group):
    """Every SensorError, from any command, becomes one line and exit status 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SensorError as e:
            _fail(str(e))


@click.group(cls=_Commands)
def main() -> None:
    """xdpsensor: an XDP pre-classifier feeding Python protocol plugins."""


@main.command()
def check() -> None:
    """Report whether this host can run the sensor, with a fix per blocker."""
    from sensor.check import run_checks
    findings = run_checks()
    for f in findings:
        mark = "ok  " if f.ok else "FAIL"
        click.echo(f"[{mark}] {f.name}: {f.detail}" + (f"\n       fix: {f.fix}" if not f.ok and f.fix else ""))
    sys.exit(0 if all(f.ok for f in findings) else 1)


main.add_command(sessions)


@main.group()
def lab() -> None:
    """The netns + veth test topology (client <-> sensor <-> server)."""


_name = click.option("--name", default=lab_mod.DEFAULT_NAME, show_default=True, help="lab name (namespace prefix)")


@lab.command("up")
@_name
def lab_up(name: str) -> None:
    """Build the lab (idempotent)."""
    _require_root()
    built = lab_mod.up(lab_mod.Lab(name))
    click.echo(f"lab {name} up: client {built.client_ip}/{built.client_ip6} in {built.client}, "
               f"server {built.server_ip}/{built.server_ip6} in {built.server}, "
               f"sensor interfaces {' '.join(lab_mod.SENSOR_IFACES)} in {built.sensor}")


@lab.command("down")
@_name
def lab_down(name: str) -> None:
    """Remove the lab's namespaces."""
    _require_root()
    lab_mod.down(lab_mod.Lab(name))
    click.echo(f"lab {name} down")


@lab.command("status")
@_name
def lab_status(name: str) -> None:
    """Show the lab's namespaces, interfaces, addresses and XDP programs."""
    _require_root()
    for ns, lines in lab_mod.status(lab_mod.Lab(name)).items():
        click.echo(ns)
        for line in lines:
            click.echo(f"  {line}")


def _require_root() -> None:
    import os
    if os.geteuid() != 0:
        _fail("this command needs root (network namespaces, XDP): run it with sudo")


def _sensor_options(command):
    """Options `run` and `read` share: what to load, what to select, where to write."""
    options = [
        click.option("-c", "--config", "config_path", type=click.Path(exists=True, dir_okay=False),
                     help="YAML config: plugins, bindings, rules, outputs, timeouts"),
        click.option("-p", "--plugin", "plugins", multiple=True, type=click.Path(exists=True),
                     help="Arkime Python plugin file or directory (repeatable), added to the bundled ones"),
        click.option("--no-default-plugins", is_flag=True, help="do not load the bundled plugins/"),
        click.option("--port", "ports", multiple=True, help="select flows by port, PROTO:PORT (repeatable), e.g. udp:5353"),
        click.option("--proto", "protos", multiple=True,
                     help="select every flow of an IP protocol (repeatable): icmp, sctp, tcp, udp or a number"),
        click.option("--flows", type=click.Choice(["all", "selected"]), default=None,
                     help="records for every flow (all, the default: unselected ones from the kernel's counters) "
                          "or only for flows a rule selected"),
        click.option("--prefix", "prefixes", multiple=True,
                     help="select flows by payload prefix, PROTO:OFFSET:BYTES (repeatable), e.g. tcp:0:GET or tcp:0:0x16030"),
        click.option("-o", "--output", "outputs", multiple=True,
                     help="FORMAT:PATH (sqlite:, spi:), - for SPI JSON lines on stdout, or a path ending in "
                          ".db/.sqlite/.jsonl (repeatable; default sqlite:xdpsensor.db)"),
        click.option("--snaplen", type=int, default=None,
                     help="bytes copied per packet, 1-2048 (default: a full 1522-byte frame)"),
        click.option("--emit-undecided", is_flag=True,
                     help="also send first payloads of undecided flows (complete late-selected sessions, more load)"),
        click.option("--udp-tunnels", default=None,
                     help="UDP tunnels to take apart, NAME:PORT,... of vxlan, vxlan-gpe, geneve, gtp "
                          "(default: vxlan:4789,vxlan-gpe:4790,geneve:6081,gtp:2152)"),
        click.option("--workers", type=int, default=None,
                     help="Python worker processes, flows shared by a symmetric hash (default: run, one per "
                          "usable CPU up to 8; read, 1)"),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _load_config(config_path, plugins, no_default_plugins, ports, protos, flows, prefixes, outputs, snaplen,
                 emit_undecided, **service) -> SensorConfig:
    """Config file first, then the command line on top, checked whole before anything is created or touched."""
    from pathlib import Path

    from sensor.config import check_config, load_config
    from sensor.output import DEFAULT_DB
    cfg = load_config(config_path)
    cfg.plugins += [Path(p) for p in plugins]
    cfg.default_plugins = cfg.default_plugins and not no_default_plugins
    cfg.ports += ports
    cfg.protos += protos
    cfg.flows = flows or cfg.flows
    cfg.prefixes += prefixes
    cfg.snaplen = snaplen if snaplen is not None else cfg.snaplen
    cfg.emit_undecided = emit_undecided or cfg.emit_undecided
    cfg.outputs = list(outputs) or cfg.outputs or [f"sqlite:{DEFAULT_DB}"]
    for key, value in service.items():
        if value is not None:
            setattr(cfg, key, value)
    check_config(cfg, "command line" if config_path is None else f"{config_path} + command line")
    return cfg


def _open_sensor(cfg: SensorConfig, outputs: list | None = None) -> Sensor:
    """The Sensor of a checked config: plugins, bindings and rules, then the outputs opened."""
    from sensor.app import Sensor
    sensor = Sensor(cfg, outputs=outputs)
    for error in sensor.load_report.errors:
        click.echo(f"xdpsensor: plugin {error}", err=True)
    click.echo(f"xdpsensor: loaded {len(sensor.load_report.loaded)} plugin file(s); "
               f"output to {', '.join(cfg.outputs)}", err=True)
    if not sensor.rules.ports and not sensor.rules.prefixes and not sensor.rules.select_all:
        click.echo("xdpsensor: no plugin, --port, --proto or --prefix rule: no flow will be selected", err=True)
    gcpolicy.freeze_startup()  # what loading made lives as long as the process: out of every later GC pass
    return sensor


def _open_sensor_as_user(cfg: SensorConfig, interfaces, netns, mode, force):
    """As root: load and attach the program, open the outputs; then switch to the configured user
    for good, and only then load the plugins (their code never runs as root)."""
    from sensor.app import attach_program
    from sensor.config import resolve_user
    from sensor.output import open_outputs, parse_output_spec
    from sensor.privileges import capabilities, drop_privileges, hand_over, identity
    who = identity(*resolve_user(cfg.user, cfg.group))
    capture = attach_program(cfg, interfaces, netns, mode, force)
    try:
        outputs = open_outputs(cfg.outputs)
        hand_over([parse_output_spec(spec)[1] for spec in cfg.outputs], who)
        drop_privileges(who)
        click.echo(f"xdpsensor: running as {who.name} (uid {who.uid}, gid {who.gid}), "
                   f"capabilities {capabilities()['CapEff']:#x}", err=True)
        return capture, _open_sensor(cfg, outputs)
    except BaseException:
        capture.stop()
        capture.program.close()
        raise


def _stop_on_signals(stop: threading.Event) -> dict:
    """SIGINT and SIGTERM set `stop`; returns the handlers to put back."""
    import signal
    return {s: signal.signal(s, lambda _signum, _frame: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}


def _restore_signals(previous: dict) -> None:
    import signal
    for sig, handler in previous.items():
        signal.signal(sig, handler)


@main.command()
@click.option("-i", "--interface", "interfaces", multiple=True, required=True, help="interface to watch (repeatable)")
@click.option("--netns", default=None, help="network namespace holding the interfaces")
@click.option("--duration", type=float, default=None, help="stop after this many seconds")
@click.option("--mode", type=click.Choice(["auto", "native", "generic"]), default="auto", show_default=True)
@click.option("--force", is_flag=True, help="replace an XDP program already on the interface")
@click.option("--user", default=None, help="after attaching, run as this user (no capability kept; config: user)")
@click.option("--group", default=None, help="and this group (default: the user's own; config: group)")
@click.option("--metrics", default=None,
              help="serve Prometheus metrics on ADDR:PORT, or PORT on 127.0.0.1 (config: metrics)")
@_sensor_options
def run(interfaces, netns, duration, mode, force, user, group, metrics, **options) -> None:
    """Attach to interfaces and write one record per flow (--flows selected: per selected flow).
    SIGINT/SIGTERM stop (every session flushed), SIGHUP reopens the outputs and reloads the config,
    SIGUSR1 logs the counters."""
    from sensor.config import parse_address
    from sensor.metrics import MetricsServer
    from sensor.preflight import check_live
    from sensor.service import Service
    from sensor.status import snapshot

    def config() -> SensorConfig:
        return _load_config(**options, user=user, group=group, metrics=metrics)

    cfg = config()
    check_live(interfaces, netns, force)
    server = MetricsServer(*parse_address(cfg.metrics)) if cfg.metrics is not None else None
    capture = None
    try:
        if cfg.user is None:
            sensor = _open_sensor(cfg)
        else:
            capture, sensor = _open_sensor_as_user(cfg, interfaces, netns, mode, force)
    except BaseException:
        if server is not None:
            server.close()
        raise
    terminal = sys.stderr.isatty()

    def log(line: str, end: str = "\n") -> None:
        click.echo(line, err=True, nl=end == "\n")

    service = Service(sensor, log, reload_config=config if options["config_path"] is not None else None,
                      duration=duration, status_interval=cfg.status_interval, terminal=terminal)
    service.install()
    try:
        where = sensor.start(interfaces, netns, mode, force, capture=capture)
    except BaseException:
        service.restore()
        sensor.close()
        raise
    try:
        log(f"attached: {', '.join(where)}")
        if server is not None:
            server.serve(lambda: snapshot(sensor))
            log(f"metrics on http://{server.address[0]}:{server.address[1]}/metrics")
        service.run()
    finally:
        summary = sensor.stop()  # every session flushed, whatever ended the loop
        service.restore()
        sensor.close()
        if server is not None:
            server.close()
        if terminal:
            log("")
        for line in summary.lines() + _output_losses(sensor):
            log(line)


def _output_losses(sensor: Sensor) -> list[str]:
    """One line per output that did not get every session: shed (queue full) or failed."""
    return [f"output {s.name}: {s.lost} session(s) not written ({s.dropped} shed: its queue was full; "
            f"{s.failed} failed: see above)" for s in sensor.output_stats() if s.lost]


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--prefilter", type=click.Choice(["auto", "kernel", "python"]), default="auto", show_default=True,
              help="kernel: the real XDP program via BPF_PROG_TEST_RUN (root); python: its pure-Python mirror; "
                   "auto: kernel when root")
@click.option("--no-prefilter", is_flag=True, help="send every flow to the plugins (what Arkime does), for comparison")
@_sensor_options
def read(files, prefilter, no_prefilter, **options) -> None:
    """Read pcap/pcapng files through the same pipeline as live traffic (timestamps from the capture).
    A broken file is flushed up to the break and the next one read; the exit status is then 1, as when
    an output could not write every session."""
    import os
    import stat

    cfg = _load_config(**options)
    sensor = _open_sensor(cfg)
    mode = "none" if no_prefilter else prefilter
    for path in files:
        if stat.S_ISFIFO(os.stat(path).st_mode):
            click.echo(f"xdpsensor: {path} is a FIFO: waiting for a writer", err=True)
    stop = threading.Event()
    previous = _stop_on_signals(stop)
    try:
        if sys.stderr.isatty():
            with click.progressbar(length=sum(os.path.getsize(f) for f in files), label="reading",
                                   file=sys.stderr) as bar:
                summary = sensor.read_pcap(files, mode, lambda done, _total: bar.update(done - bar.pos), stop)
        else:
            summary = sensor.read_pcap(files, mode, stop=stop)
    finally:
        _restore_signals(previous)
        sensor.close()
    unwritten = _output_losses(sensor)
    for line in summary.lines() + unwritten:
        click.echo(line, err=True)
    if not summary.complete or unwritten:
        sys.exit(1)


@main.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("-p", "--plugin", "plugins", multiple=True, type=click.Path(exists=True),
              help="plugin file or directory (repeatable; default: the bundled plugins/)")
@click.option("--prefilter", type=click.Choice(["auto", "kernel", "python"]), default="auto", show_default=True,
              help="the default read's pre-filter (auto: kernel when root, else python)")
@click.option("--details", is_flag=True, help="list every differing session, field by field")
@click.option("--json", "as_json", is_flag=True, help="the reports as JSON")
@click.option("--min-core", type=float, default=0.98, show_default=True,
              help="exit 1 when a read path's core-field agreement on plain TCP/UDP is below this share")
def conformance(directory, plugins, prefilter, details, as_json, min_core) -> None:
    """Compare our records with Arkime's for every X.pcap + X.test in DIRECTORY,
    read the default way (behind the pre-filter, as `read` does) and with
    --no-prefilter (every flow to the plugins, as Arkime reads a file)."""
    import json

    from sensor.config import BUNDLED_PLUGINS
    from sensor.conformance import compare_paths, default_path, run_conformance
    from sensor.conformance.paths import NO_PREFILTER, describe
    paths = (default_path() if prefilter == "auto" else prefilter, NO_PREFILTER)
    reports = [run_conformance(directory, plugins=list(plugins) or [str(BUNDLED_PLUGINS)], path=path)
               for path in paths]
    if as_json:
        click.echo(json.dumps({"paths": [r.to_dict() for r in reports]}, indent=1))
    else:
        for report in reports:
            click.echo(f"== {describe(report.path)}\n{report.table(details=details)}\n")
        click.echo(compare_paths(reports))
    sys.exit(0 if all(r.core_agreement >= min_core for r in reports) else 1)


@main.command()
@_name
@click.option("--keep", is_flag=True, help="leave the lab up afterwards")
def demo(name: str, keep: bool) -> None:
    """Lab up, sensor attached, real traffic (matched and not), records shown, lab down."""
    _require_root()
    from sensor.demo import run_demo
    run_demo(lab_mod.Lab(name), keep=keep, echo=click.echo)
