"""The Redis stream sink against a real redis-server (unix socket or loopback TCP)."""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import pytest
import redis
from output_inputs import finished, spi_record

from sensor.labredis import LabRedis
from sensor.output.redis_stream import RedisStreamSink, RedisTargetError, parse_redis_target
from sensor.output.spool import Spool


@pytest.fixture
def server():
    # A short directory: unix socket paths are limited to 108 bytes.
    directory = tempfile.mkdtemp(prefix="xsredis")
    lab = LabRedis(directory, tcp=True)
    try:
        yield lab.start()
    finally:
        lab.stop()
        shutil.rmtree(directory)


def record(i: int) -> dict:
    return spi_record(f"session-{i:05d}", cport=10000 + i)


def sink_for(server: LabRedis, tmp_path: Path, *, url: str | None = None, **kwargs) -> RedisStreamSink:
    url = url or f"{server.unix_url}?stream=sessions"
    sep = "&" if "?" in url else "?"
    return RedisStreamSink(parse_redis_target(f"{url}{sep}spool={tmp_path / 'spool.ndjson'}"), **kwargs)


def stream_ids(server: LabRedis, stream: str = "sessions") -> list[str]:
    client = redis.Redis(unix_socket_path=server.socket)
    try:
        return [json.loads(fields[b"record"])["xdpsensor"]["sessionId"] for _, fields in client.xrange(stream)]
    finally:
        client.close()


def ids(indexes) -> list[str]:
    return [record(i)["xdpsensor"]["sessionId"] for i in indexes]


def test_parse_targets():
    tcp = parse_redis_target("redis://:secret@10.0.0.5:6380/sensors?maxlen=5000&spool=/var/spool/x.ndjson")
    assert (tcp.host, tcp.port, tcp.stream, tcp.password, tcp.maxlen, tcp.spool) == (
        "10.0.0.5", 6380, "sensors", "secret", 5000, "/var/spool/x.ndjson")
    unix = parse_redis_target("unix:///run/redis/redis.sock?stream=fleet&spool_max=1000")
    assert (unix.socket, unix.stream, unix.spool_max, unix.host) == ("/run/redis/redis.sock", "fleet", 1000, None)
    assert parse_redis_target("redis://h").stream == "xdpsensor"
    for bad in ("redis:///stream", "redis://h/s?maxlen=many", "redis://h/s?colour=red", "unix://", "redis://h:99999/s"):
        with pytest.raises(RedisTargetError):
            parse_redis_target(bad)


def test_records_arrive_in_order_as_json_documents(server, tmp_path):
    sink = sink_for(server, tmp_path, batch_size=7)
    written = [record(i) for i in range(50)]
    for r in written:
        sink.write(finished(r))
    sink.close()
    client = redis.Redis(unix_socket_path=server.socket)
    entries = client.xrange("sessions")
    client.close()
    assert [json.loads(fields[b"record"]) for _, fields in entries] == written
    assert sink.counters() == {"written": 50, "spooled": 0, "lost": 0, "in_spool": 0}
    assert not (tmp_path / "spool.ndjson").exists()


def test_loopback_tcp_and_approximate_maxlen(server, tmp_path):
    sink = sink_for(server, tmp_path, url=f"{server.tcp_url}/capped?maxlen=100", batch_size=50)
    for i in range(2000):
        sink.write(finished(record(i)))
    sink.close()
    kept = stream_ids(server, "capped")
    assert 100 <= len(kept) < 2000
    assert kept == ids(range(2000 - len(kept), 2000))  # the newest are kept, in order


def test_redis_stopped_mid_run_and_restarted_every_record_once(server, tmp_path):
    sink = sink_for(server, tmp_path, batch_size=10, retry=0)
    for i in range(300):
        sink.write(finished(record(i)))
    sink.flush()
    server.stop()
    for i in range(300, 600):
        sink.write(finished(record(i)))
    sink.flush()
    assert len(sink.spool) > 0 and (tmp_path / "spool.ndjson").exists()
    server.start()
    for i in range(600, 900):
        sink.write(finished(record(i)))
    sink.close()
    assert stream_ids(server) == ids(range(900))
    assert sink.lost == 0 and sink.written == 900 and sink.spooled >= 300
    assert not (tmp_path / "spool.ndjson").exists()


