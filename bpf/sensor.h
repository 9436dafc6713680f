/* The kernel/user contract of xdpsensor: every struct that crosses the
 * boundary, the verdicts and the counter indexes. sensor/kernel/contract.py
 * mirrors it with ctypes; tests/kernel/test_contract.py checks they agree.
 * Keep it free of kernel-only includes so both sides can read it. */
#ifndef XDPSENSOR_SENSOR_H
#define XDPSENSOR_SENSOR_H

#define SENSOR_MAX_SNAPLEN 2048     /* ring record payload bound; covers 1514 + 2 VLAN tags */
#define SENSOR_PREFIX_MAX 16        /* bytes a prefix rule compares in the kernel */
#define SENSOR_PREFIX_SHAPES 8      /* distinct (proto, offset, length, mask) shapes */
#define SENSOR_IPV6_EXT_MAX 8       /* extension headers walked before giving up */
#define SENSOR_RINGS_MAX 16         /* ring buffers (one per worker process) */
#define SENSOR_ICMP_MAX 8           /* distinct ICMP types, and codes, a flow keeps (Arkime lists every one) */
#define SENSOR_REUSE_MAX 4          /* ended connections of one 5-tuple the table holds at once (flow_key.retired) */

/* Verdicts kept per flow in `flows`. */
enum sensor_verdict {
    VERDICT_UNDECIDED = 0,
    VERDICT_SELECTED = 1,   /* emitted to the ring buffer */
    VERDICT_IGNORED = 2,    /* no rule matched: counted only */
    VERDICT_BYPASSED = 3,   /* userspace lost interest: counted only */
};

/* Why a flow was selected, or why a record was emitted. */
enum sensor_reason {
    REASON_NONE = 0,
    REASON_PORT = 1,        /* a port rule matched on the flow's first packet */
    REASON_PREFIX = 2,      /* a prefix rule matched a direction's first payload */
    REASON_UNDECIDED = 3,   /* first payload of an undecided flow (emit_undecided) */
    REASON_FRAGMENT = 4,    /* a non-first IP fragment of a selected flow */
    REASON_ALL = 5,         /* select_all: a plugin wants every flow of this protocol */
};

/* A packet's sender: SIDE_LO means key.addr[0..15] / key.port[0]. */
enum sensor_side {
    SIDE_LO = 0,
    SIDE_HI = 1,
};

/* Bits of flow_state.flags. */
enum sensor_flow_flag {
    FLOW_FIN_LO = 1,        /* the LO side sent a FIN */
    FLOW_FIN_HI = 2,
    FLOW_RST = 4,           /* a RST was seen */
    FLOW_SEQ_LO = 8,        /* TCP: seq_next[SIDE_LO] holds the LO stream's next byte */
    FLOW_SEQ_HI = 16,
    FLOW_HANDSHAKE = 32,    /* TCP: a SYN or SYN-ACK was seen (Arkime counts data only then) */
};

/* Client side as learnt from the first packet (Arkime's rule). */
enum sensor_client {
    CLIENT_LO = 0,
    CLIENT_HI = 1,
};

/* TCP flag counters, Arkime's meaning (tcpflags.* in session records). */
enum sensor_tcpflag {
    TCPF_SYN = 0,       /* SYN without ACK */
    TCPF_SYN_ACK,       /* SYN with ACK */
    TCPF_ACK,           /* ACK alone: no SYN, FIN, RST or PSH */
    TCPF_PSH,
    TCPF_FIN,
    TCPF_RST,
    TCPF_URG,
    TCPF_ECE,
    TCPF_CWR,
    TCPF_AE,
    TCPF_ZERO_LO,       /* zero window advertised by the LO side */
    TCPF_ZERO_HI,       /* zero window advertised by the HI side */
    TCPF_MAX,
};

