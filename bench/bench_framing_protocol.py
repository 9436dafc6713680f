"""Framing and decoding throughput on one core, each beside a baseline from the same run.

    python -m bench.bench_framing_protocol

- decode: ProtoPoke's chat example definition on a mix of LoginRequest and
  TLV Message frames; baseline: a hand-written struct decode of the same frames.
- framing: ``length_prefix`` over a long stream fed in 4 KiB reads; baseline: a
  bare loop that reads each length and slices the frame out, no Frame objects.
- API decode: ``SensorAPI.decode_session_frames`` on a 10,000-frame session while
  the registry also holds 20 more sessions of 1,000 frames each (filled through
  the real pipeline, so every frame and message is alive as in a running
  sensor); baselines: ProtoPoke's own ``DefinitionBasedDecoder`` on the same
  frames in the same process (target: >= 5x it), and the same decoder in a
  plain loop with the GC left as it is. ProtoPoke is not on PyPI: point
  ``PROTOPOKE_SRC`` at a checkout of github.com/beaujeant/ProtoPoke (the commit
  in ../shared/specs/protopoke-api.md), or its row is skipped.
"""

from __future__ import annotations

import gc
import os
import random
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.timing import best_rate
from sensor import gcpolicy
from sensor.api import SensorAPI
from sensor.arkime.runtime import PluginRuntime
from sensor.bindings import parse_bindings
from sensor.events import EventBus
from sensor.flows.state import Direction
from sensor.flows.table import SessionTable
from sensor.framing import create_framer
from sensor.models import Frame
from sensor.pipeline import Pipeline
from sensor.protocol import DefinitionDecoder, load_definition_file
from sensor.registry import SessionRegistry

CHAT = Path(__file__).resolve().parents[1] / ".." / "shared" / "testdata" / "protopoke-protocols" / "chat.proto.yaml"
DECODE_TARGET = 150_000
ROUNDS = 5
API_FRAMES, OTHER_SESSIONS, OTHER_FRAMES = 10_000, 20, 1_000
API_TARGET = 5.0  # times ProtoPoke's own decoder
_ETH_IP_UDP = struct.Struct("!6s6sHBBHHHBBH4s4sHHHH")


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


def udp_frame(client: int, payload: bytes, port: int = 9000) -> bytes:
    """An Ethernet/IPv4/UDP frame from 10.0.0.<client> to 192.168.0.1:`port`."""
    src, dst = struct.pack("!I", 0x0A000000 + client), struct.pack("!I", 0xC0A80001)
    return _ETH_IP_UDP.pack(b"\x02" * 6, b"\x04" * 6, 0x0800, 0x45, 0, 28 + len(payload), 1, 0x4000, 64, 17, 0,
                            src, dst, 20000 + client, port, 8 + len(payload), 0) + payload


def filled_registry() -> tuple[SessionRegistry, str]:
    """A registry holding one API_FRAMES-frame chat session and OTHER_SESSIONS smaller ones,
    fed through the pipeline (each UDP datagram is one frame, decoded as captured)."""
    bindings = parse_bindings([{"name": "chat", "match": {"ports": ["udp:9000"]},
                                "protocol_definition": str(CHAT)}], Path("."))
    registry = SessionRegistry(bindings, EventBus(), max_frames_per_session=API_FRAMES)
    pipeline = Pipeline(PluginRuntime(), SessionTable(), [registry])
    payloads = [frame.raw_bytes for frame in chat_frames(API_FRAMES)]
    start = time.time()
    for client, count in [(1, API_FRAMES)] + [(2 + n, OTHER_FRAMES) for n in range(OTHER_SESSIONS)]:
        for number, payload in enumerate(payloads[:count]):
            pipeline.feed(udp_frame(client, payload), start + number * 1e-6)
    big = next(session for session in registry.all_sessions() if len(session.frames) == API_FRAMES)
    return registry, big.id


