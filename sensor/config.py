"""The sensor's YAML configuration (`-c FILE` on the command line, or a dict
for `Sensor`), checked whole at load so a mistake is reported before anything
is attached, with the key that is wrong and what it should be.

    plugins: [my_plugins/, extra.py]   # Arkime plugin files or directories
    default_plugins: true              # also load the bundled plugins/
    ports: [udp:5353]                  # extra kernel rules, as --port
    prefixes: ["tcp:0:GET "]           # as --prefix
    bindings: [...]                    # framer + protocol definition per session kind
    outputs: [sqlite:xdpsensor.db]     # as -o (repeatable)
    max_frames_per_session: 1000
    timeouts: {tcp: 480, tcp_closing: 5, udp: 60}
    max_sessions: 100000
    output_queue: 1024                 # finished sessions waiting per output; live, more are shed (counted)
    snaplen: 1522
    emit_undecided: false
    user: xdpsensor                    # after attaching, run as this user (as --user)
    group: xdpsensor                   # and group (default: the user's own)
    metrics: 127.0.0.1:9477            # Prometheus metrics address (as --metrics)
    status_interval: 60                # seconds between status lines in the log (0: none)
    plugin_time_budget: 2.0            # seconds a plugin callback may run (0: unbounded)
    workers: 2                         # Python processes, one ring each (default: run, one per usable
                                       # CPU up to 8; read, 1)
    flows: all                         # or selected: records only for flows a rule selected (--flows)
    protos: [icmp]                     # select every flow of these IP protocols (--proto)
    vlan_key: true                     # key flows on their first VLAN id too (Arkime's sessionIdTracking=vlan)
    vlan_collapse: {0: [50, 100]}      # with vlan_key, these VLANs key as the id they are listed under
                                       # (Arkime's [vlan-vni-collapse])

Relative paths are relative to the file's directory."""
from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from sensor.errors import SensorError
from sensor.flows.key import VlanKeying
from sensor.flows.table import FlowTimeouts
from sensor.kernel.contract import MAX_SNAPLEN, RINGS_MAX
from sensor.kernel.rules import RuleError, parse_proto_spec
from sensor.output import follows_packets, local_file
from sensor.output.writer import DEFAULT_QUEUE
from sensor.pipeline import MAX_PACKETS, SAVE_EVERY
from sensor.walk import DEFAULT_UDP_TUNNELS, parse_udp_tunnels
from sensor.yamlload import YamlError, load_yaml

BUNDLED_PLUGINS = Path(__file__).resolve().parent.parent / "plugins"
BUNDLED_PROTOCOLS = Path(__file__).resolve().parent.parent / "protocols"


class ConfigError(SensorError, ValueError):
    """The configuration is wrong; the message names the key and the fix."""


@dataclass(slots=True)
class SensorConfig:
    plugins: list[Path] = field(default_factory=list)
    default_plugins: bool = True
    ports: list[str] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    bindings: list[dict] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    max_frames_per_session: int = 1000
    timeouts: FlowTimeouts = field(default_factory=FlowTimeouts)
    max_sessions: int = 100_000
    output_queue: int = DEFAULT_QUEUE
    snaplen: int | None = None
    emit_undecided: bool = False
    user: str | None = None
    group: str | None = None
    metrics: str | None = None
    status_interval: float = 60.0
    plugin_time_budget: float = 2.0
    workers: int | None = None      # None: workers_for() decides
    save_every: float = SAVE_EVERY  # seconds between mid-session records of a long TCP session (0: off)
    max_packets: int = MAX_PACKETS  # packets after which a session gets a mid-session record
    flows: str = "all"          # "all": every flow has a record; "selected": only flows a rule selected
    protos: list[str] = field(default_factory=list)   # IP protocols whose every flow is selected, as --proto
    udp_tunnels: str | None = None  # NAME:PORT,... the UDP tunnels taken apart (None: Arkime's ports)
    vlan_key: bool = False          # flows keyed on their first VLAN id too (Arkime's sessionIdTracking=vlan)
    vlan_collapse: dict = field(default_factory=dict)   # keyed id -> the VLAN ids keyed as it
    base_dir: Path = field(default_factory=Path.cwd)

    def udp_tunnel_table(self) -> Mapping[int, int]:
        """UDP destination port -> the tunnel it carries (sensor.walk.parse_udp_tunnels)."""
        return DEFAULT_UDP_TUNNELS if self.udp_tunnels is None else parse_udp_tunnels(self.udp_tunnels)

    def vlan_keying(self) -> VlanKeying | None:
        """How flows are keyed on VLANs (None: not at all, Arkime's default); raises ValueError."""
        if not self.vlan_key:
            if self.vlan_collapse:
                raise ValueError("vlan_collapse needs vlan_key: true")
            return None
        collapse = {}
        for keyed, vlans in self.vlan_collapse.items():
            if not isinstance(vlans, list):
                raise ValueError(f"vlan_collapse: {keyed}: give a list of VLAN ids, not {vlans!r}")
            try:
                collapse.update((int(vlan), int(keyed)) for vlan in vlans)
            except (TypeError, ValueError):
                raise ValueError(f"vlan_collapse: {keyed}: {vlans}: VLAN ids are numbers") from None
        return VlanKeying(collapse)

    def plugin_paths(self) -> list[Path]:
        """Bundled plugins first (when on), then the user's, in the order given."""
        bundled = [BUNDLED_PLUGINS] if self.default_plugins and BUNDLED_PLUGINS.is_dir() else []
        return bundled + self.plugins


