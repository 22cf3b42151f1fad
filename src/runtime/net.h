/* Container networking for the node agent: network namespaces and CNI.
 *
 * Plugins from Debian's containernetworking-plugins (bridge, host-local IPAM,
 * portmap, loopback) are invoked per the CNI 1.0 spec: the plugin binary is
 * executed with CNI_COMMAND/CNI_CONTAINERID/CNI_NETNS/CNI_IFNAME/CNI_PATH in
 * the environment and the network configuration on stdin; a chain (bridge →
 * portmap) passes each plugin's result as "prevResult" to the next, and DEL
 * runs the chain in reverse with the cached ADD result. Results are cached
 * under state_dir so DEL works after an agent restart.
 *
 * Two networks per agent:
 *   "bridge": docker-style bridge mode, one netns per container, NAT'd host
 *             ports through portmap (also reachable on 127.0.0.1).
 *   "awsvpc": one netns per task on a separate bridge/subnet, no host ports;
 *             the task's IP and MAC are reported as its ENI attachment.
 * Names and subnets come from rt_net_config so several agents on one host never
 * clash. All calls are synchronous (a plugin run takes milliseconds; each is
 * killed after 60 s). Plugins run as child processes: the caller must not set
 * SIGCHLD to SIG_IGN (blocking it for a signalfd is fine).
 *
 * Generated configuration (CNI network name "skiff-<network>-<bridge>"):
 *   bridge plugin: isGateway, hairpinMode, host-local IPAM over the
 *     configured subnet with dataDir STATE/ipam and a default route; ipMasq
 *     is off: the first ADD on a subnet in a process ensures one rule instead,
 *       nat POSTROUTING -s SUBNET ! -d SUBNET -j MASQUERADE
 *     (comment "skiff: masquerade SUBNET"), kept like the bridge;
 *   portmap (the "bridge" network, only for an attach with port mappings):
 *     capabilities.portMappings, snat.
 * portmap's DNAT hooks OUTPUT as well as PREROUTING (addrtype LOCAL) and sets
 * route_localnet on the bridge, so published ports answer on 127.0.0.1 and on
 * every host address, including from other containers (hairpin: masqueraded).
 * Because route_localnet would also let the bridge reach services bound to the
 * host's 127.0.0.1, an ADD that runs portmap ensures one filter rule per bridge:
 *   INPUT -i BRIDGE -d 127.0.0.0/8 ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
 * (comment "skiff: drop non-local 127/8 on BRIDGE"; like the bridge itself it
 * stays after the last DEL).
 *
 * State under state_dir: ipam/<name>/ (host-local leases) and
 * cni/<network>-<id>.json (the configuration, netns, port mappings and ADD
 * result, written before ADD runs so DEL can clean up after a crash).
 * Shared top-level iptables chains (CNI-HOSTPORT-DNAT/-SETMARK/-MASQ and their
 * jumps) stay after the last DEL, as with every CNI runtime; everything per
 * attachment (veth, lease, CNI-<hash> and CNI-DN-<hash> chains) is removed.
 *
 * Ids are rt_id_valid ([A-Za-z0-9_.-]{1,64}); bridge names 1-15 characters of
 * [A-Za-z0-9_.-]; subnets IPv4 CIDRs /8../30 without host bits. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "basic/err.h"

typedef struct rt_net_config {
    const char *cni_bin_dir;   /* default /usr/lib/cni */
    const char *state_dir;     /* netns files, IPAM data, cached results */
    const char *bridge_name;   /* e.g. "skb1a2b3" (≤ 15 chars) */
    const char *bridge_subnet; /* e.g. "10.213.0.0/24" */
    const char *awsvpc_bridge; /* e.g. "ska1a2b3" */
    const char *awsvpc_subnet; /* e.g. "10.214.0.0/24" */
    const char *iptables_path; /* default "iptables" from PATH; used for the
                                * 127/8 guard and ipMasq cleanup below */
} rt_net_config;

typedef struct rt_port_mapping {
    uint16_t host_port;
    uint16_t container_port;
    const char *protocol; /* "tcp" | "udp" */
} rt_port_mapping;

typedef struct rt_net_result {
    char ip[64];   /* "10.213.0.5" (no prefix) */
    char cidr[64]; /* "10.213.0.5/24" */
    char gateway[64];
    char mac[32];
    char ifname[16];
} rt_net_result;

#define RT_NET_MAX_PORTS 256

/* Creates a new network namespace bound at path (a file under state_dir),
 * with loopback up. The namespace lives until rt_netns_delete. Forks a child
 * that unshares and bind-mounts /proc/self/ns/net onto path (in the caller's
 * mount namespace). SK_E_EXISTS when path exists. */
int rt_netns_create(const char *path, sk_err *err);
/* Unmounts (MNT_DETACH: processes still inside keep it alive) and removes it;
 * missing is not an error. Call rt_cni_del first: the bridge plugin needs the
 * namespace to delete the veth (rt_cni_del copes when it is already gone). */
int rt_netns_delete(const char *path, sk_err *err);

/* Attaches the netns to network ("bridge" or "awsvpc") as eth0, publishing
 * the port mappings (bridge only). id must be unique per attachment (e.g. the
 * container or task id) and is what DEL needs. At most RT_NET_MAX_PORTS
 * mappings, protocol NULL means "tcp". SK_E_EXISTS when id is already
 * attached (also after a crash in the middle of ADD: call rt_cni_del first);
 * SK_E_NOT_FOUND when netns_path is not a namespace; SK_E_SYSTEM
 * with the plugin's message when a plugin fails (the partial attachment is
 * deleted again). */
int rt_cni_add(const rt_net_config *cfg, const char *network, const char *id,
               const char *netns_path, const rt_port_mapping *ports, size_t nports,
               rt_net_result *ret, sk_err *err);
/* Detaches (releases the IP lease, removes port-forward rules and the veth).
 * Idempotent; works without the cached ADD result and after the netns is gone
 * (then the bridge plugin's ipMasq rules are removed here). */
int rt_cni_del(const rt_net_config *cfg, const char *network, const char *id,
               const char *netns_path, sk_err *err);

/* Whether a host TCP/UDP port is free to bind on the host right now (tries
 * bind() on 0.0.0.0 and [::]). Ports published through portmap are DNAT rules,
 * not sockets: the agent must track its own allocations as well. */
bool rt_port_free(uint16_t port, const char *protocol);

/* Host-wide claims on host ports, shared by every agent of the host: the file
 * DIR/<proto>-<port> locked with an exclusive flock, so a claim dies with its
 * process. Returns the fd that holds the claim, -EADDRINUSE when another
 * process holds it, or another -errno. */
int rt_port_claim(const char *dir, uint16_t port, const char *protocol);
/* Gives up a claim (fd from rt_port_claim; < 0 is ignored). */
void rt_port_unclaim(const char *dir, uint16_t port, const char *protocol, int fd);

/* For tests and fuzzing: parses "a.b.c.d/n" (-EINVAL when malformed). */
int rt_parse_ipv4_cidr(const char *s, uint32_t *ret_addr, unsigned *ret_prefix);
/* Fills ret from a CNI 1.0 result: the IPv4 address on the sandbox interface
 * (else the first IPv4 address), its gateway, and that interface's MAC and
 * name. SK_E_INVALID when there is no usable address. */
int rt_cni_parse_result(const char *data, size_t len, rt_net_result *ret, sk_err *err);
int rt_cni_parse_result_json(const json_t *result, rt_net_result *ret, sk_err *err);
