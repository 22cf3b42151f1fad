/* Internal to src/agent. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "api.h"
#include "basic/buf.h"
#include "basic/err.h"
#include "basic/hmap.h"
#include "basic/omap.h"
#include "basic/timeutil.h"
#include "basic/vec.h"
#include "image/image.h"
#include "runtime/monitor.h"
#include "runtime/net.h"
#include "shared/event.h"
#include "shared/http.h"

typedef enum agent_pull_behavior {
    PULL_DEFAULT,
    PULL_ALWAYS,
    PULL_ONCE,
    PULL_PREFER_CACHED,
} agent_pull_behavior;

typedef struct agent_config {
    char *server_url;
    char *cluster;
    char *data_dir;
    char *region;
    char *access_key;
    char *secret_key;
    uint64_t reserved_memory_mib;
    json_t *reserved_ports;     /* strings */
    json_t *reserved_ports_udp; /* strings */
    json_t *logging_drivers;    /* strings */
    usec_t stop_timeout;
    usec_t start_timeout;
    agent_pull_behavior pull_behavior;
    usec_t image_cleanup_interval;
    usec_t image_min_age;
    unsigned images_per_cleanup;
    bool image_cleanup_disabled;
    usec_t task_cleanup_wait;
    uint16_t dyn_port_lo, dyn_port_hi;
    json_t *instance_attributes; /* object name -> value */
    char *availability_zone;
    char *runtime_path;
    char *monitor_path;
    char *cni_path;
    char *bridge_subnet;
    char *awsvpc_subnet;
    int64_t task_pids_limit;
    char *capacity; /* "EC2", "FARGATE" or "EC2,FARGATE" */
    char *insecure_registries;
    char *instance_type;
    bool simulated;     /* --runtime=simulated: no containers, everything above stays real */
    unsigned instances; /* simulated only: container instances served by this process */
} agent_config;

int agent_config_load(int argc, char **argv, agent_config *ret, sk_err *err);
void agent_config_done(agent_config *c);
/* Parses one ecs.config file into cfg (KEY=VALUE lines). */
int agent_config_parse_file(agent_config *cfg, const char *path, sk_err *err);

typedef enum cstate {
    CS_NONE = 0, /* waiting for its image */
    CS_PULLED,   /* image present, waiting for dependencies */
    CS_CREATED,  /* monitor started, waiting for the runtime */
    CS_RUNNING,
    CS_STOPPED,
} cstate;

typedef enum tstate {
    TS_PENDING = 0,
    TS_RUNNING,
    TS_STOPPED,
} tstate;

typedef struct agent agent;
typedef struct agent_task agent_task;

typedef struct agent_container {
    agent_task *task;
    char *name;
    json_t *def; /* container definition with overrides merged */
    char *image;
    char *runtime_id;
    char *dir;
    cstate state;
    bool essential;
    bool ever_started;
    bool stop_signalled;
    bool killed;
    usec_t stop_deadline; /* realtime: SIGKILL after this once stop_signalled */
    bool has_exit;
    int exit_code;
    char *reason;
    char *image_digest;
    pid_t monitor_pid;
    pid_t container_pid;
    int monitor_pidfd;
    ev_io *monitor_io;
    int sync_fd;
    ev_io *sync_io;
    sk_buf sync_buf;
    ev_timer *stop_timer;
    ev_timer *start_timer; /* ECS_CONTAINER_START_TIMEOUT while CS_CREATED */
    json_t *bindings;      /* networkBindings */
    json_t *host_ports;    /* dynamic + static host ports this container holds ("tcp/N") */
    char *netns;           /* bridge mode: own netns */
    char *ip;              /* bridge mode: its address on the agent's bridge */
    bool net_attached;
    usec_t started_at; /* monotonic */
    usec_t finished_at;
    char *stop_signal;
    /* health */
    char *health; /* NULL: no check */
    unsigned health_failures;
    usec_t health_started; /* monotonic start of the check period */
    ev_timer *health_timer;
    pid_t hc_pid;
    int hc_pidfd;
    ev_io *hc_io;
    ev_timer *hc_timeout;
    bool hc_ever_healthy;
    /* logs */
    char *log_driver;
    char *log_group;
    char *log_stream;
    bool log_create_group;
    bool log_ready;
    bool log_busy;
    rt_log_cursor log_read;
    rt_log_cursor log_committed;
    json_t *log_batch;
    uint64_t log_dropped;
    bool log_drained;    /* stopped, and its whole log was shipped (awslogs) */
    char tmds_token[33]; /* task metadata endpoint path token (tmds.c); "" until needed */
} agent_container;

