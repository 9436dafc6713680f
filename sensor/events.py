"""The event bus: session lifecycle and frame events pushed to subscribers.

ProtoPoke's names and payloads (``on_session_opened`` ... with ``session``,
``frame`` and the upstream-failure fields), with the fixes its spec asks for:

- Sync handlers run inline, in the publishing thread, in subscription order.
  Keep them quick: the capture loop waits for them.
- Async handlers (``async def``) run on an asyncio loop owned by the bus, in a
  background thread, so publishing never waits for them. Each async handler
  has one queue for all the names it subscribes to and sees its events one at
  a time (the next call starts after the previous one finished); different
  handlers run concurrently. Handlers must be hashable (functions and bound
  methods are).
  At most ``max_pending`` deliveries wait at once; beyond that new deliveries
  are dropped and counted in ``dropped`` rather than blocking the sensor.
- A handler that raises is logged and counted in ``errors``; the other
  handlers and the sensor carry on.

Ordering: every handler sees the events of one session in the order they
were published: opened first, then frames and updates as they happened,
then upstream_connection_failed (if any), then closed last.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sensor.models import Frame, ParsedMessage

if TYPE_CHECKING:
    from sensor.registry import SessionInfo

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class SessionOpenedEvent:
    """A new session: its first packet was seen (state CONNECTING for a TCP SYN, else ACTIVE)."""

    session: SessionInfo


@dataclass(frozen=True, slots=True)
class SessionUpdatedEvent:
    """The session's state or binding changed, or its counters moved (throttled per session)."""

    session: SessionInfo
    frame_count: int
    databytes: tuple[int, int]  # reassembled payload bytes (client->server, server->client)


@dataclass(frozen=True, slots=True)
class SessionClosedEvent:
    """The session ended; its last frames (framer flush) were published before this."""

    session: SessionInfo
    frame_count: int
    databytes: tuple[int, int]


@dataclass(frozen=True, slots=True)
class FrameCapturedEvent:
    """One frame cut by a binding's framer; ``message`` is its decoding when the binding has a definition."""

    frame: Frame
    session: SessionInfo
    message: ParsedMessage | None = None


@dataclass(frozen=True, slots=True)
class UpstreamConnectionFailedEvent:
    """A client's SYN got a RST or no SYN-ACK; ProtoPoke's fields plus the session id."""

    forwarder_name: str
    client_host: str
    client_port: int
    upstream_host: str
    upstream_port: int
    error: str
    session_id: str = ""


@dataclass(frozen=True, slots=True)
class CaptureErrorEvent:
    """Something failed beside the traffic: ``kind`` says what (``ringbuf``, ``plugin``,
    ``interface``, ``file`` ...), ``error`` what happened and what to do."""

    error: str
    kind: str


EVENT_TYPES: dict[type, str] = {
    SessionOpenedEvent: "on_session_opened",
    SessionClosedEvent: "on_session_closed",
    SessionUpdatedEvent: "on_session_updated",
    FrameCapturedEvent: "on_frame_captured",
    UpstreamConnectionFailedEvent: "on_upstream_connection_failed",
    CaptureErrorEvent: "on_capture_error",
}
EVENT_NAMES: tuple[str, ...] = tuple(EVENT_TYPES.values())


def event_name(event: str | type) -> str:
    """Accept a name (``"on_frame_captured"``) or an event class (ProtoPoke style)."""
    name = EVENT_TYPES.get(event) if isinstance(event, type) else event
    if name not in EVENT_NAMES:
        raise ValueError(f"unknown event {event!r}; subscribe to one of {', '.join(EVENT_NAMES)}")
    return name


