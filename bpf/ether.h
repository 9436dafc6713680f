/* Frames that carry no IP packet, keyed as Arkime keys its non-IP sessions
 * (bpf/sensor.h, enum sensor_ether_kind): ARP by the address asked for or
 * told, LLDP, IS-IS and XID one flow each, other ethertypes by MAC pair and
 * ethertype, 802.3 frames and ARP that cannot be read by MAC pair. The walk
 * (parse.h) has found no IP packet; this reads the outer Ethernet header
 * again. sensor/flows/ether.py classify() is the same rule in Python, and
 * the pre-filter holds the two together. Free of maps and helpers. */
#ifndef XDPSENSOR_ETHER_H
#define XDPSENSOR_ETHER_H

#include "parse.h"

#define ETH_P_ARP_ 0x0806
#define ETH_P_LLDP_ 0x88CC

/* Ethertypes the walk takes apart: a frame of one that carries no IP packet makes no flow. */
static __always_inline int ether_walked(__u16 t)
{
    return t == ETH_P_IP_ || t == ETH_P_IPV6_ || t == ETH_P_PPPOE_ || t == ETH_P_PPP_ || t == ETH_P_ERSPAN_ ||
           t == ETH_P_ERSPAN3_ || t == ETH_P_TEB_ || t == ETH_P_NSH_ || t == ETH_P_CISCO_META_ ||
           t == ETH_P_MPLS_UC_ || t == ETH_P_MPLS_MC_;
}

static __always_inline int ether_corrupt(void *data, struct flow_key *key)
{
    key->proto = ETHER_CORRUPT;
    __builtin_memcpy(key->addr, data, 12);
    return 1;
}

/* The key of a non-IP frame's flow, its ethertype (802.3: the length field)
 * and its first two VLAN ids; 0 when the frame makes no flow. */
static __always_inline int ether_key(struct xdp_md *ctx, struct flow_key *key, __u16 *ethertype, __u16 *vlan)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u8 *head = at(data, data_end, 0, 14);
    if (!head)
        return 0;
    __u32 off = 12;
#pragma unroll
    for (int tags = 0; tags <= SENSOR_ETHER_VLAN_MAX; tags++) {
        __u8 *tag = at(data, data_end, off, 2);
        if (!tag)
            return 0;
        __u16 tpid = be16(tag);
        if (tpid != ETH_P_8021Q_ && tpid != ETH_P_8021AD_)
            break;
        tag = at(data, data_end, off, 4);
        if (!tag || tags == SENSOR_ETHER_VLAN_MAX)
            return 0;
        if (tags < 2)
            vlan[tags] = be16(tag + 2) & 0x0fff;
        off += 4;
    }
    __u8 *type = at(data, data_end, off, 2);
    if (!type)
        return 0;
    __u16 t = be16(type);
    __u32 len = (__u32)(data_end - data) - off - 2;     /* bytes after the ethertype */
    *ethertype = t;
    key->family = 0;
    if (t <= 1500) {
        __u8 *llc = at(data, data_end, off + 2, 3);
        if (!llc || t > len)
            return ether_corrupt(head, key);
        if ((llc[2] & 0xef) == 0xaf) {
            key->proto = ETHER_XID;
            return 1;
        }
        llc = at(data, data_end, off + 2, 4);
        if (llc && llc[0] == 0xfe && llc[1] == 0xfe && llc[2] == 0x03 && llc[3] == 0x83) {
            key->proto = ETHER_ISIS;
            return 1;
        }
        return ether_corrupt(head, key);
    }
    if (ether_walked(t) || t == ETH_P_8021Q_ || t == ETH_P_8021AD_)
        return 0;
    if (t == ETH_P_ARP_) {
        __u8 *arp = at(data, data_end, off + 2, 28);
        if (!arp || arp[0] != 0 || arp[1] != 1 || arp[2] != 0x08 || arp[3] != 0 || arp[4] != 6 || arp[5] != 4 ||
            arp[6] != 0 || (arp[7] != 1 && arp[7] != 2))
            return ether_corrupt(head, key);
        key->proto = ETHER_ARP;
        __builtin_memcpy(key->addr, arp + (arp[7] == 1 ? 24 : 14), 4);
        return 1;
    }
    if (t == ETH_P_LLDP_) {
        key->proto = ETHER_LLDP;
        return 1;
    }
    key->proto = ETHER_UNKNOWN;
    __builtin_memcpy(key->addr, head, 12);
    __builtin_memcpy(key->port, type, 2);
    return 1;
}

#endif
