"""In-order delivery of one direction of a TCP stream, with bounded memory.

Rules (Arkime's, made explicit):
- The stream starts at SYN+1, at a sequence number set with `start()` (the
  table uses the ACK of a SYN-ACK seen first), or else at the first payload seen
  (mid-stream pickup). Data that arrives later but belongs before the start is
  treated as a retransmit and dropped.
- Retransmits and overlaps are trimmed: each byte is delivered at most once.
- Segments ahead of the expected sequence number wait in a queue. When the
  queue holds more than `max_segments` segments or `max_bytes` bytes, the
  reassembler gives up: it drops the queue, becomes `incomplete` and delivers
  nothing more (the caller tags the session `incomplete-tcp`).
- Nothing past a gap is ever delivered, not even by `flush()`: parsers must not
  see two byte ranges glued together as if they were contiguous.
Sequence arithmetic is modulo 2**32, so streams may wrap.
"""
from __future__ import annotations

SEQ_MASK = 0xFFFFFFFF
_HALF = 1 << 31


def seq_diff(a: int, b: int) -> int:
    """a - b in sequence space, as a signed number in [-2**31, 2**31)."""
    return ((a - b + _HALF) & SEQ_MASK) - _HALF


class TcpReassembler:
    """Turn the segments of one direction into in-order byte chunks."""

    __slots__ = (
        "max_segments", "max_bytes", "started", "start_seq", "next_seq", "incomplete", "gaps",
        "retransmitted_bytes", "discarded_bytes", "queued_bytes", "_queue",
    )

    def __init__(self, max_segments: int = 256, max_bytes: int = 1 << 20) -> None:
        self.max_segments = max_segments
        self.max_bytes = max_bytes
        self.started = False
        self.start_seq = 0  # sequence number of the stream's first byte, once started
        self.next_seq = 0  # sequence number of the next byte to deliver, once started
        self.incomplete = False
        self.gaps = 0  # holes given up on (queue overflow, or data still waiting at flush)
        self.retransmitted_bytes = 0  # bytes dropped because they were already delivered
        self.discarded_bytes = 0  # bytes dropped because they sat behind a gap
        self._queue: dict[int, bytes] = {}
        self.queued_bytes = 0  # bytes waiting behind a gap; 0 exactly when nothing waits

    @property
    def queued_segments(self) -> int:
        return len(self._queue)

    def start(self, seq: int) -> None:
        """Expect the stream at `seq` unless it has already started."""
        if not self.started:
            self.started = True
            self.start_seq = self.next_seq = seq & SEQ_MASK

    def feed(self, seq: int, payload: bytes, syn: bool = False) -> list[bytes]:
        """Take one segment; return the bytes that became deliverable, in order.

        `syn=True` marks a SYN segment: it consumes one sequence number, so its
        payload (TCP Fast Open) starts at seq+1 and so does the stream.
        """
        if self.incomplete:
            return []
        if syn:
            seq = (seq + 1) & SEQ_MASK
            self.start(seq)
        if not payload:
            return []
        if not self.started:
            self.start(seq)
        if seq == self.next_seq:  # the common case: exactly the next bytes (SessionTable inlines it)
            self.next_seq = (seq + len(payload)) & SEQ_MASK
            chunks = [payload]
        else:
            offset = seq_diff(seq, self.next_seq)
            if offset > 0:
                self._enqueue(seq, payload)
                return []
            chunks = []
            self._accept(offset, payload, chunks)
        if self._queue:
            self._drain(chunks)
        return chunks

    def flush(self) -> int:
        """End of stream: drop what waits behind a gap and return how many bytes that was."""
        dropped = self.queued_bytes
        if self._queue:
            self.gaps += 1
            self.discarded_bytes += dropped
            self._queue.clear()
            self.queued_bytes = 0
        return dropped

    def _accept(self, offset: int, payload: bytes, chunks: list[bytes]) -> None:
        """Deliver a segment starting `offset` (<= 0) bytes from next_seq, minus what was already delivered."""
        if len(payload) + offset <= 0:
            self.retransmitted_bytes += len(payload)
            return
        if offset:
            self.retransmitted_bytes -= offset
            payload = payload[-offset:]
        chunks.append(payload)
        self.next_seq = (self.next_seq + len(payload)) & SEQ_MASK

    def _enqueue(self, seq: int, payload: bytes) -> None:
        queued = self._queue.get(seq)
        if queued is not None:
            if len(queued) >= len(payload):
                self.retransmitted_bytes += len(payload)
                return
            self.queued_bytes -= len(queued)
        self._queue[seq] = payload
        self.queued_bytes += len(payload)
        if len(self._queue) > self.max_segments or self.queued_bytes > self.max_bytes:
            self.flush()
            self.incomplete = True

    def _drain(self, chunks: list[bytes]) -> None:
        """Deliver queued segments that the stream has now reached."""
        queue = self._queue
        while queue:
            next_seq = self.next_seq
            payload = queue.pop(next_seq, None)
            offset = 0
            if payload is None:
                # A queued segment may overlap the start of the stream: take it, trimmed.
                seq = next((s for s in queue if seq_diff(s, next_seq) < 0), None)
                if seq is None:
                    return
                payload = queue.pop(seq)
                offset = seq_diff(seq, next_seq)
            self.queued_bytes -= len(payload)
            self._accept(offset, payload, chunks)