/* Counter indexes in the per-CPU `stats` array. */
enum sensor_stat {
    STAT_SEEN = 0,          /* every frame the program ran on */
    STAT_PARSED,            /* IPv4/IPv6 frames counted on a flow (any IP protocol) */
    STAT_NOT_IP,            /* not IPv4/IPv6 (ARP, LLDP, ...) */
    STAT_OTHER_L4,          /* frames of IP protocols other than TCP/UDP (also PARSED) */
    STAT_TRUNCATED,         /* a header ran past the end of the frame */
    STAT_IPV6_EXT_LIMIT,    /* more than SENSOR_IPV6_EXT_MAX extension headers */
    STAT_FLOW_NEW,          /* flows created */
    STAT_FLOW_FAIL,         /* packets counted on no flow: the table could not take their flow */
    STAT_SELECTED,          /* flows that became SELECTED */
    STAT_IGNORED,           /* flows that became IGNORED */
    STAT_EMITTED,           /* records written to the ring buffer */
    STAT_RINGBUF_FULL,      /* records lost because the ring buffer was full */
    STAT_BYPASSED_PKTS,     /* packets of BYPASSED flows (counted, not emitted) */
    STAT_FRAG_FOLLOWED,     /* later fragments attributed to a known flow */
    STAT_FRAG_ORPHAN,       /* later fragments whose first fragment was not seen */
    STAT_RING_GONE,         /* records lost because their ring had no reader (a worker died) */
    STAT_TUNNELLED,         /* frames whose flow was found inside a tunnel (bpf/parse.h) */
    STAT_WALK_DEPTH,        /* more than SENSOR_WALK_STEPS headers before the innermost packet */
    STAT_FLOW_RING_LOST,    /* flows that lost a record to a full ring (their flow_state.ring_lost left 0) */
    STAT_FLOW_EVICTED,      /* written by userspace, never by the program: flows the LRU table evicted
                             * before userspace ended them (a lower bound; sensor/kernel/program.py) */
    STAT_MAX,
};

/* Canonical flow key: the endpoint with the lower (address, port) is LO, so
 * both directions of a flow find the same entry. Addresses are 16 bytes;
 * IPv4 uses the first 4 and zeroes the rest. Ports in network byte order.
 * VLAN ids are not part of it (Arkime's default): a flow a SPAN port shows on
 * two VLANs is one flow, and flow_state.vlan lists them; with vlan_key set,
 * the first VLAN id is (Arkime's sessionIdTracking=vlan). */
struct flow_key {
    __u8 addr[32];          /* LO address at 0, HI at 16 (bcc mis-sizes 2-D arrays) */
    __u16 port[2];          /* TCP, UDP, SCTP; 0 for other protocols (Arkime keys them by addresses) */
    __u8 proto;             /* the IP protocol (IPv6: after the extension headers) */
    __u8 family;            /* 4 or 6 */
    __u16 vlan : 12;        /* with sensor_config.vlan_key (Arkime's sessionIdTracking=vlan): the first VLAN id
                             * after the `vlan_collapse` table; else 0 */
    __u16 retired : 4;      /* 0: the live flow. 1..SENSOR_REUSE_MAX: an earlier TCP connection on this
                             * 5-tuple that a new SYN ended (Arkime's port reuse), kept for its record */
};

/* The per-packet counters the CPU that created a flow keeps apart (flow_state.own). */
struct flow_counters {
    __u64 packets[2];
    __u64 bytes[2];
    __u64 databytes[2];
    __u32 tcpflags[TCPF_MAX];
};

/* Whole-flow state; counters cover every packet, emitted or not. Index [side].
 * A flow's packets, bytes, databytes and tcpflags are the sums of the fields
 * of those names and of `own`: the CPU that created the flow (`owner`) adds
 * to `own` without atomics, as no other CPU writes there; the others add to
 * the first ones atomically. Userspace folds `own` in when it reads a flow. */