def test_slow_redis_batch_that_arrived_late_is_not_sent_twice(server, tmp_path):
    # A paused server keeps the connection open: the client times out with the
    # batch sent but unanswered; the server runs it when resumed.
    sink = sink_for(server, tmp_path, batch_size=25, retry=0, timeout=0.3)
    for i in range(25):
        sink.write(finished(record(i)))
    server.pause()
    for i in range(25, 50):
        sink.write(finished(record(i)))  # the 50th write sends a batch that times out
    assert sink.spooled == 25
    server.resume()
    for i in range(50, 60):
        sink.write(finished(record(i)))
    for _ in range(100):  # a resumed server may still be too slow for a 0.3 s timeout on a loaded machine
        sink.flush()
        if not len(sink.spool):
            break
        time.sleep(0.05)
    sink.close()
    assert stream_ids(server) == ids(range(60))
    assert sink.lost == 0


def test_full_spool_counts_what_it_loses(server, tmp_path):
    server.stop()
    sink = sink_for(server, tmp_path, batch_size=5, retry=0, timeout=0.5)
    line = len(json.dumps(record(0), separators=(",", ":"))) + 8
    sink.spool.max_bytes = 100 + 20 * line  # room for about 20 of the 100 records
    for i in range(100):
        sink.write(finished(record(i)))
    sink.flush()
    assert 0 < sink.lost < 100
    server.start()
    sink.close()
    arrived = stream_ids(server)
    assert len(arrived) + sink.lost == 100
    assert arrived == sorted(arrived) and len(set(arrived)) == len(arrived)  # in order, each once
    assert arrived == ids(range(len(arrived)))  # the oldest were kept, the newest lost


def test_spool_left_at_exit_is_replayed_by_the_next_start(server, tmp_path):
    server.stop()
    first = sink_for(server, tmp_path, batch_size=10, retry=0, timeout=0.5)
    for i in range(40):
        first.write(finished(record(i)))
    first.close()
    assert Spool(tmp_path / "spool.ndjson", 10**9, "x").records == 40
    server.start()
    second = sink_for(server, tmp_path, batch_size=10)
    assert second.writer == first.writer  # the ack key of the run that spooled
    for i in range(40, 55):
        second.write(finished(record(i)))
    second.close()
    assert stream_ids(server) == ids(range(55))


def test_unreachable_at_start_spools_without_error(tmp_path):
    target = parse_redis_target(f"unix://{tmp_path}/nothing.sock?spool={tmp_path / 's.ndjson'}")
    sink = RedisStreamSink(target, batch_size=2, timeout=0.5)
    for i in range(4):
        sink.write(finished(record(i)))
    sink.close()
    assert (sink.written, sink.spooled, sink.lost) == (0, 4, 0)
    assert [seq for seq, _ in Spool(tmp_path / "s.ndjson", 10**9, "x").read()] == [1, 2, 3, 4]


def test_read_command_writes_to_the_stream(server, tmp_path, shared_testdata):
    from click.testing import CliRunner

    from sensor.cli import main
    pcap = shared_testdata / "arkime-pcap" / "http-301-get.pcap"
    spool = tmp_path / "spool.ndjson"
    result = CliRunner().invoke(main, ["read", str(pcap), "--no-prefilter", "-o",
                                       f"{server.unix_url}?stream=cli&spool={spool}"])
    assert result.exit_code == 0, result.output
    client = redis.Redis(unix_socket_path=server.socket)
    (entry,) = client.xrange("cli")
    client.close()
    document = json.loads(entry[1][b"record"])
    assert (document["destination"]["port"], document["network"]["packets"]) == (80, 8)  # Arkime's .test values
    assert not spool.exists()
