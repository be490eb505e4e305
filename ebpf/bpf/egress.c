// SPDX-License-Identifier: Apache-2.0
//
// Firebreak's egress enforcement point: cgroup connect/sendmsg hooks that refuse (EPERM) a
// destination listed in a deny map for one of the calling task's cgroups.
//
// Userspace (ebpf/src/kernel.rs) attaches these programs only to the cgroups of contained
// workloads, so they never run for anything else. A process may sit below the attached cgroup
// (a container cgroup under a pod cgroup), so the hook walks the task's cgroup ancestry and
// checks only the levels userspace marked as watched.
//
// Compiled by ebpf/build.rs: clang -O2 -g -target bpf. Keep the structs in step with kernel.rs.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// Deeper than any real hierarchy (systemd + kubepods use < 10 levels); bounds the loop.
#define MAX_CGROUP_DEPTH 32
#define MAX_DENY_ENTRIES 16384

struct deny_key {
	__u64 cgroup_id;
	// IPv6 address in network byte order; IPv4 as the mapped address ::ffff:a.b.c.d, so
	// connect6 on a dual-stack socket to a mapped IPv4 address hits the same entry.
	__u32 addr[4];
	// Host byte order; 0 = every port.
	__u16 port;
	// 1 = every destination (network.isolate_workload); addr and port are then zero.
	__u8 every_destination;
	__u8 pad[5];
};

// One entry per (incident, deny entry): an entry is removed only when no incident holds it.
// Read and written by userspace only; declared here so the loader creates and pins it.
struct hold_key {
	struct deny_key deny;
	__u64 incident;
};

// Value: how many incidents hold the entry (informational, for bpftool map dump).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_DENY_ENTRIES);
	__type(key, struct deny_key);
	__type(value, __u32);
} fb_deny_v1 SEC(".maps");

// Cgroup ids that have deny entries; value unused (1).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u8);
} fb_watched_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_DENY_ENTRIES);
	__type(key, struct hold_key);
	__type(value, __u8);
} fb_holds_v1 SEC(".maps");

static __always_inline int denied_for(__u64 cgroup_id, const __u32 addr[4], __u16 port)
{
	struct deny_key key;

	__builtin_memset(&key, 0, sizeof(key));
	key.cgroup_id = cgroup_id;
	key.every_destination = 1;
	if (bpf_map_lookup_elem(&fb_deny_v1, &key))
		return 1;
	key.every_destination = 0;
	key.addr[0] = addr[0];
	key.addr[1] = addr[1];
	key.addr[2] = addr[2];
	key.addr[3] = addr[3];
	key.port = port;
	if (bpf_map_lookup_elem(&fb_deny_v1, &key))
		return 1;
	key.port = 0;
	return bpf_map_lookup_elem(&fb_deny_v1, &key) != 0;
}

// 1 = let the call through, 0 = refuse it with EPERM.
static __always_inline int verdict(const __u32 addr[4], __u16 port)
{
	for (int level = 0; level < MAX_CGROUP_DEPTH; level++) {
		__u64 id = bpf_get_current_ancestor_cgroup_id(level);

		if (id == 0)
			break;
		if (bpf_map_lookup_elem(&fb_watched_v1, &id) && denied_for(id, addr, port))
			return 0;
	}
	return 1;
}

static __always_inline int verdict4(struct bpf_sock_addr *ctx)
{
	__u32 addr[4] = { 0, 0, bpf_htonl(0xffff), ctx->user_ip4 };

	return verdict(addr, bpf_ntohs((__u16)ctx->user_port));
}

static __always_inline int verdict6(struct bpf_sock_addr *ctx)
{
	__u32 addr[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3] };

	return verdict(addr, bpf_ntohs((__u16)ctx->user_port));
}

SEC("cgroup/connect4")
int fb_connect4(struct bpf_sock_addr *ctx)
{
	return verdict4(ctx);
}

SEC("cgroup/connect6")
int fb_connect6(struct bpf_sock_addr *ctx)
{
	return verdict6(ctx);
}

// Unconnected UDP (sendto/sendmsg with an address); connected sockets went through connect.
SEC("cgroup/sendmsg4")
int fb_sendmsg4(struct bpf_sock_addr *ctx)
{
	return verdict4(ctx);
}

SEC("cgroup/sendmsg6")
int fb_sendmsg6(struct bpf_sock_addr *ctx)
{
	return verdict6(ctx);
}

// No GPL-only helper is used, so the project's own license is accepted by the verifier.
char LICENSE[] SEC("license") = "Apache-2.0";