struct agent_task {
    agent *agent;
    char *arn;
    char *id;
    json_t *task; /* payload document */
    json_t *td;
    bool desired_stopped;
    tstate known;
    agent_container **containers;
    size_t ncontainers;
    char *dir;
    char *cgroup;
    char *network_mode;
    char *netns; /* awsvpc */
    char *ip, *mac, *eni_id, *attachment_id;
    bool net_attached;
    bool cgroup_ready;
    bool reporting;         /* a SubmitTaskStateChange is in flight */
    bool reporting_stopped; /* ... and it reports the task STOPPED */
    bool report_dirty;
    unsigned report_backoff;
    ev_timer *report_timer;
    ev_timer *cleanup_timer;
    usec_t cleanup_deferred_since; /* monotonic: first cleanup attempt that waited */
    ev_timer *start_timer;         /* dependency startTimeout */
    double pull_started_at, pull_stopped_at, stopped_at_epoch;
    unsigned pulls_pending;
    bool reported_stopped;
    bool fargate;
};

typedef struct pull_job {
    agent *agent;
    char *ref;
    pid_t pid;
    int pidfd;
    ev_io *io;
    char *errfile;
    sk_vec waiters; /* agent_container* */
} pull_job;

struct agent {
    agent_config cfg;
    ev_loop *loop;
    agent_api *api;
    img_store *images;
    char *key; /* per-agent identifier derived from the data dir */
    char *instance_arn;
    char *instance_id;
    bool registered;
    bool registering;
    uint64_t seq;
    bool polling;
    unsigned poll_backoff;
    ev_timer *poll_timer;
    ev_timer *register_timer;
    ev_timer *log_timer;
    ev_timer *gc_timer;
    sk_omap *tasks;       /* arn -> agent_task* */
    sk_hmap pulls;        /* ref -> pull_job* */
    sk_hmap ports;        /* "tcp/N" -> owner (non-NULL) */
    sk_hmap port_claims;  /* "tcp/N" -> port_claim* (host-wide claim held) */
    char *port_claim_dir; /* shared by the host's agents (rt_port_claim) */
    char *runc_root;
    char *cgroup_root;
    char *run_dir;
    char *self_exe;
    rt_net_config net;
    char *net_state_dir;
    char *bridge_name, *awsvpc_bridge;
    json_t *seccomp_profile;
    char *init_path;
    unsigned cpus;
    uint64_t memory_mib;
    bool stopping;
    unsigned sim_index;
    sk_vec ecr_tokens; /* ecr_token*: cached registry credentials per region */
    /* task metadata endpoint (tmds.c) */
    uint8_t tmds_key[32];
    uint16_t tmds_port; /* 0: disabled */
    char *tmds_bridge_ip, *tmds_awsvpc_ip;
    uint16_t tmds_loopback_port; /* 0: no endpoint for host-mode tasks */
    http_server *tmds_servers[3];
};

/* An ECR authorization token for one region, and the pulls waiting for it. */
typedef struct ecr_token {
    char *region;
    char *password;
    usec_t expires; /* realtime */
    bool fetching;
    sk_vec waiters; /* agent_container* */
} ecr_token;

/* Simulated runtime (sim.c): containers "run" without processes. */
void agent_sim_start(agent_container *c);
void agent_sim_stop(agent_container *c);
void agent_sim_pull(agent_container *c);

/* agent.c */
void agent_persist_task(agent_task *t);
void agent_task_report(agent_task *t);
char *agent_state_path(agent *a, const char *name);

/* task.c */
agent_task *agent_task_new(agent *a, const json_t *task, const json_t *td);
agent_task *agent_task_restore(agent *a, const char *dir);
void agent_task_start(agent_task *t);
void agent_task_stop(agent_task *t, const char *why);
void agent_task_free(agent_task *t);
json_t *agent_task_state_json(agent_task *t);
json_t *agent_task_report_json(agent_task *t);
void agent_task_image_ready(agent_container *c, const char *error);
void agent_task_cleanup(agent_task *t);

/* tmds.c: the task metadata endpoint. agent_tmds_env gives a container's
 * ECS_CONTAINER_METADATA_URI_V4 / _URI environment entries (caller frees), or
 * false when its network mode has no endpoint. */
int agent_tmds_start(agent *a, sk_err *err);
const char *agent_tmds_token(agent_container *c);
bool agent_tmds_env(agent_container *c, char **ret_v4, char **ret_v3);

/* pull.c */
void agent_pull_request(agent *a, agent_container *c);

/* logship.c */
/* The container's awslogs output is not all shipped yet. */
bool agent_logs_pending(const agent_container *c);
void agent_logs_tick(agent *a);
