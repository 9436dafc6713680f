"""Expression language: literals, -1, names, whitelisted operators; everything else refused."""

from __future__ import annotations

import pytest

from sensor.protocol.expressions import ExpressionError, parse_expression


@pytest.mark.parametrize(("raw", "value"), [(4, 4), ("4", 4), (-1, -1), ("-1", -1), ("0x10", 16), ("{2 * 3 + 1}", 7)])
def test_constants(raw, value):
    expression = parse_expression(raw)
    assert expression.constant == value
    assert expression.names == frozenset()


@pytest.mark.parametrize(
    ("text", "ctx", "value"),
    [
        ("{n}", {"n": 5}, 5),
        ("{total_length - 5}", {"total_length": 12}, 7),
        ("{a * b // 3 % 4}", {"a": 5, "b": 3}, 1),
        ("{-a + 10}", {"a": 4}, 6),
        ("{min(a, b) + max(a, b) + abs(-a) + int(b)}", {"a": 2, "b": 9}, 2 + 9 + 2 + 9),
        ("{a if a > 3 else 0}", {"a": 2}, 0),
        ("{a if a > 3 else 0}", {"a": 7}, 7),
        ("{1 < a <= 3}", {"a": 3}, True),
        ("{1 < a <= 3}", {"a": 4}, False),
        ("{a == 1 or b}", {"a": 0, "b": 6}, 6),
        ("{a != 0 and b}", {"a": 1, "b": 6}, 6),
        ("{not a}", {"a": 0}, True),
    ],
)
def test_evaluation(text, ctx, value):
    expression = parse_expression(text)
    assert expression.constant is None
    assert expression.evaluate(ctx) == value
    assert expression.names == frozenset(ctx) & expression.names


def test_names_are_collected():
    assert parse_expression("{max(a, b) - c}").names == {"a", "b", "c"}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{a / 2}", "use '//'"),
        ("{a & 1}", "BitAnd"),
        ("{a << 1}", "LShift"),
        ("{a.b}", "Attribute"),
        ("{a[0]}", "Subscript"),
        ("{open('x')}", "calling anything but"),
        ("{min(a=1)}", "positional"),
        ("{'s'}", "literal 's'"),
        ("{a in b}", "comparisons are allowed"),
        ("{(lambda: 1)()}", "calling anything but"),
        ("{a +}", "not a valid expression"),
        ("username_len", "neither an integer"),
        ("{1 // 0}", "cannot be computed"),
        (1.5, "expected an integer"),
        (True, "expected an integer"),
    ],
)
def test_refused(text, fragment):
    with pytest.raises(ExpressionError) as info:
        parse_expression(text)
    assert fragment in str(info.value)


def test_division_by_zero_at_run_time_raises():
    with pytest.raises(ZeroDivisionError):
        parse_expression("{a // b}").evaluate({"a": 1, "b": 0})
