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
 * clash. All calls are synchronous (a plugin run takes milliseconds). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "basic/err.h"

typedef struct rt_net_config {
    const char *cni_bin_dir;    /* default /usr/lib/cni */
    const char *state_dir;      /* netns files, IPAM data, cached results */
    const char *bridge_name;    /* e.g. "skb1a2b3" (≤ 15 chars) */
    const char *bridge_subnet;  /* e.g. "10.213.0.0/24" */
    const char *awsvpc_bridge;  /* e.g. "ska1a2b3" */
    const char *awsvpc_subnet;  /* e.g. "10.214.0.0/24" */
} rt_net_config;

typedef struct rt_port_mapping {
    uint16_t host_port;
    uint16_t container_port;
    const char *protocol; /* "tcp" | "udp" */
} rt_port_mapping;

typedef struct rt_net_result {
    char ip[64];      /* "10.213.0.5" (no prefix) */
    char cidr[64];    /* "10.213.0.5/24" */
    char gateway[64];
    char mac[32];
    char ifname[16];
} rt_net_result;

/* Creates a new network namespace bound at path (a file under state_dir),
 * with loopback up. The namespace lives until rt_netns_delete. */
int rt_netns_create(const char *path, sk_err *err);
/* Unmounts and removes it; missing is not an error. */
int rt_netns_delete(const char *path, sk_err *err);

/* Attaches the netns to network ("bridge" or "awsvpc") as eth0, publishing
 * the port mappings (bridge only). id must be unique per attachment (e.g. the
 * container or task id) and is what DEL needs. */
int rt_cni_add(const rt_net_config *cfg, const char *network, const char *id,
               const char *netns_path, const rt_port_mapping *ports, size_t nports,
               rt_net_result *ret, sk_err *err);
/* Detaches (releases the IP lease, removes port-forward rules and the veth).
 * Idempotent. */
int rt_cni_del(const rt_net_config *cfg, const char *network, const char *id,
               const char *netns_path, sk_err *err);

/* Whether a host TCP/UDP port is free to bind on the host right now. */
bool rt_port_free(uint16_t port, const char *protocol);
