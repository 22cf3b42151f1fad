/* Internal to src/controlplane: shared helpers, the typed in-memory index,
 * and the handler declarations. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "basic/hmap.h"
#include "basic/omap.h"
#include "basic/timeutil.h"
#include "basic/vec.h"
#include "cp.h"
#include "scheduler/placement.h"
#include "shared/jsonutil.h"

#define CP_MAX_TASKS_PER_RUN 10
#define CP_MAX_TAGS          50

/* Task status, in lifecycle order. */
typedef enum cp_task_status {
    CP_TS_PROVISIONING,
    CP_TS_PENDING,
    CP_TS_ACTIVATING,
    CP_TS_RUNNING,
    CP_TS_DEACTIVATING,
    CP_TS_STOPPING,
    CP_TS_DEPROVISIONING,
    CP_TS_STOPPED,
    CP_TS_DELETED,
    _CP_TS_MAX,
    _CP_TS_INVALID = -1,
} cp_task_status;

const char *cp_task_status_name(cp_task_status s);
cp_task_status cp_task_status_from(const char *s);

typedef struct cp_cluster_idx cp_cluster_idx;
typedef struct cp_instance_info cp_instance_info;

/* Typed view of a task document, maintained from store watches. */
typedef struct cp_task_info {
    char *key;
    char *id;
    char *arn;
    char *family;
    char *td_arn;
    char *instance_id; /* NULL when not placed */
    char *started_by;
    char *group;
    char *service_name; /* from group "service:NAME" */
    char *launch_type;
    cp_task_status desired;
    cp_task_status last;
    usec_t created_at;
    usec_t stopped_at;
    bool counted_on_instance; /* contributes to the instance's task counts */
    cp_cluster_idx *cluster;
    usec_t started_at; /* realtime; 0 before RUNNING */
    char health;       /* 'H' healthy, 'U' unhealthy, '?' unknown, 0: no health check */
    bool protected_;   /* scale-in protection in effect */
    /* What the task holds on instance_id from placement until it is released
     * (_skiff.reserved while _skiff.released is unset). */
    bool reserves;
    int64_t rsv_cpu, rsv_memory;
    uint16_t *rsv_ports[2]; /* [0] TCP, [1] UDP host ports */
    size_t rsv_nports[2];
} cp_task_info;

/* Typed view of a container instance document. */
struct cp_instance_info {
    char *key;
    char *id;
    char *arn;
    char *status; /* ACTIVE, DRAINING, INACTIVE, REGISTERING, ... */
    char *ec2_instance_id;
    bool managed;         /* only Fargate capacity: hidden from ListContainerInstances */
    bool fargate_ok;      /* may run FARGATE tasks (skiff.capacity lists FARGATE) */
    bool ec2_ok;          /* may run EC2/EXTERNAL tasks */
    usec_t last_seen;     /* monotonic; 0 = never since start */
    unsigned polls_held;  /* agent polls waiting in cp-acs.c: connected meanwhile */
    usec_t watched_since; /* monotonic: when this server started watching it */
    unsigned running_tasks;
    unsigned pending_tasks;
    json_t *doc; /* parsed document (borrowed view for placement and filters) */
    cp_cluster_idx *cluster;
    /* Cached for the placement engine (parsed from doc on every change):
     * registeredResources, whose PORTS are the ports the host reserves. */
    int64_t reg_cpu, reg_memory;
    uint16_t *ports[2]; /* [0] TCP, [1] UDP */
    size_t nports[2];
    /* Held by the instance's live tasks (sum of cp_task_info reservations),
     * maintained by the index; remaining = registered - used. */
    int64_t used_cpu, used_memory;
    uint16_t *used_ports[2]; /* multiset: one entry per holding task */
    size_t nused_ports[2], capused_ports[2];
    sched_attr *attrs; /* names/values point into doc */
    size_t nattrs;
    usec_t registered_at;
    const char *agent_version; /* in doc */
    size_t slot;               /* index in cluster->slots, stable while indexed */
    bool active, inactive;     /* status is ACTIVE / INACTIVE */
    sk_vec tasks;              /* cp_task_info* (borrowed): tasks placed here, not STOPPED */
};

/* Active revisions of a task-definition family, ascending. */
typedef struct cp_family_idx {
    char *key;
    int64_t *active;
    size_t n, cap;
} cp_family_idx;

