"""Records per second into each output, beside the SPI JSON lines output, in the same run.

Run: python -m bench.bench_outputs [--sessions N] [--packets-per-session N] [--repeat N]

The records are real: a synthetic capture of N short TCP sessions (the
packet/flow bench's) goes through the pipeline once, and the same finished
sessions are then written to every sink (write + the writer's flush), each
into a fresh file, store or stream. The SQLite store and the Redis stream
(a local redis-server on a unix socket, started and stopped here) must keep up
with 10k sessions/s. The pcap output and the arkime output's packet traits
work on the capture thread, so they are measured as the whole pipeline with
them beside the pipeline without.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.bench_packet_flows import build_capture
from bench.timing import best_rate
from sensor.arkime.runtime import PluginRuntime
from sensor.flows.table import SessionTable
from sensor.hooks import FinishedCollector, FinishedSession
from sensor.labredis import LabRedis
from sensor.output import Output
from sensor.output.arkime_bulk import ArkimeBulkWriter
from sensor.output.jsonlines import JsonLinesWriter
from sensor.output.pcap import PcapSink
from sensor.output.redis_stream import RedisStreamSink, parse_redis_target
from sensor.output.sqlite import SqliteStore
from sensor.pipeline import Pipeline

KEEP_UP = 10_000  # sessions/s the store and Redis must take


def run_pipeline(capture: list[tuple[float, bytes]], listeners: list) -> list[FinishedSession]:
    collector = FinishedCollector()
    pipeline = Pipeline(PluginRuntime(), SessionTable(max_sessions=1_000_000), [*listeners, collector])
    for ts, frame in capture:
        pipeline.feed(frame, ts)
    pipeline.close()
    for listener in listeners:
        listener.close()
    return collector.finished


def write_all(open_sink: Callable[[int], Output], finished: list[FinishedSession]) -> Callable[[], None]:
    runs = iter(range(1_000_000))

    def job() -> None:
        sink = open_sink(next(runs))
        for done in finished:
            sink.write(done)
        sink.flush()
        sink.close()
    return job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--packets-per-session", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    capture = build_capture(args.sessions * args.packets_per_session, args.sessions)
    tmp = Path(tempfile.mkdtemp(prefix="xsbench"))
    try:
        finished = run_pipeline(capture, [])
        n = len(finished)
        print(f"{n} sessions of {args.packets_per_session} packets; best of {args.repeat} runs")
        print("capture thread (pipeline, records/s):")
        base, _ = best_rate(n, lambda: run_pipeline(capture, []), args.repeat)
        print(f"  {'pipeline alone':28s} {base:10,.0f}")
        for name, make in (("pipeline + pcap output", lambda: PcapSink(f"{tmp / 'pcap'}?node=bench")),
                           ("pipeline + arkime traits", lambda: ArkimeBulkWriter(f"{tmp / 'traits.ndjson'}"))):
            rate, _ = best_rate(n, lambda make=make: run_pipeline(capture, [make()]), args.repeat)
            print(f"  {name:28s} {rate:10,.0f}  ({rate / base:.2f}x the pipeline alone)")
            shutil.rmtree(tmp / "pcap", ignore_errors=True)
        print("output writer thread (write + flush, records/s):")
        with LabRedis(tmp / "redis") as redis:
            sinks = {
                "spi (JSON lines, baseline)": lambda i: JsonLinesWriter(str(tmp / f"spi{i}.jsonl")),
                "sqlite (batched)": lambda i: SqliteStore(tmp / f"store{i}.db"),
                "redis stream (unix socket)": lambda i: RedisStreamSink(parse_redis_target(
                    f"{redis.unix_url}?stream=bench{i}&spool={tmp / 'spool.ndjson'}")),
                "arkime bulk NDJSON": lambda i: ArkimeBulkWriter(str(tmp / f"bulk{i}.ndjson")),
            }
            rates = {}
            for name, open_sink in sinks.items():
                rates[name], _ = best_rate(n, write_all(open_sink, finished), args.repeat)
            spi = rates["spi (JSON lines, baseline)"]
            for name, rate in rates.items():
                verdict = ""
                if name.startswith(("sqlite", "redis")):
                    verdict = f"  keeps up with {KEEP_UP:,}/s: {'yes' if rate >= KEEP_UP else 'NO'}"
                print(f"  {name:28s} {rate:10,.0f}  ({rate / spi:.2f}x spi){verdict}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
