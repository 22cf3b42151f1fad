/* skiff-monitor: the per-container monitor. The contract (command line, sync
 * protocol, log format, exit.json) is documented in monitor.h.
 *
 * Built with musl when available (a few dozen KiB resident) and otherwise
 * with glibc, so this file uses libc only, no skiff helpers, and no heap: all
 * buffers are static and fixed, so memory use does not grow with log volume.
 *
 *   skiff-monitor --runtime PATH --root DIR --bundle DIR --id ID --dir DIR
 *                 --sync-fd FD [--log-max-size BYTES] [--log-max-files N]
 *
 * Exit status of the process the agent started: 0 once the daemonised
 * monitor runs, 2 on bad arguments. The daemon's own exit status is not
 * observed by anyone (it is reparented to init or a subreaper). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_SPLIT        16384 /* longer lines are split into several records */
#define OUT_BUF               8192  /* log write buffer; a record may span several writes */
#define SYNC_MSG_MAX          3800  /* keeps the sync line below PIPE_BUF (one atomic write) */
#define DRAIN_AFTER_EXIT      2000  /* ms to keep reading pipes after the container exited */
#define DRAIN_AFTER_ERROR     2000  /* ms to keep reading pipes after the runtime failed */
#define ID_MAX                64

#define DEFAULT_LOG_MAX_SIZE  (10ULL * 1024 * 1024)
#define DEFAULT_LOG_MAX_FILES 3U
#define MIN_LOG_MAX_SIZE      1024ULL
#define MAX_LOG_MAX_SIZE      (1ULL << 40)
#define MAX_LOG_MAX_FILES     100U

#define LOG_NAME              "container.log"

typedef struct stream {
    const char *name; /* "stdout" | "stderr" */
    int fd;           /* read end of the pipe, -1 after EOF */
    size_t len;       /* bytes buffered in buf (an incomplete line) */
    char buf[LINE_MAX_SPLIT];
} stream;

static struct {
    /* command line */
    const char *runtime, *root, *bundle, *id, *dir;
    int sync_fd;
    uint64_t log_max_size;
    unsigned log_max_files;

    int dir_fd;
    int log_fd;
    uint64_t log_size; /* size of the current container.log */
    uint64_t seq;      /* last record number handed out */
    uint64_t dropped;  /* records that could not be written */
    bool rec_failed;   /* a write of the current record failed */
    size_t out_len;
    char out[OUT_BUF];
    char errtail[512]; /* the runtime's last stderr bytes, for error messages */
    size_t errtail_len;
} m = { .sync_fd = -1, .dir_fd = -1, .log_fd = -1 };

static stream s_out = { .name = "stdout", .fd = -1 };
static stream s_err = { .name = "stderr", .fd = -1 };

/* ---- small string helpers (no stdio in the hot path) ---- */

static size_t u64_to_str(uint64_t v, char *out)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char) ('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
    return n;
}

static bool parse_u64_arg(const char *s, uint64_t *ret)
{
    uint64_t v = 0;
    if (!s || !*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        if (v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t) (*s - '0');
    }
    *ret = v;
    return true;
}

static bool id_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return s[0] != '.';
}

/* ---- JSON string escaping with UTF-8 validation ---- */

/* Length of the valid UTF-8 sequence at p (1..4), or 0 when it is invalid or
 * truncated. Rejects overlong forms, surrogates and code points > U+10FFFF. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    if (c < 0xC2)
        return 0;
    if (c < 0xE0)
        return n >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c < 0xF0) {
        if (n < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
            return 0;
        if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] >= 0xA0))
            return 0;
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        if ((c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] >= 0x90))
            return 0;
        return 4;
    }
    return 0;
}

static void out_flush(void)
{
    size_t off = 0;
    while (off < m.out_len && !m.rec_failed) {
        ssize_t k = write(m.log_fd, m.out + off, m.out_len - off);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            m.rec_failed = true;
            break;
        }
        off += (size_t) k;
        m.log_size += (uint64_t) k;
    }
    m.out_len = 0;
}

static void out_put(const char *p, size_t n)
{
    while (n > 0) {
        if (m.out_len == sizeof(m.out))
            out_flush();
        size_t k = sizeof(m.out) - m.out_len;
        if (k > n)
            k = n;
        memcpy(m.out + m.out_len, p, k);
        m.out_len += k;
        p += k;
        n -= k;
    }
}

static void out_puts(const char *s)
{
    out_put(s, strlen(s));
}

/* Escapes p[0..n) as the inside of a JSON string. With emit false only the
 * length is computed. Invalid UTF-8 bytes become U+FFFD, as Go's encoder
 * (and so docker's json-file driver) does. */
