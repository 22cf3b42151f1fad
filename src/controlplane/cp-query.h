/* Evaluating the cluster query language against indexed container instances
 * (internal to src/controlplane). */
#pragma once

#include "cp-internal.h"
#include "scheduler/query.h"

/* storage must point at CP_QUERY_STORAGE bytes that outlive qt. */
#define CP_QUERY_STORAGE (2 * sizeof(void *))
void cp_query_target_init(cp *c, cp_instance_info *in, sched_query_target *qt, void *storage);
