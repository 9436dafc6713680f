"""The event bus: sync and async handlers, isolation of raising handlers, order, bounded close."""
from __future__ import annotations

import asyncio
import threading

import pytest

from sensor.events import CaptureErrorEvent, EventBus, SessionOpenedEvent

WAIT = 10.0  # generous upper bound for the bus thread to catch up; never a timing assertion


def error(n: int) -> CaptureErrorEvent:
    return CaptureErrorEvent(error=str(n), kind="test")


@pytest.fixture
def bus():
    bus = EventBus()
    yield bus
    bus.close(timeout=1.0)


def test_sync_handler_runs_inline_in_subscription_order(bus):
    seen = []
    bus.subscribe("on_capture_error", lambda e: seen.append(("a", e.error)))
    bus.subscribe(CaptureErrorEvent, lambda e: seen.append(("b", e.error)))  # ProtoPoke style: by class
    bus.publish(error(1))
    bus.publish(error(2))
    assert seen == [("a", "1"), ("b", "1"), ("a", "2"), ("b", "2")]


def test_events_go_only_to_their_name(bus):
    seen = []
    bus.subscribe("on_session_closed", seen.append)
    bus.publish(error(1))
    assert seen == []
    assert not bus.wants("on_capture_error")
    assert bus.wants("on_session_closed")


def test_async_handler_gets_every_event_in_order(bus):
    got: list[str] = []
    thread_names: set[str] = set()

    async def handler(event):
        await asyncio.sleep(0)  # give other tasks a chance to interleave: order must hold anyway
        thread_names.add(threading.current_thread().name)
        got.append(event.error)

    bus.subscribe("on_capture_error", handler)
    for n in range(200):
        bus.publish(error(n))
    assert bus.close(timeout=WAIT) == 0
    assert got == [str(n) for n in range(200)]
    assert thread_names == {"xdpsensor-events"}
    assert bus.dropped == 0


def test_raising_handlers_are_isolated(bus):
    sync_seen, async_seen = [], []

    def broken_sync(event):
        raise RuntimeError("sync bug")

    async def broken_async(event):
        raise RuntimeError("async bug")

    async def good_async(event):
        async_seen.append(event.error)

    bus.subscribe("on_capture_error", broken_sync)
    bus.subscribe("on_capture_error", sync_seen.append)
    bus.subscribe("on_capture_error", broken_async)
    bus.subscribe("on_capture_error", good_async)
    bus.publish(error(1))  # must not raise
    bus.publish(error(2))
    bus.close(timeout=WAIT)
    assert [e.error for e in sync_seen] == ["1", "2"]
    assert async_seen == ["1", "2"]
    assert bus.errors == 4  # two events x two broken handlers


def test_sync_handler_returning_a_coroutine_is_reported(bus):
    ran = []

    async def real(event):
        ran.append(event)

    bus.subscribe("on_capture_error", lambda e: real(e))
    bus.publish(error(1))
    assert bus.errors == 1
    assert ran == []


def test_slow_async_handler_blocks_neither_publisher_nor_other_handlers(bus):
    release = threading.Event()
    fast_done = threading.Event()
    fast_seen = []

    async def slow(event):
        await asyncio.get_running_loop().run_in_executor(None, release.wait)

    async def fast(event):
        fast_seen.append(event.error)
        if len(fast_seen) == 5:
            fast_done.set()

    bus.subscribe("on_capture_error", slow)
    bus.subscribe("on_capture_error", fast)
    for n in range(5):
        bus.publish(error(n))  # returns although `slow` is stuck on its first event
    assert fast_done.wait(WAIT)
    assert fast_seen == ["0", "1", "2", "3", "4"]
    release.set()
    assert bus.close(timeout=WAIT) == 0


def test_unsubscribe(bus):
    seen = []

    async def handler(event):
        seen.append(event.error)

    bus.subscribe("on_capture_error", seen.append)
    assert bus.unsubscribe("on_capture_error", seen.append)
    bus.subscribe("on_capture_error", handler)
    assert bus.unsubscribe("on_capture_error", handler)
    assert not bus.unsubscribe("on_capture_error", handler)
    bus.publish(error(1))
    bus.close(timeout=WAIT)
    assert seen == []


def test_unknown_event_name_is_rejected(bus):
    with pytest.raises(ValueError, match="on_frame_captured"):
        bus.subscribe("on_frame", print)
    with pytest.raises(TypeError, match="callable"):
        bus.subscribe("on_session_opened", None)


def test_pending_async_deliveries_are_bounded():
    bus = EventBus(max_pending=3)
    stuck = asyncio.Event()  # never set: the handler holds its first event

    async def handler(event):
        await stuck.wait()

    bus.subscribe("on_capture_error", handler)
    for n in range(10):
        bus.publish(error(n))
    assert bus.dropped == 7  # three accepted (one running, two queued), the rest dropped
    assert bus.close(timeout=0.2) == 3  # close gives up on the stuck handler after its bound
    assert bus.dropped == 10


def test_publish_after_close_reaches_sync_handlers_only():
    bus = EventBus()
    sync_seen, async_seen = [], []

    async def handler(event):
        async_seen.append(event)

    bus.subscribe("on_session_opened", sync_seen.append)
    bus.subscribe("on_session_opened", handler)
    bus.close(timeout=WAIT)
    event = SessionOpenedEvent(session=None)
    bus.publish(event)
    assert sync_seen == [event]
    assert async_seen == []
    assert bus.dropped == 1


def test_no_async_subscription_after_close():
    bus = EventBus()
    bus.close()

    async def handler(event):
        pass

    with pytest.raises(RuntimeError, match="closed"):
        bus.subscribe("on_session_opened", handler)


def test_one_async_handler_sees_all_its_names_in_publication_order(bus):
    got = []

    async def handler(event):
        if isinstance(event, SessionOpenedEvent):
            for _ in range(5):  # a slow first event: later ones of another name must still wait
                await asyncio.sleep(0)
        got.append(type(event).__name__)

    bus.subscribe("on_session_opened", handler)
    bus.subscribe("on_capture_error", handler)
    bus.publish(SessionOpenedEvent(session=None))
    bus.publish(error(1))
    bus.publish(error(2))
    bus.close(timeout=WAIT)
    assert got == ["SessionOpenedEvent", "CaptureErrorEvent", "CaptureErrorEvent"]
