/* Cgroups for tasks and containers, on cgroup v1 (separate controller
 * hierarchies, as on this project's CI hosts) and v2 (unified).
 *
 * Paths are cgroupfs-style and relative to the hierarchy roots, e.g.
 * "/skiff/<agent>/<task>"; runc creates container leaves beneath a task
 * cgroup from the same path form in config.json (linux.cgroupsPath). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "basic/err.h"

typedef enum rt_cgroup_mode {
    RT_CGROUP_V1,
    RT_CGROUP_V2,
} rt_cgroup_mode;

rt_cgroup_mode rt_cgroup_detect(void);

/* Creates the task cgroup with limits: cpu_units (ECS CPU units, 1024 = one
 * CPU; 0 = unlimited) as a CFS quota with a 100 ms period, memory_mib (0 =
 * unlimited) as a hard limit, and pids_max (0 = unlimited). */
int rt_cgroup_task_create(const char *path, int64_t cpu_units, int64_t memory_mib, int64_t pids_max,
                          sk_err *err);
/* Removes a cgroup subtree (leaves first), killing anything left in it. */
int rt_cgroup_remove(const char *path, sk_err *err);
/* Whether the kernel OOM-killed something in this cgroup (memory.oom_control
 * "oom_kill" on v1, memory.events "oom_kill" on v2). */
bool rt_cgroup_oom_killed(const char *path);
/* Current memory usage in bytes, or -1. */
int64_t rt_cgroup_memory_usage(const char *path);
/* Whether the path exists in the memory hierarchy (v1) or unified tree (v2). */
bool rt_cgroup_exists(const char *path);
