/* xdpsensor XDP program: parse, find the flow, pre-classify by port and
 * payload prefix, count every packet, emit the packets of selected flows to
 * the ring buffer. It only watches: every path returns XDP_PASS.
 *
 * Compiled by bcc (sensor/kernel/program.py) with -I bpf/, the map sizes
 * and the clock (SENSOR_COARSE_CLOCK) as -D flags. Tunables arrive through the `config` map, rules through the
 * `ports`, `prefix_shapes` and `prefixes` maps. */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>
#include <uapi/linux/tcp.h>
#include <uapi/linux/udp.h>

#include "sensor.h"

#ifndef FLOW_ENTRIES
#define FLOW_ENTRIES 65536
#endif
#ifndef FRAG_ENTRIES
#define FRAG_ENTRIES 4096
#endif
#ifndef RULE_ENTRIES
#define RULE_ENTRIES 1024
#endif
#ifndef RINGBUF_PAGES
#define RINGBUF_PAGES 1024
#endif

#define IPPROTO_ICMPV6_ 58
#define IPPROTO_SCTP_ 132
#define IPPROTO_ESP_ 50
#define ESP_HEADER 8            /* SPI and sequence number */

struct record_buf {
    struct sensor_record hdr;
    __u8 data[SENSOR_MAX_SNAPLEN];
};

BPF_TABLE("lru_hash", struct flow_key, struct flow_state, flows, FLOW_ENTRIES);
BPF_TABLE("lru_hash", struct frag_key, struct flow_key, frags, FRAG_ENTRIES);
BPF_HASH(ports, struct port_key, __u8, RULE_ENTRIES);
BPF_HASH(prefixes, struct prefix_key, __u8, RULE_ENTRIES);
BPF_ARRAY(prefix_shapes, struct prefix_shape, SENSOR_PREFIX_SHAPES);
BPF_ARRAY(config, struct sensor_config, 1);
BPF_PERCPU_ARRAY(stats, __u64, STAT_MAX);
BPF_PERCPU_ARRAY(scratch, struct record_buf, 1);
/* A new flow's entry is built here: it does not fit on the stack beside the parse state. */
BPF_PERCPU_ARRAY(new_flow, struct flow_state, 1);
/* Userspace's own bookkeeping, never touched here: flows each of the sensor's
 * processes deleted, by pid (sensor/kernel/program.py counts evictions with it). */
BPF_HASH(deleters, __u32, __u64, 256);
/* One ring per worker process; `events` is ring 0 and the template userspace
 * copies for the others (sensor/kernel/program.py fills `rings`). */
BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
BPF_ARRAY_OF_MAPS(rings, "events", SENSOR_RINGS_MAX);
/* enum udp_tunnel by host-order UDP destination port (sensor/kernel/program.py fills it). */
BPF_ARRAY(udp_tunnels, __u8, 65536);
/* With sensor_config.vlan_key: by VLAN id, 1 + the id its flows are keyed on (Arkime's
 * [vlan-vni-collapse]); 0: its own id. */
BPF_ARRAY(vlan_collapse, __u16, 4096);

/* What a UDP destination port carries: the walk (parse.h) asks for UDP packets only. */
static __always_inline __u8 udp_tunnel_kind(__u16 port)
{
    __u32 idx = port;
    __u8 *kind = udp_tunnels.lookup(&idx);
    return kind ? *kind : UDP_TUNNEL_NONE;
}

#include "parse.h"
#include "ether.h"

BPF_PERCPU_ARRAY(walks, struct walk, 1);   /* the walk's working state past its first headers (see walk_on) */

/* What the parser learnt about one frame. */
struct parsed {
    struct flow_key key;        /* not yet canonical: the sender is LO */
    __u16 vlan[2];              /* outer, inner VLAN id (0 = none) */
    __u32 l4_off;
    __u32 payload_off;
    __u32 payload_len;
    __u32 frag_id;
    __u32 tcp_seq;              /* host byte order */
    __u32 tcp_ack;
    __u8 tcp_flags;
    __u8 tcp_ae;
    __u16 tcp_window;
    __u8 is_later_fragment;     /* no L4 header: offset > 0 */
    __u8 is_first_fragment;     /* offset 0 with more fragments */
    __u8 has_icmp;              /* ICMP/ICMPv6 with type and code */
    __u8 icmp_type;
    __u8 icmp_code;
    __u16 tunnels;              /* enum sensor_tunnel: what the flow came out of */
};

/* The clock of flow and record times, chosen at load time: the coarse one
 * (a tick's resolution, ~35 ns cheaper per packet) only where a tick is at
 * most 1 ms, so record times stay exact to the ms; BPF_PROG_TEST_RUN always
 * takes the precise one (frames run within one tick must stay apart). */
