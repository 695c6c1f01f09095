// inferlane's L4 fast path: NAT load balancing of one virtual IP:port in TC (clsact).
//
// Both programs attach to the load balancer's client-facing interface:
//   to_backend   (ingress) client -> VIP:port becomes client -> backend:port, before routing,
//                so the kernel forwards it (net.ipv4.ip_forward=1) with its own routes,
//                neighbours, MTU handling and firewall;
//   from_backend (egress)  backend:port -> client becomes VIP:port -> client, after routing.
// Rewriting replies on the way *out* of the client interface, not on the way in from the
// backends, means the kernel routes and reverse-path-filters the backend's real address
// (a VIP source arriving from the backend side fails a strict rp_filter, and is a martian
// if the VIP is local), and one interface serves both one-armed and two-armed setups.
//
// IPv4 TCP or UDP only; IP fragments pass untouched (only the first one carries ports).
//
// A packet that is not ours gets TC_ACT_UNSPEC: classification goes on to the next filter
// (another VIP's instance on the same interface), or the default (pass) when there is none.
//
// The control plane (inferlane.l4.ebpf) owns the maps: it writes `config` once, keeps
// `backends` and the Maglev table up to date, and reads `stats`. The kernel's wire format is
// mirrored in inferlane/l4/ebpf/layout.py; keep both in step.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <stddef.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define MAX_BACKENDS 4096
#define MAX_FLOWS 131072
#define NO_BACKEND 0xffffffffu
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff
#define TCP_SYN_BIT 0x02 // the flags byte, 13 bytes into the TCP header
#define TCP_ACK_BIT 0x10

struct lb_config {
	__be32 vip;
	__be16 port;
	__u8 protocol;
	__u8 pad;
	__u32 table_size; // slots in each Maglev table (prime)
	__u32 pad2;
	__u64 udp_idle_ns; // 0: UDP flows never go idle
};

struct backend {
	__be32 ip; // 0: an unused index
	__be16 port;
	__u16 pad;
};

// A flow as a packet names it: to_backend keys `flows` by (client, VIP), from_backend keys
// `replies` by (backend, client).
struct flow_key {
	__be32 src_ip;
	__be32 dst_ip;
	__be16 src_port;
	__be16 dst_port;
	__u8 protocol;
	__u8 pad[3];
};

// Where a flow's packets are rewritten to: the backend (in `flows`) or the VIP (in
// `replies`). The address is copied in, not looked up by index, so a flow keeps its backend
// even after the control plane frees that index.
struct flow_target {
	__be32 ip;
	__be16 port;
	__u16 pad;
	__u32 backend; // index into `backends` and `stats`
	__u32 pad2;
	__u64 last_seen_ns; // UDP idle timeout; refreshed only in `flows`
};

struct counters {
	__u64 packets; // client -> backend
	__u64 bytes; // at L3
	__u64 reply_packets; // backend -> client
	__u64 reply_bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct backend);
} backends SEC(".maps");

// One slot holding the current Maglev table (an ARRAY of backend indexes). The control plane
// fills a new table off to the side and swaps this slot, so a packet sees either the old
// table or the new one, never a half-written mix (Katran's scheme). The inner map's shape
// comes from a template the control plane passes in before loading (its size is runtime).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} maglev SEC(".maps");

// LRU: flows are never closed explicitly (no TCP state tracking); the least recently used
// ones make room when the table is full. A flow evicted mid-connection is looked up again
// in the Maglev table, which gives the same backend unless the table changed meanwhile.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_FLOWS);
	__type(key, struct flow_key);
	__type(value, struct flow_target);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_FLOWS);
	__type(key, struct flow_key);
	__type(value, struct flow_target);
} replies SEC(".maps");

// Per backend index; the extra last entry counts packets dropped for want of a backend.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_BACKENDS + 1);
	__type(key, __u32);
	__type(value, struct counters);
} stats SEC(".maps");

// The kernel's jhash_3words (lookup3's final mix); inferlane/l4/ebpf/flowhash.py mirrors it
// so tests and tools can tell which backend a flow gets.
static __always_inline __u32 rol32(__u32 word, unsigned int shift)
{
	return (word << shift) | (word >> (32 - shift));
}

static __always_inline __u32 flow_hash(const struct flow_key *key)
{
	__u32 initval = 0xdeadbeef + (3 << 2) + key->protocol;
	__u32 a = bpf_ntohl(key->src_ip) + initval;
	__u32 b = bpf_ntohl(key->dst_ip) + initval;
	__u32 c = (((__u32)bpf_ntohs(key->src_port) << 16) | bpf_ntohs(key->dst_port)) + initval;

	c ^= b; c -= rol32(b, 14);
	a ^= c; a -= rol32(c, 11);
	b ^= a; b -= rol32(a, 25);
	c ^= b; c -= rol32(b, 16);
	a ^= c; a -= rol32(c, 4);
	b ^= a; b -= rol32(a, 14);
	c ^= b; c -= rol32(b, 24);
	return c;
}

