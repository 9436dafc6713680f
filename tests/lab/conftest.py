"""One lab per test module, named after the process so parallel runs never meet,
and removed even when a test fails."""
from __future__ import annotations

import os
import zlib

import pytest

from sensor import lab as lab_mod


@pytest.fixture(scope="module")
def lab(request):
    tag = zlib.crc32(request.module.__name__.encode()) % 100
    built = lab_mod.Lab(f"t{os.getpid() % 100000}{tag:02d}")
    try:
        yield lab_mod.up(built)
    finally:
        lab_mod.down(built)