static __always_inline __u64 now_ns(void)
{
#ifdef SENSOR_COARSE_CLOCK
    return bpf_ktime_get_coarse_ns();
#else
    return bpf_ktime_get_ns();
#endif
}

/* Whether this CPU created the flow: it then adds to the flow's `own`
 * counters without atomics, as no other CPU writes there; the others add
 * to the shared fields atomically (struct flow_state). */
static __always_inline int owns(const struct flow_state *f)
{
    return f->owner == bpf_get_smp_processor_id() + 1;
}

/* Add `v` to the flow counter `field`: the own one (`mine`: owns(f)), or the shared one atomically. */
#define FLOW_ADD(f, mine, field, v)                     \
    do {                                                \
        if (mine)                                       \
            (f)->own.field += (v);                      \
        else                                            \
            __sync_fetch_and_add(&(f)->field, (v));     \
    } while (0)

/* A TCP flag count of the flow: its shared and own parts. */
static __always_inline __u32 tcpflag_count(const struct flow_state *f, int flag)
{
    return f->tcpflags[flag] + f->own.tcpflags[flag];
}

/* A zeroed flow entry owned by this CPU, to fill and insert; NULL never in practice. */
static __always_inline struct flow_state *fresh_flow(__u64 now)
{
    __u32 zero = 0;
    struct flow_state *fresh = new_flow.lookup(&zero);
    if (!fresh)
        return NULL;
    __builtin_memset(fresh, 0, sizeof(*fresh));
    fresh->first_ns = now;
    fresh->owner = bpf_get_smp_processor_id() + 1;
    return fresh;
}

static __always_inline void count(__u32 idx)
{
    __u64 *v = stats.lookup(&idx);
    if (v)
        *v += 1;    /* per-CPU slot: no atomics needed */
}

/* Every IP protocol is a flow, keyed as Arkime keys it: TCP, UDP and SCTP
 * by ports, everything else (ICMP, ESP, GRE, OSPF, ...) by addresses alone.
 * The payload is what follows the L4 header, or the IP header when there
 * is none (ICMP's whole message, as Arkime counts it). */
static __always_inline int parse_l4(void *data, void *data_end, struct parsed *p, __u32 l4_end)
{
    if (p->key.proto == IPPROTO_TCP) {
        struct tcphdr *th = at(data, data_end, p->l4_off, sizeof(*th));
        if (!th)
            return -1;
        __u32 doff = th->doff * 4;
        if (doff < sizeof(*th))
            return -1;
        p->key.port[0] = th->source;
        p->key.port[1] = th->dest;
        __u8 *flags = (__u8 *)th + 13;
        p->tcp_flags = *flags;
        p->tcp_ae = *((__u8 *)th + 12) & 1;
        p->tcp_window = th->window;
        p->tcp_seq = bpf_ntohl(th->seq);
        p->tcp_ack = bpf_ntohl(th->ack_seq);
        p->payload_off = p->l4_off + doff;
    } else if (p->key.proto == IPPROTO_UDP) {
        struct udphdr *uh = at(data, data_end, p->l4_off, sizeof(*uh));
        if (!uh)
            return -1;
        p->key.port[0] = uh->source;
        p->key.port[1] = uh->dest;
        p->payload_off = p->l4_off + sizeof(*uh);
    } else if (p->key.proto == IPPROTO_SCTP_) {
        __u16 *sh = at(data, data_end, p->l4_off, 12);     /* common header: ports, tag, checksum */
        if (!sh)
            return -1;
        p->key.port[0] = sh[0];
        p->key.port[1] = sh[1];
        p->payload_off = p->l4_off + 12;
    } else {
        if (p->key.proto == IPPROTO_ICMP || p->key.proto == IPPROTO_ICMPV6_) {
            __u8 *ic = at(data, data_end, p->l4_off, 2);
            if (ic) {
                p->has_icmp = 1;
                p->icmp_type = ic[0];
                p->icmp_code = ic[1];
            }
        }
        p->payload_off = p->l4_off;
    }
    p->payload_len = l4_end > p->payload_off ? l4_end - p->payload_off : 0;
    return 0;
}

/* The walk (parse.h) down to the innermost IP header, then its L4 header.
 * Returns enum walk_result. A later fragment has no L4 header: its payload
 * is all the IP packet carries. */
