/* The header walk of the XDP program: Ethernet and every encapsulation it
 * knows down to the innermost IP header, in at most SENSOR_WALK_STEPS steps
 * (one per header: Ethernet with its VLAN tags, MPLS stack, PPPoE, PPP,
 * ERSPAN, IPv4/IPv6 with the GRE or UDP tunnel header it carries).
 *
 * sensor/walk.py is the same walk in Python, step for step (the pre-filter
 * runs it); names, depths and result codes come from sensor.h. The flow of
 * a tunnelled packet is the innermost one: a tunnel that cannot be taken
 * apart leaves the packet a plain GRE/UDP flow, a fragment is never taken
 * apart. Free of maps and helpers: the includer defines
 * `static __u8 udp_tunnel_kind(__u16 port)` (enum udp_tunnel of a host-order
 * UDP destination port), which the walk asks for UDP packets only. */
#ifndef XDPSENSOR_PARSE_H
#define XDPSENSOR_PARSE_H

#include "sensor.h"

#define ETH_P_IP_ 0x0800
#define ETH_P_IPV6_ 0x86DD
#define ETH_P_TEB_ 0x6558           /* an Ethernet header follows */
#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8
#define ETH_P_MPLS_UC_ 0x8847
#define ETH_P_MPLS_MC_ 0x8848
#define ETH_P_PPPOE_ 0x8864
#define ETH_P_PPP_ 0x880B
#define ETH_P_ERSPAN_ 0x88BE
#define ETH_P_ERSPAN3_ 0x22EB
#define ETH_P_NSH_ 0x894F
#define ETH_P_CISCO_META_ 0x8909
#define IP_MF_ 0x2000
#define IP_OFFMASK_ 0x1FFF
#define GRE_C_ 0x8000
#define GRE_R_ 0x4000
#define GRE_K_ 0x2000
#define GRE_S_ 0x1000
#define GRE_A_ 0x0080

#define WALK_NEXT (-1)              /* internal: a tunnel, walk on to the header it carries */

/* What the walk learns besides the flow key's addresses and protocol. */
struct walk {
    __u32 l4_off;           /* the innermost L4 header (a later fragment: its payload) */
    __u32 l4_end;           /* where the IP packet says it ends */
    __u32 frag_id;          /* IPv4 id / IPv6 fragment id, as read from the packet */
    __u32 next_off;         /* internal: the header a tunnel carries ... */
    __u16 next_type;        /* ... and its ethertype (ETH_P_TEB_: Ethernet) */
    __u16 tunnels;          /* enum sensor_tunnel bits */
    __u8 first_fragment;    /* offset 0 with more fragments */
    __u8 vlans;             /* VLAN tags met, all headers together */
    __u8 steps;             /* headers walked so far */
    __u8 pad;
    __u16 vlan[2];          /* the first two VLAN ids met (0 = none) */
};

#define FRAME_OFF_MASK 0x3fff       /* XDP sees one page at most: offsets fit in 14 bits */

/* Bounds-checked pointer into the frame; the mask gives the verifier a
 * range for the variable offset, small enough to add a header size to.
 * The empty asm statements stop clang from dropping the mask (the comparison
 * makes it redundant) and from computing the pointer again after the check:
 * newer verifiers see through either, Linux 6.1's refused the walk. */
static __always_inline void *at(void *data, void *data_end, __u32 off, __u32 size)
{
    if (off > FRAME_OFF_MASK)
        return NULL;
    asm volatile("" : "+r"(off));
    void *p = data + (off & FRAME_OFF_MASK);
    if (p + size > data_end)
        return NULL;
    asm volatile("" : "+r"(p));
    return p;
}

static __always_inline __u16 be16(const __u8 *p)
{
    return ((__u16)p[0] << 8) | p[1];
}

/* A VLAN id met on the way (a tag, or the one an ERSPAN header names): the walk keeps the first two. */
static __always_inline void walk_vlan(struct walk *w, __u16 id)
{
    __u8 seen = w->vlans;
    if (seen == 0)
        w->vlan[0] = id;
    else if (seen == 1)
        w->vlan[1] = id;
    w->vlans = seen + 1;
}