/* Live (not STOPPED) tasks of one task group, per instance slot. */
typedef struct cp_group_idx {
    char *group;
    unsigned *counts; /* by cp_instance_info.slot */
    size_t cap;
    unsigned total;
} cp_group_idx;

/* The group's entry (NULL when no live task has it) and the count on in. */
const cp_group_idx *cp_group_find(const cp_cluster_idx *cl, const char *group);
static inline unsigned cp_group_on(const cp_group_idx *g, const cp_instance_info *in)
{
    return g && in->slot < g->cap ? g->counts[in->slot] : 0;
}

unsigned cp_instance_group_count(const cp_instance_info *in, const char *group);
/* remainingResources as DescribeContainerInstances reports it: the
 * registered resources minus what live tasks hold. */
json_t *cp_instance_remaining(const cp_instance_info *in);

/* Per-cluster index and counters. */
struct cp_cluster_idx {
    char *scope_cluster; /* "acct/region/name" */
    sk_omap *tasks;      /* id -> cp_task_info* */
    sk_omap *instances;  /* id -> cp_instance_info* */
    /* The same instances by slot (NULL: free slot), for whole-cluster scans. */
    cp_instance_info **slots;
    size_t nslots, slots_cap;
    size_t *free_slots;
    size_t nfree, free_cap;
    sk_hmap groups; /* group -> cp_group_idx* */
    unsigned running_tasks;
    unsigned pending_tasks;
    unsigned active_services;
    unsigned draining_services;
    unsigned registered_instances; /* ACTIVE or DRAINING */
};

struct cp {
    ev_loop *loop;
    store *st;
    cp_config cfg;
    char *account_id;
    char *region;
    char *endpoint_url;
    uint8_t token_key[32];
    sk_hmap clusters; /* "acct/region/name" -> cp_cluster_idx* (owned keys inside) */
    sk_hmap families; /* "acct/region/family" -> cp_family_idx* */
    sk_hmap td_cache; /* DescribeTaskDefinition answers (cp-taskdef.c) */
    sk_vec td_cache_order;
    ev_timer *gc_timer;
    aws_service_def ecs_def;
    aws_service_def sts_def;
    aws_router *router;
    sk_hmap acs_slots; /* "acct/region/cluster/instance" -> acs slot (cp-acs.c) */
    sk_vec acs_dirty;  /* slots to answer at the end of the iteration */
    ev_timer *sched_timer;
    usec_t sched_due;
    bool loading;         /* initial index load: no scheduler notes */
    sk_vec sched_notes;   /* cp_sched_note*: task outcomes the service scheduler must see */
    usec_t healthy_delay; /* a task without health checks counts as healthy this long after RUNNING
                           */
    usec_t host_lost_after; /* agent silence after which its tasks are stopped */
};

/* A service task's outcome, noted by the index for the scheduler. */
typedef struct cp_sched_note {
    char *svc_key;        /* store key of the service */
    char *deployment;     /* startedBy */
    bool started;         /* reached RUNNING */
    bool failed_to_start; /* stopped without ever running */
    usec_t created_at;    /* the task's createdAt (realtime) */
} cp_sched_note;

/* --- keys and ARNs (cp.c) --- */

/* Task definition revisions: "td/<family>!<rev, 10 digits>". '!' sorts below
 * every character a family may contain, so keys order by family, then
 * revision. */
char *cp_td_key(const aws_ctx *ctx, const char *family, int64_t rev);
char *cp_td_family_prefix(const aws_ctx *ctx, const char *family);
/* Latest ACTIVE revision of a family (0: none), from the index. */
int64_t cp_td_latest_active(cp *c, const aws_ctx *ctx, const char *family);

/* "ecs/<acct>/<region>/<kind>/" followed by the formatted suffix. */
char *cp_key(const aws_ctx *ctx, const char *kind, const char *fmt, ...) _printf_(3, 4);
/* "arn:aws:ecs:<region>:<acct>:<formatted resource>" */
char *cp_arn(const aws_ctx *ctx, const char *fmt, ...) _printf_(2, 3);
char *cp_principal_arn(const aws_ctx *ctx);

typedef struct cp_arn_parts {
    char service[32];
    char region[64];
    char account[16];
    char type[64];   /* "cluster", "task", ... */
    char rest[1024]; /* after "type/" */
} cp_arn_parts;
int cp_arn_parse(const char *arn, cp_arn_parts *ret);