static __always_inline int parse_frame(struct xdp_md *ctx, struct parsed *p)
{
    struct walk ws = {};
    struct walk *w = &ws;
    int rc = walk_frame(ctx, &p->key, w);
    if (rc == WALK_NEXT) {
        __u32 zero = 0;
        w = walks.lookup(&zero);
        if (!w)
            return WALK_NOT_IP;
        *w = ws;
        rc = walk_on(ctx, &p->key, w);
    }
    p->frag_id = w->frag_id;
    p->tunnels = w->tunnels;
    p->vlan[0] = w->vlan[0];
    p->vlan[1] = w->vlan[1];
    if (rc == WALK_LATER_FRAGMENT) {
        p->is_later_fragment = 1;
        p->payload_off = w->l4_off;
        p->payload_len = w->l4_end > w->l4_off ? w->l4_end - w->l4_off : 0;
    }
    if (rc == WALK_NOT_IP && p->key.family)
        return WALK_FLOW;   /* a tunnel with no IP packet inside: its IP header's flow, by addresses (corrupt-ip) */
    if (rc != WALK_FLOW)
        return rc;
    p->is_first_fragment = w->first_fragment;
    p->l4_off = w->l4_off;
    asm volatile("" ::: "memory");
    int l4 = parse_l4((void *)(long)ctx->data, (void *)(long)ctx->data_end, p, w->l4_end);
    return l4 == -1 ? WALK_TRUNCATED : WALK_FLOW;
}

/* The VLAN id a flow is keyed on (sensor_config.vlan_key): the frame's first,
 * or the one its collapse group is keyed on. */
static __always_inline __u16 vlan_key_of(__u16 vlan)
{
    __u32 idx = vlan & 0xfff;
    __u16 *collapsed = vlan_collapse.lookup(&idx);
    return collapsed && *collapsed ? *collapsed - 1 : vlan;
}

/* Order the endpoints so both directions share one key; returns the
 * sender's side. */
static __always_inline __u8 canonicalize(struct flow_key *k)
{
    __u64 a0 = *(__u64 *)k->addr, a1 = *(__u64 *)(k->addr + 16);
    __u64 b0 = *(__u64 *)(k->addr + 8), b1 = *(__u64 *)(k->addr + 24);
    int swap;
    if (a0 != a1)
        swap = a0 > a1;
    else if (b0 != b1)
        swap = b0 > b1;
    else
        swap = k->port[0] > k->port[1];
    if (!swap)
        return SIDE_LO;
    __u8 tmp[16];
    __builtin_memcpy(tmp, k->addr, 16);
    __builtin_memcpy(k->addr, k->addr + 16, 16);
    __builtin_memcpy(k->addr + 16, tmp, 16);
    __u16 port = k->port[0];
    k->port[0] = k->port[1];
    k->port[1] = port;
    return SIDE_HI;
}

/* Symmetric by construction (the key is canonical); a murmur3 finaliser
 * spreads it for sharding across ring buffers. */
static __always_inline __u32 flow_hash(const struct flow_key *k)
{
    const __u32 *w = (const __u32 *)k;
    __u32 h = k->proto;
#pragma unroll
    for (int i = 0; i < 9; i++)
        h ^= w[i] + 0x9e3779b9 + (h << 6) + (h >> 2);
    h ^= h >> 16;
    h *= 0x85ebca6b;
    h ^= h >> 13;
    h *= 0xc2b2ae35;
    h ^= h >> 16;
    return h;
}

/* Arkime's direction rule: a SYN's sender is the client, a SYN-ACK's
 * receiver is, otherwise the first packet's sender. */
