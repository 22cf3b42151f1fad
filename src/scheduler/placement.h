/* The placement engine: chooses container instances for tasks the way ECS
 * does, as a pure function over a snapshot of the cluster.
 *
 * Order of evaluation per instance (the first failing check is the reason
 * reported in RunTask failures[]):
 *   status ACTIVE ("INACTIVE") → agent connected ("AGENT") → capacity type
 *   ("LAUNCH_TYPE") → requiresAttributes ("ATTRIBUTE") → memberOf constraints
 *   ("MemberOf placement constraint unsatisfied.") → CPU, MEMORY, PORTS,
 *   PORTS_UDP ("RESOURCE:*") → distinctInstance ("DistinctInstance placement
 *   constraint unsatisfied.").
 * Among the instances that pass, strategies pick one, compared
 * lexicographically in the order given: binpack (least remaining cpu or
 * memory after placement), spread (fewest tasks of the request's group per
 * instance, or per value of an attribute), random. With no strategy the choice
 * is random.
 *
 * sched_place updates the snapshot as it places (remaining resources, ports,
 * group counts), so consecutive calls see earlier placements. memberOf
 * targets (qt) are not updated: expressions, task:group included, see the
 * cluster as it was when the snapshot was taken, and are evaluated once per
 * instance per call. It allocates
 * nothing proportional to the cluster except two small scratch arrays. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "query.h"

typedef struct sched_attr {
    const char *name;
    const char *value; /* NULL: present without value */
} sched_attr;

typedef struct sched_instance {
    const char *id;
    const char *arn;
    bool active;    /* status ACTIVE (DRAINING and others take no new tasks) */
    bool connected; /* agent connected */
    bool ec2_ok;
    bool fargate_ok;
    int64_t cpu;     /* remaining */
    int64_t memory;  /* remaining */
    uint16_t *ports; /* TCP host ports in use */
    size_t nports, ports_cap;
    uint16_t *ports_udp;
    size_t nports_udp, ports_udp_cap;
    const sched_attr *attrs;
    size_t nattrs;
    unsigned same_group;   /* live tasks of the request's group on this instance */
    sched_query_target qt; /* for memberOf */
} sched_instance;

typedef enum sched_strategy_kind {
    SCHED_BINPACK_CPU,
    SCHED_BINPACK_MEMORY,
    SCHED_SPREAD_INSTANCE,
    SCHED_SPREAD_ATTRIBUTE,
    SCHED_RANDOM,
} sched_strategy_kind;

typedef struct sched_strategy {
    sched_strategy_kind kind;
    const char *attribute; /* SCHED_SPREAD_ATTRIBUTE */
} sched_strategy;

typedef struct sched_request {
    int64_t cpu;
    int64_t memory;
    const uint16_t *ports;
    size_t nports;
    const uint16_t *ports_udp;
    size_t nports_udp;
    const sched_attr *required; /* requiresAttributes */
    size_t nrequired;
    bool distinct_instance;
    const sched_query *const *member_of;
    size_t nmember_of;
    const sched_strategy *strategies; /* at most 5 */
    size_t nstrategies;
    bool fargate;
    uint64_t seed; /* random strategy */
} sched_request;

typedef enum sched_reason {
    SCHED_OK = 0,
    SCHED_F_INACTIVE,
    SCHED_F_AGENT,
    SCHED_F_LAUNCH_TYPE,
    SCHED_F_ATTRIBUTE,
    SCHED_F_MEMBER_OF,
    SCHED_F_CPU,
    SCHED_F_MEMORY,
    SCHED_F_PORTS,
    SCHED_F_PORTS_UDP,
    SCHED_F_DISTINCT,
    _SCHED_F_MAX,
} sched_reason;

const char *sched_reason_string(sched_reason r);

/* Places count tasks. ret_chosen[k] is the index of the instance for task k,
 * or -1 when none fits (then every later task is -1 too). ret_reasons[i]
 * (n entries, may be NULL) tells why instance i was rejected for the first
 * task that could not be placed (SCHED_OK if it was not rejected). Returns
 * the number of tasks placed. */
unsigned sched_place(sched_instance *instances, size_t n, const sched_request *req, unsigned count,
                     int *ret_chosen, sched_reason *ret_reasons);

/* Helpers for building snapshots. */
bool sched_instance_has_port(const sched_instance *in, uint16_t port, bool udp);
void sched_instance_add_port(sched_instance *in, uint16_t port, bool udp);
void sched_instance_done(sched_instance *in);
