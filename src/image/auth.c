/* WWW-Authenticate parsing (RFC 7235 §4.1 with the leniency registries need):
 *
 *   header     = challenge *( OWS "," OWS challenge )
 *   challenge  = scheme [ 1*SP ( token68 / auth-param *( OWS "," OWS auth-param ) ) ]
 *   auth-param = token BWS "=" BWS ( token / quoted-string )
 *
 * A name that is not followed by '=' starts the next challenge. Unquoted
 * values may contain any character but whitespace, ',' and '"' (some
 * registries send unquoted URLs). Parameter names are case-insensitive; the
 * first occurrence wins. */
#include <string.h>
#include <strings.h>

#include "basic/alloc.h"
#include "basic/buf.h"
#include "basic/strutil.h"
#include "image-internal.h"

#define MAX_PARAMS 64

static bool is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

typedef struct cursor {
    const char *s;
    size_t n, i;
} cursor;

static bool at_end(const cursor *c)
{
    return c->i >= c->n;
}

static char peek(const cursor *c)
{
    return at_end(c) ? 0 : c->s[c->i];
}

static void skip_ows(cursor *c)
{
    while (!at_end(c) && is_ows(c->s[c->i]))
        c->i++;
}

static size_t read_token(cursor *c)
{
    size_t start = c->i;
    while (!at_end(c) && is_tchar(c->s[c->i]))
        c->i++;
    return c->i - start;
}

void img_auth_challenge_done(img_auth_challenge *ch)
{
    if (!ch)
        return;
    free(ch->scheme);
    free(ch->realm);
    free(ch->service);
    free(ch->scope);
    free(ch->error);
    *ch = (img_auth_challenge){ 0 };
}

static void set_param(img_auth_challenge *ch, const char *name, size_t nlen, char *value)
{
    char **slot = NULL;
    if (nlen == 5 && !strncasecmp(name, "realm", 5))
        slot = &ch->realm;
    else if (nlen == 7 && !strncasecmp(name, "service", 7))
        slot = &ch->service;
    else if (nlen == 5 && !strncasecmp(name, "scope", 5))
        slot = &ch->scope;
    else if (nlen == 5 && !strncasecmp(name, "error", 5))
        slot = &ch->error;
    if (slot && !*slot)
        *slot = value;
    else
        free(value);
}

/* Parses a quoted-string starting at '"'; returns the unescaped value. */
static int read_quoted(cursor *c, char **ret)
{
    _cleanup_buf_ sk_buf b;
    sk_buf_init(&b, 0);
    c->i++; /* opening quote */
    while (!at_end(c)) {
        char ch = c->s[c->i++];
        if (ch == '"') {
            *ret = sk_buf_steal(&b);
            return 0;
        }
        if (ch == '\\') {
            if (at_end(c))
                break;
            ch = c->s[c->i++];
        }
        if (ch == 0 || ch == '\r' || ch == '\n')
            return -1;
        sk_buf_putc(&b, ch);
    }
    return -1;
}

static int rank(const img_auth_challenge *ch)
{
    if (!ch->scheme)
        return 0;
    if (streq(ch->scheme, "bearer"))
        return 2;
    if (streq(ch->scheme, "basic"))
        return 1;
    return 0;
}

int img_auth_parse(const char *s, size_t n, img_auth_challenge *ret, sk_err *err)
{
    if (n > IMG_AUTH_HEADER_MAX)
        return sk_err_set(err, SK_E_LIMIT, "WWW-Authenticate header longer than %d bytes",
                          IMG_AUTH_HEADER_MAX);
    cursor c = { s, n, 0 };
    img_auth_challenge best = { 0 }, cur = { 0 };
    unsigned nparams = 0;

    for (;;) {
        while (!at_end(&c) && (is_ows(peek(&c)) || peek(&c) == ','))
            c.i++;
        if (at_end(&c))
            break;
        size_t start = c.i;
        size_t len = read_token(&c);
        if (len == 0)
            goto malformed;
        cur.scheme = xstrndup(s + start, len);
        for (char *p = cur.scheme; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char) (*p - 'A' + 'a');

        bool first = true;
        for (;;) {
            size_t before = c.i;
            skip_ows(&c);
            bool comma = false;
            while (!at_end(&c) && (is_ows(peek(&c)) || peek(&c) == ',')) {
                comma |= peek(&c) == ',';
                c.i++;
            }
            if (at_end(&c))
                break;
            if (first && !comma && c.i == before)
                goto malformed; /* scheme must be followed by SP, ',' or the end */
            size_t nstart = c.i;
            size_t nlen = read_token(&c);
            if (nlen == 0) {
                if (!first || comma)
                    goto malformed;
                /* token68 starting with a non-tchar ('/' or '+'): skip it. */
                while (!at_end(&c) && peek(&c) != ',' && !is_ows(peek(&c)))
                    c.i++;
                first = false;
                continue;
            }
            size_t after_name = c.i;
            skip_ows(&c);
            if (peek(&c) != '=') {
                if (first && !comma) {
                    /* token68 such as "Basic dXNlcg/x+": ignore it. */
                    c.i = after_name;
                    while (!at_end(&c) && peek(&c) != ',' && !is_ows(peek(&c)))
                        c.i++;
                    first = false;
                    continue;
                }
                c.i = nstart; /* the next challenge's scheme */
                break;
            }
            c.i++; /* '=' */
            skip_ows(&c);
            char *value;
            if (peek(&c) == '"') {
                if (read_quoted(&c, &value) < 0)
                    goto malformed;
            } else {
                size_t vstart = c.i;
                while (!at_end(&c) && peek(&c) != ',' && peek(&c) != '"' && !is_ows(peek(&c)) &&
                       peek(&c) != 0)
                    c.i++;
                if (peek(&c) == '"' || (at_end(&c) ? false : peek(&c) == 0))
                    goto malformed;
                value = xstrndup(s + vstart, c.i - vstart);
            }
            if (++nparams > MAX_PARAMS) {
                free(value);
                img_auth_challenge_done(&cur);
                img_auth_challenge_done(&best);
                return sk_err_set(err, SK_E_LIMIT, "too many WWW-Authenticate parameters");
            }
            set_param(&cur, s + nstart, nlen, value);
            first = false;
        }
        if (rank(&cur) > rank(&best)) {
            img_auth_challenge_done(&best);
            best = cur;
            cur = (img_auth_challenge){ 0 };
        } else
            img_auth_challenge_done(&cur);
    }

    if (rank(&best) == 0) {
        img_auth_challenge_done(&best);
        return sk_err_set(err, SK_E_INVALID, "no Bearer or Basic challenge in WWW-Authenticate");
    }
    *ret = best;
    return 0;

malformed:
    img_auth_challenge_done(&cur);
    img_auth_challenge_done(&best);
    return sk_err_set(err, SK_E_INVALID, "malformed WWW-Authenticate header at offset %zu", c.i);
}