static __always_inline __u8 client_side(const struct parsed *p, __u8 side)
{
    if (p->key.proto == IPPROTO_TCP && (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == (TCP_FLAG_SYN | TCP_FLAG_ACK))
        return side ^ 1;
    return side;
}

static __always_inline int has_ports(__u8 proto)
{
    return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP_;
}

static __always_inline int proto_selected(const struct sensor_config *cfg, __u8 proto)
{
    return (cfg->select_proto[(proto >> 5) & 7] >> (proto & 31)) & 1;
}

static __always_inline int port_selected(const struct flow_key *k, __u8 client)
{
    struct port_key pk = {.proto = k->proto, .role = 1};
    pk.port = bpf_ntohs(k->port[client ^ 1]);
    if (ports.lookup(&pk))
        return 1;
    pk.role = 0;
    pk.port = bpf_ntohs(k->port[client]);
    return ports.lookup(&pk) != NULL;
}

static __always_inline int prefix_selected(struct xdp_md *ctx, const struct parsed *p)
{
#pragma unroll
    for (__u32 i = 0; i < SENSOR_PREFIX_SHAPES; i++) {
        __u32 idx = i;
        struct prefix_shape *s = prefix_shapes.lookup(&idx);
        if (!s || s->proto == 0)
            break;      /* shapes are packed from slot 0 */
        if (s->proto != p->key.proto)
            continue;
        if (s->len < 1 || s->len > SENSOR_PREFIX_MAX)
            continue;
        /* an identity after the check, but one the verifier can bound to [1, 16] */
        __u32 len = ((s->len - 1) & (SENSOR_PREFIX_MAX - 1)) + 1;
        if (s->offset + len > p->payload_len)
            continue;
        struct prefix_key pk = {.proto = s->proto, .len = s->len, .offset = s->offset};
        if (bpf_xdp_load_bytes(ctx, p->payload_off + s->offset, pk.bytes, len) < 0)
            continue;
        pk.bytes[(len - 1) & (SENSOR_PREFIX_MAX - 1)] &= s->last_mask;
        if (prefixes.lookup(&pk))
            return 1;
    }
    return 0;
}

/* `now` is this packet's clock reading, shared with the flow's last_ns:
 * one helper call per packet (the clock is ~35 ns of the ignored path).
 *
 * The flow hash picks the ring, so both directions of a flow reach the same
 * worker. The reader is woken only when this record takes the ring past
 * cfg->wakeup_bytes; below that it finds records when its bounded poll
 * interval ends, so a wakeup (and a Python loop turn) serves a batch, not a
 * record. An empty slot (its worker died) loses the record, counted, and
 * bypasses the flow. */
static __always_inline void emit(struct xdp_md *ctx, const struct sensor_config *cfg,
                                 const struct flow_key *key, struct flow_state *f, __u8 side,
                                 __u8 reason, __u8 verdict, __u64 now)
{
    __u32 zero = 0;
    struct record_buf *buf = scratch.lookup(&zero);
    if (!buf)
        return;
    __u32 hash = flow_hash(key);
    __u32 ring_index = cfg->rings > 1 ? hash % cfg->rings : 0;
    void *ring = rings.lookup(&ring_index);
    if (!ring) {
        /* Its worker died: the flow stops coming up, and is still counted. */
        f->verdict = VERDICT_BYPASSED;
        count(STAT_RING_GONE);
        return;
    }
    __u32 wire_len = ctx->data_end - ctx->data;
    __u32 caplen = wire_len < cfg->snaplen ? wire_len : cfg->snaplen;
    if (caplen > SENSOR_MAX_SNAPLEN)
        caplen = SENSOR_MAX_SNAPLEN;
    if (caplen < 1)
        return;
    caplen = ((caplen - 1) & (SENSOR_MAX_SNAPLEN - 1)) + 1;  /* bound for the verifier */
    if (bpf_xdp_load_bytes(ctx, 0, buf->data, caplen) < 0)
        return;
    buf->hdr.ts_ns = now;
    buf->hdr.ifindex = ctx->ingress_ifindex;
    buf->hdr.flow_hash = hash;
    buf->hdr.wire_len = wire_len;
    buf->hdr.caplen = caplen;
    buf->hdr.side = side;
    buf->hdr.client = f->client;
    buf->hdr.reason = reason;
    buf->hdr.verdict = verdict;
    buf->hdr.key = *key;
    __u64 size = sizeof(buf->hdr) + caplen;
    __u64 held = bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA);
    __u64 wake = held < cfg->wakeup_bytes && held + size >= cfg->wakeup_bytes;
    if (bpf_ringbuf_output(ring, buf, size, wake ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP) == 0) {
        count(STAT_EMITTED);
        return;
    }
    count(STAT_RINGBUF_FULL);
    /* The flow's record will say how many of its packets never came up. The
     * flow count reads before it adds (bcc's LLVM has no fetching atomics):
     * two CPUs losing a flow's first record at the same instant count it twice. */
    if (f->ring_lost == 0)
        count(STAT_FLOW_RING_LOST);
    __sync_fetch_and_add(&f->ring_lost, 1);
}

/* Arkime's counting (tcp.c): a SYN counts syn or syn-ack and nothing else
 * of SYN/ACK/PSH/FIN/RST, a RST counts rst alone, otherwise fin, psh and
 * `ack` for packets whose only such flag is ACK; urg/ece/cwr/ae always. */
