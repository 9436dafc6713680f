"""Ids of sessions, frames and messages: uuid4 strings, as ProtoPoke's.

`uuid.uuid4()` costs a getrandom() system call per id, and in a flood of new
sessions that call (with the GIL handed to the output threads around it) was
the largest single cost of a session. The bits come from a generator of our
own instead, seeded from the system once, and again in each forked worker (a
copy would repeat the parent's ids). Nobody else can seed it: a plugin calling
`random.seed()` must not make two runs write the same ids into one store.
Ids stay random from their first character, so a short prefix names a session.
"""
from __future__ import annotations

import os
import random

_VERSION_4 = 0x4000 << 64          # the version nibble: 4
_VARIANT = 0x8000_0000_0000_0000   # the variant bits: 10
_CLEAR = ~((0xF000 << 64) | (0xC000_0000_0000_0000)) & ((1 << 128) - 1)

_bits = random.Random()
os.register_at_fork(after_in_child=_bits.seed)


def new_id() -> str:
    """A fresh uuid4 string."""
    h = f"{_bits.getrandbits(128) & _CLEAR | _VERSION_4 | _VARIANT:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