/* Ethernet and its VLAN tags. */
static __always_inline int walk_ether(void *data, void *data_end, __u32 off, struct walk *w)
{
    __u8 *eth = at(data, data_end, off, 14);
    if (!eth)
        return WALK_TRUNCATED;
    __u16 t = be16(eth + 12);
    __u32 o = off + 14;
#pragma unroll
    for (int i = 0; i < SENSOR_VLAN_MAX; i++) {
        if (t != ETH_P_8021Q_ && t != ETH_P_8021AD_)
            break;
        __u8 *tag = at(data, data_end, o, 4);
        if (!tag)
            return WALK_TRUNCATED;
        walk_vlan(w, be16(tag) & 0x0fff);
        t = be16(tag + 2);
        o += 4;
    }
    w->next_off = o;
    w->next_type = t;
    return WALK_NEXT;
}

/* An MPLS label stack over IPv4/IPv6 (version nibble after the bottom label). */
static __always_inline int walk_mpls(void *data, void *data_end, __u32 off, struct walk *w)
{
    __u32 o = off;
#pragma unroll
    for (int i = 0; i < SENSOR_MPLS_MAX; i++) {
        __u8 *label = at(data, data_end, o, 5);
        if (!label)
            return WALK_NOT_IP;
        o += 4;
        if (label[2] & 1) {
            __u8 version = label[4] >> 4;
            if (version != 4 && version != 6)
                return WALK_NOT_IP;
            w->next_off = o;
            w->next_type = version == 4 ? ETH_P_IP_ : ETH_P_IPV6_;
            return WALK_NEXT;
        }
    }
    return WALK_NOT_IP;
}

static __always_inline int ppp_protocol(__u16 proto, __u32 off, struct walk *w)
{
    if (proto == 0x21)
        w->next_type = ETH_P_IP_;
    else if (proto == 0x57)
        w->next_type = ETH_P_IPV6_;
    else
        return WALK_NOT_IP;
    w->next_off = off;
    return WALK_NEXT;
}

/* A PPPoE session header (version/type 0x11, code 0) carrying PPP IPv4/IPv6. */
static __always_inline int walk_pppoe(void *data, void *data_end, __u32 off, struct walk *w)
{
    __u8 *h = at(data, data_end, off, 8);
    if (!h)
        return WALK_NOT_IP;
    __u32 len = be16(h + 4);
    __u32 room = (__u32)(data_end - data) - off - 6;
    if (h[0] != 0x11 || h[1] != 0 || len < 2 || len > room)
        return WALK_NOT_IP;
    return ppp_protocol(be16(h + 6), off + 8, w);
}

/* PPP as GRE carries it: optional ff 03, then a 1-byte (odd) or 2-byte protocol. */
static __always_inline int walk_ppp(void *data, void *data_end, __u32 off, struct walk *w)
{
    __u32 o = off;
    __u8 *h = at(data, data_end, o, 2);
    if (!h)
        return WALK_NOT_IP;
    if (h[0] == 0xff) {
        o += 2;
        h = at(data, data_end, o, 2);
        if (!h)
            return WALK_NOT_IP;
    }
    if (h[0] & 1)
        return ppp_protocol(h[0], o + 1, w);
    return ppp_protocol(be16(h), o + 2, w);
}

/* A Network Service Header (version 0): its length (4-byte words, at least
 * the base and path headers), then what its next protocol names. */
static __always_inline int walk_nsh(void *data, void *data_end, __u32 off, struct walk *w)
{
    __u8 *h = at(data, data_end, off, 8);
    if (!h || (h[0] >> 6))
        return WALK_NOT_IP;
    __u32 size = (h[1] & 0x3f) * 4;
    if (size < 8 || !at(data, data_end, off, size))
        return WALK_NOT_IP;
    __u8 next = h[3];
    if (next == 1)
        w->next_type = ETH_P_IP_;
    else if (next == 2)
        w->next_type = ETH_P_IPV6_;
    else if (next == 3)
        w->next_type = ETH_P_TEB_;
    else if (next == 4)
        w->next_type = ETH_P_NSH_;
    else if (next == 5)
        w->next_type = ETH_P_MPLS_UC_;
    else
        return WALK_NOT_IP;
    w->next_off = off + size;
    return WALK_NEXT;
}

/* Cisco metadata (the security group tag): 6 bytes, then the ethertype of what follows. */
static __always_inline int walk_cisco_meta(void *data, void *data_end, __u32 off, struct walk *w)
{
    __u8 *h = at(data, data_end, off, 8);
    if (!h)
        return WALK_NOT_IP;
    w->next_off = off + 8;
    w->next_type = be16(h + 6);
    return WALK_NEXT;
}

/* ERSPAN II (version 1, 8 bytes) or III (version 2, 12 bytes + 8 with the
 * platform subheader), then Ethernet; the VLAN it names counts as met. */