struct flow_state {
    __u64 packets[2];
    __u64 bytes[2];         /* frame bytes, Arkime's source.bytes */
    __u64 databytes[2];     /* Arkime's: TCP in-order bytes of streams whose start is known; else L4 payload
                             * (ESP without its 8-byte header; 0 for protocols Arkime has no session type for) */
    __u64 first_ns;         /* bpf_ktime_get_ns() of the first packet */
    __u64 last_ns;
    __u32 tcpflags[TCPF_MAX];
    __u32 emitted;          /* records emitted for this flow */
    __u32 ring_lost;        /* records of this flow lost because the ring was full */
    __u32 seq_next[2];      /* TCP: next in-order sequence number per side (FLOW_SEQ_*) */
    __u8 payload8[16];      /* first payload bytes per side at [side * 8] (srcPayload8) */
    __u8 payload8_len[2];
    __u8 icmp_type[SENSOR_ICMP_MAX]; /* ICMP: distinct types in order of arrival (icmp.type); the
                             * first message's at [0] (Community ID); more than the bound are not kept */
    __u8 icmp_code[SENSOR_ICMP_MAX]; /* ICMP: distinct codes, likewise */
    __u8 icmp_types;        /* entries of icmp_type in use */
    __u8 icmp_codes;
    __u16 vlan[2];          /* the first two distinct VLAN ids seen (0 = none) */
    __u16 undecided_payloads; /* payload packets seen while UNDECIDED */
    __u8 verdict;           /* enum sensor_verdict */
    __u8 reason;            /* enum sensor_reason of the selection */
    __u8 client;            /* enum sensor_client */
    __u8 payload_seen;      /* bit per side: first payload seen */
    __u8 late_select;       /* selected on a payload after the other side's first payload passed */
    __u8 flags;             /* enum sensor_flow_flag */
    __u16 ethertype;        /* non-IP flows: the first frame's ethertype (802.3: its length field) */
    __u32 syn_seq;          /* TCP: the client's initial sequence number (of the SYN that created the flow,
                             * or a creating SYN-ACK's ack - 1; 0 unknown): a SYN repeating it is no new connection */
    __u32 owner;            /* 1 + the id of the CPU that created the flow */
    struct flow_counters own;
};

/* Port rules: (proto, port, role) -> nonzero. role 0 = client port, 1 = server port. */
struct port_key {
    __u8 proto;
    __u8 role;
    __u16 port;             /* host byte order */
};

/* A prefix shape groups the rules that compare the same bytes; the kernel
 * does one hash lookup per shape, so cost grows with shapes, not rules. */
struct prefix_shape {
    __u8 proto;             /* 0 = unused slot */
    __u8 len;               /* 1..SENSOR_PREFIX_MAX */
    __u8 last_mask;         /* mask for the last byte (0xf0 for a half byte) */
    __u8 pad;
    __u16 offset;           /* from the start of the L4 payload */
    __u16 pad2;
};

struct prefix_key {
    __u8 proto;
    __u8 len;
    __u16 offset;
    __u8 bytes[SENSOR_PREFIX_MAX]; /* masked; zero past len */
};

/* Tunables, one entry in `config`. */
struct sensor_config {
    __u32 snaplen;          /* bytes copied per record, <= SENSOR_MAX_SNAPLEN */
    __u32 max_undecided_payloads; /* payload packets before an undecided flow is IGNORED */
    __u32 emit_undecided;   /* 1: also emit first payloads of undecided flows */
    __u32 select_proto[8];  /* bit per IP protocol: select every flow of it (--proto, match-all classifiers) */
    __u32 rings;            /* rings in use, 1..SENSOR_RINGS_MAX: a flow's records go to ring flow_hash % rings */
    __u32 wakeup_bytes;     /* wake a ring's reader when a record takes the ring past this fill */
    __u32 vlan_key;         /* 1: flows are keyed on their first VLAN id too (flow_key.vlan) */
};

/* Later IP fragments carry no ports: they find their flow through the
 * (addresses, IP id) of a first fragment seen before. */
struct frag_key {
    __u8 src[16];
    __u8 dst[16];
    __u32 id;
    __u8 proto;
    __u8 pad[3];
};

/* Ring buffer record: this header, then caplen bytes of the frame. */
struct sensor_record {
    __u64 ts_ns;            /* bpf_ktime_get_ns() */
    __u32 ifindex;
    __u32 flow_hash;        /* symmetric: same for both directions */
    __u32 wire_len;         /* frame length on the wire */
    __u16 caplen;
    __u8 side;              /* enum sensor_side of the sender */
    __u8 client;            /* enum sensor_client */
    __u8 reason;            /* enum sensor_reason */
    __u8 verdict;
    __u8 pad[2];
    struct flow_key key;
};

