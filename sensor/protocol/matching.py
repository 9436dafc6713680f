"""Pick the message definition for a frame: first match wins, in definition order.

Consecutive magic rules at the same offset and width become one dict lookup,
so a definition with forty opcodes costs one slice and one hash per frame.
SEQUENCE rules use the frame's own ``sequence_number`` (its position in its
direction), so decoding a frame twice gives the same answer; ProtoPoke
counts decode() calls instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sensor.flows.state import Direction
from sensor.protocol.compile import CompiledMessage
from sensor.protocol.definition import MatchType, MessageDefinition

Matcher = Callable[[bytes, Direction, int], CompiledMessage | None]


def compile_matchers(messages: Sequence[tuple[MessageDefinition, CompiledMessage]]) -> tuple[Matcher, ...]:
    matchers: list[Matcher] = []
    index = 0
    while index < len(messages):
        definition, _ = messages[index]
        rule = definition.match
        if rule.type is MatchType.MAGIC and rule.value:
            end = index + 1
            while end < len(messages) and _same_table(messages[end][0], rule.offset, len(rule.value)):
                end += 1
            matchers.append(_magic_table(messages[index:end], rule.offset, len(rule.value)))
            index = end
            continue
        matchers.append(_single(definition, messages[index][1]))
        index += 1
    return tuple(matchers)


def _same_table(definition: MessageDefinition, offset: int, width: int) -> bool:
    rule = definition.match
    return rule.type is MatchType.MAGIC and rule.offset == offset and len(rule.value) == width


def _magic_table(group: Sequence[tuple[MessageDefinition, CompiledMessage]], offset: int, width: int) -> Matcher:
    # One table per direction, first match kept: a frame costs one identity test and one lookup.
    by_direction: list[tuple[Direction, dict[bytes, CompiledMessage]]] = []
    for member in Direction:
        table: dict[bytes, CompiledMessage] = {}
        for definition, compiled in group:
            if member in definition.direction.directions:
                table.setdefault(definition.match.value, compiled)
        by_direction.append((member, table))
    end = offset + width

    def match(data: bytes, direction: Direction, sequence: int) -> CompiledMessage | None:
        for member, lookup in by_direction:
            if member is direction:
                return lookup.get(data[offset:end])
        return None

    return match


def _single(definition: MessageDefinition, compiled: CompiledMessage) -> Matcher:
    allowed = definition.direction.directions
    rule = definition.match
    if rule.type is MatchType.SEQUENCE:
        allowed = allowed & rule.direction.directions
        wanted, members = rule.index, _members(allowed)
        return lambda data, direction, sequence: compiled if sequence == wanted and direction in members else None
    # ALWAYS, or MAGIC with an empty value (ProtoPoke: an empty value always passes).
    if allowed == frozenset(Direction):
        return lambda data, direction, sequence: compiled
    members = _members(allowed)
    return lambda data, direction, sequence: compiled if direction in members else None


def _members(allowed: frozenset[Direction]) -> tuple[Direction, ...]:
    """A tuple, since ``in`` on it tests identity first, while hashing an Enum runs Python code."""
    return tuple(member for member in Direction if member in allowed)