static __always_inline int walk_erspan(void *data, void *data_end, __u32 off, __u16 type, struct walk *w)
{
    __u32 size = 8;
    if (type == ETH_P_ERSPAN3_) {
        __u8 *h = at(data, data_end, off, 12);
        if (!h || h[0] >> 4 != 2)
            return WALK_NOT_IP;
        size = 12;
        if (h[11] & 1) {
            size = 20;
            if (!at(data, data_end, off, 20))
                return WALK_NOT_IP;
        }
    } else {
        __u8 *h = at(data, data_end, off, 8);
        if (!h || h[0] >> 4 != 1)
            return WALK_NOT_IP;
    }
    __u8 *h = at(data, data_end, off, 2);
    if (h && (be16(h) & 0x0fff))
        walk_vlan(w, be16(h) & 0x0fff);
    w->next_off = off + size;
    w->next_type = ETH_P_TEB_;
    return WALK_NEXT;
}

/* GRE version 0 (checksum, key, sequence; no routing) or 1 (PPTP). 0 when
 * it is not taken apart: the packet is then a plain GRE flow. */
static __always_inline int walk_gre(void *data, void *data_end, __u32 off, struct walk *w)
{
    __u8 *h = at(data, data_end, off, 4);
    if (!h)
        return 0;
    __u16 flags = be16(h), proto = be16(h + 2);
    __u16 version = flags & 7;
    if (version == 0) {
        if (flags & GRE_R_)
            return 0;
        off += 4 + ((flags & GRE_C_) ? 4 : 0) + ((flags & GRE_K_) ? 4 : 0) + ((flags & GRE_S_) ? 4 : 0);
    } else if (version == 1) {
        off += 8 + ((flags & GRE_S_) ? 4 : 0) + ((flags & GRE_A_) ? 4 : 0);
    } else {
        return 0;
    }
    if (proto == 0 || off > (__u32)(data_end - data))
        return 0;
    if (proto == ETH_P_ERSPAN_ && !(flags & GRE_S_))
        proto = ETH_P_TEB_;     /* ERSPAN type I: no ERSPAN header */
    w->next_off = off;
    w->next_type = proto;
    w->tunnels |= TUNNEL_GRE;
    return 1;
}

/* GTP-U version 1 G-PDU whose length matches the datagram, with up to
 * SENSOR_GTP_EXT_MAX extension headers. */
static __always_inline int walk_gtp(void *data, void *data_end, __u32 off, int length, struct walk *w)
{
    __u32 n = data_end - data;
    __u8 *h = at(data, data_end, off, 12);
    if (length <= 12 || !h)
        return 0;
    if ((h[0] & 0xf0) != 0x30 || h[1] != 0xff || be16(h + 2) != (__u32)length - 8)
        return 0;
    __u32 end = off + length < n ? off + length : n;
    __u32 pos = off + 8;
    __u8 next = 0;
    if (h[0] & 7) {
        next = h[11];
        pos += 4;
    }
#pragma unroll
    for (int i = 0; i < SENSOR_GTP_EXT_MAX; i++) {
        if (!next)
            break;
        __u8 *ext = at(data, data_end, pos, 1);
        if (pos + 1 > end || !ext || ext[0] == 0)
            return 0;
        pos += ext[0] * 4;
        if (pos > end)
            return 0;
        __u8 *last = at(data, data_end, pos - 1, 1);
        if (!last)
            return 0;
        next = last[0];
    }
    __u8 *inner = at(data, data_end, pos, 1);
    if (next || pos >= end || !inner)
        return 0;
    w->next_off = pos;
    w->next_type = (inner[0] >> 4) == 6 ? ETH_P_IPV6_ : ETH_P_IP_;
    w->tunnels |= TUNNEL_GTP;
    return 1;
}

/* The tunnel header at the start of a UDP payload of `length` bytes. */
static __always_inline int walk_udp_tunnel(void *data, void *data_end, __u8 kind, __u32 off, int length,
                                           struct walk *w)
{
    if (kind == UDP_TUNNEL_GTP)
        return walk_gtp(data, data_end, off, length, w);
    __u8 *h = at(data, data_end, off, 8);
    if (length <= 8 || !h)
        return 0;
    if (kind == UDP_TUNNEL_VXLAN) {
        if ((h[0] & 0x77) || (h[1] & 0xb7))
            return 0;
        w->next_type = ETH_P_TEB_;
        w->tunnels |= TUNNEL_VXLAN;
    } else if (kind == UDP_TUNNEL_VXLAN_GPE) {
        if ((h[0] & 0xf0) || h[1])
            return 0;
        if (h[3] == 1)
            w->next_type = ETH_P_IP_;
        else if (h[3] == 2)
            w->next_type = ETH_P_IPV6_;
        else if (h[3] == 3)
            w->next_type = ETH_P_TEB_;
        else
            return 0;
        w->tunnels |= TUNNEL_VXLAN_GPE;
    } else if (kind == UDP_TUNNEL_GENEVE) {
        if ((h[0] & 0xc0) || (h[1] & 0x3f))
            return 0;
        __u16 proto = be16(h + 2);
        __u32 inner = off + 8 + (h[0] & 0x3f) * 4;
        if (proto == 0 || inner > off + length)
            return 0;
        w->next_off = inner;
        w->next_type = proto;
        w->tunnels |= TUNNEL_GENEVE;
        return 1;
    } else {
        return 0;
    }
    w->next_off = off + 8;
    return 1;
}

