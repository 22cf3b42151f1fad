/* The per-container monitor (`skiff-monitor`, a separate small program) and
 * the agent-side helpers to drive it.
 *
 * The monitor keeps a container's stdio and exit status independent of the
 * agent: the agent can be killed (-9) and restarted without touching running
 * containers. For each container it
 *   1. detaches (double fork + setsid) so it is not the agent's child,
 *   2. becomes a child subreaper and runs `RUNTIME --root ROOT --log
 *      DIR/runtime.log --log-format json run --detach --bundle BUNDLE
 *      --pid-file DIR/container.pid ID` (--log/--log-format are global runc
 *      options) with stdin /dev/null and stdout/stderr on pipes,
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
 * Details: "time" is UTC with 9 fraction digits, taken when the bytes were
 * read; "log" is valid UTF-8 (invalid bytes become U+FFFD, splits never cut a
 * character); a record never straddles two files, and a file exceeds
 * max_size only when one record alone does. A record that cannot be written
 * (disk full, I/O error) is truncated away and counted in logDropped; its seq
 * is still consumed, so readers see the gap. Records are appended with one or
 * more write()s, so readers must tolerate a torn last line (rt_log_read does).
 *
 * The monitor's own memory use is small and constant (no heap growth with log
 * volume): static buffers, about 120 KiB resident when built with musl, of
 * which about 45 KiB is private (the rest is the shared executable).
 *
 * Command line (all paths absolute; ID as rt_id_valid):
 *   skiff-monitor --runtime PATH --root DIR --bundle DIR --id ID --dir DIR
 *                 --sync-fd FD [--log-max-size BYTES] [--log-max-files N]
 * --log-max-size is bytes per file in [1024, 2^40] (default 10 MiB);
 * --log-max-files counts container.log itself, in [1, 100] (default 3: the
 * log plus .1 and .2; 1 means the full log is deleted and restarted).
 * Argument errors are reported as "error monitor: ..." on the sync fd and the
 * process exits 2. The process the agent starts exits 0 as soon as the
 * detached monitor exists, so the agent reaps it right away; the agent must
 * not be a child subreaper, or the monitors would become its children.
 *
 * Files in DIR: monitor.pid (the monitor's pid, written before the runtime
 * starts), container.pid and runtime.log (written by the runtime),
 * container.log[.N], exit.json. exit.json also carries "logDropped" (records
 * lost to write errors) and, when the container never started, "exitCode":
 * -1 with "error": the message that was sent on the sync fd.
 *
 * The monitor is the container's subreaper: when the runtime exits, the
 * container's init is reparented to it and it reaps every other orphan too.
 * After the container exits it keeps reading the pipes for up to 2 s (until
 * EOF), so processes that outlive init in a shared pid namespace cannot keep
 * it alive. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "basic/err.h"

/* Container and attachment ids: [A-Za-z0-9_.-]{1,64}, not starting with '.'
 * (safe as a file name and as a runc/CNI container id). */
#define RT_ID_MAX 64
bool rt_id_valid(const char *id);

/* Record text longer than this is split over several records. */
#define RT_LOG_LINE_MAX 16384

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
 * non-blocking). The caller reads one line from it (rt_monitor_parse_sync).
 * dir is created when missing. Blocks only until the monitor has detached
 * (a fork and an exec); errors after that, including a failure to exec the
 * monitor, arrive as an "error ..." line. SK_E_INVALID for bad options. */
int rt_monitor_spawn(const rt_monitor_opts *o, int *ret_sync_fd, sk_err *err);
/* Parses the sync line. On "error ..." returns < 0 with the runtime's message
 * (taken from runtime.log when available) and code SK_E_INVALID (the runtime
 * refused the container: bad config, executable not found, ...); a malformed
 * line gives SK_E_INTERNAL. */
int rt_monitor_parse_sync(const char *line, pid_t *ret_monitor_pid, pid_t *ret_container_pid,
                          sk_err *err);
/* Convenience for callers without an event loop: waits up to timeout_ms for
 * the sync line on fd, parses it, and closes fd in every case. EOF without a
 * line is SK_E_INTERNAL; a timeout is SK_E_UNAVAILABLE. */
int rt_monitor_wait_sync(int fd, int timeout_ms, pid_t *ret_monitor_pid, pid_t *ret_container_pid,
                         sk_err *err);

typedef struct rt_exit_status {
    int exit_code; /* 128+signal when killed by a signal, as docker reports;
                    * -1 when unknown: the container never started, or (only
                    * with a runtime that reaps it) its status was lost; see
                    * error */
    int signal;
    double finished_at;
    uint64_t log_dropped; /* log records lost to write errors */
    char error[1024];     /* why the container never started, else "" */
} rt_exit_status;

/* Reads DIR/exit.json; SK_E_NOT_FOUND while the container still runs,
 * SK_E_INVALID when the file is malformed. */
int rt_monitor_read_exit(const char *dir, rt_exit_status *ret, sk_err *err);

/* Incremental reader of a monitor's rotating log. State is plain data so the
 * agent can persist and restore it. */
typedef struct rt_log_cursor {
    uint64_t seq;      /* last record seq consumed */
    uint64_t offset;   /* byte offset in the current file */
    uint64_t inode;    /* inode of the current file */
    uint64_t dropped;  /* records lost to rotation before they were read */
    uint64_t file_seq; /* seq of the current file's first record (0: unknown);
                        * tells a reused inode number from the same file */
} rt_log_cursor;

typedef struct rt_log_record {
    const char *line;   /* without the trailing newline; valid during fn only */
    size_t len;         /* bytes in line (it may contain NUL bytes) */
    bool partial;       /* no newline ended it: a split long line or the last
                         * unterminated output at exit */
    const char *stream; /* "stdout" | "stderr" */
    double time;        /* epoch seconds */
    uint64_t seq;
} rt_log_record;

/* Calls fn for up to max new records (in order), following rotation and
 * updating cur (including cur->dropped). Returns the number of records read.
 * A zeroed cursor starts at the oldest file still present. Records are
 * identified by seq: duplicates (seq <= cur->seq) are skipped, gaps are
 * counted in cur->dropped (rotation, or the monitor's write errors). An
 * unterminated last line of the newest file is left for a later call; lines
 * that do not parse or exceed RT_LOG_READ_LINE_MAX are skipped. Memory use is
 * bounded by RT_LOG_READ_LINE_MAX whatever the files contain. A missing dir
 * or log is not an error (0 records). */
#define RT_LOG_READ_LINE_MAX (128 * 1024)
int rt_log_read(const char *dir, rt_log_cursor *cur, unsigned max,
                void (*fn)(void *userdata, const rt_log_record *rec), void *userdata, sk_err *err);
/* rt_log_read that also stops before a record would take the sum of
 * (len + per_record) over max_bytes; that record stays unconsumed for the
 * next call. A record's len is at most RT_LOG_READ_LINE_MAX, so a budget
 * below RT_LOG_READ_LINE_MAX + per_record can stop progress. */
int rt_log_read_budget(const char *dir, rt_log_cursor *cur, unsigned max, size_t max_bytes,
                       size_t per_record, void (*fn)(void *userdata, const rt_log_record *rec),
                       void *userdata, sk_err *err);
