"""Reading and expiring the kernel flow table with a million flows (root),
the batch map operations beside the per-key ones in the same run.

    sudo .venv/bin/python -m bench.bench_expiry [--flows 1000000] [--ended 10000]

A program with a table of 2^20 flows is filled from userspace (batch
update): `--flows` live UDP flows, `--ended` of them idle past Arkime's UDP
timeout. Rows:
- a full read of the table: per key (BPF_MAP_GET_NEXT_KEY + LOOKUP, the
  baseline) and in batches (BPF_MAP_LOOKUP_BATCH, what `flows()` does);
- one `Pipeline.expire_kernel` pass: every flow checked, the ended ones
  recorded through the plugin runtime and deleted in batches;
- deleting flows: per key (the baseline) and in batches.
"""
from __future__ import annotations

import argparse
import ctypes as ct
import time

from sensor.arkime.runtime import PluginRuntime
from sensor.flows.table import SessionTable
from sensor.kernel.contract import IPPROTO_UDP, FlowKey, FlowState, Verdict
from sensor.kernel.program import FLOW_BATCH, ProgramOptions, SensorProgram
from sensor.pipeline import Pipeline

ENTRIES = 1 << 20


def _key(n: int) -> FlowKey:
    key = FlowKey(proto=IPPROTO_UDP, family=4)
    key.addr[0:4] = (10, n >> 16 & 255, n >> 8 & 255, n & 255)
    key.addr[16:20] = (10, 255, 0, 1)
    key.port[0], key.port[1] = 0x3412, 0x3500
    return key


def fill(program: SensorProgram, flows: int, ended: int, now_ns: int) -> None:
    """`flows` idle-free UDP flows, the first `ended` of them idle for 120 s."""
    from bcc.libbcc import lib
    fd = program.bpf[b"flows"].map_fd
    for start in range(0, flows, FLOW_BATCH):
        n = min(FLOW_BATCH, flows - start)
        keys, values = (FlowKey * n)(), (FlowState * n)()
        for i in range(n):
            keys[i] = _key(start + i)
            last = now_ns - (120_000_000_000 if start + i < ended else 1_000_000_000)
            values[i].first_ns, values[i].last_ns = last - 1_000_000, last
            values[i].packets[0], values[i].bytes[0] = 1, 100
            values[i].verdict = Verdict.IGNORED
        count = ct.c_uint32(n)
        if lib.bpf_update_batch(fd, keys, values, ct.byref(count)) != 0:
            raise RuntimeError(f"filling the table failed: errno {ct.get_errno()}")


def timed(job) -> tuple[float, object]:
    start = time.perf_counter()
    result = job()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=1_000_000)
    parser.add_argument("--ended", type=int, default=10_000)
    args = parser.parse_args()
    program = SensorProgram(ProgramOptions(flow_entries=ENTRIES))
    try:
        now = time.monotonic_ns()
        fill(program, args.flows, args.ended, now)
        per_key, n1 = timed(lambda: sum(1 for key in program._keys("flows", FlowKey) if program.flow(key)))
        batched, n2 = timed(lambda: sum(1 for _ in program.flows()))
        pipeline = Pipeline(PluginRuntime(), SessionTable(), [], kernel=program)
        expiry, _ = timed(lambda: pipeline.expire_kernel(now))
        left = sum(1 for _ in program.flows())
        victims = [_key(n) for n in range(args.ended, args.ended + 100_000)]
        one_by_one, _ = timed(lambda: [program.delete_flow(k) for k in victims[:50_000]])
        in_batches, _ = timed(lambda: program.delete_flows(victims[50_000:]))
    finally:
        program.close()
    print(f"{args.flows} flows in a table of {ENTRIES}, {args.ended} of them ended")
    print(f"{'':<52}{'seconds':>9}{'flows/s':>12}")
    print(f"{'baseline: read per key (get_next_key + lookup)':<52}{per_key:>9.2f}{n1 / per_key:>12.0f}")
    print(f"{'read in batches (flows())':<52}{batched:>9.2f}{n2 / batched:>12.0f}   "
          f"{per_key / batched:.1f}x faster")
    print(f"{'expire_kernel: check all, record + delete the ended':<52}{expiry:>9.2f}{args.flows / expiry:>12.0f}   "
          f"{pipeline.stats.records} records, {args.flows - left} deleted")
    print(f"{'baseline: delete per key (50k)':<52}{one_by_one:>9.2f}{50_000 / one_by_one:>12.0f}")
    print(f"{'delete in batches (50k)':<52}{in_batches:>9.2f}{50_000 / in_batches:>12.0f}")


if __name__ == "__main__":
    main()
