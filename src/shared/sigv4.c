#include "sigv4.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "basic/alloc.h"
#include "basic/buf.h"
#include "basic/strutil.h"
#include "basic/timeutil.h"
#include "digest.h"

#define T_MISSING          "MissingAuthenticationTokenException"
#define T_INCOMPLETE       "IncompleteSignatureException"
#define T_INVALID          "InvalidSignatureException"
#define MAX_SIGNED_HEADERS 64

void sigv4_auth_done(sigv4_auth *a)
{
    free(a->signed_headers);
    a->signed_headers = NULL;
}

static const char *header_get(const sigv4_request *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++)
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

/* Finds a raw query parameter value (still encoded); returns a malloc'd decoded copy. */
static char *query_get(const char *query, const char *name)
{
    if (!query)
        return NULL;
    size_t nl = strlen(name);
    const char *p = query;
    while (*p) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t) (end - p) : strlen(p);
        if (len > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            char *v = NULL;
            if (uri_decode(p + nl + 1, len - nl - 1, false, &v, NULL) < 0)
                return NULL;
            return v;
        }
        p += len;
        if (*p == '&')
            p++;
    }
    return NULL;
}

static bool copy_field(char *dst, size_t dstlen, const char *src, size_t n)
{
    if (n == 0 || n >= dstlen)
        return false;
    memcpy(dst, src, n);
    dst[n] = 0;
    return true;
}

/* Credential=AKID/DATE/REGION/SERVICE/aws4_request */
static int parse_credential(const char *cred, size_t n, sigv4_auth *a, sk_err *err)
{
    const char *parts[5];
    size_t lens[5];
    const char *p = cred, *end = cred + n;
    for (int i = 0; i < 5; i++) {
        const char *slash = i < 4 ? memchr(p, '/', (size_t) (end - p)) : NULL;
        if (i < 4 && !slash)
            return sk_err_typed(err, SK_E_AUTH, T_INCOMPLETE,
                                "Credential should be scoped to a valid region. ");
        parts[i] = p;
        lens[i] = i < 4 ? (size_t) (slash - p) : (size_t) (end - p);
        p = i < 4 ? slash + 1 : end;
    }
    if (!copy_field(a->access_key, sizeof(a->access_key), parts[0], lens[0]) ||
        !copy_field(a->date, sizeof(a->date), parts[1], lens[1]) || lens[1] != 8 ||
        !copy_field(a->region, sizeof(a->region), parts[2], lens[2]) ||
        !copy_field(a->service, sizeof(a->service), parts[3], lens[3]) || lens[4] != 12 ||
        memcmp(parts[4], "aws4_request", 12) != 0)
        return sk_err_typed(err, SK_E_AUTH, T_INCOMPLETE,
                            "Credential should be scoped to a valid region. ");
    for (const char *c = a->region; *c; c++)
        if (!isalnum((unsigned char) *c) && *c != '-')
            return sk_err_typed(err, SK_E_AUTH, T_INCOMPLETE,
                                "Credential should be scoped to a valid region. ");
    return 0;
}

static int check_signed_headers(const char *sh, sk_err *err)
{
    size_t n = strlen(sh), count = 1;
    if (n == 0 || n > 4096)
        return sk_err_typed(err, SK_E_AUTH, T_INCOMPLETE, "Invalid SignedHeaders.");
    for (size_t i = 0; i < n; i++) {
        char c = sh[i];
        if (c == ';')
            count++;
        else if (!(islower((unsigned char) c) || isdigit((unsigned char) c) || c == '-' ||
                   c == '_' || c == '.'))
            return sk_err_typed(err, SK_E_AUTH, T_INCOMPLETE, "Invalid SignedHeaders.");
    }
    if (count > MAX_SIGNED_HEADERS)
        return sk_err_typed(err, SK_E_AUTH, T_INCOMPLETE, "Too many SignedHeaders.");
    return 0;
}

