/* Running helper programs (runc, CNI plugins, workers) from the agent.
 * Children are started with posix_spawn (safe even if a library started a
 * thread), get /dev/null as stdin unless data is given, and never inherit the
 * agent's descriptors (everything the agent opens is O_CLOEXEC). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "basic/err.h"
#include "basic/timeutil.h"

typedef struct rt_proc_result {
    int status; /* exit code, or 128+signal */
    char *out;  /* stdout (NUL-terminated, capped) */
    size_t out_len;
    char *err; /* stderr (NUL-terminated, capped) */
    size_t err_len;
    bool timed_out;
} rt_proc_result;

void rt_proc_result_done(rt_proc_result *r);

/* Runs argv to completion, feeding input on stdin, capturing stdout/stderr up
 * to max_out bytes each, killing it (SIGKILL) after timeout (0: none).
 * envp NULL inherits the environment. Fails only when it cannot start. */
int rt_proc_run(char *const argv[], char *const envp[], const void *input, size_t input_len,
                size_t max_out, usec_t timeout, rt_proc_result *ret, sk_err *err);

/* Starts argv in the background with the given stdout/stderr fds (-1:
 * /dev/null). Returns its pid and a pidfd (O_CLOEXEC, readable when it exits). */
int rt_proc_spawn(char *const argv[], char *const envp[], int out_fd, int err_fd, pid_t *ret_pid,
                  int *ret_pidfd, sk_err *err);
/* Reaps a child started with rt_proc_spawn once its pidfd is readable. */
int rt_proc_reap(pid_t pid, int *ret_status);