static size_t json_escape(const char *p, size_t n, bool emit)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *) p;
    size_t total = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        char e[8];
        size_t el;
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            /* Copy the longest plain ASCII run in one go. */
            size_t j = i + 1;
            while (j < n && u[j] >= 0x20 && u[j] < 0x80 && u[j] != '"' && u[j] != '\\')
                j++;
            if (emit)
                out_put(p + i, j - i);
            total += j - i;
            i = j;
            continue;
        }
        if (c >= 0x80) {
            size_t l = utf8_len(u + i, n - i);
            if (l) {
                if (emit)
                    out_put(p + i, l);
                total += l;
                i += l;
                continue;
            }
            memcpy(e, "\\ufffd", 6);
            el = 6;
        } else if (c == '"' || c == '\\') {
            e[0] = '\\';
            e[1] = (char) c;
            el = 2;
        } else if (c == '\n' || c == '\t' || c == '\r' || c == '\b' || c == '\f') {
            e[0] = '\\';
            e[1] = c == '\n' ? 'n' : c == '\t' ? 't' : c == '\r' ? 'r' : c == '\b' ? 'b' : 'f';
            el = 2;
        } else {
            memcpy(e, "\\u00", 4);
            e[4] = hex[c >> 4];
            e[5] = hex[c & 15];
            el = 6;
        }
        if (emit)
            out_put(e, el);
        total += el;
        i++;
    }
    return total;
}

/* ---- time ---- */

/* RFC 3339 with nanoseconds in UTC, "2006-01-02T15:04:05.000000000Z" (31
 * bytes + NUL). Civil-from-days after H. Hinnant; no time zone code needed. */
static void format_time(const struct timespec *ts, char out[32])
{
    int64_t secs = ts->tv_sec;
    int64_t days = secs / 86400, rem = secs % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t mo = mp < 10 ? mp + 3 : mp - 9;
    if (mo <= 2)
        y++;
    snprintf(out, 32, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", (int) y, (int) mo, (int) d,
             (int) (rem / 3600), (int) (rem / 60 % 60), (int) (rem % 60), (long) ts->tv_nsec);
}

/* ---- the log file ---- */