/* The end of an unfragmented IP header: WALK_NEXT into the tunnel it
 * carries (IP-in-IP, GRE, a UDP tunnel port), or WALK_FLOW. */
static __always_inline int walk_l4(void *data, void *data_end, struct flow_key *key, struct walk *w)
{
    __u32 off = w->l4_off;
    if (off >= SENSOR_WALK_OFFSET_MAX)
        return WALK_FLOW;
    if (key->proto == IPPROTO_IPIP || key->proto == IPPROTO_IPV6) {
        w->next_off = off;
        w->next_type = key->proto == IPPROTO_IPIP ? ETH_P_IP_ : ETH_P_IPV6_;
        w->tunnels |= TUNNEL_IP;
        return WALK_NEXT;
    }
    if (key->proto == IPPROTO_GRE)
        return walk_gre(data, data_end, off, w) ? WALK_NEXT : WALK_FLOW;
    if (key->proto == IPPROTO_UDP) {
        __u8 *uh = at(data, data_end, off, 8);
        if (!uh)
            return WALK_FLOW;
        __u8 kind = udp_tunnel_kind(be16(uh + 2));
        if (kind) {
            int room = (int)(data_end - data) - (int)off;
            int udp_len = be16(uh + 4);
            int length = (udp_len < room ? udp_len : room) - 8;
            if (walk_udp_tunnel(data, data_end, kind, off + 8, length, w))
                return WALK_NEXT;
        }
    }
    return WALK_FLOW;
}

static __always_inline int walk_ipv4(void *data, void *data_end, __u32 off, struct flow_key *key,
                                     struct walk *w)
{
    __u8 *ip = at(data, data_end, off, 20);
    if (!ip)
        return WALK_TRUNCATED;
    __u32 ihl = (ip[0] & 0x0f) * 4;
    if (ihl < 20)
        return WALK_TRUNCATED;
    if (key->family == 6)       /* an IPv6 header before this one: clear what IPv4 leaves */
        __builtin_memset(key->addr, 0, sizeof(key->addr));
    key->family = 4;
    key->proto = ip[9];
    __builtin_memcpy(key->addr, ip + 12, 4);
    __builtin_memcpy(key->addr + 16, ip + 16, 4);
    w->frag_id = *(__u16 *)(ip + 4);
    w->first_fragment = 0;
    w->l4_off = off + ihl;
    w->l4_end = off + be16(ip + 2);
    __u16 frag = be16(ip + 6);
    if (frag & IP_OFFMASK_)
        return WALK_LATER_FRAGMENT;
    if (frag & IP_MF_) {
        w->first_fragment = 1;
        return WALK_FLOW;
    }
    return walk_l4(data, data_end, key, w);
}

static __always_inline int is_ipv6_ext(__u8 nexthdr)
{
    return nexthdr == 0 || nexthdr == 43 || nexthdr == 44 || nexthdr == 51 || nexthdr == 60;
}