_TYPES: dict[str, type | tuple[type, ...]] = {
    "plugins": list, "default_plugins": bool, "ports": list, "prefixes": list, "bindings": list,
    "outputs": list, "max_frames_per_session": int, "timeouts": dict, "max_sessions": int,
    "output_queue": int,
    "snaplen": int, "emit_undecided": bool, "user": (str, int), "group": (str, int), "metrics": (str, int),
    "status_interval": (int, float), "plugin_time_budget": (int, float), "workers": int,
    "save_every": (int, float), "max_packets": int, "udp_tunnels": str, "vlan_key": bool, "vlan_collapse": dict,
    "flows": str, "protos": list,
}
FLOWS = ("all", "selected")


def load_config(source: str | Path | dict | None) -> SensorConfig:
    """A SensorConfig from a YAML file, a dict (paths relative to the working
    directory) or None (all defaults)."""
    if source is None:
        return SensorConfig()
    if isinstance(source, dict):
        return config_from_dict(source, Path.cwd(), "config")
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from e
    try:
        data = load_yaml(text)
    except YamlError as e:
        raise ConfigError(f"{path}: {e}") from None
    if data is None:
        data = {}
    return config_from_dict(data, path.resolve().parent, str(path))


def config_from_dict(data: Any, base_dir: Path, where: str) -> SensorConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a mapping of keys, not {type(data).__name__}")
    unknown = sorted(set(data) - set(_TYPES))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(_TYPES)}")
    for key, value in data.items():
        expected = _TYPES[key]
        if value is not None and (not isinstance(value, expected) or (expected is int and isinstance(value, bool))):
            names = " or ".join(t.__name__ for t in expected) if isinstance(expected, tuple) else expected.__name__
            raise ConfigError(f"{where}: {key} must be a {names}, got {value!r}")
    cfg = SensorConfig(base_dir=base_dir)
    for key, value in data.items():
        if value is None:
            continue
        if key == "plugins":
            cfg.plugins = [_existing(base_dir, p, where, key) for p in value]
        elif key == "timeouts":
            cfg.timeouts = _timeouts(value, where)
        elif key in ("ports", "prefixes", "outputs", "protos"):
            setattr(cfg, key, [str(v) for v in value])
        elif key in ("user", "group", "metrics"):
            setattr(cfg, key, str(value))
        else:
            setattr(cfg, key, value)
    check_config(cfg, where)
    return cfg


AUTO_WORKERS_MAX = 8


def workers_for(cfg: SensorConfig, live: bool) -> int:
    """The worker processes to run: the config's, else for live capture one
    per CPU this process may use (up to AUTO_WORKERS_MAX), for files and for
    outputs that follow packets (pcap, arkime) one."""
    if cfg.workers is not None:
        return cfg.workers
    if any(follows_packets(spec) for spec in cfg.outputs):
        return 1
    return min(len(os.sched_getaffinity(0)), AUTO_WORKERS_MAX) if live else 1


def check_config(cfg: SensorConfig, where: str = "config") -> None:
    """Every value in range and every named thing usable, without creating or
    touching anything: call again after the command line changed `cfg`."""
    if cfg.max_frames_per_session < 0:
        raise ConfigError(f"{where}: max_frames_per_session must be 0 or more")
    if cfg.max_sessions < 1:
        raise ConfigError(f"{where}: max_sessions must be at least 1")
    if cfg.output_queue < 1:
        raise ConfigError(f"{where}: output_queue must be at least 1 (finished sessions waiting per output)")
    if cfg.workers is not None and not 1 <= cfg.workers <= RINGS_MAX:
        raise ConfigError(f"{where}: workers must be between 1 and {RINGS_MAX}, got {cfg.workers}")
    if cfg.flows not in FLOWS:
        raise ConfigError(f"{where}: flows must be {' or '.join(FLOWS)}, not {cfg.flows!r}")
    for spec in cfg.protos:
        try:
            parse_proto_spec(spec)
        except RuleError as e:
            raise ConfigError(f"{where}: protos: {e}") from None
    if cfg.snaplen is not None and not 1 <= cfg.snaplen <= MAX_SNAPLEN:
        raise ConfigError(f"{where}: snaplen must be between 1 and {MAX_SNAPLEN} bytes, got {cfg.snaplen}")
    if cfg.max_packets < 1:
        raise ConfigError(f"{where}: max_packets must be at least 1 (Arkime's maxPackets; default {MAX_PACKETS})")
    try:
        cfg.udp_tunnel_table()
    except ValueError as e:
        raise ConfigError(f"{where}: udp_tunnels: {e}") from None
    try:
        cfg.vlan_keying()
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None
    for key in ("status_interval", "plugin_time_budget", "save_every"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"{where}: {key} must be 0 (off) or a positive number of seconds")
    for spec in cfg.outputs:
        check_output(spec, where)
    packet_outputs = [spec for spec in cfg.outputs if follows_packets(spec)]
    if packet_outputs and (cfg.workers or 1) > 1:
        raise ConfigError(f"{where}: output {packet_outputs[0]} follows every packet, but {cfg.workers} workers "
                          f"forward only finished sessions: use --workers 1 (or leave workers unset)")
    if cfg.group is not None and cfg.user is None:
        raise ConfigError(f"{where}: group {cfg.group!r} given without a user; give user too")
    if cfg.user is not None:
        uid, gid = resolve_user(cfg.user, cfg.group, where)
        for path in cfg.plugin_paths() + _binding_files(cfg):
            if not readable_by(path, uid, gid):
                raise ConfigError(f"{where}: {path} is not readable by user {cfg.user}, who loads the plugins, "
                                  "framers and definitions after the switch; move it or change its permissions")
    if cfg.metrics is not None:
        parse_address(cfg.metrics, where)


