"""The fleet sink: every record appended to a Redis stream, one JSON document per entry.

Many sensors can feed one stream that Logstash, Vector or any consumer group
reads. Entries are `XADD STREAM MAXLEN ~ N * record <json>`, sent in batches.
Each batch is one server-side script call (atomic, one round trip: a MULTI/EXEC
costs a reply per entry) that also stores the sequence number of its last
record under `STREAM:ack:WRITER`: after a failure the sink reads that key to
learn whether the batch it was unsure of arrived, so nothing is sent twice.

When Redis is down or slow (a reply later than `timeout`), records go to a
bounded local spool file, in order, and are replayed before anything newer
once Redis answers again (tried every `retry` seconds). A record that does not
fit in the spool is counted in `lost` and logged; a spool left at exit is
replayed by the next start.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from sensor.errors import SensorError
from sensor.hooks import FinishedSession
from sensor.output.spool import Spool, SpoolError

log = logging.getLogger(__name__)

DEFAULT_STREAM = "xdpsensor"
DEFAULT_MAXLEN = 1_000_000  # entries kept (approximately); 0 keeps all
DEFAULT_SPOOL_MAX = 256 * 1024 * 1024
ACK_TTL = 7 * 24 * 3600  # seconds an idle writer's ack key is kept
USAGE = ("write redis://HOST:PORT/STREAM or unix:///PATH.sock?stream=STREAM, with optional "
         "?maxlen=N&spool=PATH&spool_max=BYTES")

_encode = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode

# KEYS: stream, ack key; ARGV: maxlen (0: no trimming), last sequence number, ack TTL, records...
# A script runs atomically: the entries and the ack arrive together or not at all.
APPEND_SCRIPT = """
local maxlen = tonumber(ARGV[1])
for i = 4, #ARGV do
  if maxlen > 0 then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'record', ARGV[i])
  else
    redis.call('XADD', KEYS[1], '*', 'record', ARGV[i])
  end
end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return #ARGV - 3
"""


class RedisTargetError(SensorError, ValueError):
    """An `-o redis://` or `unix://` value that cannot be used; the message says what to write."""


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where and how to write: a TCP host and port or a unix socket, the stream,
    its approximate length bound and the spool."""

    stream: str
    host: str | None = None
    port: int = 6379
    socket: str | None = None
    username: str | None = None
    password: str | None = None
    maxlen: int = DEFAULT_MAXLEN
    spool: str = ""
    spool_max: int = DEFAULT_SPOOL_MAX

    def describe(self) -> str:
        return f"{self.socket or f'{self.host}:{self.port}'} stream {self.stream}"


def parse_redis_target(spec: str) -> RedisTarget:
    """`redis://[USER:PASS@]HOST[:PORT]/STREAM[?opts]` or `unix:///PATH[?stream=S&opts]`;
    options: maxlen, spool (file), spool_max (bytes)."""
    parts = urlsplit(spec)
    options = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = set(options) - {"stream", "maxlen", "spool", "spool_max"}
    if unknown:
        raise RedisTargetError(f"unknown option(s) {', '.join(sorted(unknown))} in {spec!r}: {USAGE}")
    if parts.scheme == "redis":
        if not parts.hostname:
            raise RedisTargetError(f"no host in {spec!r}: {USAGE}")
        stream = unquote(parts.path.lstrip("/")) or options.get("stream", DEFAULT_STREAM)
        try:
            port = parts.port or 6379
        except ValueError:
            raise RedisTargetError(f"bad port in {spec!r}: {USAGE}") from None
        where = {"host": parts.hostname, "port": port}
    elif parts.scheme == "unix":
        if not parts.path:
            raise RedisTargetError(f"no socket path in {spec!r}: {USAGE}")
        stream = options.get("stream", DEFAULT_STREAM)
        where = {"socket": unquote(parts.path)}
    else:
        raise RedisTargetError(f"{spec!r} is not a Redis address: {USAGE}")
    try:
        maxlen = int(options.get("maxlen", DEFAULT_MAXLEN))
        spool_max = int(options.get("spool_max", DEFAULT_SPOOL_MAX))
    except ValueError:
        raise RedisTargetError(f"maxlen and spool_max must be whole numbers in {spec!r}") from None
    if maxlen < 0 or spool_max < 1:
        raise RedisTargetError(f"maxlen must be >= 0 and spool_max >= 1 in {spec!r}")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stream)
    return RedisTarget(stream=stream, username=unquote(parts.username) if parts.username else None,
                       password=unquote(parts.password) if parts.password else None, maxlen=maxlen,
                       spool=options.get("spool") or f"xdpsensor-spool-{safe}.ndjson", spool_max=spool_max,
                       **where)


class RedisUnavailable(Exception):
    """Redis did not take a batch (down, slow, or refusing it)."""


