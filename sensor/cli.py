"""Command line: parse options, build library objects, call them."""
from __future__ import annotations

import sys

import click

from sensor import lab as lab_mod
from sensor.sessions_cli import sessions


def _fail(message: str) -> None:
    click.echo(f"xdpsensor: {message}", err=True)
    sys.exit(2)


@click.group()
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
    try:
        built = lab_mod.up(lab_mod.Lab(name))
    except lab_mod.LabError as e:
        _fail(str(e))
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
        click.option("--prefix", "prefixes", multiple=True,
                     help="select flows by payload prefix, PROTO:OFFSET:BYTES (repeatable), e.g. tcp:0:GET or tcp:0:0x16030"),
        click.option("-o", "--output", "outputs", multiple=True,
                     help="FORMAT:PATH (sqlite:, spi:), - for SPI JSON lines on stdout, or a path ending in "
                          ".db/.sqlite/.jsonl (repeatable; default sqlite:xdpsensor.db)"),
        click.option("--snaplen", type=int, default=None, help="bytes copied per packet (default: a full 1522-byte frame)"),
        click.option("--emit-undecided", is_flag=True,
                     help="also send first payloads of undecided flows (complete late-selected sessions, more load)"),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _build_sensor(config_path, plugins, no_default_plugins, ports, prefixes, outputs, snaplen, emit_undecided):
    """Config file first, then the command line on top; every mistake is reported before anything runs."""
    from pathlib import Path

    from sensor.app import Sensor
    from sensor.bindings import BindingError
    from sensor.config import ConfigError, load_config
    from sensor.kernel.rules import RuleError
    from sensor.output import DEFAULT_DB, StoreError, open_output
    try:
        cfg = load_config(config_path)
        cfg.plugins += [Path(p) for p in plugins]
        cfg.default_plugins = cfg.default_plugins and not no_default_plugins
        cfg.ports += ports
        cfg.prefixes += prefixes
        cfg.snaplen = snaplen or cfg.snaplen
        cfg.emit_undecided = emit_undecided or cfg.emit_undecided
        specs = list(outputs) or cfg.outputs or [f"sqlite:{DEFAULT_DB}"]
        sensor = Sensor(cfg, outputs=[open_output(spec) for spec in specs])
    except (ConfigError, BindingError, RuleError, StoreError, ValueError) as e:
        _fail(str(e))
    for error in sensor.load_report.errors:
        click.echo(f"xdpsensor: plugin {error}", err=True)
    click.echo(f"xdpsensor: loaded {len(sensor.load_report.loaded)} plugin file(s); output to {', '.join(specs)}",
               err=True)
    if not sensor.rules.ports and not sensor.rules.prefixes and not sensor.rules.select_all:
        click.echo("xdpsensor: no plugin, --port or --prefix rule: no flow will be selected", err=True)
    return sensor


@main.command()
@click.option("-i", "--interface", "interfaces", multiple=True, required=True, help="interface to watch (repeatable)")
@click.option("--netns", default=None, help="network namespace holding the interfaces")
@click.option("--duration", type=float, default=None, help="stop after this many seconds")
@click.option("--mode", type=click.Choice(["auto", "native", "generic"]), default="auto", show_default=True)
@click.option("--force", is_flag=True, help="replace an XDP program already on the interface")
@_sensor_options
def run(interfaces, netns, duration, mode, force, **options) -> None:
    """Attach to interfaces and write one record per selected session."""
    import signal
    import time

    from sensor.kernel.attach import AttachError
    from sensor.kernel.program import ProgramError
    from sensor.netns import NetnsError
    from sensor.runner import status_line

    sensor = _build_sensor(**options)
    stopping = False

    def request_stop(signum, _frame):
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            where = sensor.start(interfaces, netns, mode, force)
        except (AttachError, NetnsError, ProgramError, ValueError) as e:
            sensor.close()
            _fail(str(e))
        click.echo(f"attached: {', '.join(where)}", err=True)
        started = time.monotonic()
        show = sys.stderr.isatty()
        while not stopping and (duration is None or time.monotonic() - started < duration):
            time.sleep(0.2)
            if show:
                click.echo("\r" + status_line(sensor.live_stats(), sensor.pipeline_stats().records), err=True, nl=False)
        summary = sensor.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sensor.close()
    if show:
        click.echo("", err=True)
    for line in summary.lines():
        click.echo(line, err=True)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--prefilter", type=click.Choice(["auto", "kernel", "python"]), default="auto", show_default=True,
              help="kernel: the real XDP program via BPF_PROG_TEST_RUN (root); python: its pure-Python mirror; "
                   "auto: kernel when root")
@click.option("--no-prefilter", is_flag=True, help="send every flow to the plugins (what Arkime does), for comparison")
@_sensor_options
def read(files, prefilter, no_prefilter, **options) -> None:
    """Read pcap/pcapng files through the same pipeline as live traffic (timestamps from the capture)."""
    import os

    from sensor.capture.pcapfile import PcapError
    from sensor.kernel.program import ProgramError
    sensor = _build_sensor(**options)
    mode = "none" if no_prefilter else prefilter
    try:
        if sys.stderr.isatty():
            with click.progressbar(length=sum(os.path.getsize(f) for f in files), label="reading",
                                   file=sys.stderr) as bar:
                summary = sensor.read_pcap(files, mode, lambda done, _total: bar.update(done - bar.pos))
        else:
            summary = sensor.read_pcap(files, mode)
    except (PcapError, ProgramError) as e:
        _fail(str(e))
    finally:
        sensor.close()
    for line in summary.lines():
        click.echo(line, err=True)


@main.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("-p", "--plugin", "plugins", multiple=True, type=click.Path(exists=True),
              help="plugin file or directory (repeatable; default: the bundled plugins/)")
@click.option("--details", is_flag=True, help="list every differing session, field by field")
@click.option("--json", "as_json", is_flag=True, help="the report as JSON")
@click.option("--min-core", type=float, default=0.98, show_default=True,
              help="exit 1 when core-field agreement is below this share")
def conformance(directory, plugins, details, as_json, min_core) -> None:
    """Compare our records with Arkime's for every X.pcap + X.test in DIRECTORY
    (every flow to the plugins, as Arkime reads a file)."""
    import json

    from sensor.config import BUNDLED_PLUGINS
    from sensor.conformance import ConformanceError, run_conformance
    try:
        report = run_conformance(directory, plugins=list(plugins) or [str(BUNDLED_PLUGINS)])
    except ConformanceError as e:
        _fail(str(e))
    click.echo(json.dumps(report.to_dict(), indent=1) if as_json else report.table(details=details))
    sys.exit(0 if report.core_agreement >= min_core else 1)


@main.command()
@_name
@click.option("--keep", is_flag=True, help="leave the lab up afterwards")
def demo(name: str, keep: bool) -> None:
    """Lab up, sensor attached, real traffic (matched and not), records shown, lab down."""
    _require_root()
    from sensor.demo import run_demo
    run_demo(lab_mod.Lab(name), keep=keep, echo=click.echo)