bool cp_name_valid(const char *s, size_t max); /* [A-Za-z0-9_-]{1,max} */

/* Resolves a cluster name or ARN (NULL/"" → "default"). Requires the cluster
 * to exist and, with require_active, to be ACTIVE. */
int cp_cluster_get(cp *c, const aws_ctx *ctx, const char *name_or_arn, bool require_active,
                   char **ret_name, json_t **ret_doc, sk_err *err);
char *cp_cluster_name_from(const char *name_or_arn);
cp_cluster_idx *cp_cluster_idx_get(cp *c, const aws_ctx *ctx, const char *cluster, bool create);

/* The cluster (any status) and the list input member (at most max entries,
 * "The number of WHAT must be at most MAX.") of a call on a cluster's
 * resources. On failure replies with the error and returns -1. */
int cp_cluster_list_arg(aws_call *call, const char *member, size_t max, const char *what,
                        char **ret_cluster, json_t **ret_list);

/* Opaque pagination tokens: an HMAC-protected position. */
char *cp_token_make(cp *c, const char *position);
int cp_token_parse(cp *c, const char *token, char **ret_position, sk_err *err);
/* maxResults with AWS's bounds; -1 when absent (caller picks the default). */
int cp_max_results(const json_t *in, int def, int max, int *ret, sk_err *err);
/* A List* call's maxResults (default def, at most max) and the position its
 * nextToken names (NULL for the first page). */
int cp_page_args(cp *c, const json_t *in, int def, int max, int *ret_limit, char **ret_start,
                 sk_err *err);
/* Sets out.nextToken to a token for position; does nothing for NULL. */
void cp_page_token(cp *c, json_t *out, const char *position);

int cp_tags_validate(const json_t *tags, sk_err *err);
/* Merge tags (list of {key,value}) into dst list, replacing same keys. */
void cp_tags_merge(json_t *dst, const json_t *add);

/* Strips internal members and adds nothing else. */
json_t *cp_public(const json_t *doc);

/* Failure entry for batch calls. */
json_t *cp_failure(const char *arn, const char *reason, const char *detail);

/* --- index (cp-index.c) --- */
void cp_index_init(cp *c);
void cp_index_done(cp *c);
cp_task_info *cp_task_find(cp *c, const aws_ctx *ctx, const char *cluster, const char *id);
cp_instance_info *cp_instance_find(cp *c, const aws_ctx *ctx, const char *cluster, const char *id);
bool cp_instance_connected(cp *c, const cp_instance_info *ci);
/* The same at monotonic time now (one clock read for a whole scan). */
bool cp_instance_connected_at(cp *c, const cp_instance_info *ci, usec_t now);
/* An agent poll of the instance starts (held) or stops waiting; both count
 * as hearing from the agent. */
void cp_instance_poll_held(cp *c, const char *account, const char *region, const char *cluster,
                           const char *instance_id, bool held);

/* --- handlers --- */
#define CP_HANDLER(name) void cp_##name(aws_call *call)
CP_HANDLER(create_cluster);
CP_HANDLER(delete_cluster);
CP_HANDLER(describe_clusters);
CP_HANDLER(list_clusters);
CP_HANDLER(update_cluster);
CP_HANDLER(update_cluster_settings);
CP_HANDLER(put_cluster_capacity_providers);
CP_HANDLER(create_capacity_provider);
CP_HANDLER(delete_capacity_provider);
CP_HANDLER(describe_capacity_providers);
CP_HANDLER(update_capacity_provider);
CP_HANDLER(register_task_definition);
CP_HANDLER(describe_task_definition);
CP_HANDLER(list_task_definitions);
CP_HANDLER(list_task_definition_families);
CP_HANDLER(deregister_task_definition);
CP_HANDLER(delete_task_definitions);
CP_HANDLER(register_container_instance);
CP_HANDLER(deregister_container_instance);
CP_HANDLER(describe_container_instances);
CP_HANDLER(list_container_instances);
CP_HANDLER(update_container_instances_state);
CP_HANDLER(put_attributes);
CP_HANDLER(delete_attributes);
CP_HANDLER(list_attributes);
CP_HANDLER(run_task);
CP_HANDLER(start_task);
CP_HANDLER(stop_task);
CP_HANDLER(describe_tasks);
CP_HANDLER(list_tasks);
CP_HANDLER(get_task_protection);
CP_HANDLER(update_task_protection);
CP_HANDLER(discover_poll_endpoint);
CP_HANDLER(submit_task_state_change);
CP_HANDLER(submit_container_state_change);
CP_HANDLER(submit_attachment_state_changes);
CP_HANDLER(tag_resource);
CP_HANDLER(untag_resource);
CP_HANDLER(list_tags_for_resource);
CP_HANDLER(put_account_setting);
CP_HANDLER(put_account_setting_default);
CP_HANDLER(delete_account_setting);
CP_HANDLER(list_account_settings);
CP_HANDLER(sts_get_caller_identity);