static __always_inline void count_tcp_flags(struct flow_state *f, int mine, const struct parsed *p,
                                            __u8 side)
{
    __u8 fl = p->tcp_flags;
    if (fl & TCP_FLAG_SYN) {
        if (fl & TCP_FLAG_ACK)
            FLOW_ADD(f, mine, tcpflags[TCPF_SYN_ACK], 1);
        else
            FLOW_ADD(f, mine, tcpflags[TCPF_SYN], 1);
    } else if (fl & TCP_FLAG_RST) {
        FLOW_ADD(f, mine, tcpflags[TCPF_RST], 1);
    } else {
        if ((fl & (TCP_FLAG_FIN | TCP_FLAG_SYN | TCP_FLAG_RST | TCP_FLAG_PSH | TCP_FLAG_ACK)) == TCP_FLAG_ACK)
            FLOW_ADD(f, mine, tcpflags[TCPF_ACK], 1);
        if (fl & TCP_FLAG_PSH)
            FLOW_ADD(f, mine, tcpflags[TCPF_PSH], 1);
        if (fl & TCP_FLAG_FIN)
            FLOW_ADD(f, mine, tcpflags[TCPF_FIN], 1);
    }
    if (fl & TCP_FLAG_URG)
        FLOW_ADD(f, mine, tcpflags[TCPF_URG], 1);
    if (fl & TCP_FLAG_ECE)
        FLOW_ADD(f, mine, tcpflags[TCPF_ECE], 1);
    if (fl & TCP_FLAG_CWR)
        FLOW_ADD(f, mine, tcpflags[TCPF_CWR], 1);
    if (p->tcp_ae)
        FLOW_ADD(f, mine, tcpflags[TCPF_AE], 1);
    if (p->tcp_window == 0 && !(fl & 0x04))
        FLOW_ADD(f, mine, tcpflags[side == SIDE_LO ? TCPF_ZERO_LO : TCPF_ZERO_HI], 1);
}

/* Keep up to 8 bytes at `off` as the side's first payload bytes
 * (srcPayload8/dstPayload8), after those it already has. */
static __always_inline void keep_payload8(struct xdp_md *ctx, struct flow_state *f, __u8 side,
                                          __u32 off, __u32 avail)
{
    __u8 have = f->payload8_len[side & 1];
    if (have >= 8 || avail == 0)
        return;
    __u32 want = 8 - have;
    if (want > avail)
        want = avail;
    want = ((want - 1) & 7) + 1;    /* bound for the verifier: [1, 8] */
    __u8 tmp[8] = {};
    if (bpf_xdp_load_bytes(ctx, off & 0xffff, tmp, want) < 0)
        return;
    __u32 base = (side & 1) * 8 + have;
#pragma unroll
    for (__u32 i = 0; i < 8; i++) {
        if (i < want)
            f->payload8[(base + i) & 15] = tmp[i];
    }
    f->payload8_len[side & 1] = have + want;
}

/* TCP as Arkime accounts it: databytes and the first payload bytes count
 * in-order stream bytes only, and only once a SYN or SYN-ACK told where a
 * stream starts (a SYN-ACK's ack starts the client's, a side whose start
 * was missed starts at its first packet after the handshake); FIN and RST
 * are remembered for the close. */
static __always_inline void track_tcp(struct xdp_md *ctx, struct flow_state *f, int mine,
                                      const struct parsed *p, __u8 side)
{
    __u8 fl = p->tcp_flags;
    __u8 known = side == SIDE_LO ? FLOW_SEQ_LO : FLOW_SEQ_HI;
    if (fl & TCP_FLAG_SYN) {
        __u8 add = known | FLOW_HANDSHAKE;
        f->seq_next[side & 1] = p->tcp_seq + 1;
        if (fl & TCP_FLAG_ACK) {
            f->seq_next[(side ^ 1) & 1] = p->tcp_ack;
            add |= FLOW_SEQ_LO | FLOW_SEQ_HI;
        }
        f->flags |= add;
        return;
    }
    if (fl & TCP_FLAG_RST) {
        f->flags |= FLOW_RST;
        return;
    }
    if (fl & TCP_FLAG_FIN)
        f->flags |= side == SIDE_LO ? FLOW_FIN_LO : FLOW_FIN_HI;
    if (!(f->flags & known)) {
        if (!(f->flags & FLOW_HANDSHAKE))
            return;     /* picked up mid-stream: Arkime counts no data */
        f->seq_next[side & 1] = p->tcp_seq;
        f->flags |= known;
    }
    __u32 behind = f->seq_next[side & 1] - p->tcp_seq;   /* bytes of the segment already counted */
    if ((__s32)behind < 0 || behind >= p->payload_len)
        return;     /* after a gap, or nothing new */
    __u32 fresh = p->payload_len - behind;
    f->seq_next[side & 1] = p->tcp_seq + p->payload_len;
    FLOW_ADD(f, mine, databytes[side & 1], fresh);
    keep_payload8(ctx, f, side, p->payload_off + behind, fresh);
}

/* SCTP's first payload bytes: those of a message that begins in the
 * packet's first chunk (a DATA chunk with the B flag, after its 16-byte header). */
