/* Task building blocks shared by RunTask, the agent-facing calls and the
 * service scheduler (internal to src/controlplane). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "cp-internal.h"

/* What a task reserves on a container instance. */
typedef struct cp_task_req {
    int64_t cpu;
    int64_t memory;
    json_t *ports;     /* static TCP host ports (strings) */
    json_t *ports_udp; /* static UDP host ports */
} cp_task_req;

typedef struct cp_task_params {
    const json_t *overrides;
    const char *started_by;
    const char *group;
    const char *launch_type;
    const char *capacity_provider;
    const char *platform_version;
    const json_t *network_configuration;
    const json_t *tags;
    bool enable_execute_command;
} cp_task_params;

void cp_task_requirements(const json_t *td, const json_t *overrides, cp_task_req *req);
void cp_task_req_done(cp_task_req *req);
json_t *cp_task_build(cp *c, const aws_ctx *ctx, const char *cluster, const json_t *td,
                      const cp_task_params *p, const cp_instance_info *in, const cp_task_req *req);
void cp_task_mark_stopped(cp *c, const aws_ctx *ctx, store_txn *txn, json_t *task,
                          const char *cluster, const char *default_reason, const char *stop_code);
