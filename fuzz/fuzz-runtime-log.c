/* libFuzzer target for the rotating log reader (rt_log_read): arbitrary file
 * contents, split over container.log.2, .1 and container.log, read in small
 * batches; then the files are rotated once (as the monitor does) and more
 * input is appended, and the reader must carry on. Checks the reader's
 * invariants: records strictly increasing in seq, known streams, and the
 * cursor consistent with what was delivered.
 *
 * Input: byte 0 picks the batch size, bytes 1-2 the split points; the rest is
 * divided into four parts (three files, then what is appended after the
 * rotation). */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "basic/alloc.h"
#include "basic/err.h"
#include "basic/fileutil.h"
#include "basic/macro.h"
#include "basic/strutil.h"
#include "runtime/monitor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *dir;

static void cleanup(void)
{
    if (dir)
        rm_rf(dir);
}

static void put(const char *name, const uint8_t *p, size_t n, bool append)
{
    _cleanup_free_ char *path = path_join(dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0644);
    if (fd < 0)
        abort();
    if (n && write_all(fd, p, n) < 0)
        abort();
    close(fd);
}

typedef struct check {
    uint64_t last;
    size_t n;
} check;

static void on_record(void *userdata, const rt_log_record *r)
{
    check *c = userdata;
    if (r->seq <= c->last)
        abort();
    if (!streq(r->stream, "stdout") && !streq(r->stream, "stderr"))
        abort();
    if (!r->line || r->len > RT_LOG_READ_LINE_MAX)
        abort();
    volatile char sink = 0;
    for (size_t i = 0; i < r->len; i++)
        sink ^= r->line[i];
    (void) sink;
    c->last = r->seq;
    c->n++;
}

static void drain(rt_log_cursor *cur, unsigned batch, check *c)
{
    for (int i = 0; i < 64; i++) {
        _cleanup_err_ sk_err err = { 0 };
        uint64_t before = c->n;
        int r = rt_log_read(dir, cur, batch, on_record, c, &err);
        if (r < 0)
            abort();
        if ((size_t) r != c->n - before || (unsigned) r > batch)
            abort();
        if (r > 0 && cur->seq != c->last)
            abort();
        if (r == 0)
            break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3 || size > 1 << 20)
        return 0;
    if (!dir) {
        char tmpl[] = "/tmp/fuzz-runtime-log-XXXXXX";
        if (!mkdtemp(tmpl))
            abort();
        dir = xstrdup(tmpl);
        atexit(cleanup);
    }
    unsigned batch = 1 + data[0] % 8;
    const uint8_t *p = data + 3;
    size_t n = size - 3;
    size_t a = n * data[1] / 255 / 2, b = a + (n - a) * data[2] / 255 / 2, c = b + (n - b) / 2;
    put("container.log.2", p, a, false);
    put("container.log.1", p + a, b - a, false);
    put("container.log", p + b, c - b, false);

    rt_log_cursor cur = { 0 };
    check chk = { 0 };
    drain(&cur, batch, &chk);

    /* Rotate: .1 -> .2, log -> .1, new log with the last part. */
    _cleanup_free_ char *l = path_join(dir, "container.log");
    _cleanup_free_ char *l1 = path_join(dir, "container.log.1");
    _cleanup_free_ char *l2 = path_join(dir, "container.log.2");
    if (rename(l1, l2) < 0 || rename(l, l1) < 0)
        abort();
    put("container.log", p + c, n - c, false);
    drain(&cur, batch, &chk);
    if (chk.n && cur.seq != chk.last)
        abort();
    return 0;
}