static __always_inline void sctp_payload8(struct xdp_md *ctx, struct flow_state *f, const struct parsed *p,
                                          __u8 side)
{
    __u8 chunk[4];
    if (bpf_xdp_load_bytes(ctx, p->payload_off & 0xffff, chunk, 4) < 0 || chunk[0] != 0 || !(chunk[1] & 0x02))
        return;
    __u32 len = (chunk[2] << 8) | chunk[3];
    if (len > p->payload_len)
        len = p->payload_len;
    if (len > 16)
        keep_payload8(ctx, f, side, p->payload_off + 16, len - 16);
}

/* Arkime's databytes of a packet of any protocol but TCP: its payload for
 * UDP, SCTP and ICMP (to the frame's end: see track_other), ESP's without the ESP header, nothing for the protocols
 * Arkime has no session type for (IGMP, OSPF, GRE, ...). */
static __always_inline __u32 other_databytes(__u8 proto, __u32 len)
{
    if (proto == IPPROTO_ESP_)
        return len >= ESP_HEADER ? len - ESP_HEADER : 0;
    if (proto == IPPROTO_UDP || proto == IPPROTO_SCTP_ || proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6_)
        return len;
    return 0;
}

/* Add a byte to a bounded set kept in order of arrival (`*n` in use);
 * once the set is full, new values are not kept. */
static __always_inline void note_distinct(__u8 *set, __u8 *n, __u8 value)
{
    __u8 have = *n;
#pragma unroll
    for (int i = 0; i < SENSOR_ICMP_MAX; i++) {
        if (i < have && set[i] == value)
            return;
    }
    if (have >= SENSOR_ICMP_MAX)
        return;
    set[have & (SENSOR_ICMP_MAX - 1)] = value;
    *n = have + 1;
}

/* What a packet of any protocol but TCP adds: its databytes, the first
 * bytes of a side's first payload, its ICMP type and code to the flow's
 * sets (Arkime's icmp.type and icmp.code list every distinct one). */
static __always_inline void track_other(struct xdp_md *ctx, struct flow_state *f, int mine,
                                        const struct parsed *p, __u8 side)
{
    __u32 len = p->payload_len;
    if (p->key.proto == IPPROTO_ICMP || p->key.proto == IPPROTO_ICMPV6_) {
        /* Arkime counts ICMP to the end of the frame (pktlen - payloadOffset): Ethernet padding too */
        __u32 frame_len = ctx->data_end - ctx->data;
        len = frame_len > p->payload_off ? frame_len - p->payload_off : 0;
    }
    FLOW_ADD(f, mine, databytes[side & 1], other_databytes(p->key.proto, len));
    if (p->has_icmp) {
        note_distinct(f->icmp_type, &f->icmp_types, p->icmp_type);
        note_distinct(f->icmp_code, &f->icmp_codes, p->icmp_code);
    }
    if (f->payload8_len[side & 1] || !p->payload_len)
        return;
    if (p->key.proto == IPPROTO_UDP)
        keep_payload8(ctx, f, side, p->payload_off, p->payload_len);
    else if (p->key.proto == IPPROTO_SCTP_)
        sctp_payload8(ctx, f, p, side);
}

/* Remember a VLAN id in the first free of the flow's two slots. */
static __always_inline void note_vlan(struct flow_state *f, __u16 id)
{
    if (!id || f->vlan[0] == id || f->vlan[1] == id)
        return;
    if (!f->vlan[0])
        f->vlan[0] = id;
    else if (!f->vlan[1])
        f->vlan[1] = id;
}

static __always_inline int same_addr(const __u8 *a, const __u8 *b)
{
    return *(const __u64 *)a == *(const __u64 *)b && *(const __u64 *)(a + 8) == *(const __u64 *)(b + 8);
}

/* Later fragments have no ports; count and emit them on the flow their
 * first fragment established, or count them as orphans. A datagram counts
 * as Arkime counts it reassembled: one packet (its first fragment's) whose
 * bytes are the first fragment's frame and every later fragment's payload;
 * a TCP segment's later data counts once its side's stream is known. */