static __always_inline int walk_ipv6(void *data, void *data_end, __u32 off, struct flow_key *key,
                                     struct walk *w)
{
    __u8 *ip6 = at(data, data_end, off, 40);
    if (!ip6)
        return WALK_TRUNCATED;
    key->family = 6;
    __builtin_memcpy(key->addr, ip6 + 8, 32);
    w->l4_end = off + 40 + be16(ip6 + 4);
    w->first_fragment = 0;
    __u8 nexthdr = ip6[6];
    off += 40;

#pragma unroll
    for (int i = 0; i < SENSOR_IPV6_EXT_MAX; i++) {
        if (!is_ipv6_ext(nexthdr))
            break;
        __u8 *ext = at(data, data_end, off, 8);
        if (!ext)
            return WALK_TRUNCATED;
        if (nexthdr == 44) {        /* fragment header: fixed 8 bytes */
            w->frag_id = *(__u32 *)(ext + 4);
            if (be16(ext + 2) & 0xfff8) {
                key->proto = ext[0];
                w->l4_off = off + 8;
                return WALK_LATER_FRAGMENT;
            }
            w->first_fragment = ext[3] & 1;
            off += 8;
        } else if (nexthdr == 51) { /* AH counts in 4-byte units */
            off += (ext[1] + 2) * 4;
        } else {
            off += (ext[1] + 1) * 8;
        }
        nexthdr = ext[0];
    }
    if (is_ipv6_ext(nexthdr))
        return WALK_EXT_LIMIT;
    key->proto = nexthdr;
    w->l4_off = off;
    if (w->first_fragment)
        return WALK_FLOW;
    return walk_l4(data, data_end, key, w);
}

/* One header of the walk: `type` at `off`. */
static __always_inline int walk_step(void *data, void *data_end, __u16 type, __u32 off, struct flow_key *key,
                                     struct walk *w)
{
    int rc;
    if (type == ETH_P_TEB_) {
        rc = walk_ether(data, data_end, off, w);
    } else if (type == ETH_P_IP_) {
        rc = walk_ipv4(data, data_end, off, key, w);
    } else if (type == ETH_P_IPV6_) {
        rc = walk_ipv6(data, data_end, off, key, w);
    } else if (type == ETH_P_MPLS_UC_ || type == ETH_P_MPLS_MC_) {
        rc = walk_mpls(data, data_end, off, w);
        w->tunnels |= TUNNEL_MPLS;
    } else if (type == ETH_P_PPPOE_) {
        rc = walk_pppoe(data, data_end, off, w);
        w->tunnels |= TUNNEL_PPPOE;
    } else if (type == ETH_P_PPP_) {
        rc = walk_ppp(data, data_end, off, w);
        w->tunnels |= TUNNEL_PPP;
    } else if (type == ETH_P_NSH_) {
        rc = walk_nsh(data, data_end, off, w);
    } else if (type == ETH_P_CISCO_META_) {
        rc = walk_cisco_meta(data, data_end, off, w);
    } else if (type == ETH_P_ERSPAN_ || type == ETH_P_ERSPAN3_) {
        rc = walk_erspan(data, data_end, off, type, w);
    } else {
        rc = WALK_NOT_IP;
    }
    w->steps += 1;
    return rc;
}

/* Walk a frame to its innermost IP header: the key gets its addresses (the
 * sender's first, not yet canonical), protocol and family; `w` (zeroed by
 * the caller) where L4 starts and the VLANs. WALK_NOT_IP with the key's
 * family set: a tunnel whose inside is no IP packet (the key is the last IP
 * header's). Most frames are Ethernet and IP and nothing more: these first
 * two steps run here, on the caller's stack; WALK_NEXT means a tunnel or an
 * encapsulation follows, and walk_on() takes the walk further. */
static __always_inline int walk_frame(struct xdp_md *ctx, struct flow_key *key, struct walk *w)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    int rc = walk_step(data, data_end, ETH_P_TEB_, 0, key, w);
    if (rc != WALK_NEXT || (w->next_type != ETH_P_IP_ && w->next_type != ETH_P_IPV6_))
        return rc;
    return walk_step(data, data_end, w->next_type, w->next_off, key, w);
}

/* The rest of a walk walk_frame() began, to at most SENSOR_WALK_STEPS headers.
 *
 * `w` should be a per-CPU map value, not stack: each step reads its position
 * (next_off, next_type) back from it, so the verifier, which does not track
 * map contents, sees one state per step instead of one per path through the
 * encapsulations (which it cannot finish checking). */
static __always_inline int walk_on(struct xdp_md *ctx, struct flow_key *key, struct walk *w)
{
#pragma clang loop unroll(disable)
    for (int i = 0; i < SENSOR_WALK_STEPS; i++) {
        if (w->steps >= SENSOR_WALK_STEPS)
            return WALK_DEPTH_LIMIT;
        /* Fresh packet pointers each step (the barrier keeps the compiler
         * from hoisting the loads): the ranges checked in one step do not
         * make the next step's states differ. */
        asm volatile("" ::: "memory");
        void *data = (void *)(long)ctx->data;
        void *data_end = (void *)(long)ctx->data_end;
        int rc = walk_step(data, data_end, w->next_type, w->next_off, key, w);
        if (rc != WALK_NEXT)
            return rc;
    }
    return WALK_DEPTH_LIMIT;
}

#endif
