/* Benchmark baselines, run beside sensor.bpf.c in the same run
 * (bench/bench_xdp.py, bench/bench_xdp_live.py):
 * - xdp_baseline: what any XDP program pays (one per-CPU counter, XDP_PASS);
 * - xdp_parse_baseline: the least a flow sensor does (parse Ethernet/IPv4/UDP,
 *   bump a per-CPU counter), the baseline issue 9's targets are stated against;
 * - xdp_lru_floor, xdp_lru_percpu_floor: that parse, then one lookup of the
 *   frame's flow (a struct flow_key, as the sensor builds it) in an LRU hash
 *   of struct flow_state, shared or per-CPU: the least any flow table costs
 *   (a flow's first packet makes its entry);
 * - xdp_lru_clock_floor: that lookup, and the packet's time written into the
 *   entry from the precise clock: the least a flow table with exact times costs. */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/udp.h>

#include "sensor.h"

#ifndef FLOW_ENTRIES
#define FLOW_ENTRIES 65536
#endif

BPF_PERCPU_ARRAY(seen, __u64, 2);
BPF_TABLE("lru_hash", struct flow_key, struct flow_state, floor_flows, FLOW_ENTRIES);
BPF_TABLE("lru_percpu_hash", struct flow_key, struct flow_state, floor_percpu_flows, FLOW_ENTRIES);

static __always_inline void bump(__u32 idx)
{
    __u64 *v = seen.lookup(&idx);
    if (v)
        *v += 1;
}

/* The frame's entry, made on its first packet (bcc takes no map as an argument: one function per table). */
static __always_inline struct flow_state *floor_entry(struct flow_key *key)
{
    struct flow_state *f = floor_flows.lookup(key);
    if (!f) {
        struct flow_state fresh = {};
        floor_flows.update(key, &fresh);
        f = floor_flows.lookup(key);
    }
    return f;
}

static __always_inline struct flow_state *floor_percpu_entry(struct flow_key *key)
{
    struct flow_state *f = floor_percpu_flows.lookup(key);
    if (!f) {
        struct flow_state fresh = {};
        floor_percpu_flows.update(key, &fresh);
        f = floor_percpu_flows.lookup(key);
    }
    return f;
}

/* Ethernet/IPv4/UDP or NULL; fills `key` (not canonical: the sender first) when given. */
static __always_inline struct udphdr *parse_udp(struct xdp_md *ctx, struct flow_key *key)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
        return NULL;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_UDP)
        return NULL;
    struct udphdr *uh = (void *)ip + ip->ihl * 4;
    if (ip->ihl < 5 || (void *)(uh + 1) > data_end)
        return NULL;
    if (key) {
        __builtin_memcpy(key->addr, &ip->saddr, 4);
        __builtin_memcpy(key->addr + 16, &ip->daddr, 4);
        key->port[0] = uh->source;
        key->port[1] = uh->dest;
        key->proto = IPPROTO_UDP;
        key->family = 4;
    }
    return uh;
}

int xdp_baseline(struct xdp_md *ctx)
{
    bump(0);
    return XDP_PASS;
}

int xdp_parse_baseline(struct xdp_md *ctx)
{
    if (parse_udp(ctx, NULL))
        bump(1);
    return XDP_PASS;
}

/* One floor, its variants chosen by constants that fold away once inlined:
 * the entry from the shared or the per-CPU LRU table, and whether a hit
 * reads the precise clock (as the sensor does) or only bumps a counter. */
static __always_inline int lru_floor(struct xdp_md *ctx, int percpu, int clock)
{
    struct flow_key key = {};
    if (!parse_udp(ctx, &key))
        return XDP_PASS;
    struct flow_state *f = percpu ? floor_percpu_entry(&key) : floor_entry(&key);
    if (f && clock)
        f->last_ns = bpf_ktime_get_ns();
    else if (f)
        bump(1);
    return XDP_PASS;
}

int xdp_lru_floor(struct xdp_md *ctx)
{
    return lru_floor(ctx, 0, 0);
}

int xdp_lru_percpu_floor(struct xdp_md *ctx)
{
    return lru_floor(ctx, 1, 0);
}

int xdp_lru_clock_floor(struct xdp_md *ctx)
{
    return lru_floor(ctx, 0, 1);
}