static __always_inline void handle_later_fragment(struct xdp_md *ctx, const struct sensor_config *cfg,
                                                  const struct parsed *p)
{
    struct frag_key fk = {.id = p->frag_id, .proto = p->key.proto};
    __builtin_memcpy(fk.src, p->key.addr, 16);
    __builtin_memcpy(fk.dst, p->key.addr + 16, 16);
    struct flow_key *key = frags.lookup(&fk);
    if (!key) {
        count(STAT_FRAG_ORPHAN);
        return;
    }
    struct flow_key k = *key;
    struct flow_state *f = flows.lookup(&k);
    if (!f) {
        count(STAT_FRAG_ORPHAN);
        return;
    }
    count(STAT_FRAG_FOLLOWED);
    __u8 side = same_addr(k.addr, p->key.addr) ? SIDE_LO : SIDE_HI;
    int mine = owns(f);
    FLOW_ADD(f, mine, bytes[side & 1], p->payload_len);
    if (k.proto == IPPROTO_ESP_) {  /* its header was in the first fragment */
        FLOW_ADD(f, mine, databytes[side & 1], p->payload_len);
    } else if (k.proto != IPPROTO_TCP) {
        FLOW_ADD(f, mine, databytes[side & 1], other_databytes(k.proto, p->payload_len));
    } else if (f->flags & (side == SIDE_LO ? FLOW_SEQ_LO : FLOW_SEQ_HI)) {
        f->seq_next[side & 1] += p->payload_len;
        FLOW_ADD(f, mine, databytes[side & 1], p->payload_len);
        keep_payload8(ctx, f, side, p->payload_off, p->payload_len);
    }
    __u64 now = now_ns();
    f->last_ns = now;
    if (f->verdict == VERDICT_SELECTED) {
        __sync_fetch_and_add(&f->emitted, 1);
        emit(ctx, cfg, &k, f, side, REASON_FRAGMENT, f->verdict, now);
    }
}

static __always_inline void remember_first_fragment(const struct parsed *p, const struct flow_key *k,
                                                    __u8 side)
{
    struct frag_key fk = {.id = p->frag_id, .proto = k->proto};
    __builtin_memcpy(fk.src, k->addr + (side ? 16 : 0), 16);
    __builtin_memcpy(fk.dst, k->addr + (side ? 0 : 16), 16);
    frags.update(&fk, (struct flow_key *)k);
}

/* Arkime's port reuse (tcp.c, tcp_pre_process): a SYN without ACK on a flow
 * that counted a FIN or RST, not repeating the client's initial sequence
 * number, starts a new connection. Only flows nothing came up from are split
 * here (a flow userspace follows, it splits itself). */
static __always_inline int reuses_ports(const struct sensor_config *cfg, const struct flow_state *f,
                                        const struct parsed *p)
{
    if ((p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) != TCP_FLAG_SYN || p->tcp_seq == f->syn_seq)
        return 0;
    if (!tcpflag_count(f, TCPF_FIN) && !tcpflag_count(f, TCPF_RST))
        return 0;
    if (f->verdict != VERDICT_IGNORED && f->verdict != VERDICT_UNDECIDED)
        return 0;
    return !(cfg->emit_undecided && f->undecided_payloads);
}

/* Move the ended connection's entry to the first free retired key of its
 * 5-tuple, where it waits for userspace to record it, and free the live key
 * for the new connection. With every retired key taken, nothing moves (the
 * new connection counts on the old flow, as before the split). */
static __always_inline int retire(const struct flow_key *key, struct flow_state *f)
{
    struct flow_key old = *key;
#pragma unroll
    for (int i = 1; i <= SENSOR_REUSE_MAX; i++) {
        old.retired = i;
        if (flows.insert(&old, f) == 0) {
            flows.delete((struct flow_key *)key);
            return 1;
        }
    }
    return 0;
}

/* A frame with no IP packet counts on its non-IP flow (ether.h), which no
 * rule selects: Arkime's counts, all on the source side. */
static __always_inline void count_ether_flow(struct xdp_md *ctx)
{
    struct flow_key key = {};
    __u16 vlan[2] = {};
    __u16 ethertype = 0;
    if (!ether_key(ctx, &key, &ethertype, vlan))
        return;
    __u64 now = now_ns();
    struct flow_state *f = flows.lookup(&key);
    if (!f) {
        struct flow_state *fresh = fresh_flow(now);
        if (!fresh)
            return;
        fresh->verdict = VERDICT_IGNORED;
        fresh->ethertype = ethertype;
        if (flows.update(&key, fresh) < 0) {
            count(STAT_FLOW_FAIL);
            return;
        }
        count(STAT_FLOW_NEW);
        f = flows.lookup(&key);
        if (!f)
            return;
    }
    int mine = owns(f);
    FLOW_ADD(f, mine, packets[SIDE_LO], 1);
    FLOW_ADD(f, mine, bytes[SIDE_LO], ctx->data_end - ctx->data);
    f->last_ns = now;
    note_vlan(f, vlan[0]);
    note_vlan(f, vlan[1]);
}