def check_output(spec: str, where: str = "config") -> None:
    """An `-o` value that names a known format and a file that can be made or
    appended to (not a directory, a missing directory, or an unwritable place)."""
    try:
        path = local_file(spec)
    except ValueError as e:
        raise ConfigError(f"{where}: outputs: {e}") from None
    if path is None or path == "-":
        return
    target = Path(path)
    if target.exists():
        mode = target.stat().st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError(f"{where}: output {spec!r} is a directory; name a file in it")
        if stat.S_ISFIFO(mode) or not (stat.S_ISREG(mode) or stat.S_ISCHR(mode)):
            raise ConfigError(f"{where}: output {spec!r} is not a regular file (a FIFO or socket would block "
                              "or fail); name a file")
        if not os.access(target, os.W_OK):
            raise ConfigError(f"{where}: output {spec!r} is not writable by this user")
        return
    parent = target.absolute().parent
    if not parent.is_dir():
        raise ConfigError(f"{where}: output {spec!r}: directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{where}: output {spec!r} cannot be created: {parent} is not writable by this user")
    if parent.resolve().is_relative_to("/proc") or parent.resolve().is_relative_to("/sys"):
        raise ConfigError(f"{where}: output {spec!r} is in a kernel file system ({parent}); name a real file")


def resolve_user(user: str, group: str | None, where: str = "config") -> tuple[int, int]:
    """(uid, gid) of a user name (or number) and a group (default: the user's own)."""
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"{where}: user {user!r} does not exist (create it, e.g. "
                          f"`useradd --system --no-create-home {user}`)") from None
    if group is None:
        return entry.pw_uid, entry.pw_gid
    try:
        gid = grp.getgrgid(int(group)).gr_gid if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(f"{where}: group {group!r} does not exist") from None
    return entry.pw_uid, gid


def _binding_files(cfg: SensorConfig) -> list[Path]:
    return [cfg.base_dir / str(b[key]) for b in cfg.bindings if isinstance(b, dict)
            for key in ("custom_framer_path", "protocol_definition") if b.get(key)]


def readable_by(path: Path, uid: int, gid: int) -> bool:
    """Whether `uid` (primary group `gid` and its other groups) can read `path` (a directory:
    list and enter it), every directory above it included, by the mode bits."""
    try:
        name = pwd.getpwuid(uid).pw_name
        groups = set(os.getgrouplist(name, gid))
    except KeyError:
        groups = {gid}
    if uid == 0:
        return True

    def allowed(target: Path, want: int) -> bool:
        st = target.stat()
        shift = 6 if st.st_uid == uid else 3 if st.st_gid in groups else 0
        return (st.st_mode >> shift) & want == want

    target = path.absolute()
    try:
        if not all(allowed(parent, 1) for parent in target.parents):
            return False
        return allowed(target, 5 if target.is_dir() else 4)
    except OSError:
        return False


def parse_address(value: str, where: str = "config") -> tuple[str, int]:
    """(host, port) of ADDR:PORT, [IPv6]:PORT or a bare PORT (loopback)."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", value
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise ConfigError(f"{where}: metrics address {value!r}: write ADDR:PORT, e.g. 127.0.0.1:9477, or a port")
    return host, int(port)


def _existing(base_dir: Path, value: Any, where: str, key: str) -> Path:
    path = base_dir / str(value)
    if not path.exists():
        raise ConfigError(f"{where}: {key}: {path} does not exist (paths are relative to {base_dir})")
    return path


def _timeouts(value: dict, where: str) -> FlowTimeouts:
    names = {f.name for f in fields(FlowTimeouts)}
    unknown = sorted(set(value) - names)
    if unknown:
        raise ConfigError(f"{where}: timeouts: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    for name, seconds in value.items():
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
            raise ConfigError(f"{where}: timeouts.{name} must be a positive number of seconds, got {seconds!r}")
    return FlowTimeouts(**{k: float(v) for k, v in value.items()})
