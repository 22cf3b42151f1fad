/* The per-container monitor (`skiff-monitor`, a separate small program) and
 * the agent-side helpers to drive it.
 *
 * The monitor keeps a container's stdio and exit status independent of the
 * agent: the agent can be killed (-9) and restarted without touching running
 * containers. For each container it
 *   1. detaches (double fork + setsid) so it is not the agent's child,
 *   2. becomes a child subreaper and runs `RUNTIME --root ROOT run --detach
 *      --bundle BUNDLE --pid-file DIR/container.pid --log DIR/runtime.log
 *      --log-format json ID` with stdin /dev/null and stdout/stderr on pipes,
 *   3. reports "ok <monitor-pid> <container-pid>\n" or "error <message>\n" on
 *      the sync fd given by the agent, then closes it,
 *   4. copies stdout/stderr lines into DIR/container.log (see below) until the
 *      container exits, reaps it, writes DIR/exit.json atomically
 *      {"exitCode": N, "signal": S (0 if none), "finishedAt": epoch-seconds},
 *      and exits.
 * It never blocks on the agent: when the log reaches max_size it rotates
 * (container.log → container.log.1 ... up to max_files) and keeps going.
 *
 * Log format (one JSON object per line, docker json-file compatible plus a
 * sequence number): {"log":"text\n","stream":"stdout","time":"RFC3339Nano",
 * "seq":N}. Lines longer than 16 KiB are split; a partial last line is flushed
 * at exit. seq counts records from 1 across rotations, so a reader can count
 * records lost to rotation.
 *
 * The monitor's own memory use is small and constant (no heap growth with log
 * volume). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "basic/err.h"

typedef struct rt_monitor_opts {
    const char *monitor_path; /* the skiff-monitor executable */
    const char *runtime_path; /* runc (default) or crun */
    const char *runtime_root; /* --root for the runtime */
    const char *bundle;       /* OCI bundle dir with config.json */
    const char *id;           /* container id for the runtime */
    const char *dir;          /* monitor dir: logs, exit.json, pid files */
    uint64_t log_max_size;    /* bytes per log file; default 10 MiB */
    unsigned log_max_files;   /* default 3 */
} rt_monitor_opts;

/* Starts a monitor; returns the read end of its sync pipe (O_CLOEXEC,
 * non-blocking). The caller reads one line from it (rt_monitor_parse_sync). */
int rt_monitor_spawn(const rt_monitor_opts *o, int *ret_sync_fd, sk_err *err);
/* Parses the sync line. On "error ..." returns < 0 with the runtime's message
 * (taken from runtime.log when available). */
int rt_monitor_parse_sync(const char *line, pid_t *ret_monitor_pid, pid_t *ret_container_pid,
                          sk_err *err);

typedef struct rt_exit_status {
    int exit_code; /* 128+signal when killed by a signal, as docker reports */
    int signal;
    double finished_at;
} rt_exit_status;

/* Reads DIR/exit.json; SK_E_NOT_FOUND while the container still runs. */
int rt_monitor_read_exit(const char *dir, rt_exit_status *ret, sk_err *err);

/* Incremental reader of a monitor's rotating log. State is plain data so the
 * agent can persist and restore it. */
typedef struct rt_log_cursor {
    uint64_t seq;    /* last record seq consumed */
    uint64_t offset; /* byte offset in the current file */
    uint64_t inode;  /* inode of the current file */
    uint64_t dropped; /* records lost to rotation before they were read */
} rt_log_cursor;

typedef struct rt_log_record {
    const char *line;   /* without the trailing newline */
    const char *stream; /* "stdout" | "stderr" */
    double time;        /* epoch seconds */
    uint64_t seq;
} rt_log_record;

/* Calls fn for up to max new records (in order), following rotation and
 * updating cur (including cur->dropped). Returns the number of records read. */
int rt_log_read(const char *dir, rt_log_cursor *cur, unsigned max,
                void (*fn)(void *userdata, const rt_log_record *rec), void *userdata,
                sk_err *err);