static void log_open(void)
{
    m.log_fd =
            openat(m.dir_fd, LOG_NAME, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
    m.log_size = 0;
    if (m.log_fd >= 0) {
        struct stat st;
        if (fstat(m.log_fd, &st) == 0)
            m.log_size = (uint64_t) st.st_size;
    }
}

static void log_name(unsigned i, char out[32])
{
    size_t n = strlen(LOG_NAME);
    memcpy(out, LOG_NAME, n);
    out[n++] = '.';
    u64_to_str(i, out + n);
}

/* container.log → .1 → .2 ... → .(max_files-1); the oldest is overwritten.
 * Readers follow by inode and seq (rt_log_read). */
static void log_rotate(void)
{
    if (m.log_fd >= 0)
        close(m.log_fd);
    m.log_fd = -1;
    if (m.log_max_files <= 1)
        (void) unlinkat(m.dir_fd, LOG_NAME, 0);
    else {
        char a[32], b[32];
        for (unsigned i = m.log_max_files - 1; i >= 2; i--) {
            log_name(i - 1, a);
            log_name(i, b);
            (void) renameat(m.dir_fd, a, m.dir_fd, b);
        }
        log_name(1, b);
        (void) renameat(m.dir_fd, LOG_NAME, m.dir_fd, b);
    }
    log_open();
}

/* Writes one record. Its seq is consumed even when the write fails, so a
 * reader sees the loss as a gap. A failed record is truncated away so the
 * file never holds a torn line (the next record starts on a fresh line). */
static void emit_record(const stream *s, const char *p, size_t n, bool newline, const char *ts)
{
    char tail[160], num[24];
    uint64_t seq = ++m.seq;

    u64_to_str(seq, num);
    snprintf(tail, sizeof(tail), "\",\"stream\":\"%s\",\"time\":\"%s\",\"seq\":%s}\n", s->name, ts,
             num);
    static const char head[] = "{\"log\":\"";
    uint64_t total =
            (sizeof(head) - 1) + json_escape(p, n, false) + (newline ? 2 : 0) + strlen(tail);

    if (m.log_fd >= 0 && m.log_size > 0 && m.log_size + total > m.log_max_size)
        log_rotate();
    if (m.log_fd < 0)
        log_open(); /* e.g. the directory was unavailable for a while */
    if (m.log_fd < 0) {
        m.dropped++;
        return;
    }

    uint64_t start = m.log_size;
    m.rec_failed = false;
    m.out_len = 0;
    out_put(head, sizeof(head) - 1);
    json_escape(p, n, true);
    if (newline)
        out_put("\\n", 2);
    out_puts(tail);
    out_flush();
    if (m.rec_failed) {
        m.dropped++;
        if (ftruncate(m.log_fd, (off_t) start) == 0)
            m.log_size = start;
        else {
            /* Cannot undo a torn write: start a fresh file. */
            log_rotate();
        }
    }
}

/* ---- pipes ---- */

static void errtail_add(const char *p, size_t n)
{
    if (n >= sizeof(m.errtail)) {
        p += n - sizeof(m.errtail);
        n = sizeof(m.errtail);
    }
    if (m.errtail_len + n > sizeof(m.errtail)) {
        size_t drop = m.errtail_len + n - sizeof(m.errtail);
        memmove(m.errtail, m.errtail + drop, m.errtail_len - drop);
        m.errtail_len -= drop;
    }
    memcpy(m.errtail + m.errtail_len, p, n);
    m.errtail_len += n;
}

/* Where to split a full buffer without cutting a UTF-8 sequence in two. */
static size_t split_point(const char *buf, size_t n)
{
    const unsigned char *u = (const unsigned char *) buf;
    size_t j = n;
    while (j > 0 && n - j < 3 && (u[j - 1] & 0xC0) == 0x80)
        j--;
    if (j == 0)
        return n;
    unsigned char lead = u[j - 1];
    size_t want = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (want > 1 && n - (j - 1) < want && j - 1 > 0)
        return j - 1;
    return n;
}

static void stream_close(stream *s, const char *ts)
{
    if (s->len > 0)
        emit_record(s, s->buf, s->len, false, ts); /* partial last line */
    s->len = 0;
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

/* One read from the pipe; complete lines become records. Never blocks. */
static void stream_read(stream *s, bool runtime_running)
{
    struct timespec now;
    char ts[32];

    ssize_t k = read(s->fd, s->buf + s->len, sizeof(s->buf) - s->len);
    if (k < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    clock_gettime(CLOCK_REALTIME, &now);
    format_time(&now, ts);
    if (k <= 0) {
        stream_close(s, ts);
        return;
    }
    if (runtime_running && s == &s_err)
        errtail_add(s->buf + s->len, (size_t) k);

    size_t start = 0, scan = s->len;
    s->len += (size_t) k;
    for (;;) {
        char *nl = memchr(s->buf + scan, '\n', s->len - scan);
        if (!nl)
            break;
        size_t end = (size_t) (nl - s->buf);
        emit_record(s, s->buf + start, end - start, true, ts);
        start = scan = end + 1;
    }
    if (start == 0 && s->len == sizeof(s->buf)) {
        size_t cut = split_point(s->buf, s->len);
        emit_record(s, s->buf, cut, false, ts);
        start = cut;
    }
    if (start > 0) {
        memmove(s->buf, s->buf + start, s->len - start);
        s->len -= start;
    }
}

/* ---- reporting ---- */

static void sync_send(const char *line)
{
    if (m.sync_fd < 0)
        return;
    size_t n = strlen(line);
    while (n > 0) {
        ssize_t k = write(m.sync_fd, line, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break; /* the agent went away (EPIPE): nobody to tell */
        line += k;
        n -= (size_t) k;
    }
    close(m.sync_fd);
    m.sync_fd = -1;
}

static void sync_error(const char *msg)
{
    char line[SYNC_MSG_MAX + 16];
    size_t n = 0;
    memcpy(line, "error ", 6);
    n = 6;
    for (const char *p = msg; *p && n < SYNC_MSG_MAX; p++)
        line[n++] = (*p == '\n' || *p == '\r') ? ' ' : *p;
    while (n > 6 && line[n - 1] == ' ')
        n--;
    line[n++] = '\n';
    line[n] = '\0';
    sync_send(line);
}

/* Writes a small file in DIR atomically (temp, rename); durable adds the
 * fsyncs that make it survive a host crash, not just the monitor's death. */
static int write_atomic(const char *name, const char *p, size_t n, bool durable)
{
    char tmp[64];
    snprintf(tmp, sizeof(tmp), ".%s.tmp", name);
    int fd = openat(m.dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0644);
    if (fd < 0)
        return -errno;
    size_t off = 0;
    while (off < n) {
        ssize_t k = write(fd, p + off, n - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            int r = -errno;
            close(fd);
            unlinkat(m.dir_fd, tmp, 0);
            return r;
        }
        off += (size_t) k;
    }
    if ((durable && fsync(fd) < 0) || close(fd) < 0) {
        int r = -errno;
        unlinkat(m.dir_fd, tmp, 0);
        return r;
    }
    if (renameat(m.dir_fd, tmp, m.dir_fd, name) < 0) {
        int r = -errno;
        unlinkat(m.dir_fd, tmp, 0);
        return r;
    }
    if (durable)
        (void) fsync(m.dir_fd);
    return 0;
}

static void write_exit(int exit_code, int sig, const char *error)
{
    struct timespec now;
    char buf[SYNC_MSG_MAX + 256];
    clock_gettime(CLOCK_REALTIME, &now);
    int n = snprintf(buf, sizeof(buf),
                     "{\"exitCode\":%d,\"signal\":%d,\"finishedAt\":%lld.%03ld,\"logDropped\":%llu",
                     exit_code, sig, (long long) now.tv_sec, now.tv_nsec / 1000000L,
                     (unsigned long long) m.dropped);
    if (error) {
        /* Reuse the log escaper through the output buffer (the log is closed). */
        size_t need = json_escape(error, strlen(error), false);
        if (need + (size_t) n + 16 < sizeof(buf)) {
            memcpy(buf + n, ",\"error\":\"", 10);
            n += 10;
            m.out_len = 0;
            json_escape(error, strlen(error), true);
            memcpy(buf + n, m.out, m.out_len);
            n += (int) m.out_len;
            m.out_len = 0;
            buf[n++] = '"';
        }
    }
    buf[n++] = '}';
    buf[n++] = '\n';
    (void) write_atomic("exit.json", buf, (size_t) n, true);
}

/* Reads a small file in DIR into buf (NUL-terminated); the last max-1 bytes
 * when it is larger. Returns the length or -errno. */
static ssize_t read_small(const char *name, char *buf, size_t max)
{
    int fd = openat(m.dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) == 0 && (uint64_t) st.st_size >= max)
        (void) lseek(fd, st.st_size - (off_t) (max - 1), SEEK_SET);
    size_t n = 0;
    while (n < max - 1) {
        ssize_t k = read(fd, buf + n, max - 1 - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        n += (size_t) k;
    }
    close(fd);
    buf[n] = '\0';
    return (ssize_t) n;
}

/* Decodes the JSON string starting after the opening quote at p into out.
 * Good enough for runc's messages: \uXXXX outside ASCII becomes UTF-8 for the
 * BMP and '?' for surrogates. */
static void json_unescape(const char *p, char *out, size_t max)
{
    size_t n = 0;
    while (*p && *p != '"' && n + 4 < max) {
        char c = *p++;
        if (c != '\\') {
            out[n++] = c;
            continue;
        }
        c = *p++;
        switch (c) {
        case 'n':
            out[n++] = '\n';
            break;
        case 't':
            out[n++] = '\t';
            break;
        case 'r':
            out[n++] = '\r';
            break;
        case 'b':
            out[n++] = '\b';
            break;
        case 'f':
            out[n++] = '\f';
            break;
        case 'u': {
            unsigned v = 0;
            int i;
            for (i = 0; i < 4 && p[i]; i++) {
                char h = p[i];
                v <<= 4;
                if (h >= '0' && h <= '9')
                    v |= (unsigned) (h - '0');
                else if (h >= 'a' && h <= 'f')
                    v |= (unsigned) (h - 'a' + 10);
                else if (h >= 'A' && h <= 'F')
                    v |= (unsigned) (h - 'A' + 10);
                else
                    break;
            }
            if (i < 4) {
                out[n] = '\0';
                return;
            }
            p += 4;
            if (v < 0x80)
                out[n++] = (char) (v ? v : ' ');
            else if (v < 0x800) {
                out[n++] = (char) (0xC0 | (v >> 6));
                out[n++] = (char) (0x80 | (v & 0x3F));
            } else if (v >= 0xD800 && v < 0xE000)
                out[n++] = '?';
            else {
                out[n++] = (char) (0xE0 | (v >> 12));
                out[n++] = (char) (0x80 | ((v >> 6) & 0x3F));
                out[n++] = (char) (0x80 | (v & 0x3F));
            }
            break;
        }
        case '\0':
            out[n] = '\0';
            return;
        default: /* \" \\ \/ */
            out[n++] = c;
        }
    }
    out[n] = '\0';
}

/* The last error or fatal message in runtime.log (runc --log-format json:
 * {"level":"error","msg":"...","time":"..."}), or "" when there is none. */
static void runtime_error_message(char *out, size_t max)
{
    static char logbuf[16384];
    out[0] = '\0';
    if (read_small("runtime.log", logbuf, sizeof(logbuf)) <= 0)
        return;
    for (char *line = logbuf; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        if (strstr(line, "\"level\":\"error\"") || strstr(line, "\"level\":\"fatal\"")) {
            const char *msg = strstr(line, "\"msg\":\"");
            if (msg)
                json_unescape(msg + 7, out, max);
        }
        line = nl ? nl + 1 : NULL;
    }
}

/* ---- process setup ---- */

static void reset_signals(void)
{
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        (void) signal(sig, SIG_DFL);
    }
}

/* Closes every fd >= from. */
static void close_from(int from)
{
    if (syscall(SYS_close_range, (unsigned) from, ~0U, 0) == 0)
        return;
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536)
        max = 65536;
    for (int fd = from; fd < max; fd++)
        close(fd);
}

static int devnull_stdio(void)
{
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -1;
    for (int i = 0; i < 3; i++)
        if (fd != i && dup2(fd, i) < 0)
            return -1;
    if (fd > 2)
        close(fd);
    return 0;
}

_Noreturn static void usage_error(const char *msg)
{
    char line[512];
    snprintf(line, sizeof(line), "monitor: %s", msg);
    if (m.sync_fd >= 0)
        sync_error(line);
    dprintf(2, "skiff-monitor: %s\n", msg);
    _exit(2);
}

static void parse_args(int argc, char **argv)
{
    enum {
        OPT_RUNTIME = 1,
        OPT_ROOT,
        OPT_BUNDLE,
        OPT_ID,
        OPT_DIR,
        OPT_SYNC,
        OPT_MAXSIZE,
        OPT_MAXFILES
    };
    static const struct option opts[] = {
        { "runtime", required_argument, NULL, OPT_RUNTIME },
        { "root", required_argument, NULL, OPT_ROOT },
        { "bundle", required_argument, NULL, OPT_BUNDLE },
        { "id", required_argument, NULL, OPT_ID },
        { "dir", required_argument, NULL, OPT_DIR },
        { "sync-fd", required_argument, NULL, OPT_SYNC },
        { "log-max-size", required_argument, NULL, OPT_MAXSIZE },
        { "log-max-files", required_argument, NULL, OPT_MAXFILES },
        { 0 },
    };
    uint64_t v;
    int c;

    m.log_max_size = DEFAULT_LOG_MAX_SIZE;
    m.log_max_files = DEFAULT_LOG_MAX_FILES;
    opterr = 0;
    /* Find the sync fd first so that every later error can be reported on it. */
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--sync-fd") == 0 && parse_u64_arg(argv[i + 1], &v) && v < INT_MAX &&
            fcntl((int) v, F_GETFD) >= 0)
            m.sync_fd = (int) v;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_RUNTIME:
            m.runtime = optarg;
            break;
        case OPT_ROOT:
            m.root = optarg;
            break;
        case OPT_BUNDLE:
            m.bundle = optarg;
            break;
        case OPT_ID:
            m.id = optarg;
            break;
        case OPT_DIR:
            m.dir = optarg;
            break;
        case OPT_SYNC:
            if (!parse_u64_arg(optarg, &v) || v >= INT_MAX || fcntl((int) v, F_GETFD) < 0)
                usage_error("--sync-fd: not an open file descriptor");
            break;
        case OPT_MAXSIZE:
            if (!parse_u64_arg(optarg, &v) || v < MIN_LOG_MAX_SIZE || v > MAX_LOG_MAX_SIZE)
                usage_error("--log-max-size: expected a byte count in [1024, 2^40]");
            m.log_max_size = v;
            break;
        case OPT_MAXFILES:
            if (!parse_u64_arg(optarg, &v) || v < 1 || v > MAX_LOG_MAX_FILES)
                usage_error("--log-max-files: expected a number in [1, 100]");
            m.log_max_files = (unsigned) v;
            break;
        default:
            usage_error("unknown option or missing argument");
        }
    }
    if (optind != argc)
        usage_error("unexpected positional argument");
    if (m.sync_fd < 0)
        usage_error("--sync-fd is required");
    if (!m.runtime || !m.root || !m.bundle || !m.id || !m.dir)
        usage_error("--runtime, --root, --bundle, --id and --dir are required");
    if (m.root[0] != '/' || m.bundle[0] != '/' || m.dir[0] != '/')
        usage_error("--root, --bundle and --dir must be absolute paths");
    if (!id_valid(m.id))
        usage_error("--id must match [A-Za-z0-9_.-]{1,64} and not start with '.'");
}

