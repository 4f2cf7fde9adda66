// SPDX-License-Identifier: Apache-2.0
//
// Passive IP-conflict watcher: a tc ingress program (clsact, direct action) for bcc.
//
// It reads every frame a link receives and looks for stations that claim an address:
//   - ARP (RFC 826), request or reply, Ethernet/IPv4: the sender protocol address is
//     claimed by the sender hardware address (RFC 5227 §2.1.1 counts "any ARP packet"
//     with that sender address). A probe, sender 0.0.0.0 (RFC 5227 §2.1.1), claims
//     nothing and is skipped.
//   - IPv6 Neighbor Advertisement (RFC 4861 §4.4): the target address is claimed by the
//     Target Link-Layer Address option when present, else by the Ethernet source.
//     Only what §7.1.2 lets the program check cheaply is checked: hop limit 255, ICMP
//     code 0, length >= 24, options of non-zero length. The checksum is not verified
//     (the payload has no fixed bound the verifier would accept in a loop).
// A claim for an address in `watched` from a MAC other than its owner's is reported
// through `events`. The frame is always passed on (TC_ACT_OK): the watcher only listens.
//
// Build-time switch: -DCW_PERF_OUTPUT reports through a perf buffer instead of a ring
// buffer, for kernels older than 5.8 (BPF_MAP_TYPE_RINGBUF).

#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/pkt_cls.h>

#define ETH_HLEN_ 14
#define ARP_LEN 28
#define IPV6_HLEN 40
#define NA_LEN 24
#define ARPHRD_ETHER_ 1
#define ARP_REQUEST 1
#define ARP_REPLY 2
#define IPPROTO_ICMPV6_ 58
#define ND_NEIGHBOR_ADVERT 136
#define ND_OPT_TARGET_LINKADDR 2
// Options read before giving up: an NA carries one or two (RFC 4861 §4.4).
#define MAX_ND_OPTIONS 8

// The address claimed: IPv6, or IPv4 as an IPv4-mapped IPv6 address (::ffff:a.b.c.d,
// RFC 4291 §2.5.5.2), so one map holds both families.
struct watch_key {
    u8 addr[16];
};

struct watch_owner {
    u8 mac[6];
};

// One claim by a station other than the owner. Laid out without implicit padding; the
// Python side decodes it with ctypes (node/detect/watch.py, _Event).
struct conflict_event {
    u64 ktime_ns;  // bpf_ktime_get_ns: CLOCK_MONOTONIC
    u32 ifindex;
    u8 family;     // 4 or 6
    u8 pad[3];
    u8 addr[16];   // as in watch_key
    u8 mac[6];     // the claiming station
    u8 pad2[2];
};

BPF_HASH(watched, struct watch_key, struct watch_owner, 4096);
#ifdef CW_PERF_OUTPUT
BPF_PERF_OUTPUT(events);
#else
BPF_RINGBUF_OUTPUT(events, 16);  // pages
#endif

static __always_inline int mac_is_zero(const u8 *mac) {
    return (mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5]) == 0;
}

static __always_inline int same_mac(const u8 *a, const u8 *b) {
    return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4] &&
           a[5] == b[5];
}

static __always_inline void check_claim(struct __sk_buff *skb, struct watch_key *key,
                                        const u8 *mac, u8 family) {
    if (mac_is_zero(mac))
        return;  // names no station
    struct watch_owner *owner = watched.lookup(key);
    if (!owner || same_mac(owner->mac, mac))
        return;
    struct conflict_event ev = {};
    ev.ktime_ns = bpf_ktime_get_ns();
    ev.ifindex = skb->ifindex;
    ev.family = family;
    __builtin_memcpy(ev.addr, key->addr, 16);
    __builtin_memcpy(ev.mac, mac, 6);
#ifdef CW_PERF_OUTPUT
    events.perf_submit(skb, &ev, sizeof(ev));
#else
    events.ringbuf_output(&ev, sizeof(ev), 0);
#endif
}

static __always_inline void watch_arp(struct __sk_buff *skb) {
    // htype(2) ptype(2) hlen(1) plen(1) op(2) sha(6) spa(4) tha(6) tpa(4)
    u8 arp[ARP_LEN];
    if (bpf_skb_load_bytes(skb, ETH_HLEN_, arp, ARP_LEN) < 0)
        return;
    u16 htype = (arp[0] << 8) | arp[1];
    u16 ptype = (arp[2] << 8) | arp[3];
    u16 op = (arp[6] << 8) | arp[7];
    if (htype != ARPHRD_ETHER_ || ptype != ETH_P_IP || arp[4] != 6 || arp[5] != 4)
        return;
    if (op != ARP_REQUEST && op != ARP_REPLY)
        return;
    if ((arp[14] | arp[15] | arp[16] | arp[17]) == 0)
        return;  // an RFC 5227 probe: sender 0.0.0.0 claims nothing
    struct watch_key key = {};
    key.addr[10] = 0xff;
    key.addr[11] = 0xff;
    __builtin_memcpy(&key.addr[12], &arp[14], 4);
    check_claim(skb, &key, &arp[8], 4);
}

static __always_inline void watch_na(struct __sk_buff *skb, const u8 *eth_src) {
    u8 ip6[IPV6_HLEN];
    if (bpf_skb_load_bytes(skb, ETH_HLEN_, ip6, IPV6_HLEN) < 0)
        return;
    u32 payload = (ip6[4] << 8) | ip6[5];
    // Next header ICMPv6 directly (an NA carries no extension headers in practice; one
    // that does is not parsed), hop limit 255 (RFC 4861 §7.1.2).
    if (ip6[6] != IPPROTO_ICMPV6_ || ip6[7] != 255 || payload < NA_LEN)
        return;
    u32 at = ETH_HLEN_ + IPV6_HLEN;
    if (payload > skb->len - at)
        return;
    u8 na[NA_LEN];
    if (bpf_skb_load_bytes(skb, at, na, NA_LEN) < 0)
        return;
    if (na[0] != ND_NEIGHBOR_ADVERT || na[1] != 0)
        return;
    struct watch_key key = {};
    __builtin_memcpy(key.addr, &na[8], 16);

    // Options (RFC 4861 §4.6): type(1) length(1, in units of 8 bytes) value.
    u8 mac[6];
    __builtin_memcpy(mac, eth_src, 6);
    u32 end = at + payload;
    u32 opt = at + NA_LEN;
#pragma unroll
    for (int i = 0; i < MAX_ND_OPTIONS; i++) {
        if (opt + 2 > end)
            break;
        u8 head[8];
        if (bpf_skb_load_bytes(skb, opt, head, 2) < 0)
            return;
        u32 units = head[1];
        if (units == 0 || opt + units * 8 > end)
            return;  // §7.1.2: an option of length zero invalidates the message
        if (head[0] == ND_OPT_TARGET_LINKADDR) {
            if (bpf_skb_load_bytes(skb, opt + 2, mac, 6) < 0)
                return;
            break;
        }
        opt += units * 8;
    }
    check_claim(skb, &key, mac, 6);
}

int conflict_watch(struct __sk_buff *skb) {
    u8 eth[ETH_HLEN_];
    if (bpf_skb_load_bytes(skb, 0, eth, ETH_HLEN_) < 0)
        return TC_ACT_OK;
    u16 proto = (eth[12] << 8) | eth[13];
    if (proto == ETH_P_ARP)
        watch_arp(skb);
    else if (proto == ETH_P_IPV6)
        watch_na(skb, &eth[6]);
    return TC_ACT_OK;
}