/* Convenience: the cp behind a call. */
static inline cp *cp_of(aws_call *call)
{
    return aws_call_userdata(call);
}

/* Reply helpers that also free the error. */
void cp_fail(aws_call *call, sk_err *err);
int cp_err_cluster_not_found(sk_err *err);
int cp_err_invalid(sk_err *err, const char *fmt, ...) _printf_(2, 3);
int cp_err_client(sk_err *err, const char *fmt, ...) _printf_(2, 3);

/* --- agent channel (cp-acs.c) --- */
void cp_acs_init(cp *c);
void cp_acs_done(cp *c);
/* Marks an instance changed (scope "acct/region"): its long polls are
 * answered at the end of the current loop iteration. */
void cp_acs_instance_changed(cp *c, const char *scope, const char *cluster, const char *id);

/* --- services (cp-service.c) --- */
void cp_sched_init(cp *c);
void cp_sched_done(cp *c);
/* Asks for a scheduler pass soon (debounced). */
void cp_sched_kick(cp *c);
CP_HANDLER(create_service);
CP_HANDLER(update_service);
CP_HANDLER(stop_service_deployment);
CP_HANDLER(delete_service);
CP_HANDLER(describe_services);
CP_HANDLER(list_services);
CP_HANDLER(list_services_by_namespace);
CP_HANDLER(list_service_deployments);
CP_HANDLER(describe_service_deployments);
CP_HANDLER(describe_service_revisions);

/* Service deployment history (cp-svcdeploy.c), kept in the service document. */
void cp_svc_history_start(json_t *svc, const json_t *deployment);
void cp_svc_history_rollback(json_t *svc, const char *failed_dep, const char *rollback_dep,
                             const char *target_dep, const char *reason);
void cp_svc_history_end(json_t *svc, const char *dep, bool success, const char *reason);
void cp_svc_history_stop_all(json_t *svc, const char *reason);
/* The service document named by a service-deployment or service-revision ARN
 * (kind "service-deployment" / "service-revision") of this account and region,
 * with the ARN's trailing id; NULL when it names nothing. ret_key (optional)
 * receives the service's store key. */
#define CP_SVC_CHILD_ID_MAX 64
json_t *cp_svc_child_load(cp *c, const aws_ctx *ctx, const char *arn, const char *kind,
                          char **ret_key, char ret_id[CP_SVC_CHILD_ID_MAX]);
/* The recorded status of a deployment ("ecs-svc/N" or N), or NULL if unknown. */
const char *cp_svc_history_status(json_t *svc, const char *dep_id);
/* The service named by the input's cluster and service members
 * (ServiceNotFoundException when absent). */
int cp_service_load(cp *c, const aws_ctx *ctx, const json_t *in, char **ret_cluster, char **ret_key,
                    json_t **ret_svc, sk_err *err);

/* Periodic maintenance (expiring stopped tasks, finishing deletions). */
void cp_gc_run(cp *c);
/* Task definition lookups shared with tasks and services. */
int cp_taskdef_resolve(cp *c, const aws_ctx *ctx, const char *ref, bool require_active,
                       json_t **ret_td, sk_err *err);
/* Container-instance helpers (cp-instance.c). */
bool cp_attribute_builtin(const char *name);
json_t *cp_resource_find(json_t *resources, const char *name);
json_t *cp_instance_view(cp *c, cp_instance_info *in, const json_t *doc, bool tags);
/* Instance id from an id or ARN; NULL when malformed or of another cluster. */
char *cp_instance_id_from(const char *ref, const char *cluster);
/* Marks every live task of an instance for stopping (force_stopped: STOPPED at once). */
void cp_tasks_stop_on_instance(cp *c, const aws_ctx *ctx, const char *cluster, const char *id,
                               const char *reason, bool force_stopped);
void cp_taskdef_gc(cp *c);
void cp_td_cache_done(cp *c);
