"""Load Arkime Python plugin files into a PluginRuntime, with Arkime's rules.

Directories (like `parsersDir`): only `*.py`, hidden files skipped, names in
`disabled` skipped, alphabetical, at most 100 files per directory, and a file
name already taken from an earlier directory is skipped (first wins). Files
named directly (like `plugins=`) load afterwards in the order given.

Each file runs as `__main__` with `arkime`, `arkime_session` and
`arkime_packet` in sys.modules (they stay there, so plugins can also import
them inside callbacks). A broken file is reported with its file and line;
registrations it made before failing stay, and loading goes on."""
from __future__ import annotations

import logging
import sys
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from .runtime import PluginRuntime

log = logging.getLogger(__name__)

MAX_FILES_PER_DIR = 100


@dataclass(frozen=True, slots=True)
class PluginLoadError:
    path: str
    line: int | None
    message: str
    traceback: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message}"


@dataclass(slots=True)
class LoadReport:
    """What happened: files run (even those that failed, as in Arkime), errors, skips."""

    loaded: list[Path] = field(default_factory=list)
    errors: list[PluginLoadError] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    modules: dict[Path, types.ModuleType] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def discover(dirs: Iterable[str | Path], disabled: Iterable[str] = (),
             report: LoadReport | None = None) -> list[Path]:
    """The plugin files Arkime would auto-load from `dirs`, in load order."""
    skip = frozenset(disabled)
    seen: set[str] = set()
    out: list[Path] = []
    for d in map(Path, dirs):
        if not d.is_dir():
            log.info("plugin directory %s does not exist; skipped", d)
            continue
        names = sorted(p.name for p in d.iterdir()
                       if p.suffix == ".py" and not p.name.startswith(".") and p.is_file())
        if len(names) > MAX_FILES_PER_DIR:
            log.warning("%s holds %d plugins; only the first %d load", d, len(names),
                        MAX_FILES_PER_DIR)
            for name in names[MAX_FILES_PER_DIR:]:
                _skip(report, d / name, f"more than {MAX_FILES_PER_DIR} plugins in {d}")
            names = names[:MAX_FILES_PER_DIR]
        for name in names:
            if name in skip:
                _skip(report, d / name, "disabled")
            elif name in seen:
                _skip(report, d / name, "same file name loaded from an earlier directory")
            else:
                seen.add(name)
                out.append(d / name)
    return out


def find_plugins(names: Iterable[str], dirs: Iterable[str | Path],
                 report: LoadReport | None = None) -> list[Path]:
    """Resolve Arkime's `plugins=` names: each from the first of `dirs` holding it.

    A name that is not found is reported as a PluginLoadError and left out."""
    search = [Path(d) for d in dirs]
    out: list[Path] = []
    for name in names:
        hit = next((d / name for d in search if (d / name).is_file()), None)
        if hit is not None:
            out.append(hit)
        elif report is not None:
            report.errors.append(PluginLoadError(
                name, None, f"plugin not found in {', '.join(map(str, search))}", ""))
    return out


def _skip(report: LoadReport | None, path: Path, why: str) -> None:
    if report is not None:
        report.skipped.append((path, why))


def load_plugins(runtime: PluginRuntime, dirs: Iterable[str | Path] = (),
                 files: Iterable[str | Path] = (), disabled: Iterable[str] = (),
                 plugin_names: Iterable[str] = (),
                 plugin_dirs: Iterable[str | Path] = ()) -> LoadReport:
    """Auto-load `dirs` (parsersDir), then `files` in order, then `plugin_names`
    (plugins=) found in `plugin_dirs` (pluginsDir). Never raises for a broken plugin."""
    report = LoadReport()
    paths = (discover(dirs, disabled, report) + [Path(f) for f in files]
             + find_plugins(plugin_names, plugin_dirs, report))
    for path in paths:
        load_file(runtime, path, report)
    return report


def load_paths(runtime: PluginRuntime, paths: Iterable[str | Path]) -> LoadReport:
    """`-p` semantics: each path is a plugin file or a directory of them, in order."""
    paths = [Path(p) for p in paths]
    return load_plugins(runtime, dirs=[p for p in paths if p.is_dir()], files=[p for p in paths if not p.is_dir()])


def load_file(runtime: PluginRuntime, path: str | Path, report: LoadReport) -> None:
    """Run one plugin file as `__main__`; record an error instead of raising."""
    path = Path(path)
    try:
        source = path.read_bytes()
        code = compile(source, str(path), "exec")
    except SyntaxError as exc:
        report.errors.append(PluginLoadError(
            str(path), exc.lineno, f"SyntaxError: {exc.msg}",
            "".join(traceback.format_exception_only(type(exc), exc))))
        log.error("plugin %s:%s: SyntaxError: %s", path, exc.lineno, exc.msg)
        return
    except (OSError, ValueError) as exc:  # unreadable file, NUL bytes in source
        report.errors.append(PluginLoadError(str(path), None, f"{type(exc).__name__}: {exc}",
                                             ""))
        log.error("plugin %s: %s", path, exc)
        return
    module = types.ModuleType("__main__")
    module.__file__ = str(path)
    module.__builtins__ = __builtins__
    sys.modules.update(runtime.modules)
    saved_main = sys.modules.get("__main__")
    sys.modules["__main__"] = module
    try:
        exec(code, module.__dict__)
    except (Exception, SystemExit) as exc:  # a plugin bug (or exit) must not stop the sensor
        line = next((fs.lineno for fs in reversed(traceback.extract_tb(exc.__traceback__))
                     if fs.filename == str(path)), None)
        report.errors.append(PluginLoadError(
            str(path), line, f"{type(exc).__name__}: {exc}",
            "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))))
        log.error("plugin %s:%s failed while loading: %s: %s", path, line,
                  type(exc).__name__, exc)
    finally:
        if saved_main is not None:
            sys.modules["__main__"] = saved_main
        else:
            sys.modules.pop("__main__", None)
    report.loaded.append(path)
    report.modules[path] = module
