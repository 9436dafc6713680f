"""Argument checks that mirror CPython's PyArg_ParseTuple codes used by Arkime.

Plugins written against real Arkime get the same TypeError/ValueError/
OverflowError for the same bad arguments."""
from __future__ import annotations

import operator
from typing import Any

INT_MIN, INT_MAX = -(2 ** 31), 2 ** 31 - 1


def c_str(value: Any, fn: str, argno: int) -> str:
    """Code `s`: a str without NUL that encodes to UTF-8."""
    if not isinstance(value, str):
        raise TypeError(f"{fn}() argument {argno} must be str, not {type(value).__name__}")
    if "\0" in value:
        raise ValueError("embedded null character")
    if not value.isascii():
        value.encode("utf-8")  # lone surrogates raise UnicodeEncodeError, as in CPython
    return value


def c_int(value: Any, fn: str, argno: int) -> int:
    """Code `i`: an index-able object that fits a signed 32-bit C int."""
    if isinstance(value, float):
        raise TypeError(f"{fn}() argument {argno} must be int, not float")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{fn}() argument {argno} must be int, not {type(value).__name__}"
                        ) from None
    if value > INT_MAX:
        raise OverflowError("signed integer is greater than maximum")
    if value < INT_MIN:
        raise OverflowError("signed integer is less than minimum")
    return value


def c_uint_mask(value: Any, fn: str, argno: int) -> int:
    """Code `I`: an int taken modulo 2**32 without overflow checking."""
    if isinstance(value, float):
        raise TypeError(f"{fn}() argument {argno} must be int, not float")
    try:
        return operator.index(value) & 0xFFFFFFFF
    except TypeError:
        raise TypeError(f"{fn}() argument {argno} must be int, not {type(value).__name__}"
                        ) from None


def c_bytes(value: Any, fn: str, argno: int) -> bytes:
    """Code `S`: a bytes object (bytearray and memoryview are refused)."""
    if not isinstance(value, bytes):
        raise TypeError(f"{fn}() argument {argno} must be bytes, not {type(value).__name__}")
    return bytes(value)


def c_callable(value: Any) -> Any:
    if not callable(value):
        raise TypeError("Callback must be a callable Python object.")
    return value


def c_buffer(value: Any, fn: str, argno: int) -> bytes:
    """Code `O` checked for the buffer protocol: any bytes-like object."""
    try:
        with memoryview(value) as mv:
            return mv.tobytes()
    except TypeError:
        raise TypeError(f"{fn}() argument {argno} must be a bytes-like object, not "
                        f"{type(value).__name__}") from None