def is_async_handler(handler: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(getattr(handler, "__call__", None))


@dataclass(eq=False, slots=True)
class _HandlerQueue:
    """One per async handler, shared by all the event names it subscribes to, so that
    it sees every event in publication order whatever the name."""

    handler: Handler
    pending: deque = field(default_factory=deque)
    worker: asyncio.Task | None = None


class EventBus:
    """Publish from any thread; subscribers by event name (see the module docstring for guarantees)."""

    def __init__(self, max_pending: int = 100_000) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        self.max_pending = max_pending
        self.errors = 0
        self.dropped = 0
        # Copy-on-write tuples: publish reads them without taking a lock.
        self._sync: dict[str, tuple[Handler, ...]] = {}
        self._async: dict[str, tuple[_HandlerQueue, ...]] = {}
        self._queues: dict[Handler, _HandlerQueue] = {}  # async handlers subscribed to any name
        self._lock = threading.Lock()  # subscriptions, counters and the undelivered count
        self._undelivered = 0
        self._inbox: deque[tuple[_HandlerQueue, Any]] = deque()
        self._wake_scheduled = False
        self._workers: dict[asyncio.Task, _HandlerQueue] = {}  # touched on the loop thread only
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- subscriptions ---------------------------------------------------------
    def subscribe(self, event: str | type, handler: Handler) -> None:
        """Call ``handler(event_object)`` for every event of that name; ``async def`` handlers run on the bus loop."""
        name = event_name(event)
        if not callable(handler):
            raise TypeError(f"handler for {name} must be callable, got {handler!r}")
        with self._lock:
            if is_async_handler(handler):
                if self._closed:
                    raise RuntimeError(f"the event bus is closed; cannot add the async handler {handler!r}")
                self._start_loop()
                queue = self._queues.setdefault(handler, _HandlerQueue(handler))
                self._async[name] = (*self._async.get(name, ()), queue)
            else:
                self._sync[name] = (*self._sync.get(name, ()), handler)

    def unsubscribe(self, event: str | type, handler: Handler) -> bool:
        """Stop calling ``handler`` for new events (queued ones are still delivered); False if it was not subscribed."""
        name = event_name(event)
        with self._lock:
            sync = self._sync.get(name, ())
            if handler in sync:
                index = sync.index(handler)
                self._sync[name] = sync[:index] + sync[index + 1 :]
                return True
            queue = self._queues.get(handler)
            subs = self._async.get(name, ())
            if queue is None or queue not in subs:
                return False
            index = subs.index(queue)
            self._async[name] = subs[:index] + subs[index + 1 :]
            if not any(queue in subs for subs in self._async.values()):
                del self._queues[handler]  # its worker still delivers what is queued
            return True

    def wants(self, name: str) -> bool:
        """True when someone listens to ``name``: publishers skip building events nobody reads."""
        return bool(self._sync.get(name)) or bool(self._async.get(name))

    # -- publishing ------------------------------------------------------------
    def publish(self, event: Any) -> None:
        """Deliver to sync handlers now and queue for async ones; never raises because of a handler."""
        name = EVENT_TYPES[type(event)]
        for handler in self._sync.get(name, ()):
            try:
                result = handler(event)
            except Exception:  # a subscriber's bug must not stop the sensor
                self._count_error()
                log.exception("%s handler %r raised", name, handler)
                continue
            if result is not None and inspect.isawaitable(result):
                self._count_error()
                getattr(result, "close", lambda: None)()
                log.error("%s handler %r returned an awaitable; subscribe an `async def` handler instead",
                          name, handler)
        queues = self._async.get(name)
        if queues:
            self._queue(queues, event)

    def _queue(self, queues: tuple[_HandlerQueue, ...], event: Any) -> None:
        with self._lock:
            if self._closed or self._loop is None:
                self.dropped += len(queues)
                return
            room = self.max_pending - self._undelivered
            accepted = queues[: max(room, 0)]
            self.dropped += len(queues) - len(accepted)
            self._undelivered += len(accepted)
            for queue in accepted:
                self._inbox.append((queue, event))
            if accepted and not self._wake_scheduled:
                # Under the lock, so close() cannot shut the loop between the check and the call.
                self._wake_scheduled = True
                self._loop.call_soon_threadsafe(self._drain_inbox)

    # -- the loop thread -------------------------------------------------------
    def _start_loop(self) -> None:
        if self._loop is not None:
            return
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="xdpsensor-events", daemon=True)
        self._thread.start()
        ready.wait()

    def _drain_inbox(self) -> None:
        """On the loop: move queued deliveries to their subscriptions and start idle workers."""
        with self._lock:
            self._wake_scheduled = False
        inbox = self._inbox
        while inbox:
            queue, event = inbox.popleft()
            queue.pending.append(event)
            if queue.worker is None:
                queue.worker = asyncio.get_running_loop().create_task(self._deliver(queue))
                self._workers[queue.worker] = queue

    async def _deliver(self, queue: _HandlerQueue) -> None:
        try:
            while queue.pending:
                event = queue.pending.popleft()
                try:
                    await queue.handler(event)
                except Exception:
                    self._count_error()
                    log.exception("%s handler %r raised", EVENT_TYPES[type(event)], queue.handler)
                finally:
                    with self._lock:
                        self._undelivered -= 1
        finally:
            self._workers.pop(queue.worker, None)
            queue.worker = None

    def _count_error(self) -> None:
        with self._lock:
            self.errors += 1

    # -- shutdown --------------------------------------------------------------
    def close(self, timeout: float = 5.0) -> int:
        """Deliver what is queued for async handlers, waiting at most ``timeout`` seconds, then stop the loop.

        Returns the number of deliveries abandoned (also added to ``dropped``).
        Events published afterwards reach sync handlers only.
        """
        with self._lock:
            if self._closed:
                return 0
            self._closed = True
            loop = self._loop
        if loop is None:
            return 0
        finished = asyncio.run_coroutine_threadsafe(self._finish(), loop)
        try:
            finished.result(timeout)
        except TimeoutError:
            finished.cancel()
        try:
            abandoned = asyncio.run_coroutine_threadsafe(self._abandon(), loop).result(timeout=1.0)
        except TimeoutError:  # a handler blocks the loop thread itself (e.g. time.sleep in async def)
            with self._lock:
                abandoned, self._undelivered = self._undelivered, 0
                self.dropped += abandoned
            log.error("event bus loop is blocked by a handler; leaving its thread behind")
            loop.call_soon_threadsafe(loop.stop)
            return abandoned
        loop.call_soon_threadsafe(loop.stop)
        assert self._thread is not None
        self._thread.join()
        loop.close()
        return abandoned

    async def _finish(self) -> None:
        while True:
            self._drain_inbox()
            if not self._workers:
                return
            await asyncio.wait(list(self._workers))

    async def _abandon(self) -> int:
        """Cancel what is still running or queued; count it as dropped."""
        self._drain_inbox()
        with self._lock:
            abandoned = self._undelivered
        workers = list(self._workers.items())
        for worker, queue in workers:
            queue.pending.clear()
            worker.cancel()
        if workers:
            await asyncio.wait([w for w, _ in workers])
        with self._lock:
            self._undelivered = 0
            self.dropped += abandoned
        return abandoned
