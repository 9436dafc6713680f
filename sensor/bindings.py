"""Bindings: which sessions get framed and decoded, and how (the `bindings:` config section).

A binding matches sessions by port, by an Arkime protocol a plugin claims, or
by a byte prefix of a direction's first payload; every key given must match.
Everything (framer name and kwargs, scripts, protocol definitions) is checked
when the config loads, so a bad binding stops the sensor at start-up with a
message naming the binding, the key and the fix, never later on live traffic.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sensor.errors import SensorError
from sensor.framing import FRAMER_REGISTRY, FramerConfigError, FramerSpec, validate_framer_config
from sensor.kernel.rules import PAYLOAD_PROTOCOLS, PortRole, PortRule, PrefixRule, RuleError, parse_port_spec, parse_prefix_spec
from sensor.protocol import DefinitionDecoder, ProtocolDefinition, load_definition_dict, load_definition_file

BINDING_KEYS = ("name", "match", "framer", "framer_kwargs", "custom_framer_path", "protocol_definition")
MATCH_KEYS = ("protocol", "ports", "classifier")


class BindingError(SensorError, ValueError):
    """A binding in the config is unusable; the message names the binding, the key and what to write."""


@dataclass(frozen=True, slots=True)
class BindingMatch:
    """``ports`` holds (IP protocol, port), protocol None meaning TCP and UDP; a port matches either end."""

    ports: frozenset[tuple[int | None, int]] = frozenset()
    protocol: str | None = None
    classifier: PrefixRule | None = None

    def ports_match(self, ip_protocol: int, client_port: int, server_port: int) -> bool:
        if not self.ports:
            return True
        ports = self.ports
        return any((proto, port) in ports for proto in (ip_protocol, None) for port in (server_port, client_port))

    def could_match(self, ip_protocol: int, client_port: int, server_port: int) -> bool:
        """Whether payload seen later (claimed protocols, first payloads) may still make this match."""
        if not self.ports_match(ip_protocol, client_port, server_port):
            return False
        if self.classifier is not None and self.classifier.proto != ip_protocol:
            return False
        return self.protocol is not None or self.classifier is not None

    def matches(self, ip_protocol: int, client_port: int, server_port: int,
                protocols: frozenset[str], first_payloads: tuple[bytes | None, bytes | None]) -> bool:
        if not self.ports_match(ip_protocol, client_port, server_port):
            return False
        if self.protocol is not None and self.protocol not in protocols:
            return False
        rule = self.classifier
        if rule is not None:
            return rule.proto == ip_protocol and any(
                p is not None and prefix_matches(rule, p) for p in first_payloads)
        return True


def prefix_matches(rule: PrefixRule, payload: bytes) -> bool:
    """The kernel's prefix test on the full pattern (an odd hex digit count leaves a half byte)."""
    end = rule.offset + len(rule.pattern)
    if len(payload) < end:
        return False
    window = payload[rule.offset:end]
    mask = rule.last_mask
    return window[:-1] == rule.pattern[:-1] and window[-1] & mask == rule.pattern[-1] & mask


@dataclass(slots=True, eq=False)
class Binding:
    """One validated binding. ``framer`` and ``decoder`` change when the API hot-swaps them."""

    name: str
    match: BindingMatch
    framer: FramerSpec
    decoder: DefinitionDecoder | None = None

    @property
    def definition(self) -> ProtocolDefinition | None:
        return None if self.decoder is None else self.decoder.definition


