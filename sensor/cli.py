"""Command line: parse options, build library objects, call them."""
from __future__ import annotations

import sys

import click

from sensor import lab as lab_mod


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


def _load(runtime, paths) -> None:
    """Load plugin files and directories; a broken plugin is reported, not fatal."""
    from pathlib import Path

    from sensor.arkime.loader import load_plugins
    dirs = [p for p in paths if Path(p).is_dir()]
    files = [p for p in paths if not Path(p).is_dir()]
    report = load_plugins(runtime, dirs=dirs, files=files)
    for error in report.errors:
        click.echo(f"xdpsensor: plugin {error}", err=True)
    click.echo(f"xdpsensor: loaded {len(report.loaded)} plugin file(s)", err=True)


def _require_root() -> None:
    import os
    if os.geteuid() != 0:
        _fail("this command needs root (network namespaces, XDP): run it with sudo")


@main.command()
@click.option("-i", "--interface", "interfaces", multiple=True, required=True, help="interface to watch (repeatable)")
@click.option("--netns", default=None, help="network namespace holding the interfaces")
@click.option("--port", "ports", multiple=True, help="select flows by port, PROTO:PORT (repeatable), e.g. udp:5353")
@click.option("--prefix", "prefixes", multiple=True,
              help="select flows by payload prefix, PROTO:OFFSET:BYTES (repeatable), e.g. tcp:0:GET or tcp:0:0x16030")
@click.option("-o", "--output", default="-", show_default=True, help="session records (JSON lines); - for stdout")
@click.option("--duration", type=float, default=None, help="stop after this many seconds")
@click.option("--snaplen", type=int, default=None, help="bytes copied per packet (default: a full 1522-byte frame)")
@click.option("--mode", type=click.Choice(["auto", "native", "generic"]), default="auto", show_default=True)
@click.option("--force", is_flag=True, help="replace an XDP program already on the interface")
@click.option("--emit-undecided", is_flag=True,
              help="also send first payloads of undecided flows (complete late-selected sessions, more load)")
@click.option("-p", "--plugin", "plugins", multiple=True, type=click.Path(exists=True),
              help="Arkime Python plugin file or directory (repeatable); its registrations become kernel rules")
def run(interfaces, netns, ports, prefixes, output, duration, snaplen, mode, force, emit_undecided, plugins) -> None:
    """Attach to interfaces and write one record per selected flow."""
    from sensor.arkime.runtime import PluginRuntime
    from sensor.capture.live import LiveCapture
    from sensor.flows.table import SessionTable
    from sensor.kernel.attach import AttachError
    from sensor.kernel.program import DEFAULT_SNAPLEN, ProgramError, ProgramOptions, SensorProgram
    from sensor.kernel.rules import RuleError, RuleSet, parse_port_spec, parse_prefix_spec
    from sensor.netns import NetnsError
    from sensor.output.jsonlines import JsonLinesWriter
    from sensor.pipeline import Pipeline
    from sensor.runner import run as run_loop, terminal_status

    runtime = PluginRuntime()
    if plugins:
        _load(runtime, plugins)
    try:
        rules = RuleSet()
        offload = runtime.offload_rules()
        rules.add_offload(offload.ports, offload.prefixes, offload.match_all)
        for spec in ports:
            rules.ports.update(parse_port_spec(spec))
        for spec in prefixes:
            rules.prefixes.add(parse_prefix_spec(spec))
        rules.shapes()
        options = ProgramOptions(snaplen=snaplen or DEFAULT_SNAPLEN, emit_undecided=emit_undecided)
    except (RuleError, ValueError) as e:
        _fail(str(e))
    if not rules.ports and not rules.prefixes:
        click.echo("xdpsensor: no --port or --prefix rule: no flow will be selected", err=True)
    try:
        program = SensorProgram(options)
    except ProgramError as e:
        _fail(str(e))
    writer = JsonLinesWriter(output)
    try:
        program.set_rules(rules)
        # With plugins, a session none of them still wants is bypassed in the kernel.
        pipeline = Pipeline(runtime, SessionTable(), writer.write, kernel=program, bypass=bool(plugins))
        capture = LiveCapture(program, interfaces, netns, mode, force)
        status = terminal_status if sys.stderr.isatty() else None
        summary = run_loop(capture, pipeline, duration, status)
    except (AttachError, NetnsError, ValueError) as e:
        _fail(str(e))
    finally:
        writer.close()
        program.close()
    for line in summary.lines():
        click.echo(line, err=True)


@main.command()
@_name
@click.option("--keep", is_flag=True, help="leave the lab up afterwards")
def demo(name: str, keep: bool) -> None:
    """Lab up, sensor attached, real traffic (matched and not), records shown, lab down."""
    _require_root()
    from sensor.demo import run_demo
    run_demo(lab_mod.Lab(name), keep=keep, echo=click.echo)