// Reads through bpf_skb_load_bytes rather than direct packet access: it also works when
// the headers are not in the linear part of the skb, and 24 bytes of copying is noise next
// to the rest of the forwarding path. Returns the L4 offset, or 0 for "not ours".
static __always_inline __u32 parse(struct __sk_buff *skb, struct flow_key *key)
{
	struct iphdr ip;
	__be16 ports[2];
	__u32 l4_off;

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return 0;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0 || ip.ihl < 5)
		return 0;
	if (ip.protocol != IPPROTO_TCP && ip.protocol != IPPROTO_UDP)
		return 0;
	// Only a first fragment carries ports; rather than track fragments, leave them all alone.
	if (ip.frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return 0;
	l4_off = ETH_HLEN + ip.ihl * 4;
	if (bpf_skb_load_bytes(skb, l4_off, ports, sizeof(ports)) < 0)
		return 0;
	key->src_ip = ip.saddr;
	key->dst_ip = ip.daddr;
	key->src_port = ports[0];
	key->dst_port = ports[1];
	key->protocol = ip.protocol;
	return l4_off;
}

// Replace one address and one port (source or destination) and patch both checksums.
// BPF_F_PSEUDO_HDR keeps a CHECKSUM_PARTIAL skb (veth, TSO) right: there the L4 field holds
// only the pseudo-header sum, which the address is part of and the port is not.
// BPF_F_MARK_MANGLED_0 keeps a UDP checksum of 0 ("none") at 0 and writes a computed 0 as
// 0xffff.
static __always_inline int rewrite(struct __sk_buff *skb, __u32 l4_off, __u8 protocol,
				   int source, __be32 old_ip, __be32 new_ip, __be16 old_port,
				   __be16 new_port)
{
	__u32 ip_off = ETH_HLEN + (source ? offsetof(struct iphdr, saddr)
					  : offsetof(struct iphdr, daddr));
	__u32 port_off = l4_off + (source ? 0 : sizeof(__be16));
	__u32 check_off = l4_off + (protocol == IPPROTO_TCP ? offsetof(struct tcphdr, check)
							    : offsetof(struct udphdr, check));
	__u64 mangled = protocol == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (bpf_l4_csum_replace(skb, check_off, old_ip, new_ip,
				mangled | BPF_F_PSEUDO_HDR | sizeof(new_ip)) < 0)
		return -1;
	if (bpf_l4_csum_replace(skb, check_off, old_port, new_port,
				mangled | sizeof(new_port)) < 0)
		return -1;
	if (bpf_l3_csum_replace(skb, ETH_HLEN + offsetof(struct iphdr, check), old_ip, new_ip,
				sizeof(new_ip)) < 0)
		return -1;
	if (bpf_skb_store_bytes(skb, ip_off, &new_ip, sizeof(new_ip), 0) < 0)
		return -1;
	return bpf_skb_store_bytes(skb, port_off, &new_port, sizeof(new_port), 0);
}

// A GSO skb (TSO from a local sender, GRO on receive) is many packets on the wire.
static __always_inline void count(__u32 index, struct __sk_buff *skb, int reply)
{
	struct counters *counters = bpf_map_lookup_elem(&stats, &index);
	__u64 packets = skb->gso_segs > 1 ? skb->gso_segs : 1;
	__u64 bytes = skb->len - ETH_HLEN;

	if (!counters)
		return;
	if (reply) {
		counters->reply_packets += packets;
		counters->reply_bytes += bytes;
	} else {
		counters->packets += packets;
		counters->bytes += bytes;
	}
}

// A new flow: its backend from the current Maglev table, remembered both ways.
static __always_inline struct flow_target *pick(const struct lb_config *settings,
						struct flow_key *key, __u64 now)
{
	__u32 zero = 0, slot, index;
	struct flow_target forward = {}, reverse = {};
	struct flow_key reply_key = {};
	struct backend *backend;
	__u32 *entry;
	void *table;

	if (!settings->table_size)
		return NULL;
	table = bpf_map_lookup_elem(&maglev, &zero);
	if (!table)
		return NULL;
	slot = flow_hash(key) % settings->table_size;
	entry = bpf_map_lookup_elem(table, &slot);
	if (!entry || *entry == NO_BACKEND)
		return NULL;
	index = *entry;
	backend = bpf_map_lookup_elem(&backends, &index);
	if (!backend || !backend->ip)
		return NULL;

	forward.ip = backend->ip;
	forward.port = backend->port;
	forward.backend = index;
	forward.last_seen_ns = now;
	reverse.ip = key->dst_ip;
	reverse.port = key->dst_port;
	reverse.backend = index;
	reply_key.src_ip = backend->ip;
	reply_key.dst_ip = key->src_ip;
	reply_key.src_port = backend->port;
	reply_key.dst_port = key->src_port;
	reply_key.protocol = key->protocol;
	// Reverse entry first: a reply can only follow a packet that has been forwarded.
	if (bpf_map_update_elem(&replies, &reply_key, &reverse, BPF_ANY) < 0)
		return NULL;
	if (bpf_map_update_elem(&flows, key, &forward, BPF_ANY) < 0)
		return NULL;
	return bpf_map_lookup_elem(&flows, key);
}