static int parse_header_auth(const char *h, sigv4_auth *a, sk_err *err)
{
    const char *p = startswith(h, "AWS4-HMAC-SHA256");
    if (!p || (*p != ' '))
        return sk_err_typed(
                err, SK_E_AUTH, T_INCOMPLETE,
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.");
    bool have_cred = false, have_sh = false, have_sig = false;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        const char *eq = strchr(p, '=');
        if (!eq)
            return sk_err_typed(
                    err, SK_E_AUTH, T_INCOMPLETE,
                    "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter.");
        const char *v = eq + 1;
        size_t vl = strcspn(v, ", ");
        size_t kl = (size_t) (eq - p);
        if (kl == 10 && memcmp(p, "Credential", 10) == 0) {
            if (parse_credential(v, vl, a, err) < 0)
                return -1;
            have_cred = true;
        } else if (kl == 13 && memcmp(p, "SignedHeaders", 13) == 0) {
            free(a->signed_headers);
            a->signed_headers = xstrndup(v, vl);
            have_sh = true;
        } else if (kl == 9 && memcmp(p, "Signature", 9) == 0) {
            if (!copy_field(a->signature, sizeof(a->signature), v, vl) || vl != 64)
                return sk_err_typed(err, SK_E_AUTH, T_INCOMPLETE, "Invalid Signature.");
            have_sig = true;
        }
        p = v + vl;
    }
    if (!have_cred || !have_sh || !have_sig) {
        sk_buf b;
        sk_buf_init(&b, 0);
        if (!have_cred)
            sk_buf_puts(&b, "Authorization header requires 'Credential' parameter. ");
        if (!have_sig)
            sk_buf_puts(&b, "Authorization header requires 'Signature' parameter. ");
        if (!have_sh)
            sk_buf_puts(&b, "Authorization header requires 'SignedHeaders' parameter. ");
        sk_buf_puts(&b, "Authorization=");
        sk_buf_puts(&b, h);
        sk_err_typed(err, SK_E_AUTH, T_INCOMPLETE, "%s", b.data);
        sk_buf_done(&b);
        return -1;
    }
    return check_signed_headers(a->signed_headers, err);
}

int sigv4_parse(const sigv4_request *req, sigv4_auth *a, sk_err *err)
{
    *a = (sigv4_auth){ 0 };
    const char *h = header_get(req, "authorization");
    _cleanup_free_ char *qalg = query_get(req->query, "X-Amz-Algorithm");
    if (h && strncmp(h, "AWS4-HMAC-SHA256", 16) == 0) {
        if (parse_header_auth(h, a, err) < 0)
            goto fail;
        const char *d = header_get(req, "x-amz-date");
        if (!d)
            d = header_get(req, "date");
        if (!d || strlen(d) != 16) {
            sk_err_typed(
                    err, SK_E_AUTH, T_INCOMPLETE,
                    "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization=%s",
                    h);
            goto fail;
        }
        memcpy(a->amz_date, d, 17);
        return 0;
    }
    if (qalg) {
        if (!streq(qalg, "AWS4-HMAC-SHA256")) {
            sk_err_typed(err, SK_E_AUTH, T_INCOMPLETE, "Unsupported algorithm '%s'.", qalg);
            goto fail;
        }
        _cleanup_free_ char *cred = query_get(req->query, "X-Amz-Credential");
        _cleanup_free_ char *date = query_get(req->query, "X-Amz-Date");
        _cleanup_free_ char *sh = query_get(req->query, "X-Amz-SignedHeaders");
        _cleanup_free_ char *sig = query_get(req->query, "X-Amz-Signature");
        _cleanup_free_ char *exp = query_get(req->query, "X-Amz-Expires");
        if (!cred || !date || !sh || !sig || !exp) {
            sk_err_typed(
                    err, SK_E_AUTH, T_INCOMPLETE,
                    "AWS query-string parameters must include 'X-Amz-Algorithm', 'X-Amz-Credential', 'X-Amz-Signature', 'X-Amz-Date', 'X-Amz-SignedHeaders', and 'X-Amz-Expires'.");
            goto fail;
        }
        if (parse_credential(cred, strlen(cred), a, err) < 0)
            goto fail;
        int64_t e;
        if (strlen(date) != 16 || strlen(sig) != 64 || parse_i64(exp, &e) < 0 || e < 1 ||
            e > 604800) {
            sk_err_typed(err, SK_E_AUTH, T_INCOMPLETE, "Invalid presigned request parameters.");
            goto fail;
        }
        memcpy(a->amz_date, date, 17);
        memcpy(a->signature, sig, 65);
        a->signed_headers = TAKE_PTR(sh);
        a->presigned = true;
        a->expires = (long) e;
        if (check_signed_headers(a->signed_headers, err) < 0)
            goto fail;
        return 0;
    }
    sk_err_typed(err, SK_E_AUTH, T_MISSING, "Missing Authentication Token");
fail:
    sigv4_auth_done(a);
    return -1;
}

/* --- canonical request --- */

static void append_canonical_path(sk_buf *b, const char *path)
{
    /* Normalise: drop "." segments, resolve "..", collapse "//"; keep a trailing slash. */
    if (!path || !*path)
        path = "/";
    size_t n = strlen(path);
    char **segs = xcalloc(n + 1, sizeof(char *));
    size_t nseg = 0;
    const char *p = path;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        size_t l = strcspn(p, "/");
        if (l == 1 && p[0] == '.') {
        } else if (l == 2 && p[0] == '.' && p[1] == '.') {
            if (nseg)
                free(segs[--nseg]);
        } else
            segs[nseg++] = xstrndup(p, l);
        p += l;
    }
    bool trailing = n > 1 && path[n - 1] == '/';
    if (nseg == 0)
        sk_buf_putc(b, '/');
    for (size_t i = 0; i < nseg; i++) {
        sk_buf_putc(b, '/');
        char *e = uri_encode(segs[i], strlen(segs[i]), false);
        sk_buf_puts(b, e);
        free(e);
        free(segs[i]);
    }
    if (trailing && nseg)
        sk_buf_putc(b, '/');
    free(segs);
}