class RedisStreamSink:
    """Appends records to a Redis stream; spools them while Redis cannot take them.

    Counters: `written` (in the stream), `spooled` (went through the spool),
    `lost` (did not fit in the spool). Nothing connects until the first flush."""

    def __init__(self, target: RedisTarget, batch_size: int = 500, max_delay: float = 0.5,
                 retry: float = 1.0, timeout: float = 2.0) -> None:
        if batch_size < 1 or max_delay < 0 or retry < 0 or timeout <= 0:
            raise ValueError("batch_size >= 1, max_delay and retry >= 0, timeout > 0")
        self.target = target
        self.batch_size = batch_size
        self.max_delay = max_delay
        self.retry = retry
        self.spool = Spool(target.spool, target.spool_max, writer=uuid.uuid4().hex)
        self.writer = self.spool.writer
        self.ack_key = f"{target.stream}:ack:{self.writer}"
        self._seq = self.spool.last_seq
        self._acked: int | None = None  # None: not known (a batch may or may not have arrived)
        self._pending: list[tuple[int, str]] = []
        self._last_flush = time.monotonic()
        self._retry_at = 0.0
        self._down_reason: str | None = None
        self.written = 0
        self.spooled = 0
        self.lost = 0
        self._client = redis.Redis(host=target.host or "localhost", port=target.port,
                                   unix_socket_path=target.socket, username=target.username,
                                   password=target.password, socket_timeout=timeout,
                                   socket_connect_timeout=timeout,
                                   retry=Retry(NoBackoff(), 0))  # the spool is the retry: never block on one
        self._append = self._client.register_script(APPEND_SCRIPT)

    def write(self, finished: FinishedSession) -> None:
        """Queue one record (frames and messages are not sent); sent when the batch is
        full or `max_delay` has passed since the last flush."""
        self._seq += 1
        payload = _encode(finished.record)
        if self._down_reason is not None or len(self.spool):
            self._to_spool([(self._seq, payload)])  # behind what waits in the spool
        else:
            self._pending.append((self._seq, payload))
        if len(self._pending) >= self.batch_size or time.monotonic() - self._last_flush >= self.max_delay:
            self.flush()

    def flush(self) -> None:
        """Send what is queued; replay the spool first when Redis is back."""
        self._last_flush = time.monotonic()
        pending, self._pending = self._pending, []
        if pending:
            try:
                self._send(pending)
            except RedisUnavailable as exc:
                self._went_down(exc)
                self._to_spool(pending)
        if (len(self.spool) or self._down_reason is not None) and time.monotonic() >= self._retry_at:
            self._replay()

    def reopen(self) -> None:
        """Nothing to reopen: the spool is opened when needed."""

    def close(self) -> None:
        """Send what is queued; what Redis cannot take now stays in the spool for the next start."""
        try:
            self.flush()
        finally:
            self.spool.close()
            self._client.close()
            if len(self.spool):
                log.warning("redis %s: %d record(s) kept in the spool %s; the next start replays them",
                            self.target.describe(), len(self.spool), self.spool.path)

    def counters(self) -> dict[str, int]:
        return {"written": self.written, "spooled": self.spooled, "lost": self.lost,
                "in_spool": len(self.spool)}

    # -- delivery -------------------------------------------------------------
    def _send(self, batch: list[tuple[int, str]]) -> None:
        """One script call: the entries and the writer's ack; all of it or nothing."""
        try:
            self._append(keys=[self.target.stream, self.ack_key],
                         args=[self.target.maxlen, batch[-1][0], ACK_TTL, *(payload for _, payload in batch)])
        except redis.RedisError as exc:
            self._acked = None
            raise RedisUnavailable(str(exc) or type(exc).__name__) from exc
        self._acked = batch[-1][0]
        self.written += len(batch)

    def _replay(self) -> None:
        """Send the spool, oldest first, skipping what the ack says already arrived."""
        try:
            if self._acked is None:
                raw = self._client.get(self.ack_key)
                self._acked = int(raw) if raw is not None else 0
            batch: list[tuple[int, str]] = []
            for seq, payload in self.spool.read():
                if seq <= self._acked:
                    continue
                batch.append((seq, payload))
                if len(batch) >= self.batch_size:
                    self._send(batch)
                    batch = []
            if batch:
                self._send(batch)
        except (RedisUnavailable, redis.RedisError) as exc:
            self._went_down(exc)
            return
        except SpoolError as exc:
            log.error("redis %s: %s", self.target.describe(), exc)
            return
        log.warning("redis %s: reachable again, spool replayed (%d record(s) lost to a full spool so far)",
                    self.target.describe(), self.lost)
        self.spool.clear()
        self._down_reason = None

    def _went_down(self, exc: Exception) -> None:
        self._retry_at = time.monotonic() + self.retry
        if self._down_reason is None:
            log.warning("redis %s unreachable (%s): spooling to %s", self.target.describe(), exc, self.spool.path)
        self._down_reason = str(exc)

    def _to_spool(self, entries: list[tuple[int, str]]) -> None:
        for seq, payload in entries:
            try:
                kept = self.spool.append(seq, payload)
            except SpoolError as exc:
                kept = False
                log.error("redis %s: %s", self.target.describe(), exc)
            if kept:
                self.spooled += 1
            else:
                self.lost += 1
                if self.lost == 1 or self.lost % 10_000 == 0:
                    log.error("redis %s: spool %s full (%d bytes): %d record(s) lost so far",
                              self.target.describe(), self.spool.path, self.spool.max_bytes, self.lost)