// A client opening a connection straight to a backend (not through the VIP) from an
// address:port that an ended VIP flow used: the reply entry of that old flow would rewrite
// the backend's SYN-ACK to come from the VIP and the connection would never open. TCP entries
// are only evicted by the LRU, so a SYN (without ACK) to anything but the VIP forgets the
// reply entry of its reverse tuple. Only SYNs pay the lookup.
static __always_inline void forget_direct(struct __sk_buff *skb, __u32 l4_off,
					  const struct flow_key *key)
{
	struct flow_key reply_key = {};
	__u8 flags;

	if (key->protocol != IPPROTO_TCP)
		return;
	if (bpf_skb_load_bytes(skb, l4_off + 13, &flags, sizeof(flags)) < 0)
		return;
	if ((flags & (TCP_SYN_BIT | TCP_ACK_BIT)) != TCP_SYN_BIT)
		return;
	reply_key.src_ip = key->dst_ip;
	reply_key.dst_ip = key->src_ip;
	reply_key.src_port = key->dst_port;
	reply_key.dst_port = key->src_port;
	reply_key.protocol = key->protocol;
	bpf_map_delete_elem(&replies, &reply_key);
}

SEC("tc")
int to_backend(struct __sk_buff *skb)
{
	__u32 zero = 0, drops = MAX_BACKENDS;
	struct flow_key key = {};
	struct lb_config *settings;
	struct flow_target *target;
	__u64 now = 0;
	__u32 l4_off;

	settings = bpf_map_lookup_elem(&config, &zero);
	if (!settings)
		return TC_ACT_UNSPEC;
	l4_off = parse(skb, &key);
	if (!l4_off)
		return TC_ACT_UNSPEC;
	if (key.dst_ip != settings->vip || key.dst_port != settings->port ||
	    key.protocol != settings->protocol) {
		forget_direct(skb, l4_off, &key);
		return TC_ACT_UNSPEC;
	}

	if (key.protocol == IPPROTO_UDP && settings->udp_idle_ns)
		now = bpf_ktime_get_ns();
	target = bpf_map_lookup_elem(&flows, &key);
	if (target && now && now - target->last_seen_ns > settings->udp_idle_ns)
		target = NULL; // idle too long: a new flow, which may land elsewhere
	if (!target)
		target = pick(settings, &key, now);
	if (!target) {
		// No backend: dropping beats letting a packet for a VIP nobody owns wander on.
		count(drops, skb, 0);
		return TC_ACT_SHOT;
	}
	if (now)
		target->last_seen_ns = now;
	count(target->backend, skb, 0);
	if (rewrite(skb, l4_off, key.protocol, 0, key.dst_ip, target->ip, key.dst_port,
		    target->port) < 0)
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

// A UDP reply belongs to a VIP flow only while that flow is tracked and not idle past the
// timeout (the forward entry is keyed by client and VIP: the reply's destination and the
// reply entry's target).
static __always_inline int udp_flow_alive(const struct flow_key *reply,
					  const struct flow_target *vip)
{
	struct flow_key forward_key = {};
	struct lb_config *settings;
	struct flow_target *forward;
	__u32 zero = 0;

	settings = bpf_map_lookup_elem(&config, &zero);
	if (!settings || !settings->udp_idle_ns)
		return 1;
	forward_key.src_ip = reply->dst_ip;
	forward_key.dst_ip = vip->ip;
	forward_key.src_port = reply->dst_port;
	forward_key.dst_port = vip->port;
	forward_key.protocol = reply->protocol;
	forward = bpf_map_lookup_elem(&flows, &forward_key);
	return forward && bpf_ktime_get_ns() - forward->last_seen_ns <= settings->udp_idle_ns;
}

SEC("tc")
int from_backend(struct __sk_buff *skb)
{
	struct flow_key key = {};
	struct flow_target *target;
	__u32 l4_off;

	l4_off = parse(skb, &key);
	if (!l4_off)
		return TC_ACT_UNSPEC;
	target = bpf_map_lookup_elem(&replies, &key);
	if (!target)
		return TC_ACT_UNSPEC;
	if (key.protocol == IPPROTO_UDP && !udp_flow_alive(&key, target)) {
		// Its VIP flow idled out: this is some other exchange between the same two
		// address:port pairs, not ours to rewrite.
		bpf_map_delete_elem(&replies, &key);
		return TC_ACT_UNSPEC;
	}
	count(target->backend, skb, 1);
	if (rewrite(skb, l4_off, key.protocol, 1, key.src_ip, target->ip, key.src_port,
		    target->port) < 0)
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

// The project's license. The kernel reserves GPL-only helpers for GPL-compatible programs;
// none of the helpers above is one.
char LICENSE[] SEC("license") = "Apache-2.0";
