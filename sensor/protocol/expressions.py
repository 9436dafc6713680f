"""Length and count expressions: ``4``, ``-1`` (rest of frame) or ``"{total_length - 5}"``.

An expression is parsed once with ``ast``, checked against a whitelist, and
turned into a tree of closures; decoding never calls ``eval``. Names are
earlier numeric fields, checked by the definition loader.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Context = Mapping[str, Any]
Evaluator = Callable[[Context], Any]

REST_OF_FRAME = -1

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {"min": min, "max": max, "abs": abs, "int": int}
_INTEGER = re.compile(r"[+-]?(0[xX][0-9a-fA-F]+|0[bB][01]+|0[oO][0-7]+|\d+)")


class ExpressionError(ValueError):
    """An expression that cannot be parsed or uses something not allowed."""


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled expression; ``constant`` is set for a plain integer, ``variable`` for a bare name."""

    source: str
    names: frozenset[str]
    evaluate: Evaluator
    constant: int | None = None
    variable: str | None = None


def parse_expression(raw: int | str) -> Expression:
    """Parse an integer literal or a ``{...}`` expression; raise ``ExpressionError`` saying why not."""
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise ExpressionError(f"expected an integer or a '{{expression}}' string, got {type(raw).__name__} {raw!r}")
    if isinstance(raw, int):
        return _constant(str(raw), raw)
    text = raw.strip()
    if _INTEGER.fullmatch(text):
        return _constant(raw, int(text, 0))
    if not (text.startswith("{") and text.endswith("}")):
        raise ExpressionError(f"{raw!r} is neither an integer nor a '{{expression}}' such as '{{len - 4}}'")
    body = text[1:-1].strip()
    try:
        tree = ast.parse(body, mode="eval").body
    except SyntaxError as exc:
        raise ExpressionError(f"{raw!r} is not a valid expression: {exc.msg}") from None
    names: set[str] = set()
    evaluate = _compile(tree, raw, names)
    if not names:
        try:
            value = evaluate({})
        except (ArithmeticError, TypeError, ValueError) as exc:
            raise ExpressionError(f"{raw!r} cannot be computed: {exc}") from None
        if isinstance(value, int):
            return _constant(raw, int(value))  # a comparison gives a bool: True is 1
    variable = tree.id if isinstance(tree, ast.Name) else None
    return Expression(raw, frozenset(names), evaluate, variable=variable)


def _constant(source: str, value: int) -> Expression:
    return Expression(source, frozenset(), lambda ctx: value, value)


def _compile(node: ast.AST, source: str, names: set[str]) -> Evaluator:
    """Turn one whitelisted AST node into a closure over its compiled children."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        value = node.value
        return lambda ctx: value
    if isinstance(node, ast.Name):
        name = node.id
        names.add(name)
        return lambda ctx: ctx[name]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        op = _BINARY[type(node.op)]
        left, right = _compile(node.left, source, names), _compile(node.right, source, names)
        if isinstance(node.right, ast.Constant):  # "{total_length - 5}": one closure, not three
            constant = node.right.value
            if isinstance(node.left, ast.Name):
                name = node.left.id
                return lambda ctx: op(ctx[name], constant)
            return lambda ctx: op(left(ctx), constant)
        return lambda ctx: op(left(ctx), right(ctx))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
        operand = _compile(node.operand, source, names)
        if isinstance(node.op, ast.USub):
            return lambda ctx: -operand(ctx)
        if isinstance(node.op, ast.Not):
            return lambda ctx: not operand(ctx)
        return operand
    if isinstance(node, ast.Compare):
        ops = [_COMPARE[type(op)] for op in node.ops if type(op) in _COMPARE]
        if len(ops) != len(node.ops):
            raise ExpressionError(f"{source!r}: only == != < <= > >= comparisons are allowed")
        operands = [_compile(n, source, names) for n in (node.left, *node.comparators)]
        pairs = list(zip(ops, operands, operands[1:]))

        def compare(ctx: Context) -> bool:
            return all(op(a(ctx), b(ctx)) for op, a, b in pairs)

        return compare
    if isinstance(node, ast.BoolOp):
        parts = [_compile(n, source, names) for n in node.values]
        if isinstance(node.op, ast.And):

            def conjunction(ctx: Context) -> Any:
                value: Any = True
                for part in parts:
                    value = part(ctx)
                    if not value:
                        return value
                return value

            return conjunction

        def disjunction(ctx: Context) -> Any:
            value: Any = False
            for part in parts:
                value = part(ctx)
                if value:
                    return value
            return value

        return disjunction
    if isinstance(node, ast.IfExp):
        test, body, orelse = (_compile(n, source, names) for n in (node.test, node.body, node.orelse))
        return lambda ctx: body(ctx) if test(ctx) else orelse(ctx)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS:
        if node.keywords or not node.args:
            raise ExpressionError(f"{source!r}: call {node.func.id}() with positional arguments only")
        function = _FUNCTIONS[node.func.id]
        args = [_compile(n, source, names) for n in node.args]
        return lambda ctx: function(*(arg(ctx) for arg in args))
    raise ExpressionError(f"{source!r}: {_describe(node)} is not allowed; use + - * // %, comparisons, "
                          "and/or/not, 'x if c else y', min/max/abs/int and earlier numeric field names")


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.BinOp):
        return f"operator {type(node.op).__name__}" + (" ('/' gives floats; use '//')" if isinstance(node.op, ast.Div) else "")
    if isinstance(node, ast.Call):
        return "calling anything but min/max/abs/int"
    if isinstance(node, ast.Constant):
        return f"the literal {node.value!r}"
    return type(node).__name__
