/* libFuzzer target for the small string parsers and codecs under the API:
 * percent-encoding, durations, sizes, timestamps, base64, hex, integers and
 * the task-definition cpu/memory units. The first byte picks the parser; the
 * rest is its input. Round trips are checked where a format defines one. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "basic/alloc.h"
#include "basic/strutil.h"
#include "basic/timeutil.h"
#include "controlplane/taskdef.h"
#include "shared/digest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_uri(const char *s, size_t n, bool plus)
{
    char *d = NULL;
    size_t dl = 0;
    if (uri_decode(s, n, plus, &d, &dl) < 0)
        return;
    if (dl > n || d[dl] != 0)
        abort();
    /* encode(decode(x)) decodes back to decode(x). */
    char *e = uri_encode(d, dl, false);
    char *d2 = NULL;
    size_t dl2 = 0;
    if (uri_decode(e, strlen(e), false, &d2, &dl2) < 0 || dl2 != dl || memcmp(d, d2, dl) != 0)
        abort();
    free(d2);
    free(e);
    free(d);
}

static void check_uri_encode(const char *s, size_t n, bool keep_slash)
{
    char *e = uri_encode(s, n, keep_slash);
    if (strlen(e) > 3 * n)
        abort();
    for (const char *c = e; *c; c++)
        if (!(strchr("-_.~%/", *c) || (*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z') ||
              (*c >= 'A' && *c <= 'Z')))
            abort();
    char *d = NULL;
    size_t dl = 0;
    if (uri_decode(e, strlen(e), false, &d, &dl) < 0 || dl != n || memcmp(d, s, n) != 0)
        abort();
    free(d);
    free(e);
}

static void check_rfc3339(const char *s)
{
    usec_t u;
    if (parse_rfc3339(s, &u) < 0)
        return;
    char out[32];
    format_rfc3339(u, out);
    usec_t back;
    if (parse_rfc3339(out, &back) < 0 || back != u - u % 1000)
        abort();
}

static void check_amz_date(const char *s)
{
    time_t t;
    if (parse_amz_date(s, &t) < 0)
        return;
    char out[17];
    format_amz_date(t, out);
    time_t back;
    if (parse_amz_date(out, &back) < 0 || back != t)
        abort();
}

static void check_base64_decode(const char *s, size_t n)
{
    uint8_t *out = NULL;
    size_t len = 0;
    if (base64_decode(s, n, &out, &len) < 0)
        return;
    if (len > n / 4 * 3)
        abort();
    char *e = base64_encode(out, len);
    uint8_t *out2 = NULL;
    size_t len2 = 0;
    if (base64_decode(e, strlen(e), &out2, &len2) < 0 || len2 != len || memcmp(out, out2, len) != 0)
        abort();
    free(out2);
    free(e);
    free(out);
}

static void check_base64_encode(const uint8_t *p, size_t n)
{
    char *e = base64_encode(p, n);
    if (strlen(e) != 4 * ((n + 2) / 3))
        abort();
    uint8_t *out = NULL;
    size_t len = 0;
    if (base64_decode(e, strlen(e), &out, &len) < 0 || len != n || memcmp(out, p, n) != 0)
        abort();
    free(out);
    free(e);
}

static void check_hex(const char *s, size_t n)
{
    size_t bytes = n / 2;
    uint8_t *out = xmalloc(bytes + 1);
    if (hex_decode(s, out, bytes) == 0) {
        char *h = xmalloc(2 * bytes + 1);
        hex_encode(out, bytes, h);
        if (strncasecmp(h, s, 2 * bytes) != 0)
            abort();
        if (!is_hex(h, 2 * bytes))
            abort();
        free(h);
    }
    free(out);
}

static void check_numbers(const char *s)
{
    uint64_t u;
    int64_t i;
    int x;
    uint32_t u32;
    bool b;
    if (parse_u64(s, &u) == 0) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%llu", (unsigned long long) u);
        uint64_t u2;
        if (parse_u64(buf, &u2) < 0 || u2 != u)
            abort();
    }
    if (parse_i64(s, &i) == 0) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%lld", (long long) i);
        int64_t i2;
        if (parse_i64(buf, &i2) < 0 || i2 != i)
            abort();
    }
    (void) parse_int(s, &x);
    (void) parse_u32(s, &u32);
    (void) parse_bool(s, &b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 64 * 1024)
        return 0;
    uint8_t mode = data[0];
    size_t n = size - 1;
    char *s = xmalloc(n + 1);
    memcpy(s, data + 1, n);
    s[n] = 0;
    uint64_t u;
    int64_t v;
    switch (mode % 13) {
    case 0:
        check_uri(s, n, false);
        check_uri(s, n, true);
        break;
    case 1:
        check_uri_encode(s, n, mode & 0x80);
        break;
    case 2:
        (void) parse_duration_usec(s, &u);
        break;
    case 3:
        (void) parse_size(s, &u);
        break;
    case 4:
        check_rfc3339(s);
        break;
    case 5:
        check_amz_date(s);
        break;
    case 6:
        check_base64_decode(s, n);
        break;
    case 7:
        check_base64_encode(data + 1, n);
        break;
    case 8:
        check_hex(s, n);
        break;
    case 9:
        check_numbers(s);
        break;
    case 10:
        if (taskdef_parse_cpu(s, &v) == 0 && v < 0)
            abort();
        if (taskdef_parse_memory(s, &v) == 0 && v < 0)
            abort();
        break;
    case 11: {
        char *c = xstrdup(s);
        strstrip(c);
        (void) str_is_printable(c, strlen(c));
        (void) endswith(s, "vcpu");
        (void) startswith(s, "AWS4");
        free(c);
        break;
    }
    case 12: {
        time_t t;
        usec_t us;
        (void) parse_amz_date(s, &t);
        (void) parse_rfc3339(s, &us);
        break;
    }
    }
    free(s);
    return 0;
}