/* The header walk (bpf/parse.h): its depths, results and tunnel bits. The
 * Python side (sensor/walk.py, sensor/packet.py) uses the same names through
 * sensor/kernel/contract.py; tests/kernel/test_contract.py checks the values. */
#define SENSOR_WALK_STEPS 8         /* headers walked per frame: Ethernet, MPLS, PPPoE, PPP, ERSPAN, IP (+ GRE or UDP tunnel) */
#define SENSOR_VLAN_MAX 2           /* VLAN tags per Ethernet header */
#define SENSOR_MPLS_MAX 8           /* labels in one MPLS stack */
#define SENSOR_GTP_EXT_MAX 4        /* GTP-U extension headers */
#define SENSOR_WALK_OFFSET_MAX 2048 /* a tunnel whose inner header starts further in is not taken apart (Arkime: corrupt) */

enum walk_result {
    WALK_FLOW = 0,          /* the innermost IP header and where its L4 starts */
    WALK_LATER_FRAGMENT,    /* a non-first IP fragment: no L4 header */
    WALK_TRUNCATED,         /* a header ran past the end of the frame */
    WALK_NOT_IP,            /* no IP packet inside (ARP, LLDP, an unknown encapsulation, ...) */
    WALK_EXT_LIMIT,         /* more than SENSOR_IPV6_EXT_MAX IPv6 extension headers */
    WALK_DEPTH_LIMIT,       /* more than SENSOR_WALK_STEPS headers */
};

/* Encapsulations a packet came out of, named as Arkime's `protocol` list. */
enum sensor_tunnel {
    TUNNEL_NONE = 0,
    TUNNEL_GRE = 1,
    TUNNEL_PPPOE = 2,
    TUNNEL_PPP = 4,
    TUNNEL_MPLS = 8,
    TUNNEL_GTP = 16,
    TUNNEL_VXLAN = 32,
    TUNNEL_VXLAN_GPE = 64,
    TUNNEL_GENEVE = 128,
    TUNNEL_IP = 256,        /* IP-in-IP, IPv6-in-IPv4, ...: Arkime names no protocol for it */
};

/* What a UDP destination port carries, in the `udp_tunnels` array (index: host-order port). */
enum udp_tunnel {
    UDP_TUNNEL_NONE = 0,
    UDP_TUNNEL_VXLAN = 1,
    UDP_TUNNEL_VXLAN_GPE = 2,
    UDP_TUNNEL_GENEVE = 3,
    UDP_TUNNEL_GTP = 4,
};

/* Frames that carry no IP packet are flows too, keyed as Arkime keys its
 * non-IP sessions (bpf/ether.h; sensor/flows/ether.py in Python): the key's
 * family is 0 and its proto the kind below; addr holds the frame's MAC pair
 * (destination, source) for ETHER_UNKNOWN, with the ethertype in port[0]
 * (network order), and for ETHER_CORRUPT, the IPv4 address asked for or told
 * for ETHER_ARP, nothing for the others. Every frame counts on SIDE_LO (Arkime
 * counts them all on the source side); no rule selects them. */
#define SENSOR_ETHER_VLAN_MAX 8     /* VLAN tags before a non-IP ethertype (Arkime's bound) */

enum sensor_ether_kind {
    ETHER_ARP = 1,          /* Ethernet/IPv4 request or reply: by the address asked for or told */
    ETHER_LLDP,
    ETHER_ISIS,             /* 802.3 LLC fe fe 03, NLPID 0x83 */
    ETHER_XID,              /* 802.2 XID */
    ETHER_UNKNOWN,          /* another ethertype: by MAC pair and ethertype */
    ETHER_CORRUPT,          /* an 802.3 frame or an ARP that cannot be read: by MAC pair */
};

/* TCP header flag bits (byte 13), and AE (byte 12, bit 0). */
#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_PSH 0x08
#define TCP_FLAG_ACK 0x10
#define TCP_FLAG_URG 0x20
#define TCP_FLAG_ECE 0x40
#define TCP_FLAG_CWR 0x80

#endif
