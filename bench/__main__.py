"""`python -m bench` (make bench): every benchmark in turn, each with its baseline."""
import importlib
import os
import sys

BENCHES = ["bench_packet_flows", "bench_prefilter", "bench_framing_protocol", "bench_outputs", "bench_xdp",
           "bench_xdp_live", "bench_expiry", "bench_offload", "bench_scaling"]
ROOT_ONLY = {"bench_xdp", "bench_xdp_live", "bench_expiry", "bench_offload"}  # BPF_PROG_TEST_RUN, the lab (bench_scaling skips its live part)

for name in BENCHES:
    if name in ROOT_ONLY and os.geteuid() != 0:
        print(f"\n== {name}: skipped, needs root", flush=True)
        continue
    print(f"\n== {name}", flush=True)
    sys.argv = [name]
    importlib.import_module(f"bench.{name}").main()
