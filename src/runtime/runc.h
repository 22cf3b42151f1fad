/* Commands of an OCI runtime CLI (runc; crun is compatible) that the agent
 * runs synchronously. Starting containers goes through the monitor. */
#pragma once

#include <stdbool.h>

#include "basic/err.h"

typedef struct rt_runtime {
    const char *path; /* e.g. /usr/sbin/runc */
    const char *root; /* --root state directory */
} rt_runtime;

/* Sends a signal ("SIGTERM", "KILL", "15") to the container's init. A
 * container that is already gone is not an error. */
int rt_runtime_kill(const rt_runtime *rt, const char *id, const char *signal, sk_err *err);
/* Deletes the container's runtime state (with force, kills it first). */
int rt_runtime_delete(const rt_runtime *rt, const char *id, bool force, sk_err *err);
/* Whether the runtime still knows the container. */
bool rt_runtime_exists(const rt_runtime *rt, const char *id);
/* argv for `RUNTIME --root ROOT exec ID cmd...` (NULL-terminated; free with
 * rt_argv_free). */
char **rt_runtime_exec_argv(const rt_runtime *rt, const char *id, char *const *cmd, size_t ncmd);
void rt_argv_free(char **argv);