typedef struct qpair {
    char *k;
    char *v;
} qpair;

static int qpair_cmp(const void *a, const void *b)
{
    const qpair *x = a, *y = b;
    int c = strcmp(x->k, y->k);
    return c ? c : strcmp(x->v, y->v);
}

static void append_canonical_query(sk_buf *b, const char *query)
{
    if (!query || !*query)
        return;
    size_t cap = 1;
    for (const char *c = query; *c; c++)
        cap += *c == '&';
    qpair *pairs = xcalloc(cap, sizeof(qpair));
    size_t np = 0;
    const char *p = query;
    while (*p) {
        size_t len = strcspn(p, "&");
        if (len > 0) {
            const char *eq = memchr(p, '=', len);
            size_t kl = eq ? (size_t) (eq - p) : len;
            const char *v = eq ? eq + 1 : p + len;
            size_t vl = eq ? len - kl - 1 : 0;
            char *dk = NULL, *dv = NULL;
            size_t dkl = 0, dvl = 0;
            if (uri_decode(p, kl, false, &dk, &dkl) < 0)
                dk = xstrndup(p, kl), dkl = kl;
            if (uri_decode(v, vl, false, &dv, &dvl) < 0)
                dv = xstrndup(v, vl), dvl = vl;
            if (strcmp(dk, "X-Amz-Signature") != 0) {
                pairs[np].k = uri_encode(dk, dkl, false);
                pairs[np].v = uri_encode(dv, dvl, false);
                np++;
            }
            free(dk);
            free(dv);
        }
        p += len;
        if (*p == '&')
            p++;
    }
    qsort(pairs, np, sizeof(qpair), qpair_cmp);
    for (size_t i = 0; i < np; i++) {
        if (i)
            sk_buf_putc(b, '&');
        sk_buf_printf(b, "%s=%s", pairs[i].k, pairs[i].v);
        free(pairs[i].k);
        free(pairs[i].v);
    }
    free(pairs);
}

static void append_header_value(sk_buf *b, const char *v)
{
    /* Trim and collapse runs of whitespace to one space. */
    bool space = false, started = false;
    for (const char *c = v; *c; c++) {
        if (*c == ' ' || *c == '\t' || *c == '\n' || *c == '\r') {
            space = started;
            continue;
        }
        if (space)
            sk_buf_putc(b, ' ');
        space = false;
        started = true;
        sk_buf_putc(b, *c);
    }
}

char *sigv4_canonical_request(const sigv4_request *req, const char *signed_headers)
{
    sk_buf b;
    sk_buf_init(&b, 0);
    sk_buf_puts(&b, req->method);
    sk_buf_putc(&b, '\n');
    append_canonical_path(&b, req->path);
    sk_buf_putc(&b, '\n');
    append_canonical_query(&b, req->query);
    sk_buf_putc(&b, '\n');
    const char *p = signed_headers;
    while (*p) {
        size_t l = strcspn(p, ";");
        char name[256];
        if (l < sizeof(name)) {
            memcpy(name, p, l);
            name[l] = 0;
            sk_buf_puts(&b, name);
            sk_buf_putc(&b, ':');
            bool first = true;
            for (size_t i = 0; i < req->nheaders; i++) {
                if (strcasecmp(req->headers[i].name, name) != 0)
                    continue;
                if (!first)
                    sk_buf_putc(&b, ',');
                append_header_value(&b, req->headers[i].value);
                first = false;
            }
            sk_buf_putc(&b, '\n');
        }
        p += l;
        if (*p == ';')
            p++;
    }
    sk_buf_putc(&b, '\n');
    sk_buf_puts(&b, signed_headers);
    sk_buf_putc(&b, '\n');
    sk_buf_puts(&b, req->payload_hash ? req->payload_hash : "UNSIGNED-PAYLOAD");
    return sk_buf_steal(&b);
}

char *sigv4_string_to_sign(const char *amz_date, const char *scope, const char *canonical)
{
    char h[SHA256_HEX_LEN + 1];
    sha256_hex(canonical, strlen(canonical), h);
    return xasprintf("AWS4-HMAC-SHA256\n%s\n%s\n%s", amz_date, scope, h);
}

