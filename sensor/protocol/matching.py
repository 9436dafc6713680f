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
    table: dict[bytes, list[tuple[frozenset[Direction], CompiledMessage]]] = {}
    for definition, compiled in group:
        table.setdefault(definition.match.value, []).append((definition.direction.directions, compiled))
    end = offset + width

    def match(data: bytes, direction: Direction, sequence: int) -> CompiledMessage | None:
        candidates = table.get(data[offset:end])
        if candidates is not None:
            for allowed, compiled in candidates:
                if direction in allowed:
                    return compiled
        return None

    return match


def _single(definition: MessageDefinition, compiled: CompiledMessage) -> Matcher:
    allowed = definition.direction.directions
    rule = definition.match
    if rule.type is MatchType.SEQUENCE:
        allowed = allowed & rule.direction.directions
        wanted = rule.index
        return lambda data, direction, sequence: compiled if direction in allowed and sequence == wanted else None
    # ALWAYS, or MAGIC with an empty value (ProtoPoke: an empty value always passes).
    return lambda data, direction, sequence: compiled if direction in allowed else None
