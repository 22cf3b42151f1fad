/* Placement requests from the control plane (internal to src/controlplane). */
#pragma once

#include "cp-internal.h"
#include "cp-task.h"
#include "scheduler/placement.h"

typedef struct cp_place_spec {
    const sched_query **member_of;
    size_t nmember_of;
    bool distinct_instance;
    sched_strategy *strategies;
    size_t nstrategies;
    sched_attr *required;
    size_t nrequired;
} cp_place_spec;

/* Parses the task definition's and the request's constraints and strategies.
 * service_defaults: no strategy given → spread by AZ, then by instance. The
 * spec borrows strings from td and strategies, which must outlive it. */
int cp_place_spec_parse(const json_t *td, const json_t *constraints, const json_t *strategies,
                        bool service_defaults, cp_place_spec *ret, sk_err *err);
void cp_place_spec_done(cp_place_spec *s);

/* Places count tasks of group in the cluster; only (instance ids) restricts
 * the candidates (StartTask). Failures (one per rejected instance, AWS
 * reasons) are appended when not everything fits. Returns the number placed;
 * ret_chosen[k] is the instance of task k or NULL. */
unsigned cp_place(cp *c, cp_cluster_idx *cl, const cp_place_spec *spec, const cp_task_req *req,
                  const char *group, bool fargate, const sk_vec *only, unsigned count,
                  cp_instance_info **ret_chosen, json_t *failures);