void sigv4_signing_key(const char *secret, const char *date, const char *region,
                       const char *service, unsigned char out[32])
{
    char *k = xasprintf("AWS4%s", secret);
    unsigned char a[32], b[32];
    hmac_sha256(k, strlen(k), date, strlen(date), a);
    hmac_sha256(a, 32, region, strlen(region), b);
    hmac_sha256(b, 32, service, strlen(service), a);
    hmac_sha256(a, 32, "aws4_request", 12, out);
    explicit_bzero(k, strlen(k));
    free(k);
}

static void compute_signature(const sigv4_request *req, const char *secret, const char *date,
                              const char *region, const char *service, const char *amz_date,
                              const char *signed_headers, char out[65], char **ret_canonical,
                              char **ret_sts)
{
    char *canonical = sigv4_canonical_request(req, signed_headers);
    char *scope = xasprintf("%s/%s/%s/aws4_request", date, region, service);
    char *sts = sigv4_string_to_sign(amz_date, scope, canonical);
    unsigned char key[32], sig[32];
    sigv4_signing_key(secret, date, region, service, key);
    hmac_sha256(key, 32, sts, strlen(sts), sig);
    hex_encode(sig, 32, out);
    free(scope);
    if (ret_canonical)
        *ret_canonical = canonical;
    else
        free(canonical);
    if (ret_sts)
        *ret_sts = sts;
    else
        free(sts);
}

static bool signs_host(const char *signed_headers)
{
    const char *p = signed_headers;
    while (*p) {
        size_t l = strcspn(p, ";");
        if ((l == 4 && strncmp(p, "host", 4) == 0) ||
            (l == 10 && strncmp(p, ":authority", 10) == 0))
            return true;
        p += l;
        if (*p == ';')
            p++;
    }
    return false;
}

int sigv4_verify(const sigv4_request *req, const sigv4_auth *a, const char *secret, time_t now,
                 sk_err *err)
{
    if (!signs_host(a->signed_headers))
        return sk_err_typed(
                err, SK_E_AUTH, T_INCOMPLETE,
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.");
    time_t t;
    if (parse_amz_date(a->amz_date, &t) < 0)
        return sk_err_typed(
                err, SK_E_AUTH, T_INCOMPLETE,
                "Date must be in ISO-8601 'basic format'. Got '%s'. See http://en.wikipedia.org/wiki/ISO_8601",
                a->amz_date);
    if (strncmp(a->amz_date, a->date, 8) != 0)
        return sk_err_typed(
                err, SK_E_AUTH, T_INVALID,
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '%s' != '%.8s', from '%s'.",
                a->date, a->amz_date, a->amz_date);
    if (a->presigned) {
        if (now > t + a->expires) {
            char nowbuf[17];
            format_amz_date(now, nowbuf);
            return sk_err_typed(err, SK_E_AUTH, T_INVALID,
                                "Signature expired: %s is now earlier than %s", a->amz_date,
                                nowbuf);
        }
        if (t > now + SIGV4_MAX_SKEW_SEC)
            return sk_err_typed(err, SK_E_AUTH, T_INVALID, "Signature not yet current.");
    } else if (t < now - SIGV4_MAX_SKEW_SEC || t > now + SIGV4_MAX_SKEW_SEC) {
        char nowbuf[17], lo[17], hi[17];
        format_amz_date(now, nowbuf);
        format_amz_date(now - SIGV4_MAX_SKEW_SEC, lo);
        format_amz_date(now + SIGV4_MAX_SKEW_SEC, hi);
        if (t < now)
            return sk_err_typed(err, SK_E_AUTH, T_INVALID,
                                "Signature expired: %s is now earlier than %s (%s - 15 min.)",
                                a->amz_date, lo, nowbuf);
        return sk_err_typed(err, SK_E_AUTH, T_INVALID,
                            "Signature not yet current: %s is still later than %s (%s + 15 min.)",
                            a->amz_date, hi, nowbuf);
    }
    char sig[65];
    char *canonical = NULL, *sts = NULL;
    compute_signature(req, secret, a->date, a->region, a->service, a->amz_date, a->signed_headers,
                      sig, &canonical, &sts);
    bool ok = mem_equal_ct(sig, a->signature, 64);
    if (!ok)
        sk_err_typed(
                err, SK_E_AUTH, T_INVALID,
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.\n\nThe Canonical String for this request should have been\n'%s'\n\nThe String-to-Sign should have been\n'%s'\n",
                canonical, sts);
    free(canonical);
    free(sts);
    return ok ? 0 : -1;
}

char *sigv4_authorization(const sigv4_request *req, const char *access_key, const char *secret,
                          const char *region, const char *service, const char *amz_date,
                          const char *signed_headers)
{
    char date[9];
    memcpy(date, amz_date, 8);
    date[8] = 0;
    char sig[65];
    compute_signature(req, secret, date, region, service, amz_date, signed_headers, sig, NULL,
                      NULL);
    return xasprintf(
            "AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, SignedHeaders=%s, Signature=%s",
            access_key, date, region, service, signed_headers, sig);
}
