#include "strutil.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include "alloc.h"

const char *startswith(const char *s, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncmp(s, prefix, n) != 0)
        return NULL;
    return s + n;
}

bool endswith(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

int parse_u64(const char *s, uint64_t *ret)
{
    if (!s || !*s)
        return -EINVAL;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        unsigned d = (unsigned) (*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    *ret = v;
    return 0;
}

int parse_i64(const char *s, int64_t *ret)
{
    if (!s || !*s)
        return -EINVAL;
    bool neg = false;
    if (*s == '-' || *s == '+') {
        neg = *s == '-';
        s++;
    }
    uint64_t u;
    int r = parse_u64(s, &u);
    if (r < 0)
        return r;
    if (neg) {
        if (u > (uint64_t) INT64_MAX + 1)
            return -ERANGE;
        *ret = u == (uint64_t) INT64_MAX + 1 ? INT64_MIN : -(int64_t) u;
    } else {
        if (u > (uint64_t) INT64_MAX)
            return -ERANGE;
        *ret = (int64_t) u;
    }
    return 0;
}

int parse_int(const char *s, int *ret)
{
    int64_t v;
    int r = parse_i64(s, &v);
    if (r < 0)
        return r;
    if (v < INT_MIN || v > INT_MAX)
        return -ERANGE;
    *ret = (int) v;
    return 0;
}

int parse_u32(const char *s, uint32_t *ret)
{
    uint64_t v;
    int r = parse_u64(s, &v);
    if (r < 0)
        return r;
    if (v > UINT32_MAX)
        return -ERANGE;
    *ret = (uint32_t) v;
    return 0;
}

int parse_bool(const char *s, bool *ret)
{
    static const char *const yes[] = { "1", "true", "yes", "on", "TRUE", "True" };
    static const char *const no[] = { "0", "false", "no", "off", "FALSE", "False" };
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        if (streq(s, yes[i])) {
            *ret = true;
            return 0;
        }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        if (streq(s, no[i])) {
            *ret = false;
            return 0;
        }
    return -EINVAL;
}

int parse_duration_usec(const char *s, uint64_t *ret)
{
    if (!s || !*s)
        return -EINVAL;
    uint64_t total = 0;
    const char *p = s;
    bool any = false;
    while (*p) {
        uint64_t v = 0;
        const char *start = p;
        while (*p >= '0' && *p <= '9') {
            if (v > UINT64_MAX / 10 - 10)
                return -ERANGE;
            v = v * 10 + (uint64_t) (*p - '0');
            p++;
        }
        if (p == start)
            return -EINVAL;
        uint64_t mult;
        if (*p == 0) {
            if (any)
                return -EINVAL;
            mult = 1000000;
        } else if (p[0] == 'm' && p[1] == 's') {
            mult = 1000;
            p += 2;
        } else if (p[0] == 'u' && p[1] == 's') {
            mult = 1;
            p += 2;
        } else if (p[0] == 'n' && p[1] == 's') {
            v /= 1000;
            mult = 1;
            p += 2;
        } else if (*p == 's') {
            mult = 1000000;
            p++;
        } else if (*p == 'm') {
            mult = 60ULL * 1000000;
            p++;
        } else if (*p == 'h') {
            mult = 3600ULL * 1000000;
            p++;
        } else if (*p == 'd') {
            mult = 86400ULL * 1000000;
            p++;
        } else
            return -EINVAL;
        if (v && mult > UINT64_MAX / v)
            return -ERANGE;
        if (total > UINT64_MAX - v * mult)
            return -ERANGE;
        total += v * mult;
        any = true;
    }
    *ret = total;
    return 0;
}

int parse_size(const char *s, uint64_t *ret)
{
    if (!s || !*s)
        return -EINVAL;
    size_t n = strlen(s);
    uint64_t mult = 1;
    char last = (char) tolower((unsigned char) s[n - 1]);
    if (last == 'b' && n > 1) {
        n--;
        last = (char) tolower((unsigned char) s[n - 1]);
    }
    if (last == 'k' || last == 'm' || last == 'g' || last == 't') {
        mult = last == 'k'   ? 1ULL << 10
               : last == 'm' ? 1ULL << 20
               : last == 'g' ? 1ULL << 30
                             : 1ULL << 40;
        n--;
    }
    if (n == 0 || n > 20)
        return -EINVAL;
    char tmp[24];
    memcpy(tmp, s, n);
    tmp[n] = 0;
    uint64_t v;
    int r = parse_u64(tmp, &v);
    if (r < 0)
        return r;
    if (v && mult > UINT64_MAX / v)
        return -ERANGE;
    *ret = v * mult;
    return 0;
}

void hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int hex_decode(const char *in, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(in[2 * i]), lo = hi < 0 ? -1 : hexval(in[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -EINVAL;
        out[i] = (uint8_t) (hi << 4 | lo);
    }
    return 0;
}

bool is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

char *uri_encode(const char *s, size_t n, bool keep_slash)
{
    static const char digits[] = "0123456789ABCDEF";
    char *out = xmalloc(n * 3 + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s[i];
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/'))
            *o++ = (char) c;
        else {
            *o++ = '%';
            *o++ = digits[c >> 4];
            *o++ = digits[c & 15];
        }
    }
    *o = 0;
    return out;
}

int uri_decode(const char *s, size_t n, bool plus_space, char **ret, size_t *ret_len)
{
    char *out = xmalloc(n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            if (i + 2 >= n) {
                free(out);
                return -EINVAL;
            }
            int hi = hexval(s[i + 1]), lo = hi < 0 ? -1 : hexval(s[i + 2]);
            if (hi < 0 || lo < 0) {
                free(out);
                return -EINVAL;
            }
            *o++ = (char) (hi << 4 | lo);
            i += 2;
        } else if (plus_space && s[i] == '+')
            *o++ = ' ';
        else
            *o++ = s[i];
    }
    *o = 0;
    *ret = out;
    if (ret_len)
        *ret_len = (size_t) (o - out);
    return 0;
}

size_t strlcpy_s(char *dst, const char *src, size_t n)
{
    size_t len = strlen(src);
    if (n) {
        size_t c = len < n - 1 ? len : n - 1;
        memcpy(dst, src, c);
        dst[c] = 0;
    }
    return len;
}

char *strjoin(const char *a, const char *b)
{
    return xasprintf("%s%s", a, b);
}

char *strstrip(char *s)
{
    char *start = s;
    while (*start && isspace((unsigned char) *start))
        start++;
    size_t n = strlen(start);
    while (n && isspace((unsigned char) start[n - 1]))
        n--;
    memmove(s, start, n);
    s[n] = 0;
    return s;
}

bool str_is_printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s[i];
        if (c < 0x20 && c != '\t')
            return false;
        if (c == 0x7f)
            return false;
    }
    return true;
}
