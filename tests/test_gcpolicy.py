"""gcpolicy.paused: the collector is off inside, back as it was after, also when nested or on error."""
from __future__ import annotations

import gc

import pytest

from sensor import gcpolicy


@pytest.fixture(autouse=True)
def collector_back_on():
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


def test_paused_turns_the_collector_off_and_back_on():
    gc.enable()
    with gcpolicy.paused():
        assert not gc.isenabled()
        with gcpolicy.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause still holds
    assert gc.isenabled()


def test_paused_ends_on_an_error():
    gc.enable()
    with pytest.raises(ValueError), gcpolicy.paused():
        raise ValueError("decode failed")
    assert gc.isenabled()


def test_a_collector_the_application_disabled_stays_disabled():
    gc.disable()
    with gcpolicy.paused():
        pass
    assert not gc.isenabled()