def parse_bindings(items: Any, base_dir: Path) -> list[Binding]:
    """Validate the ``bindings`` list of a config; relative paths are taken from ``base_dir``."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise BindingError(f"bindings: must be a list of mappings (one per binding), got {type(items).__name__}")
    bindings: list[Binding] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        binding = _binding(item, index, Path(base_dir))
        if binding.name in seen:
            raise BindingError(f"binding {binding.name!r} (bindings[{index}]): name: already used by "
                               f"bindings[{seen[binding.name]}]; give each binding its own name")
        seen[binding.name] = index
        bindings.append(binding)
    return bindings


def binding_rules(bindings: Iterable[Binding]) -> tuple[list[PortRule], list[PrefixRule]]:
    """Kernel rules that keep each binding's sessions coming up to userspace.

    Ports give port rules (on either end, like ``--port``); a classifier gives a
    prefix rule when the binding has no ports (with ports, the port rule already
    selects a superset). A protocol-only binding adds no rule: the plugin that
    claims the protocol brings its own classifier registrations.
    """
    ports: list[PortRule] = []
    prefixes: list[PrefixRule] = []
    for binding in bindings:
        match = binding.match
        for proto, port in sorted(match.ports, key=lambda p: (p[0] or 0, p[1])):
            for ip_proto in (proto,) if proto is not None else sorted(PAYLOAD_PROTOCOLS.values()):
                for role in (PortRole.SERVER, PortRole.CLIENT):
                    rule = PortRule(ip_proto, port, role)
                    if rule not in ports:
                        ports.append(rule)
        if match.classifier is not None and not match.ports and match.classifier not in prefixes:
            prefixes.append(match.classifier)
    return ports, prefixes


def _binding(item: Any, index: int, base_dir: Path) -> Binding:
    where = f"bindings[{index}]"
    if not isinstance(item, dict):
        raise BindingError(f"{where}: must be a mapping with keys {', '.join(BINDING_KEYS)}; got {type(item).__name__}")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise BindingError(f"{where}: name: required, a non-empty string that identifies the binding "
                           "(e.g. name: modbus)")
    where = f"binding {name!r}"
    unknown = sorted(set(item) - set(BINDING_KEYS))
    if unknown:
        raise BindingError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                           f"a binding takes {', '.join(BINDING_KEYS)}")
    match = _match(item.get("match"), where)
    framer = _framer(item, where, base_dir)
    decoder = _decoder(item.get("protocol_definition"), where, base_dir)
    return Binding(name, match, framer, decoder)


def _match(raw: Any, where: str) -> BindingMatch:
    if not isinstance(raw, dict) or not raw:
        raise BindingError(f"{where}: match: required, a mapping with one or more of {', '.join(MATCH_KEYS)} "
                           "(e.g. match: {ports: [tcp:502]})")
    unknown = sorted(set(raw) - set(MATCH_KEYS))
    if unknown:
        raise BindingError(f"{where}: match: unknown key(s) {', '.join(map(repr, unknown))}; "
                           f"use {', '.join(MATCH_KEYS)} (all given must match)")
    ports = _ports(raw["ports"], where) if "ports" in raw else frozenset()
    protocol = None
    if "protocol" in raw:
        protocol = raw["protocol"]
        if not isinstance(protocol, str) or not protocol.strip():
            raise BindingError(f"{where}: match.protocol: give the Arkime protocol name a plugin claims "
                               f"with add_protocol, e.g. protocol: redis; got {protocol!r}")
    classifier = None
    if "classifier" in raw:
        spec = raw["classifier"]
        if not isinstance(spec, str):
            raise BindingError(f"{where}: match.classifier: write PROTO:OFFSET:BYTES as a string, "
                               f"e.g. tcp:0:GET or tcp:0:0x160301; got {spec!r}")
        try:
            classifier = parse_prefix_spec(spec)
        except RuleError as exc:
            raise BindingError(f"{where}: match.classifier: {exc}") from None
    return BindingMatch(ports, protocol, classifier)


def _ports(raw: Any, where: str) -> frozenset[tuple[int | None, int]]:
    if not isinstance(raw, list) or not raw:
        raise BindingError(f"{where}: match.ports: a non-empty list of ports, e.g. [502, tcp:502, udp:5353]; "
                           f"got {raw!r}")
    ports: set[tuple[int | None, int]] = set()
    for index, item in enumerate(raw):
        key = f"{where}: match.ports[{index}]"
        if isinstance(item, int) and not isinstance(item, bool):
            if not 0 < item < 65536:
                raise BindingError(f"{key}: port {item} is out of range; use 1-65535")
            ports.add((None, item))
        elif isinstance(item, str):
            try:
                rules = parse_port_spec(item)
            except RuleError as exc:
                raise BindingError(f"{key}: {exc}; a bare number (502) means TCP and UDP") from None
            ports.add((rules[0].proto, rules[0].port))
        else:
            raise BindingError(f"{key}: {item!r} is not a port; write 502 (TCP and UDP) or tcp:502 / udp:5353")
    return frozenset(ports)


def _framer(item: dict[str, Any], where: str, base_dir: Path) -> FramerSpec:
    name = item.get("framer", "raw")
    kwargs = item.get("framer_kwargs") or {}
    script = item.get("custom_framer_path")
    if not isinstance(name, str):
        raise BindingError(f"{where}: framer: a framer name (raw, delimiter, line, length_prefix, fixed); got {name!r}")
    if not isinstance(kwargs, dict):
        raise BindingError(f"{where}: framer_kwargs: a mapping of option: value, "
                           f"e.g. {{prefix_length: 2}}; got {type(kwargs).__name__}")
    if script is not None and not isinstance(script, str):
        raise BindingError(f"{where}: custom_framer_path: a path to a .py script; got {script!r}")
    key = "custom_framer_path" if script else "framer" if name not in FRAMER_REGISTRY else "framer_kwargs"
    try:
        return validate_framer_config(name, kwargs, base_dir / script if script else None)
    except FramerConfigError as exc:
        raise BindingError(f"{where}: {key}: {exc}") from None


def _decoder(raw: Any, where: str, base_dir: Path) -> DefinitionDecoder | None:
    """A path (relative to the config) to a .yaml/.yml/.json definition, or the definition inline."""
    if raw is None:
        return None
    if not isinstance(raw, (str, dict)):
        raise BindingError(f"{where}: protocol_definition: a path to a .yaml/.yml/.json definition "
                           f"or an inline mapping; got {type(raw).__name__}")
    try:
        if isinstance(raw, str):
            definition = load_definition_file(base_dir / raw)
        else:
            definition = load_definition_dict(raw, source=f"{where}: protocol_definition")
    except (OSError, ValueError) as exc:  # missing file, bad YAML/JSON, invalid definition
        raise BindingError(f"{where}: protocol_definition: {exc}") from None
    return DefinitionDecoder(definition)
