/* Benchmark baseline: what any XDP program pays (one per-CPU counter, then
 * XDP_PASS). bench/bench_xdp.py runs it beside sensor.bpf.c in the same run. */
#include <uapi/linux/bpf.h>

BPF_PERCPU_ARRAY(seen, __u64, 1);

int xdp_baseline(struct xdp_md *ctx)
{
    __u32 zero = 0;
    __u64 *v = seen.lookup(&zero);
    if (v)
        *v += 1;
    return XDP_PASS;
}