def protopoke_decode(frames: list[Frame]) -> Callable[[], object] | None:
    """ProtoPoke's decoder over its own Frame objects with the same bytes, or None when it is not importable."""
    source = os.environ.get("PROTOPOKE_SRC")
    if source:
        sys.path.insert(0, source)
    try:
        from protopoke.models import Direction as PPDirection
        from protopoke.models import Frame as PPFrame
        from protopoke.protocol.definition import load_protocol_file
        from protopoke.protocol.parser import DefinitionBasedDecoder
    except ImportError:
        return None
    decode = DefinitionBasedDecoder(load_protocol_file(str(CHAT))).decode
    theirs = [PPFrame.create(session_id=f.session_id, direction=PPDirection.CLIENT_TO_SERVER,
                             raw_bytes=f.raw_bytes, sequence_number=f.sequence_number) for f in frames]
    return lambda: [decode(frame) for frame in theirs]


def interleaved_rates(units: int, jobs: dict[str, Callable[[], object]], rounds: int, block: int = 5) -> dict[str, float]:
    """Best rate of each job over `block` calls in a row, the jobs taking turns so that all see
    the same background load. Calls in a row pay for the collections their own garbage
    triggers, as calls in a long-running sensor do (best-of-single-calls would skip them)."""
    best = dict.fromkeys(jobs, float("inf"))
    for _ in range(rounds):
        for name, job in jobs.items():
            began = time.perf_counter()
            for _ in range(block):
                job()
            best[name] = min(best[name], (time.perf_counter() - began) / block)
    return {name: units / seconds for name, seconds in best.items()}


def bench_api_decode() -> None:
    if not CHAT.is_file():
        print(f"api decode: skipped, chat example not found at {CHAT}")
        return
    registry, session_id = filled_registry()
    api = SensorAPI(registry)
    frames = api.get_frames(session_id)
    decoder = registry.binding("chat").decoder
    messages = api.decode_session_frames(session_id)
    if [m.message_type for m in messages] != [m.message_type for m in registry.get(session_id).messages]:
        sys.exit("api decode: decode_session_frames disagrees with the messages decoded at capture")
    jobs: dict[str, Callable[[], object]] = {
        "api": lambda: api.decode_session_frames(session_id),
        "loop": lambda: [decoder.decode(frame) for frame in frames],
    }
    theirs = protopoke_decode(frames)
    if theirs is not None:
        jobs["protopoke"] = theirs
    tracked = len(gc.get_objects())
    rates = interleaved_rates(len(frames), jobs, 3)
    gcpolicy.freeze_startup()  # what a frozen registry would give the plain loop, then back
    frozen = interleaved_rates(len(frames), {"loop": jobs["loop"]}, 3)["loop"]
    gc.unfreeze()
    print(f"api decode_session_frames, {len(frames):,} frames, {tracked:,} objects tracked by the GC:")
    print(f"        SensorAPI.decode_session_frames:    {rates['api']:12,.0f} frames/s")
    print(f"        baseline same decoder, plain loop:  {rates['loop']:12,.0f} frames/s  (API at {rates['api'] / rates['loop']:.1f}x)")
    print(f"        plain loop, all live objects frozen: {frozen:11,.0f} frames/s")
    if theirs is None:
        print("        baseline ProtoPoke: skipped, set PROTOPOKE_SRC to a ProtoPoke checkout")
        return
    ratio = rates["api"] / rates["protopoke"]
    verdict = "meets" if ratio >= API_TARGET else "MISSES"
    print(f"        baseline ProtoPoke DefinitionBasedDecoder: {rates['protopoke']:5,.0f} frames/s  "
          f"(API at {ratio:.1f}x: {verdict} the {API_TARGET:.0f}x target)")


def main() -> None:
    print(f"python {sys.version.split()[0]}, best of {ROUNDS} runs, one core")
    bench_decode()
    bench_framing()
    bench_api_decode()


if __name__ == "__main__":
    main()
