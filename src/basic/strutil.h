/* String and number helpers. The parse_* functions accept the whole string or
 * fail with -EINVAL (-ERANGE on overflow); they never read past the NUL. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline bool streq(const char *a, const char *b)
{
    return strcmp(a, b) == 0;
}
static inline bool streq_ptr(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}
static inline bool strempty(const char *s)
{
    return !s || !*s;
}
/* Returns the remainder after prefix, or NULL when s does not start with it. */
const char *startswith(const char *s, const char *prefix);
bool endswith(const char *s, const char *suffix);

int parse_u64(const char *s, uint64_t *ret);
int parse_i64(const char *s, int64_t *ret);
int parse_int(const char *s, int *ret);
int parse_u32(const char *s, uint32_t *ret);
int parse_bool(const char *s, bool *ret);
/* Durations like "30s", "3m", "1h30m", "250ms", or a bare number of seconds. */
int parse_duration_usec(const char *s, uint64_t *ret);
/* Byte counts with optional k/m/g suffix (binary multiples). */
int parse_size(const char *s, uint64_t *ret);

/* Lower-case hex of n bytes into out (2n+1 bytes). */
void hex_encode(const uint8_t *in, size_t n, char *out);
int hex_decode(const char *in, uint8_t *out, size_t n);
bool is_hex(const char *s, size_t n);

/* Percent-encode per RFC 3986 (unreserved A-Za-z0-9-._~ stay). When
 * keep_slash is set '/' is left alone. Returns a malloc'd string. */
char *uri_encode(const char *s, size_t n, bool keep_slash);
/* Decode %XX and, when plus_space is set, '+' as space. Returns -EINVAL on
 * malformed escapes. The result is NUL-terminated and may contain NUL bytes. */
int uri_decode(const char *s, size_t n, bool plus_space, char **ret, size_t *ret_len);

/* Copy at most n-1 bytes and terminate; returns strlen(src). */
size_t strlcpy_s(char *dst, const char *src, size_t n);
char *strjoin(const char *a, const char *b);
/* Trims ASCII whitespace at both ends in place; returns s. */
char *strstrip(char *s);
bool str_is_printable(const char *s, size_t n);
