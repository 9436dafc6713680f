"""A plugin that hangs, exits or raises KeyboardInterrupt does not take the
sensor with it: the callback is reported with file and line, its session is
bypassed and recorded, every other session goes on."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from capturelib import Capture
from sinks import RecordSink

from sensor import Sensor
from sensor.arkime.budget import CallbackBudget, PluginTimeout

PLUGIN = '''\
import sys
import arkime
import arkime_session


def parse(session, data, remaining, which):
    if bytes(data).startswith(b"HANG"):
        while True:  # forever, in Python code
            try:
                pass
            except Exception:  # a plugin cannot swallow the budget's exception
                pass
    if bytes(data).startswith(b"EXIT"):
        sys.exit(3)
    if bytes(data).startswith(b"CTRLC"):
        raise KeyboardInterrupt
    arkime_session.add_tag(session, "parsed")
    return 0


def classify(session, data, remaining, which):
    arkime_session.register_parser(session, parse)


arkime.register_tcp_classifier("test", 0, b"", classify)
'''



def read(tmp_path: Path, payloads: dict[int, bytes], budget: float) -> tuple[list[dict], Sensor]:
    plugin = tmp_path / "hangs.py"
    plugin.write_text(PLUGIN)
    capture = Capture()
    for port, payload in payloads.items():
        capture.tcp(("10.0.0.1", port), ("10.0.0.2", 7000)).handshake().send("c", payload) \
            .send("s", b"reply").send("c", payload).close()
    out = RecordSink()
    sensor = Sensor({"plugins": [str(plugin)], "default_plugins": False, "plugin_time_budget": budget},
                    outputs=[out])
    sensor.read_pcap(capture.write(tmp_path / "c.pcap"), "none")
    sensor.close()
    return sorted(out.records, key=lambda r: r["source"]["port"]), sensor


def test_a_callback_that_loops_forever_is_interrupted_and_its_session_recorded(tmp_path, caplog):
    caplog.set_level(logging.ERROR, "sensor.arkime.plugins")
    records, sensor = read(tmp_path, {41000: b"fine", 41001: b"HANG", 41002: b"fine too"}, budget=0.3)
    assert [r["source"]["port"] for r in records] == [41000, 41001, 41002]
    tags = {r["source"]["port"]: set(r.get("tags", ())) for r in records}
    assert tags == {41000: {"parsed"}, 41001: {"plugin-timeout"}, 41002: {"parsed"}}
    assert sensor.runtime.errors.counts == {"parser:parse": 1}  # once: the session is bypassed after
    assert sensor.runtime.budget.fired == 1
    [message] = [r.getMessage() for r in caplog.records]
    loop_line = PLUGIN.splitlines().index("            try:") + 1
    assert f"ran past its time budget at {tmp_path / 'hangs.py'}:" in message
    assert int(message.split("hangs.py:")[1].split(":")[0]) in range(loop_line - 1, loop_line + 4)


@pytest.mark.parametrize("payload, error", [(b"EXIT", "SystemExit"), (b"CTRLC", "KeyboardInterrupt")])
def test_sys_exit_and_keyboard_interrupt_in_a_callback_are_plugin_failures(tmp_path, caplog, payload, error):
    records, sensor = read(tmp_path, {42000: b"fine", 42001: payload}, budget=0)
    assert [r["source"]["port"] for r in records] == [42000, 42001]
    # The failed parser is dropped; the reply's classifier registers it again and the client's second
    # payload fails it again: two failures, each reported, neither the sensor's exit.
    assert sensor.runtime.errors.counts == {"parser:parse": 2}
    assert error in caplog.text and f"{tmp_path / 'hangs.py'}:" in caplog.text


def test_a_watchdog_parked_while_no_callback_ran_still_interrupts_the_next_one():
    budget = CallbackBudget(0.2)
    try:
        for _ in range(200):        # parks after its first tick with no entry (0.05 s)
            if budget._parked:
                break
            time.sleep(0.01)
        assert budget._parked
        interrupted = False
        try:
            budget.enter()
            for _ in range(10**9):  # bounded, but far longer than the budget
                pass
        except PluginTimeout:
            interrupted = True
        finally:
            budget.leave()
        budget.leave()              # as the runtime does after catching it
        assert interrupted and budget.fired == 1
    finally:
        budget.close()
