/* Agent-side helpers for skiff-monitor: spawning it, the sync line, exit.json
 * and the incremental log reader. */
#include "runtime/monitor.h"

#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "basic/alloc.h"
#include "basic/fileutil.h"
#include "basic/strutil.h"
#include "basic/timeutil.h"
#include "shared/jsonutil.h"

#define LOG_NAME       "container.log"
#define LOG_FILES_SCAN 101 /* the monitor keeps at most 100 files */
#define LOG_READ_CHUNK (64 * 1024)
#define EXIT_JSON_MAX  (64 * 1024)
#define SYNC_LINE_MAX  4096

bool rt_id_valid(const char *id)
{
    if (!id)
        return false;
    size_t n = strnlen(id, RT_ID_MAX + 1);
    if (n < 1 || n > RT_ID_MAX || id[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

static bool abs_path_ok(const char *p)
{
    return p && p[0] == '/' && strnlen(p, PATH_MAX) < PATH_MAX - 32;
}

int rt_monitor_spawn(const rt_monitor_opts *o, int *ret_sync_fd, sk_err *err)
{
    if (!o->monitor_path || !o->runtime_path)
        return sk_err_set(err, SK_E_INVALID, "monitor and runtime paths are required");
    if (!abs_path_ok(o->runtime_root) || !abs_path_ok(o->bundle) || !abs_path_ok(o->dir))
        return sk_err_set(err, SK_E_INVALID, "runtime root, bundle and dir must be absolute paths");
    if (!rt_id_valid(o->id))
        return sk_err_set(err, SK_E_INVALID, "invalid container id '%s'", o->id ? o->id : "");
    uint64_t max_size = o->log_max_size ? o->log_max_size : 10ULL * 1024 * 1024;
    unsigned max_files = o->log_max_files ? o->log_max_files : 3;
    if (max_size < 1024 || max_size > (1ULL << 40))
        return sk_err_set(err, SK_E_INVALID, "log max size %" PRIu64 " out of range", max_size);
    if (max_files > 100)
        return sk_err_set(err, SK_E_INVALID, "log max files %u out of range", max_files);

    int r = mkdir_p(o->dir, 0755);
    if (r < 0)
        return sk_err_sys(err, -r, "create monitor dir '%s'", o->dir);

    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return sk_err_sys(err, errno, "pipe");
    _cleanup_close_ int rfd = p[0];
    _cleanup_close_ int wfd = p[1];

    /* Everything the child needs is prepared before fork: after it, only
     * async-signal-safe calls. */
    char size_s[24], files_s[16];
    snprintf(size_s, sizeof(size_s), "%" PRIu64, max_size);
    snprintf(files_s, sizeof(files_s), "%u", max_files);
    const int child_fd = 3;
    char fd_s[8];
    snprintf(fd_s, sizeof(fd_s), "%d", child_fd);
    const char *argv[] = {
        "skiff-monitor",
        "--runtime",
        o->runtime_path,
        "--root",
        o->runtime_root,
        "--bundle",
        o->bundle,
        "--id",
        o->id,
        "--dir",
        o->dir,
        "--sync-fd",
        fd_s,
        "--log-max-size",
        size_s,
        "--log-max-files",
        files_s,
        NULL,
    };
    char errline[256];
    int n = snprintf(errline, sizeof(errline), "error exec monitor '%s': ", o->monitor_path);
    if (n < 0 || (size_t) n >= sizeof(errline) - 64)
        n = snprintf(errline, sizeof(errline), "error exec monitor: ");

    pid_t pid = fork();
    if (pid < 0)
        return sk_err_sys(err, errno, "fork");
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        int fd = wfd;
        if (fd != child_fd) {
            if (dup3(fd, child_fd, 0) < 0)
                _exit(127);
            fd = child_fd;
        } else if (fcntl(fd, F_SETFD, 0) < 0)
            _exit(127);
        execv(o->monitor_path, (char *const *) argv);
        const char *e = strerror(errno);
        size_t el = strlen(e);
        if ((size_t) n + el + 2 < sizeof(errline)) {
            memcpy(errline + n, e, el);
            errline[n + el] = '\n';
            (void) !write(fd, errline, (size_t) n + el + 1);
        }
        _exit(127);
    }
    wfd = -EBADF;
    close(p[1]);

    /* The direct child exits as soon as the monitor has detached. */
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (fcntl(rfd, F_SETFL, O_NONBLOCK) < 0)
        return sk_err_sys(err, errno, "set sync pipe non-blocking");
    *ret_sync_fd = TAKE_FD(rfd);
    return 0;
}

int rt_monitor_parse_sync(const char *line, pid_t *ret_monitor_pid, pid_t *ret_container_pid,
                          sk_err *err)
{
    const char *rest;
    if (!line)
        return sk_err_set(err, SK_E_INTERNAL, "monitor sync: no line");
    if ((rest = startswith(line, "error "))) {
        _cleanup_free_ char *msg = xstrndup(rest, SYNC_LINE_MAX);
        strstrip(msg);
        return sk_err_set(err, SK_E_INVALID, "%s", msg[0] ? msg : "runtime failed");
    }
    if (!(rest = startswith(line, "ok ")))
        return sk_err_set(err, SK_E_INTERNAL, "monitor sync: malformed line");
    char a[24], b[24];
    const char *sp = strchr(rest, ' ');
    if (!sp || (size_t) (sp - rest) >= sizeof(a))
        return sk_err_set(err, SK_E_INTERNAL, "monitor sync: malformed line");
    memcpy(a, rest, (size_t) (sp - rest));
    a[sp - rest] = '\0';
    size_t bl = strcspn(sp + 1, "\n");
    const char *end = sp + 1 + bl;
    if (*end == '\n')
        end++;
    if (bl >= sizeof(b) || *end)
        return sk_err_set(err, SK_E_INTERNAL, "monitor sync: malformed line");
    memcpy(b, sp + 1, bl);
    b[bl] = '\0';
    uint32_t mp, cp;
    if (parse_u32(a, &mp) < 0 || parse_u32(b, &cp) < 0 || mp < 2 || cp < 2 || mp > INT_MAX ||
        cp > INT_MAX)
        return sk_err_set(err, SK_E_INTERNAL, "monitor sync: malformed pids");
    if (ret_monitor_pid)
        *ret_monitor_pid = (pid_t) mp;
    if (ret_container_pid)
        *ret_container_pid = (pid_t) cp;
    return 0;
}

int rt_monitor_wait_sync(int fd, int timeout_ms, pid_t *ret_monitor_pid, pid_t *ret_container_pid,
                         sk_err *err)
{
    _cleanup_close_ int cfd = fd;
    char line[SYNC_LINE_MAX + 1];
    size_t len = 0;
    usec_t deadline = now_monotonic() + (usec_t) (timeout_ms < 0 ? 0 : timeout_ms) * USEC_PER_MSEC;

    for (;;) {
        ssize_t k = read(cfd, line + len, sizeof(line) - 1 - len);
        if (k > 0) {
            len += (size_t) k;
            line[len] = '\0';
            if (memchr(line, '\n', len) || len == sizeof(line) - 1)
                break;
            continue;
        }
        if (k == 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return sk_err_sys(err, errno, "read monitor sync pipe");
        usec_t now = now_monotonic();
        if (timeout_ms >= 0 && now >= deadline)
            return sk_err_set(err, SK_E_UNAVAILABLE, "monitor did not report within %d ms",
                              timeout_ms);
        struct pollfd pfd = { .fd = cfd, .events = POLLIN };
        int t = timeout_ms < 0 ? -1 : (int) ((deadline - now + USEC_PER_MSEC - 1) / USEC_PER_MSEC);
        if (poll(&pfd, 1, t) < 0 && errno != EINTR)
            return sk_err_sys(err, errno, "poll monitor sync pipe");
    }
    line[len] = '\0';
    if (len == 0)
        return sk_err_set(err, SK_E_INTERNAL, "monitor exited without reporting");
    return rt_monitor_parse_sync(line, ret_monitor_pid, ret_container_pid, err);
}

int rt_monitor_read_exit(const char *dir, rt_exit_status *ret, sk_err *err)
{
    _cleanup_free_ char *path = path_join(dir, "exit.json");
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    int r = read_full_file(path, EXIT_JSON_MAX, &data, &len);
    if (r == -ENOENT)
        return sk_err_set(err, SK_E_NOT_FOUND, "no exit status in '%s' yet", dir);
    if (r < 0)
        return sk_err_sys(err, -r, "read '%s'", path);
    json_error_t jerr;
    _cleanup_json_ json_t *j = json_loadb(data, len, 0, &jerr);
    if (!j || !json_is_object(j) || !json_is_integer(json_object_get(j, "exitCode")))
        return sk_err_set(err, SK_E_INVALID, "malformed '%s'", path);
    rt_exit_status s = { 0 };
    int64_t code = js_int(j, "exitCode", -1), sig = js_int(j, "signal", 0);
    s.exit_code = code < -1 || code > 255 ? -1 : (int) code;
    s.signal = sig < 0 || sig > 64 ? 0 : (int) sig;
    json_t *fa = json_object_get(j, "finishedAt");
    s.finished_at = json_is_number(fa) ? json_number_value(fa) : 0;
    int64_t dropped = js_int(j, "logDropped", 0);
    s.log_dropped = dropped > 0 ? (uint64_t) dropped : 0;
    const char *e = js_str(j, "error");
    if (e)
        strlcpy_s(s.error, e, sizeof(s.error));
    *ret = s;
    return 0;
}

/* ---- log reader ---- */

typedef struct log_file {
    int fd;
    uint64_t inode;
    uint64_t size;
    uint64_t first_seq; /* only computed to reorder after a racing rotation */
} log_file;

typedef struct log_reader {
    const char *dir;
    rt_log_cursor *cur;
    unsigned max;
    unsigned delivered;
    size_t max_bytes, per_record, bytes; /* budget: sum of len + per_record */
    bool full;                           /* the next record would exceed it */
    void (*fn)(void *userdata, const rt_log_record *rec);
    void *userdata;
    bool check_resume; /* resumed without file_seq: verify the next record */
    bool resume_bad;   /* the resumed position looks wrong: rescan */
    char *buf;
    size_t alloc;
} log_reader;

/* Parses a record line; returns its seq (>= 1) with *ret_j holding the
 * object, or 0 when the line is not a valid record. */
static uint64_t record_parse(const char *line, size_t n, json_t **ret_j)
{
    json_error_t jerr;
    json_t *j = json_loadb(line, n, JSON_ALLOW_NUL, &jerr);
    json_t *jseq = j ? json_object_get(j, "seq") : NULL;
    if (!json_is_integer(jseq) || json_integer_value(jseq) < 1 ||
        !json_is_string(json_object_get(j, "log")) || !js_str(j, "stream")) {
        json_decref(j);
        return 0;
    }
    *ret_j = j;
    return (uint64_t) json_integer_value(jseq);
}

/* Handles one complete line (without its newline). Returns the record's seq,
 * or 0 when the line is not a record. */
static uint64_t log_line(log_reader *lr, const char *line, size_t n)
{
    _cleanup_json_ json_t *j = NULL;
    uint64_t seq = record_parse(line, n, &j);
    if (seq == 0)
        return 0;
    if (lr->check_resume) {
        lr->check_resume = false;
        if (seq != lr->cur->seq + 1) {
            /* Possibly another file under a reused inode number: rescan all
             * files; seq ordering makes that safe. */
            lr->resume_bad = true;
            return seq;
        }
    }
    if (seq <= lr->cur->seq)
        return seq;
    const char *stream = js_str(j, "stream"), *ts = js_str(j, "time");
    if (streq(stream, "stdout"))
        stream = "stdout";
    else if (streq(stream, "stderr"))
        stream = "stderr";
    else
        return seq; /* not ours: counted as a gap */

    json_t *jlog = json_object_get(j, "log");
    rt_log_record rec = { .stream = stream, .seq = seq };
    rec.line = json_string_value(jlog);
    rec.len = json_string_length(jlog);
    if (rec.len > 0 && rec.line[rec.len - 1] == '\n')
        rec.len--;
    else
        rec.partial = true;
    usec_t t;
    if (ts && parse_rfc3339(ts, &t) >= 0)
        rec.time = usec_to_epoch(t);

    size_t cost = rec.len + lr->per_record;
    if (cost > lr->max_bytes - lr->bytes) {
        lr->full = true; /* left unconsumed for the next call */
        return 0;
    }
    lr->bytes += cost;
    if (seq > lr->cur->seq + 1)
        lr->cur->dropped += seq - lr->cur->seq - 1;
    lr->cur->seq = seq;
    lr->fn(lr->userdata, &rec);
    lr->delivered++;
    return seq;
}

static void reader_grow(log_reader *lr)
{
    size_t na = MIN(lr->alloc * 2, (size_t) RT_LOG_READ_LINE_MAX + LOG_READ_CHUNK);
    lr->buf = xrealloc(lr->buf, na);
    lr->alloc = na;
}

/* The seq of the first record of f, 0 when unknown. */
static uint64_t file_first_seq(log_reader *lr, const log_file *f)
{
    size_t len = 0;
    for (;;) {
        if (len == lr->alloc) {
            if (lr->alloc >= (size_t) RT_LOG_READ_LINE_MAX + 1)
                return 0;
            reader_grow(lr);
        }
        ssize_t k = pread(f->fd, lr->buf + len, lr->alloc - len, (off_t) len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return 0;
        char *nl = memchr(lr->buf + len, '\n', (size_t) k);
        len += (size_t) k;
        if (nl) {
            _cleanup_json_ json_t *j = NULL;
            return record_parse(lr->buf, (size_t) (nl - lr->buf), &j);
        }
    }
}

/* Reads records from f starting at offset until EOF, max, or an
 * unterminated line. Updates the cursor to f's inode and the offset after the
 * last consumed line. Returns 1 when the file was read to its end (only a
 * partial line, if any, is left), 0 when stopped early. */
static int log_read_file(log_reader *lr, const log_file *f, uint64_t offset, bool newest,
                         sk_err *err)
{
    size_t len = 0;        /* bytes in buf */
    uint64_t pos = offset; /* file offset of buf[0] */
    bool skipping = false; /* inside an over-long line */
    bool first = offset == 0;

    lr->cur->inode = f->inode;
    lr->cur->offset = offset;
    if (first)
        lr->cur->file_seq = 0;
    for (;;) {
        if (lr->delivered >= lr->max || lr->resume_bad || lr->full)
            return 0;
        if (len == lr->alloc)
            reader_grow(lr);
        ssize_t k = pread(f->fd, lr->buf + len, lr->alloc - len, (off_t) (pos + len));
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return sk_err_sys(err, errno, "read log in '%s'", lr->dir);
        }
        if (k == 0) {
            if (len > 0 && !newest)
                lr->cur->offset = pos + len; /* a rotated file cannot grow: drop its torn tail */
            return 1;
        }
        size_t scan = len;
        len += (size_t) k;
        size_t start = 0;
        while (lr->delivered < lr->max && !lr->resume_bad) {
            char *nl = memchr(lr->buf + scan, '\n', len - scan);
            if (!nl)
                break;
            size_t end = (size_t) (nl - lr->buf);
            if (!skipping) {
                uint64_t seq = log_line(lr, lr->buf + start, end - start);
                if (lr->full)
                    return 0;
                if (first && seq) {
                    lr->cur->file_seq = seq;
                    first = false;
                }
            }
            skipping = false;
            start = scan = end + 1;
            if (!lr->resume_bad)
                lr->cur->offset = pos + start;
        }
        if (lr->resume_bad)
            return 0;
        if (start > 0) {
            memmove(lr->buf, lr->buf + start, len - start);
            len -= start;
            pos += start;
        }
        if (lr->delivered >= lr->max)
            return 0;
        if (len > RT_LOG_READ_LINE_MAX) {
            /* No newline within the cap: not a monitor record. Skip to the
             * next newline without buffering it. */
            skipping = true;
            first = false;
            pos += len;
            len = 0;
        }
    }
}

int rt_log_read(const char *dir, rt_log_cursor *cur, unsigned max,
                void (*fn)(void *userdata, const rt_log_record *rec), void *userdata, sk_err *err)
{
    return rt_log_read_budget(dir, cur, max, SIZE_MAX, 0, fn, userdata, err);
}

int rt_log_read_budget(const char *dir, rt_log_cursor *cur, unsigned max, size_t max_bytes,
                       size_t per_record, void (*fn)(void *userdata, const rt_log_record *rec),
                       void *userdata, sk_err *err)
{
    log_file files[LOG_FILES_SCAN];
    size_t nfiles = 0;
    int r = 0;

    if (!fn || !cur)
        return sk_err_set(err, SK_E_INVALID, "rt_log_read needs a cursor and a callback");
    if (max == 0)
        return 0;
    max = MIN(max, (unsigned) INT_MAX);
    _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        if (errno == ENOENT)
            return 0;
        return sk_err_sys(err, errno, "open log dir '%s'", dir);
    }

    /* Open newest to oldest; the fds pin the files, so later renames do not
     * matter. A rotation (renames from the oldest down, then a new log)
     * racing with this can show a file twice, leave a one-name gap, or, with
     * several rotations in between, list a newer file after an older one.
     * The first two are detected; then the files are ordered by their first
     * record instead of by name. */
    bool anomaly = false;
    unsigned misses = 0;
    for (unsigned i = 0; i < LOG_FILES_SCAN && misses < 2; i++) {
        char name[32];
        if (i == 0)
            snprintf(name, sizeof(name), LOG_NAME);
        else
            snprintf(name, sizeof(name), LOG_NAME ".%u", i);
        int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
        if (fd < 0) {
            if (errno != ENOENT)
                break;
            misses++;
            continue;
        }
        if (misses > 0 && nfiles > 0)
            anomaly = true;
        misses = 0;
        struct stat st;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
            close(fd);
            break;
        }
        bool dup = false;
        for (size_t k = 0; k < nfiles; k++)
            dup = dup || files[k].inode == (uint64_t) st.st_ino;
        if (dup) {
            anomaly = true;
            close(fd);
            continue;
        }
        files[nfiles++] = (log_file){ fd, (uint64_t) st.st_ino, (uint64_t) st.st_size, 0 };
    }
    if (nfiles == 0)
        return 0;

    log_reader lr = {
        .dir = dir,
        .cur = cur,
        .max = max,
        .max_bytes = max_bytes,
        .per_record = per_record,
        .fn = fn,
        .userdata = userdata,
        .alloc = LOG_READ_CHUNK,
    };
    lr.buf = xmalloc(lr.alloc);

    /* Oldest first. */
    for (size_t i = 0, j = nfiles - 1; i < j; i++, j--) {
        log_file t = files[i];
        files[i] = files[j];
        files[j] = t;
    }
    if (anomaly && nfiles > 1) {
        /* Stable insertion sort by first seq; files without a record yet
         * (a new log) count as newest. */
        for (size_t k = 0; k < nfiles; k++) {
            files[k].first_seq = file_first_seq(&lr, &files[k]);
            if (files[k].first_seq == 0)
                files[k].first_seq = UINT64_MAX;
        }
        for (size_t i = 1; i < nfiles; i++)
            for (size_t j = i; j > 0 && files[j - 1].first_seq > files[j].first_seq; j--) {
                log_file t = files[j];
                files[j] = files[j - 1];
                files[j - 1] = t;
            }
    }
    rt_log_cursor saved = *cur;

    /* Resume in place only when the file is provably the one we were
     * reading: same inode, offset within it on a line boundary, and the same
     * first record (inode numbers are reused once a rotated file is gone). */
    size_t first = 0;
    uint64_t offset = 0;
    bool resume = false;
    for (size_t k = 0; k < nfiles && cur->inode; k++) {
        if (files[k].inode != cur->inode || cur->offset > files[k].size)
            continue;
        char c = '\n';
        if (cur->offset > 0 && pread(files[k].fd, &c, 1, (off_t) cur->offset - 1) != 1)
            c = 0;
        if (c != '\n')
            break;
        if (cur->offset > 0 && cur->file_seq && file_first_seq(&lr, &files[k]) != cur->file_seq)
            break;
        first = k;
        offset = cur->offset;
        resume = cur->offset > 0 && cur->seq > 0 && cur->file_seq == 0;
        break;
    }
    if (offset == 0 && first == 0)
        cur->file_seq = 0;

    for (int attempt = 0; attempt < 2; attempt++) {
        lr.check_resume = resume;
        lr.resume_bad = false;
        for (size_t k = first; k < nfiles; k++) {
            r = log_read_file(&lr, &files[k], k == first ? offset : 0, k == nfiles - 1, err);
            if (r < 0)
                goto done;
            if (r == 0)
                break;
            if (k + 1 < nfiles) {
                cur->inode = files[k + 1].inode;
                cur->offset = 0;
                cur->file_seq = 0;
            }
        }
        if (!lr.resume_bad)
            break;
        /* Rescan from the oldest file; nothing was delivered yet. */
        *cur = saved;
        first = 0;
        offset = 0;
        resume = false;
    }
    r = (int) lr.delivered;
done:
    free(lr.buf);
    for (size_t k = 0; k < nfiles; k++)
        close(files[k].fd);
    return r;
}
