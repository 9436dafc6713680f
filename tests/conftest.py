"""Shared fixtures: root checks and the location of ../shared/testdata."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_TESTDATA = REPO.parent / "shared" / "testdata"


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: kernel and lab tests load XDP programs (run `sudo make test`)")
    for item in items:
        if "kernel" in item.keywords or "lab" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_testdata() -> Path:
    if not SHARED_TESTDATA.is_dir():
        pytest.skip(f"{SHARED_TESTDATA} is absent: the conformance data lives in ../shared beside the repo")
    return SHARED_TESTDATA
