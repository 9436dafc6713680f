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
    snaplen: 1522
    emit_undecided: false

Relative paths are relative to the file's directory."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from sensor.flows.table import FlowTimeouts

BUNDLED_PLUGINS = Path(__file__).resolve().parent.parent / "plugins"
BUNDLED_PROTOCOLS = Path(__file__).resolve().parent.parent / "protocols"


class ConfigError(ValueError):
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
    snaplen: int | None = None
    emit_undecided: bool = False
    base_dir: Path = field(default_factory=Path.cwd)

    def plugin_paths(self) -> list[Path]:
        """Bundled plugins first (when on), then the user's, in the order given."""
        bundled = [BUNDLED_PLUGINS] if self.default_plugins and BUNDLED_PLUGINS.is_dir() else []
        return bundled + self.plugins


_TYPES: dict[str, type | tuple[type, ...]] = {
    "plugins": list, "default_plugins": bool, "ports": list, "prefixes": list, "bindings": list,
    "outputs": list, "max_frames_per_session": int, "timeouts": dict, "max_sessions": int,
    "snaplen": int, "emit_undecided": bool,
}


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
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
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
            raise ConfigError(f"{where}: {key} must be a {expected.__name__}, got {value!r}")
    cfg = SensorConfig(base_dir=base_dir)
    for key, value in data.items():
        if value is None:
            continue
        if key == "plugins":
            cfg.plugins = [_existing(base_dir, p, where, key) for p in value]
        elif key == "timeouts":
            cfg.timeouts = _timeouts(value, where)
        elif key in ("ports", "prefixes", "outputs"):
            setattr(cfg, key, [str(v) for v in value])
        else:
            setattr(cfg, key, value)
    if cfg.max_frames_per_session < 0:
        raise ConfigError(f"{where}: max_frames_per_session must be 0 or more")
    if cfg.max_sessions < 1:
        raise ConfigError(f"{where}: max_sessions must be at least 1")
    return cfg


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
