"""Framing and decoding throughput on one core, each beside a baseline from the same run.

    python -m bench.bench_framing_protocol

- decode: ProtoPoke's chat example definition on a mix of LoginRequest and
  TLV Message frames; baseline: a hand-written struct decode of the same frames.
- framing: ``length_prefix`` over a long stream fed in 4 KiB reads; baseline: a
  bare loop that reads each length and slices the frame out, no Frame objects.
"""

from __future__ import annotations

import random
import struct
import sys
from collections.abc import Callable
from pathlib import Path

from bench.timing import best_rate
from sensor.flows.state import Direction
from sensor.framing import create_framer
from sensor.models import Frame
from sensor.protocol import DefinitionDecoder, load_definition_file

CHAT = Path(__file__).resolve().parents[1] / ".." / "shared" / "testdata" / "protopoke-protocols" / "chat.proto.yaml"
DECODE_TARGET = 150_000
ROUNDS = 5


def chat_frames(count: int) -> list[Frame]:
    rng = random.Random(1)
    frames = []
    for number in range(count):
        if number % 2:
            user = bytes(rng.choice(b"abcdefgh") for _ in range(rng.randint(3, 12)))
            password = rng.randbytes(rng.randint(6, 16))
            data = struct.pack(">BH", 1, len(user)) + user + struct.pack(">H", len(password)) + password
        else:
            text = bytes(rng.choice(b"hello world ") for _ in range(rng.randint(5, 40)))
            attrs = struct.pack(">HHI", 1, 4, rng.randrange(100)) + struct.pack(">HH", 3, len(text)) + text
            data = struct.pack(">BI", 0x10, 5 + len(attrs)) + attrs
        frames.append(Frame.create("bench", Direction.CLIENT_TO_SERVER, data, number + 1))
    return frames


def hand_decode(frames: list[Frame]) -> None:
    """What a programmer would write for these two messages: struct, slices, a dict per frame."""
    head, u16, u32, tlv_head = struct.Struct(">BH"), struct.Struct(">H"), struct.Struct(">I"), struct.Struct(">HH")
    for frame in frames:
        data = frame.raw_bytes
        if data[0] == 1:
            _, user_len = head.unpack_from(data, 0)
            user = data[3 : 3 + user_len].decode("utf8", "replace")
            (pass_len,) = u16.unpack_from(data, 3 + user_len)
            start = 5 + user_len
            out = {"username": user, "password": data[start : start + pass_len]}
        else:
            (total,) = u32.unpack_from(data, 1)
            offset, end, attrs = 5, min(total, len(data)), {}
            while offset + 4 <= end:
                tag, size = tlv_head.unpack_from(data, offset)
                value = data[offset + 4 : offset + 4 + size]
                attrs[tag] = u32.unpack(value)[0] if tag == 1 else value.decode("utf8", "replace")
                offset += 4 + size
            out = {"attributes": attrs}
        del out


def bench_decode() -> None:
    if not CHAT.is_file():
        print(f"decode: skipped, chat example not found at {CHAT}")
        return
    decoder = DefinitionDecoder(load_definition_file(CHAT))
    frames = chat_frames(20_000)
    decode = decoder.decode
    errors = [m.error for m in map(decode, frames) if m.error or m.message_type not in ("LoginRequest", "Message")]
    if errors:
        sys.exit(f"decode: frames did not decode cleanly: {errors[:3]}")

    def run() -> None:
        for frame in frames:
            decode(frame)

    rate, _ = best_rate(len(frames), run, ROUNDS)
    baseline, _ = best_rate(len(frames), lambda: hand_decode(frames), ROUNDS)
    verdict = "meets" if rate >= DECODE_TARGET else "MISSES"
    print(f"decode  chat (LoginRequest + TLV Message): {rate:12,.0f} frames/s  ({verdict} the {DECODE_TARGET:,}/s target)")
    print(f"        baseline hand-written struct decode: {baseline:12,.0f} frames/s  (DSL at {rate / baseline:.0%} of it)")


def length_prefixed_stream(size: int) -> tuple[bytes, int]:
    rng = random.Random(2)
    parts, total, count = [], 0, 0
    while total < size:
        payload = rng.randbytes(rng.randint(16, 512))
        parts.append(struct.pack(">I", len(payload)) + payload)
        total += 4 + len(payload)
        count += 1
    return b"".join(parts), count


def slice_frames(stream: bytes) -> int:
    """Baseline: walk the lengths and slice each frame out, nothing else."""
    offset, count, end = 0, 0, len(stream)
    while offset + 4 <= end:
        total = 4 + int.from_bytes(stream[offset : offset + 4], "big")
        stream[offset : offset + total]
        offset += total
        count += 1
    return count


def bench_framing() -> None:
    stream, expected = length_prefixed_stream(16 * 1024 * 1024)
    chunks = [stream[i : i + 4096] for i in range(0, len(stream), 4096)]

    def run() -> None:
        framer = create_framer("length_prefix", "bench", Direction.CLIENT_TO_SERVER)
        count = 0
        for chunk in chunks:
            count += len(framer.feed(chunk))
        if count != expected:
            sys.exit(f"framing: got {count} frames, expected {expected}")

    rate, _ = best_rate(len(stream), run, ROUNDS)
    baseline, _ = best_rate(len(stream), lambda: slice_frames(stream), ROUNDS)
    frames_per_second = rate / len(stream) * expected
    print(f"framing length_prefix, 4 KiB reads:        {rate / 1e6:12,.1f} MB/s      ({frames_per_second:,.0f} frames/s)")
    print(f"        baseline bare slicing loop:         {baseline / 1e6:12,.1f} MB/s      (framer at {rate / baseline:.0%} of it)")


def main() -> None:
    print(f"python {sys.version.split()[0]}, best of {ROUNDS} runs, one core")
    bench_decode()
    bench_framing()


if __name__ == "__main__":
    main()
