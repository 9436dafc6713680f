/* Benchmark baselines, run beside sensor.bpf.c in the same run
 * (bench/bench_xdp.py, bench/bench_xdp_live.py):
 * - xdp_baseline: what any XDP program pays (one per-CPU counter, XDP_PASS);
 * - xdp_parse_baseline: the least a flow sensor does (parse Ethernet/IPv4/UDP,
 *   bump a per-CPU counter), the baseline issue 9's targets are stated against. */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/udp.h>

BPF_PERCPU_ARRAY(seen, __u64, 2);

static __always_inline void bump(__u32 idx)
{
    __u64 *v = seen.lookup(&idx);
    if (v)
        *v += 1;
}

int xdp_baseline(struct xdp_md *ctx)
{
    bump(0);
    return XDP_PASS;
}

int xdp_parse_baseline(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
        return XDP_PASS;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_UDP)
        return XDP_PASS;
    struct udphdr *uh = (void *)ip + ip->ihl * 4;
    if (ip->ihl < 5 || (void *)(uh + 1) > data_end)
        return XDP_PASS;
    bump(1);
    return XDP_PASS;
}