/* Detaches: the agent's child exits as soon as the grandchild exists, so the
 * monitor is reparented to init (or the nearest subreaper) and is in its own
 * session, safe from the agent's death and its terminal's signals. */
static void daemonize(void)
{
    pid_t p = fork();
    if (p < 0)
        usage_error("fork failed");
    if (p > 0) {
        int st;
        while (waitpid(p, &st, 0) < 0 && errno == EINTR)
            ;
        _exit(0);
    }
    if (setsid() < 0)
        _exit(1);
    p = fork();
    if (p < 0) {
        sync_error("monitor: fork failed");
        _exit(1);
    }
    if (p > 0)
        _exit(0);
}

typedef struct run_state {
    pid_t runtime_pid;   /* > 0 until reaped */
    pid_t container_pid; /* > 0 once known */
    int container_pidfd; /* only when the container is not our child */
    bool container_done;
    int container_status;
    bool start_failed;
} run_state;

static pid_t spawn_runtime(int out_w, int err_w, char *errmsg, size_t errmax)
{
    /* --log and --log-format are global options in runc (and crun): they
     * must come before the command. */
    static char pidfile[PATH_MAX], logfile[PATH_MAX];
    snprintf(pidfile, sizeof(pidfile), "%s/container.pid", m.dir);
    snprintf(logfile, sizeof(logfile), "%s/runtime.log", m.dir);
    const char *argv[] = {
        m.runtime,  "--root",   m.root,   "--log",      logfile, "--log-format", "json", "run",
        "--detach", "--bundle", m.bundle, "--pid-file", pidfile, m.id,           NULL,
    };

    int ep[2];
    if (pipe2(ep, O_CLOEXEC) < 0) {
        snprintf(errmsg, errmax, "monitor: pipe: %s", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(errmsg, errmax, "monitor: fork: %s", strerror(errno));
        close(ep[0]);
        close(ep[1]);
        return -1;
    }
    if (pid == 0) {
        int nul = open("/dev/null", O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (nul < 0 || dup2(nul, 0) < 0 || dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0) {
            int e = errno;
            (void) !write(ep[1], &e, sizeof(e));
            _exit(127);
        }
        reset_signals();
        execvp(m.runtime, (char *const *) argv);
        int e = errno;
        (void) !write(ep[1], &e, sizeof(e));
        _exit(127);
    }
    close(ep[1]);
    int e = 0;
    ssize_t k;
    while ((k = read(ep[0], &e, sizeof(e))) < 0 && errno == EINTR)
        ;
    close(ep[0]);
    if (k == (ssize_t) sizeof(e)) {
        snprintf(errmsg, errmax, "exec '%s': %s", m.runtime, strerror(e));
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        return -1;
    }
    return pid;
}

static void on_runtime_exit(run_state *rs, int status)
{
    char msg[SYNC_MSG_MAX];
    char buf[64];

    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        uint64_t v = 0;
        ssize_t n = read_small("container.pid", buf, sizeof(buf));
        if (n > 0) {
            while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
                buf[--n] = '\0';
        }
        if (n <= 0 || !parse_u64_arg(buf, &v) || v < 2 || v > INT_MAX) {
            rs->start_failed = true;
            sync_error("runtime succeeded but wrote no valid container.pid");
            write_exit(-1, 0, "runtime succeeded but wrote no valid container.pid");
            return;
        }
        rs->container_pid = (pid_t) v;
        /* The container's init is reparented to us (the subreaper) when the
         * runtime exits. If some runtime daemonised it elsewhere, fall back
         * to a pidfd: we learn about the exit but not the status. */
        siginfo_t si = { 0 };
        if (waitid(P_PID, (id_t) v, &si, WEXITED | WNOHANG | WNOWAIT) < 0 && errno == ECHILD) {
            rs->container_pidfd = (int) syscall(SYS_pidfd_open, (pid_t) v, 0);
            if (rs->container_pidfd < 0) {
                /* Already gone and reaped by someone else: it did start. */
                rs->container_done = true;
                rs->container_status = -1;
            }
        }
        char line[80];
        snprintf(line, sizeof(line), "ok %d %d\n", (int) getpid(), (int) v);
        sync_send(line);
        return;
    }

    rs->start_failed = true;
    runtime_error_message(msg, sizeof(msg));
    if (!msg[0] && m.errtail_len > 0) {
        size_t n = m.errtail_len < sizeof(msg) - 1 ? m.errtail_len : sizeof(msg) - 1;
        memcpy(msg, m.errtail + m.errtail_len - n, n);
        msg[n] = '\0';
        for (size_t i = 0; i < n; i++)
            if (msg[i] == '\0')
                msg[i] = ' ';
    }
    if (!msg[0]) {
        if (WIFEXITED(status))
            snprintf(msg, sizeof(msg), "runtime exited with status %d", WEXITSTATUS(status));
        else
            snprintf(msg, sizeof(msg), "runtime killed by signal %d", WTERMSIG(status));
    }
    sync_error(msg);
    write_exit(-1, 0, msg);
}

static void reap(run_state *rs)
{
    int st;
    if (rs->runtime_pid > 0) {
        pid_t r = waitpid(rs->runtime_pid, &st, WNOHANG);
        if (r == rs->runtime_pid) {
            rs->runtime_pid = 0;
            on_runtime_exit(rs, st);
        } else
            return; /* not before the runtime is gone: see below */
    }
    /* Only now reap everything else: the container's pid is known, so its
     * status cannot be mistaken for an unrelated zombie's. */
    for (;;) {
        pid_t r = waitpid(-1, &st, WNOHANG);
        if (r <= 0)
            break;
        if (r == rs->container_pid && !rs->container_done) {
            rs->container_done = true;
            rs->container_status = st;
        }
    }
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int run(void)
{
    char errmsg[512];
    run_state rs = { .container_pidfd = -1 };
    int po[2], pe[2];

    m.dir_fd = open(m.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (m.dir_fd < 0) {
        snprintf(errmsg, sizeof(errmsg), "monitor: open '%s': %s", m.dir, strerror(errno));
        sync_error(errmsg);
        return 1;
    }
    if (chdir("/") < 0) {
        /* not fatal: only keeps the cwd from pinning a mount */
    }
    char pidbuf[24];
    size_t pn = u64_to_str((uint64_t) getpid(), pidbuf);
    pidbuf[pn++] = '\n';
    (void) unlinkat(m.dir_fd, "exit.json", 0);
    (void) unlinkat(m.dir_fd, "container.pid", 0);
    (void) unlinkat(m.dir_fd, "runtime.log", 0);
    if (write_atomic("monitor.pid", pidbuf, pn, false) < 0) {
        snprintf(errmsg, sizeof(errmsg), "monitor: write monitor.pid: %s", strerror(errno));
        sync_error(errmsg);
        return 1;
    }

    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0 || pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0) {
        snprintf(errmsg, sizeof(errmsg), "monitor: signalfd/pipe: %s", strerror(errno));
        sync_error(errmsg);
        write_exit(-1, 0, errmsg);
        return 1;
    }
    s_out.fd = po[0];
    s_err.fd = pe[0];
    fcntl(po[0], F_SETFL, O_NONBLOCK);
    fcntl(pe[0], F_SETFL, O_NONBLOCK);
    log_open();

    rs.runtime_pid = spawn_runtime(po[1], pe[1], errmsg, sizeof(errmsg));
    close(po[1]);
    close(pe[1]);
    if (rs.runtime_pid < 0) {
        sync_error(errmsg);
        write_exit(-1, 0, errmsg);
        return 1;
    }

    int64_t deadline = -1;
    for (;;) {
        bool streams_open = s_out.fd >= 0 || s_err.fd >= 0;
        if ((rs.container_done || rs.start_failed) && rs.runtime_pid == 0) {
            if (!streams_open)
                break;
            if (deadline < 0)
                deadline = now_ms() + (rs.start_failed ? DRAIN_AFTER_ERROR : DRAIN_AFTER_EXIT);
            else if (now_ms() >= deadline)
                break;
        }
        struct pollfd pfd[4] = {
            { .fd = sfd, .events = POLLIN },
            { .fd = s_out.fd, .events = POLLIN },
            { .fd = s_err.fd, .events = POLLIN },
            { .fd = rs.container_pidfd, .events = POLLIN },
        };
        int timeout = -1;
        if (deadline >= 0) {
            int64_t left = deadline - now_ms();
            timeout = left < 0 ? 0 : (int) left;
        }
        int r = poll(pfd, 4, timeout);
        if (r < 0 && errno != EINTR)
            break;
        if (r <= 0)
            continue;
        if (pfd[0].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof(si)) > 0)
                ;
            reap(&rs);
        }
        if (pfd[1].revents && s_out.fd >= 0)
            stream_read(&s_out, rs.runtime_pid > 0);
        if (pfd[2].revents && s_err.fd >= 0)
            stream_read(&s_err, rs.runtime_pid > 0);
        if (pfd[3].revents && rs.container_pidfd >= 0) {
            close(rs.container_pidfd);
            rs.container_pidfd = -1;
            rs.container_done = true;
            rs.container_status = -1;
        }
    }

    /* Flush partial lines; anything still unread is abandoned. */
    struct timespec now;
    char ts[32];
    clock_gettime(CLOCK_REALTIME, &now);
    format_time(&now, ts);
    if (s_out.fd >= 0 || s_out.len)
        stream_close(&s_out, ts);
    if (s_err.fd >= 0 || s_err.len)
        stream_close(&s_err, ts);
    if (m.log_fd >= 0) {
        (void) fsync(m.log_fd);
        close(m.log_fd);
        m.log_fd = -1;
    }
    reap(&rs);

    if (rs.start_failed)
        return 1;
    int st = rs.container_status;
    if (st == -1)
        write_exit(-1, 0, "container exit status unknown: it was not a child of the monitor");
    else if (WIFSIGNALED(st))
        write_exit(128 + WTERMSIG(st), WTERMSIG(st), NULL);
    else
        write_exit(WEXITSTATUS(st), 0, NULL);
    return 0;
}

int main(int argc, char **argv)
{
    /* Reporting an argument error to an agent that went away must not kill
     * us with SIGPIPE before we can exit 2. */
    signal(SIGPIPE, SIG_IGN);
    parse_args(argc, argv);

    /* Keep only the sync fd (moved to 3, close-on-exec so the runtime does not
     * inherit it) and stdio on /dev/null: nothing of the agent's stays open. */
    if (m.sync_fd != 3) {
        if (dup3(m.sync_fd, 3, O_CLOEXEC) < 0)
            usage_error("cannot move the sync fd");
        close(m.sync_fd);
        m.sync_fd = 3;
    } else
        fcntl(3, F_SETFD, FD_CLOEXEC);
    close_from(4);
    if (devnull_stdio() < 0)
        usage_error("cannot open /dev/null");
    reset_signals();
    signal(SIGPIPE, SIG_IGN);
    umask(022);

    daemonize();

    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGTTOU, SIG_IGN);
    signal(SIGTTIN, SIG_IGN);
    _exit(run());
}