int xdp_sensor(struct xdp_md *ctx)
{
    __u32 zero = 0;

    count(STAT_SEEN);
    struct sensor_config *cfg = config.lookup(&zero);
    if (!cfg)
        return XDP_PASS;

    struct parsed p = {};
    int rc = parse_frame(ctx, &p);
    if (rc != WALK_FLOW && rc != WALK_LATER_FRAGMENT) {
        if (rc == WALK_NOT_IP) {
            count(STAT_NOT_IP);
            count_ether_flow(ctx);
        } else if (rc == WALK_TRUNCATED)
            count(STAT_TRUNCATED);
        else if (rc == WALK_EXT_LIMIT)
            count(STAT_IPV6_EXT_LIMIT);
        else
            count(STAT_WALK_DEPTH);
        return XDP_PASS;
    }
    if (p.tunnels)
        count(STAT_TUNNELLED);
    if (p.is_later_fragment) {
        handle_later_fragment(ctx, cfg, &p);
        return XDP_PASS;
    }
    count(STAT_PARSED);
    if (p.key.proto != IPPROTO_TCP && p.key.proto != IPPROTO_UDP)
        count(STAT_OTHER_L4);
    if (cfg->vlan_key)
        p.key.vlan = vlan_key_of(p.vlan[0]);

    __u8 side = canonicalize(&p.key);
    __u64 now = now_ns();
    __u32 len = ctx->data_end - ctx->data;

    struct flow_state *f = flows.lookup(&p.key);
    if (f && p.key.proto == IPPROTO_TCP && reuses_ports(cfg, f, &p) && retire(&p.key, f))
        f = NULL;
    if (!f) {
        struct flow_state *fresh = fresh_flow(now);
        if (!fresh)
            return XDP_PASS;
        fresh->client = client_side(&p, side);
        if (p.key.proto == IPPROTO_TCP && (p.tcp_flags & TCP_FLAG_SYN))
            fresh->syn_seq = p.tcp_flags & TCP_FLAG_ACK ? p.tcp_ack - 1 : p.tcp_seq;
        if (proto_selected(cfg, p.key.proto)) {
            fresh->verdict = VERDICT_SELECTED;
            fresh->reason = REASON_ALL;
        } else if (has_ports(p.key.proto) && port_selected(&p.key, fresh->client)) {
            fresh->verdict = VERDICT_SELECTED;
            fresh->reason = REASON_PORT;
        }
        /* NOEXIST: when two CPUs meet a new flow at once, the second finds
         * the first's entry instead of replacing it (and its packet). */
        if (flows.insert(&p.key, fresh) == 0) {
            count(STAT_FLOW_NEW);
            if (fresh->verdict == VERDICT_SELECTED)
                count(STAT_SELECTED);
        }
        f = flows.lookup(&p.key);
        if (!f) {
            count(STAT_FLOW_FAIL);
            return XDP_PASS;
        }
    }

    int mine = owns(f);
    FLOW_ADD(f, mine, packets[side & 1], 1);
    FLOW_ADD(f, mine, bytes[side & 1], len);
    f->last_ns = now;
    if (p.key.proto == IPPROTO_TCP) {
        count_tcp_flags(f, mine, &p, side);
        track_tcp(ctx, f, mine, &p, side);
    } else {
        track_other(ctx, f, mine, &p, side);
    }
    if (p.is_first_fragment)
        remember_first_fragment(&p, &p.key, side);
    if (p.vlan[0]) {
        note_vlan(f, p.vlan[0]);
        note_vlan(f, p.vlan[1]);
    }

    __u8 verdict = f->verdict;
    __u8 reason = f->reason;
    if (p.payload_len > 0 && verdict == VERDICT_UNDECIDED) {
        __u8 bit = 1 << side;
        if (!(f->payload_seen & bit)) {
            if (prefix_selected(ctx, &p)) {
                verdict = VERDICT_SELECTED;
                reason = REASON_PREFIX;
                /* the other side's first payload already went by unsent */
                f->late_select = (f->payload_seen & (bit ^ 3)) != 0;
                f->reason = reason;
                f->verdict = verdict;
                count(STAT_SELECTED);
            }
            f->payload_seen |= bit;
        }
        if (verdict == VERDICT_UNDECIDED) {
            f->undecided_payloads += 1;
            if (f->payload_seen == 3 || f->undecided_payloads >= cfg->max_undecided_payloads) {
                f->verdict = VERDICT_IGNORED;
                count(STAT_IGNORED);
            }
            if (cfg->emit_undecided && f->undecided_payloads <= 2)
                emit(ctx, cfg, &p.key, f, side, REASON_UNDECIDED, VERDICT_UNDECIDED, now);
            return XDP_PASS;
        }
    }

    if (verdict == VERDICT_SELECTED) {
        __sync_fetch_and_add(&f->emitted, 1);
        emit(ctx, cfg, &p.key, f, side, reason, verdict, now);
    } else if (verdict == VERDICT_BYPASSED) {
        count(STAT_BYPASSED_PKTS);
    }
    return XDP_PASS;
}
