/* The OCI Distribution Spec v1.1 front end under /v2/.
 *
 * Request bodies stream into cas_writers (uploads) or are buffered up to
 * 4 MiB (manifests); blobs and manifests are answered from CAS file
 * descriptors with sendfile. Upload sessions live in memory (r->uploads):
 * their data is staged in the CAS temp directory and they are dropped after
 * r->upload_idle of inactivity. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "basic/alloc.h"
#include "basic/buf.h"
#include "basic/log.h"
#include "basic/rand.h"
#include "basic/strutil.h"
#include "basic/timeutil.h"
#include "reg-internal.h"
#include "shared/digest.h"

#define SMALL_RESPONSE_MAX (256u << 10)

typedef enum v2_op {
    V2_OP_NONE = 0,
    V2_OP_MONOLITHIC, /* POST ?digest= */
    V2_OP_PATCH,
    V2_OP_PUT,
    V2_OP_MANIFEST_PUT,
} v2_op;

typedef struct v2_req {
    reg_registry *r;
    reg_ns ns;
    reg_route rt;
    v2_op op;
    reg_upload *up;
    cas_writer *w;
    char digest[REG_REF_MAX + 1];
    uint64_t expect_end; /* exclusive end of the declared range, UINT64_MAX: none */
    bool failed;
} v2_req;

/* --- errors --- */

static unsigned code_status(const char *code)
{
    static const struct {
        const char *code;
        unsigned status;
    } table[] = {
        { "BLOB_UNKNOWN", 404 },
        { "BLOB_UPLOAD_INVALID", 400 },
        { "BLOB_UPLOAD_UNKNOWN", 404 },
        { "DIGEST_INVALID", 400 },
        { "MANIFEST_BLOB_UNKNOWN", 400 },
        { "MANIFEST_INVALID", 400 },
        { "MANIFEST_UNKNOWN", 404 },
        { "NAME_INVALID", 400 },
        { "NAME_UNKNOWN", 404 },
        { "SIZE_INVALID", 400 },
        { "TAG_INVALID", 400 },
        { "UNAUTHORIZED", 401 },
        { "DENIED", 403 },
        { "UNSUPPORTED", 405 },
        { "TOOMANYREQUESTS", 429 },
    };
    for (size_t i = 0; i < ELEMENTSOF(table); i++)
        if (streq(table[i].code, code))
            return table[i].status;
    return 500;
}

static void v2_error_status(http_req *req, unsigned status, const char *code, json_t *detail,
                            const char *fmt, ...) _printf_(5, 6);
static void v2_error_status(http_req *req, unsigned status, const char *code, json_t *detail,
                            const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *msg = xvasprintf(fmt, ap);
    va_end(ap);
    json_t *e = json_pack("{s:s, s:s}", "code", code, "message", msg);
    js_set(e, "detail", detail ? detail : json_object());
    json_t *o = json_pack("{s:[o]}", "errors", e);
    size_t len;
    char *body = aws_json_dump(o, &len);
    json_decref(o);
    http_req_respond_take(req, status, "application/json", body, len);
}

#define v2_error(req, code, ...) v2_error_status(req, code_status(code), code, NULL, __VA_ARGS__)

static void v2_error_from(http_req *req, const sk_err *err)
{
    const char *code = err->type;
    if (code && streq(code, "REFERENCED_MANIFEST_UNKNOWN"))
        code = "MANIFEST_BLOB_UNKNOWN";
    else if (code && streq(code, "TAG_IMMUTABLE"))
        code = "TAG_INVALID";
    if (!code || code_status(code) == 500) {
        log_error("registry: %s", sk_err_msg(err));
        http_req_respond(req, 500, "application/json",
                         "{\"errors\":[{\"code\":\"UNKNOWN\",\"message\":\"internal error\"}]}",
                         61);
        return;
    }
    v2_error(req, code, "%s", err->msg ? err->msg : code);
}

/* --- auth --- */

static void challenge(reg_registry *r, http_req *req, const char *acct, const char *region)
{
    char h[256];
    snprintf(h, sizeof(h),
             "Basic realm=\"https://%s.dkr.ecr.%s.amazonaws.com/\",service=\"ecr.amazonaws.com\"",
             acct, region);
    http_req_add_header(req, "WWW-Authenticate", h);
}

static int url_sig_auth(reg_registry *r, http_req *req, const reg_route *rt, reg_ns *ns)
{
    const char *sig = http_req_query_param(req, "X-Skiff-Signature");
    const char *acct = http_req_query_param(req, "X-Skiff-Account");
    const char *region = http_req_query_param(req, "X-Skiff-Region");
    const char *exp = http_req_query_param(req, "X-Skiff-Expires");
    uint64_t e;
    if (!sig || !acct || !region || !exp || parse_u64(exp, &e) < 0 || strlen(sig) != 64 ||
        strlen(acct) != REG_ACCOUNT_LEN || strlen(region) > REG_REGION_MAX)
        return -EACCES;
    if (e <= (uint64_t) time(NULL))
        return -ETIMEDOUT;
    char want[65];
    reg_url_sign(r->token_key, sizeof(r->token_key), acct, region, rt->name, rt->ref, e, want);
    if (!mem_equal_ct(want, sig, 64))
        return -EACCES;
    strlcpy_s(ns->account, acct, sizeof(ns->account));
    strlcpy_s(ns->region, region, sizeof(ns->region));
    return 0;
}

static int v2_auth(reg_registry *r, http_req *req, const reg_route *rt, bool route_ok, reg_ns *ns)
{
    char hacct[REG_ACCOUNT_LEN + 1], hregion[REG_REGION_MAX + 1];
    bool host_scoped = reg_host_parse(http_req_header(req, "host"), hacct, hregion) == 0;
    const char *auth = http_req_header(req, "authorization");
    const char *why = "authentication required";
    if (auth) {
        _cleanup_free_ char *user = NULL, *pass = NULL;
        reg_token_claims c;
        int k;
        if (reg_basic_auth_parse(auth, &user, &pass) < 0)
            why = "expected Basic credentials";
        else if (!streq(user, "AWS"))
            why = "the user name must be AWS";
        else if ((k = reg_token_verify(r->token_key, sizeof(r->token_key), pass,
                                       (uint64_t) time(NULL), &c)) < 0)
            why = k == -ETIMEDOUT ? "Your authorization token has expired. Reauthenticate and "
                                    "try again."
                                  : "Your authorization token is invalid.";
        else if (host_scoped && (!streq(c.account, hacct) || !streq(c.region, hregion)))
            why = "Your authorization token does not grant access to this registry.";
        else {
            strlcpy_s(ns->account, c.account, sizeof(ns->account));
            strlcpy_s(ns->region, c.region, sizeof(ns->region));
            return 0;
        }
    } else if (route_ok && rt->kind == REG_ROUTE_BLOB &&
               (streq(http_req_method(req), "GET") || streq(http_req_method(req), "HEAD")) &&
               http_req_query_param(req, "X-Skiff-Signature")) {
        int k = url_sig_auth(r, req, rt, ns);
        if (k == 0 && (!host_scoped || (streq(ns->account, hacct) && streq(ns->region, hregion))))
            return 0;
        why = k == -ETIMEDOUT ? "the download URL has expired" : "invalid download URL signature";
    }
    challenge(r, req, host_scoped ? hacct : r->account, host_scoped ? hregion : r->region);
    v2_error(req, "UNAUTHORIZED", "%s", why);
    return -1;
}

/* --- helpers --- */

static void add_headerf(http_req *req, const char *name, const char *fmt, ...) _printf_(3, 4);
static void add_headerf(http_req *req, const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *v = xvasprintf(fmt, ap);
    va_end(ap);
    http_req_add_header(req, name, v);
}

static void upload_headers(http_req *req, const reg_upload *u)
{
    uint64_t sz = u->w ? cas_writer_size(u->w) : 0;
    add_headerf(req, "Location", "/v2/%s/blobs/uploads/%s", u->repo, u->id);
    add_headerf(req, "Range", "0-%llu", (unsigned long long) (sz ? sz - 1 : 0));
    http_req_add_header(req, "Docker-Upload-UUID", u->id);
}

/* The Accept values of the request, joined (clients send several headers). */
static char *accept_values(http_req *req)
{
    sk_buf b;
    sk_buf_init(&b, 16384);
    size_t n = http_req_header_count(req);
    for (size_t i = 0; i < n; i++) {
        const char *name, *value;
        http_req_header_at(req, i, &name, &value);
        if (strcasecmp(name, "accept") == 0) {
            if (b.len)
                sk_buf_putc(&b, ',');
            sk_buf_puts(&b, value);
        }
    }
    return sk_buf_steal(&b);
}

static bool parse_n(http_req *req, size_t *ret)
{
    const char *n = http_req_query_param(req, "n");
    *ret = SIZE_MAX;
    if (!n)
        return true;
    uint64_t v;
    if (parse_u64(n, &v) < 0)
        return false;
    *ret = v > 10000 ? 10000 : (size_t) v;
    return true;
}

/* Small bodies go out with the headers in one write (no Nagle/delayed-ACK
 * round trip between a header segment and a sendfile segment); large ones
 * are sent with sendfile. Takes fd. */
static void respond_file(http_req *req, unsigned status, const char *ct, int fd, uint64_t off,
                         uint64_t len)
{
    if (len <= SMALL_RESPONSE_MAX) {
        char *buf = xmalloc(len ? len : 1);
        ssize_t n = len ? pread(fd, buf, len, (off_t) off) : 0;
        int e = errno;
        close(fd);
        if (n < 0 || (uint64_t) n != len) {
            free(buf);
            log_error("registry: short read of a stored blob: %s", n < 0 ? strerror(e) : "EOF");
            v2_error_status(req, 500, "UNKNOWN", NULL, "internal error");
            return;
        }
        http_req_respond_take(req, status, ct, buf, len);
        return;
    }
    http_req_respond_fd(req, status, ct, fd, off, len);
}

/* --- uploads --- */

/* Sessions are recorded under ecr/<acct>/<region>/upload/<id> with the name
 * of their staged file, so that an upload resumes after a restart. */
static char *upload_key(const reg_upload *u)
{
    return reg_key(&u->ns, "upload", "%s", u->id);
}

int reg_upload_save(reg_registry *r, const reg_upload *u, sk_err *err)
{
    _cleanup_free_ char *k = upload_key(u);
    _cleanup_json_ json_t *v = json_pack("{s:s, s:s, s:b, s:b, s:I}", "repo", u->repo, "file",
                                         cas_writer_name(u->w), "api", u->via_api, "smallPart",
                                         u->small_part, "lastPart", (json_int_t) u->last_part_len);
    return store_put_json(r->st, k, v, err);
}

reg_upload *reg_upload_new(reg_registry *r, const reg_ns *ns, const char *repo, bool via_api,
                           sk_err *err)
{
    if (sk_hmap_size(&r->uploads) >= r->max_uploads) {
        sk_err_typed(err, SK_E_LIMIT, "TOOMANYREQUESTS", "too many uploads in progress");
        return NULL;
    }
    reg_upload *u = xcalloc(1, sizeof(*u));
    if (cas_writer_new(r->cas, &u->w, err) < 0) {
        free(u);
        return NULL;
    }
    random_uuid(u->id);
    u->ns = *ns;
    strlcpy_s(u->repo, repo, sizeof(u->repo));
    u->via_api = via_api;
    if (reg_upload_save(r, u, err) < 0) {
        cas_writer_abort(u->w);
        free(u);
        return NULL;
    }
    u->last_active = now_monotonic();
    sk_hmap_put(&r->uploads, u->id, u);
    return u;
}

static bool load_upload(const store_kv *kv, void *userdata)
{
    reg_registry *r = userdata;
    reg_ns ns;
    const char *id = reg_key_split(kv->key, "upload", &ns);
    if (!id)
        return true;
    _cleanup_json_ json_t *v = json_loadb(kv->value, kv->len, 0, NULL);
    const char *repo = js_str(v, "repo");
    reg_upload *u = xcalloc(1, sizeof(*u));
    u->ns = ns;
    _cleanup_err_ sk_err err = { 0 };
    if (strlen(id) >= sizeof(u->id) || !repo || strlen(repo) >= sizeof(u->repo) ||
        cas_writer_resume(r->cas, js_str(v, "file"), &u->w, &err) < 0) {
        log_warn("ecr: dropping upload %s: %s", id, err.msg ? sk_err_msg(&err) : "bad record");
        sk_vec_push(&r->stale_uploads, xstrdup(kv->key));
        free(u);
        return true;
    }
    strlcpy_s(u->id, id, sizeof(u->id));
    strlcpy_s(u->repo, repo, sizeof(u->repo));
    u->via_api = js_bool(v, "api", false);
    u->small_part = js_bool(v, "smallPart", false);
    u->last_part_len = (uint64_t) js_int(v, "lastPart", 0);
    u->last_active = now_monotonic();
    sk_hmap_put(&r->uploads, u->id, u);
    return true;
}

void reg_uploads_load(reg_registry *r)
{
    store_range(r->st, "ecr/", NULL, load_upload, r);
    for (size_t i = 0; i < r->stale_uploads.len; i++) {
        _cleanup_err_ sk_err err = { 0 };
        if (store_delete(r->st, r->stale_uploads.items[i], &err) < 0)
            log_warn("ecr: %s", sk_err_msg(&err));
    }
    sk_vec_done(&r->stale_uploads, free);
    if (sk_hmap_size(&r->uploads))
        log_info("ecr: resumed %zu upload sessions", sk_hmap_size(&r->uploads));
}

reg_upload *reg_upload_find(reg_registry *r, const reg_ns *ns, const char *repo, const char *id)
{
    reg_upload *u = sk_hmap_get(&r->uploads, id);
    if (!u || !streq(u->ns.account, ns->account) || !streq(u->ns.region, ns->region) ||
        !streq(u->repo, repo))
        return NULL;
    return u;
}

void reg_upload_drop(reg_registry *r, reg_upload *u)
{
    if (!u)
        return;
    _cleanup_free_ char *k = upload_key(u);
    _cleanup_err_ sk_err err = { 0 };
    if (store_delete(r->st, k, &err) < 0)
        log_warn("ecr: forget upload %s: %s", u->id, sk_err_msg(&err));
    sk_hmap_remove(&r->uploads, u->id);
    cas_writer_abort(u->w);
    free(u);
}

void reg_uploads_free(reg_registry *r)
{
    const char *k;
    void *v;
    for (size_t it = 0; sk_hmap_next(&r->uploads, &it, &k, &v);) {
        reg_upload *u = v;
        cas_writer_close(u->w); /* staged data stays for the next start */
        free(u);
    }
    sk_hmap_done(&r->uploads);
}

static int on_upload_body(http_req *req, const char *data, size_t n)
{
    v2_req *q = http_req_state(req);
    if (q->failed)
        return 0;
    cas_writer *w = q->op == V2_OP_MONOLITHIC ? q->w : q->up->w;
    _cleanup_err_ sk_err err = { 0 };
    if (cas_writer_write(w, data, n, &err) < 0) {
        q->failed = true;
        v2_error_from(req, &err);
        return -1;
    }
    if (q->up)
        q->up->last_active = now_monotonic();
    return 0;
}

static void finish_blob(v2_req *q, http_req *req, cas_writer *w)
{
    reg_registry *r = q->r;
    _cleanup_err_ sk_err err = { 0 };
    uint64_t size = cas_writer_size(w);
    char digest[CAS_DIGEST_MAX];
    if (cas_writer_commit(w, q->digest, digest, &err) < 0) {
        if (err.type && streq(err.type, "DIGEST_INVALID")) {
            v2_error_status(req, 400, "DIGEST_INVALID", json_pack("{s:s}", "digest", q->digest),
                            "%s", err.msg);
            return;
        }
        v2_error_from(req, &err);
        return;
    }
    if (reg_blob_link(r, &q->ns, q->rt.name, digest, size, &err) < 0) {
        v2_error_from(req, &err);
        return;
    }
    add_headerf(req, "Location", "/v2/%s/blobs/%s", q->rt.name, digest);
    http_req_add_header(req, "Docker-Content-Digest", digest);
    http_req_respond(req, 201, "text/plain", "", 0);
}

static void on_upload_complete(http_req *req)
{
    v2_req *q = http_req_state(req);
    if (q->failed || http_req_responded(req))
        return;
    switch (q->op) {
    case V2_OP_MONOLITHIC:
        finish_blob(q, req, TAKE_PTR(q->w));
        return;
    case V2_OP_PATCH: {
        reg_upload *u = q->up;
        u->busy = false;
        u->last_active = now_monotonic();
        uint64_t sz = cas_writer_size(u->w);
        if (q->expect_end != UINT64_MAX && sz != q->expect_end) {
            upload_headers(req, u);
            v2_error_status(req, 416, "BLOB_UPLOAD_INVALID", NULL,
                            "chunk length does not match Content-Range");
            return;
        }
        upload_headers(req, u);
        http_req_respond(req, 202, "text/plain", "", 0);
        return;
    }
    case V2_OP_PUT: {
        reg_upload *u = TAKE_PTR(q->up);
        u->busy = false;
        cas_writer *w = TAKE_PTR(u->w);
        reg_upload_drop(q->r, u);
        finish_blob(q, req, w);
        return;
    }
    default:
        return;
    }
}

static void on_upload_free(http_req *req)
{
    v2_req *q = http_req_state(req);
    if (!q)
        return;
    if (q->up)
        q->up->busy = false;
    cas_writer_abort(q->w);
    free(q);
}

static const http_req_ops upload_ops = {
    .on_body = on_upload_body,
    .on_complete = on_upload_complete,
    .on_free = on_upload_free,
};

static v2_req *v2_req_new(reg_registry *r, const reg_ns *ns, const reg_route *rt, v2_op op)
{
    v2_req *q = xcalloc(1, sizeof(*q));
    q->r = r;
    q->ns = *ns;
    q->rt = *rt;
    q->op = op;
    q->expect_end = UINT64_MAX;
    return q;
}

static bool digest_param_ok(http_req *req, const char *d)
{
    if (!reg_digest_syntax(d)) {
        v2_error(req, "DIGEST_INVALID", "invalid digest '%.200s'", d);
        return false;
    }
    if (!reg_digest_valid(d)) {
        v2_error(req, "DIGEST_INVALID", "only sha256 digests are supported: '%.200s'", d);
        return false;
    }
    return true;
}

static void upload_start(reg_registry *r, http_req *req, const reg_ns *ns, const reg_route *rt)
{
    _cleanup_err_ sk_err err = { 0 };
    const char *mount = http_req_query_param(req, "mount");
    const char *from = http_req_query_param(req, "from");
    const char *digest = http_req_query_param(req, "digest");
    if (mount && reg_digest_valid(mount)) {
        uint64_t size;
        if (from && reg_repo_name_valid(from) && reg_blob_linked(r, ns, from, mount, &size) &&
            cas_has(r->cas, mount)) {
            if (reg_blob_link(r, ns, rt->name, mount, size, &err) < 0) {
                v2_error_from(req, &err);
                return;
            }
            add_headerf(req, "Location", "/v2/%s/blobs/%s", rt->name, mount);
            http_req_add_header(req, "Docker-Content-Digest", mount);
            http_req_respond(req, 201, "text/plain", "", 0);
            return;
        }
    } else if (digest) {
        if (!digest_param_ok(req, digest))
            return;
        v2_req *q = v2_req_new(r, ns, rt, V2_OP_MONOLITHIC);
        strlcpy_s(q->digest, digest, sizeof(q->digest));
        if (cas_writer_new(r->cas, &q->w, &err) < 0) {
            free(q);
            v2_error_from(req, &err);
            return;
        }
        http_req_set_ops(req, &upload_ops, q);
        return;
    }
    reg_upload *u = reg_upload_new(r, ns, rt->name, false, &err);
    if (!u) {
        v2_error_from(req, &err);
        return;
    }
    upload_headers(req, u);
    http_req_respond(req, 202, "text/plain", "", 0);
}

/* Checks Content-Range / Content-Length of a PATCH or PUT against the session. */
static bool check_range(http_req *req, reg_upload *u, v2_req *q, bool required_contiguous)
{
    const char *cr = http_req_header(req, "content-range");
    uint64_t size = cas_writer_size(u->w);
    uint64_t cl = http_req_content_length(req);
    if (!cr)
        return true;
    uint64_t a, b;
    if (reg_content_range_parse(cr, &a, &b) < 0) {
        upload_headers(req, u);
        v2_error_status(req, 416, "BLOB_UPLOAD_INVALID", NULL, "invalid Content-Range '%.100s'",
                        cr);
        return false;
    }
    if (a != size) {
        upload_headers(req, u);
        v2_error_status(req, 416, "BLOB_UPLOAD_INVALID",
                        json_pack("{s:I}", "expectedOffset", (json_int_t) size),
                        "out-of-order chunk: expected offset %llu, got %llu",
                        (unsigned long long) size, (unsigned long long) a);
        return false;
    }
    if (cl != UINT64_MAX && cl != b - a + 1) {
        v2_error(req, "SIZE_INVALID", "Content-Length %llu does not match Content-Range %.100s",
                 (unsigned long long) cl, cr);
        return false;
    }
    q->expect_end = b + 1;
    (void) required_contiguous;
    return true;
}

static void upload_chunk(reg_registry *r, http_req *req, const reg_ns *ns, const reg_route *rt,
                         bool final)
{
    reg_upload *u = reg_upload_find(r, ns, rt->name, rt->ref);
    if (!u || u->via_api) {
        v2_error(req, "BLOB_UPLOAD_UNKNOWN", "upload '%.100s' is unknown", rt->ref);
        return;
    }
    if (u->busy) {
        upload_headers(req, u);
        v2_error_status(req, 416, "BLOB_UPLOAD_INVALID", NULL,
                        "another chunk of this upload is in progress");
        return;
    }
    const char *digest = NULL;
    if (final) {
        digest = http_req_query_param(req, "digest");
        if (!digest) {
            v2_error(req, "DIGEST_INVALID", "the digest parameter is required");
            return;
        }
        if (!digest_param_ok(req, digest))
            return;
    }
    v2_req *q = v2_req_new(r, ns, rt, final ? V2_OP_PUT : V2_OP_PATCH);
    if (!check_range(req, u, q, !final)) {
        free(q);
        return;
    }
    if (digest)
        strlcpy_s(q->digest, digest, sizeof(q->digest));
    q->up = u;
    u->busy = true;
    u->last_active = now_monotonic();
    http_req_set_ops(req, &upload_ops, q);
}

static void upload_status(reg_registry *r, http_req *req, const reg_ns *ns, const reg_route *rt,
                          bool cancel)
{
    reg_upload *u = reg_upload_find(r, ns, rt->name, rt->ref);
    if (!u || u->via_api) {
        v2_error(req, "BLOB_UPLOAD_UNKNOWN", "upload '%.100s' is unknown", rt->ref);
        return;
    }
    if (cancel) {
        if (u->busy) {
            v2_error(req, "BLOB_UPLOAD_INVALID", "the upload is in progress");
            return;
        }
        reg_upload_drop(r, u);
        http_req_respond(req, 204, NULL, "", 0);
        return;
    }
    u->last_active = now_monotonic();
    upload_headers(req, u);
    http_req_respond(req, 204, NULL, "", 0);
}

/* --- blobs --- */

static void blob_get(reg_registry *r, http_req *req, const reg_ns *ns, const reg_route *rt)
{
    const char *d = rt->ref;
    if (!reg_digest_syntax(d)) {
        v2_error(req, "DIGEST_INVALID", "invalid digest '%.200s'", d);
        return;
    }
    if (!reg_digest_valid(d) || !reg_blob_linked(r, ns, rt->name, d, NULL)) {
        v2_error_status(req, 404, "BLOB_UNKNOWN", json_pack("{s:s}", "digest", d),
                        "blob unknown to registry");
        return;
    }
    _cleanup_err_ sk_err err = { 0 };
    int fd = -EBADF;
    uint64_t size;
    if (cas_open_blob(r->cas, d, &fd, &size, &err) < 0) {
        if (err.code == SK_E_NOT_FOUND)
            v2_error_status(req, 404, "BLOB_UNKNOWN", json_pack("{s:s}", "digest", d),
                            "blob unknown to registry");
        else
            v2_error_from(req, &err);
        return;
    }
    http_req_add_header(req, "Docker-Content-Digest", d);
    http_req_add_header(req, "Accept-Ranges", "bytes");
    add_headerf(req, "ETag", "\"%s\"", d);
    http_req_add_header(req, "Cache-Control", "max-age=31536000");
    const char *range = http_req_header(req, "range");
    uint64_t off = 0, len = size;
    unsigned status = 200;
    if (range) {
        int k = reg_range_parse(range, size, &off, &len);
        if (k == -ERANGE) {
            close(fd);
            add_headerf(req, "Content-Range", "bytes */%llu", (unsigned long long) size);
            v2_error_status(req, 416, "BLOB_UNKNOWN", NULL, "requested range not satisfiable");
            return;
        }
        if (k == 0) {
            status = 206;
            add_headerf(req, "Content-Range", "bytes %llu-%llu/%llu", (unsigned long long) off,
                        (unsigned long long) (off + len - 1), (unsigned long long) size);
        } else {
            off = 0;
            len = size;
        }
    }
    respond_file(req, status, "application/octet-stream", fd, off, len);
}

static void blob_delete(reg_registry *r, http_req *req, const reg_ns *ns, const reg_route *rt)
{
    const char *d = rt->ref;
    if (!reg_digest_syntax(d)) {
        v2_error(req, "DIGEST_INVALID", "invalid digest '%.200s'", d);
        return;
    }
    _cleanup_free_ char *k = reg_key(ns, "blob", "%s@%s", rt->name, d);
    if (!store_get(r->st, k)) {
        v2_error_status(req, 404, "BLOB_UNKNOWN", json_pack("{s:s}", "digest", d),
                        "blob unknown to registry");
        return;
    }
    _cleanup_err_ sk_err err = { 0 };
    if (store_delete(r->st, k, &err) < 0) {
        v2_error_from(req, &err);
        return;
    }
    http_req_respond(req, 202, "text/plain", "", 0);
}

/* --- manifests --- */

static bool ref_is_digest(const char *ref)
{
    return strchr(ref, ':') != NULL;
}

static char *pick_platform_child(reg_registry *r, const reg_ns *ns, const char *repo,
                                 const char *index_digest, const char *accept)
{
    _cleanup_free_ char *data = NULL;
    size_t len;
    _cleanup_err_ sk_err err = { 0 };
    if (cas_get(r->cas, index_digest, REG_MANIFEST_MAX, &data, &len, &err) < 0)
        return NULL;
    reg_manifest m;
    if (reg_manifest_parse(data, len, NULL, &m, &err) < 0)
        return NULL;
    char *pick = NULL;
    for (int pass = 0; pass < 2 && !pick; pass++)
        for (size_t i = 0; i < m.ndescs && !pick; i++) {
            const reg_desc *d = &m.descs[i];
            if (!d->media_type || !reg_accept_allows(accept, d->media_type))
                continue;
            if (pass == 0 &&
                !(streq_ptr(d->platform_os, "linux") && streq_ptr(d->platform_arch, "amd64")))
                continue;
            _cleanup_json_ json_t *img = reg_image_get(r, ns, repo, d->digest);
            if (img)
                pick = xstrdup(d->digest);
        }
    reg_manifest_done(&m);
    return pick;
}

static void manifest_get(reg_registry *r, http_req *req, const reg_ns *ns, const reg_route *rt)
{
    const char *ref = rt->ref;
    _cleanup_free_ char *digest = NULL;
    if (ref_is_digest(ref)) {
        if (!reg_digest_syntax(ref)) {
            v2_error(req, "DIGEST_INVALID", "invalid digest '%.200s'", ref);
            return;
        }
        digest = xstrdup(ref);
    } else {
        /* An invalid tag names nothing: 404, as the conformance suite expects. */
        digest = reg_tag_valid(ref) ? reg_tag_resolve(r, ns, rt->name, ref) : NULL;
    }
    _cleanup_json_ json_t *img = digest ? reg_image_get(r, ns, rt->name, digest) : NULL;
    if (!img) {
        v2_error_status(req, 404, "MANIFEST_UNKNOWN", json_pack("{s:s}", "reference", ref),
                        "manifest unknown to registry");
        return;
    }
    const char *mt = js_str_or(img, "mediaType", REG_MT_OCI_MANIFEST);
    _cleanup_free_ char *accept = accept_values(req);
    if (!reg_accept_allows(accept, mt) && reg_media_type_is_index(mt) && !ref_is_digest(ref)) {
        /* A client that cannot read indexes gets the linux/amd64 image. */
        char *child = pick_platform_child(r, ns, rt->name, digest, accept);
        if (child) {
            free(digest);
            digest = child;
            json_decref(img);
            img = reg_image_get(r, ns, rt->name, digest);
            if (!img) {
                v2_error(req, "MANIFEST_UNKNOWN", "manifest unknown to registry");
                return;
            }
            mt = js_str_or(img, "mediaType", REG_MT_OCI_MANIFEST);
        }
    }
    _cleanup_err_ sk_err err = { 0 };
    int fd = -EBADF;
    uint64_t size;
    if (cas_open_blob(r->cas, digest, &fd, &size, &err) < 0) {
        v2_error_from(req, &err);
        return;
    }
    http_req_add_header(req, "Docker-Content-Digest", digest);
    add_headerf(req, "ETag", "\"%s\"", digest);
    respond_file(req, 200, mt, fd, 0, size);
}

static void on_manifest_complete(http_req *req)
{
    v2_req *q = http_req_state(req);
    reg_registry *r = q->r;
    if (http_req_body_too_large(req)) {
        v2_error_status(req, 413, "MANIFEST_INVALID", NULL, "manifest is larger than %u bytes",
                        REG_MANIFEST_MAX);
        return;
    }
    _cleanup_json_ json_t *repo = reg_repo_get(r, &q->ns, q->rt.name);
    if (!repo) {
        v2_error(req, "NAME_UNKNOWN", "repository '%s' not found", q->rt.name);
        return;
    }
    size_t len;
    const char *body = http_req_body(req, &len);
    const char *ref = q->rt.ref;
    bool by_digest = ref_is_digest(ref);
    reg_put_result res;
    _cleanup_err_ sk_err err = { 0 };
    if (reg_image_put(r, &q->ns, repo, q->rt.name, body, len, http_req_header(req, "content-type"),
                      by_digest ? NULL : ref, by_digest ? ref : NULL, &res, &err) < 0) {
        v2_error_from(req, &err);
        return;
    }
    add_headerf(req, "Location", "/v2/%s/manifests/%s", q->rt.name, res.digest);
    http_req_add_header(req, "Docker-Content-Digest", res.digest);
    _cleanup_json_ json_t *img = reg_image_get(r, &q->ns, q->rt.name, res.digest);
    const char *subj = js_str(img, "subject");
    if (subj)
        http_req_add_header(req, "OCI-Subject", subj);
    http_req_respond(req, 201, "text/plain", "", 0);
}

static void on_manifest_free(http_req *req)
{
    free(http_req_state(req));
}

static const http_req_ops manifest_ops = {
    .on_complete = on_manifest_complete,
    .on_free = on_manifest_free,
};

static void manifest_put(reg_registry *r, http_req *req, const reg_ns *ns, const reg_route *rt)
{
    const char *ref = rt->ref;
    if (ref_is_digest(ref)) {
        if (!reg_digest_syntax(ref)) {
            v2_error(req, "DIGEST_INVALID", "invalid digest '%.200s'", ref);
            return;
        }
    } else if (!reg_tag_valid(ref)) {
        v2_error(req, "TAG_INVALID", "invalid tag '%.200s'", ref);
        return;
    }
    uint64_t cl = http_req_content_length(req);
    if (cl != UINT64_MAX && cl > REG_MANIFEST_MAX) {
        v2_error_status(req, 413, "MANIFEST_INVALID", NULL, "manifest is larger than %u bytes",
                        REG_MANIFEST_MAX);
        return;
    }
    v2_req *q = v2_req_new(r, ns, rt, V2_OP_MANIFEST_PUT);
    http_req_set_body_cap(req, REG_MANIFEST_MAX);
    http_req_set_ops(req, &manifest_ops, q);
}

static void manifest_delete(reg_registry *r, http_req *req, const reg_ns *ns, const reg_route *rt)
{
    _cleanup_err_ sk_err err = { 0 };
    const char *ref = rt->ref;
    int k;
    if (ref_is_digest(ref)) {
        if (!reg_digest_syntax(ref)) {
            v2_error(req, "DIGEST_INVALID", "invalid digest '%.200s'", ref);
            return;
        }
        k = reg_image_delete(r, ns, rt->name, ref, &err);
    } else {
        if (!reg_tag_valid(ref)) {
            v2_error(req, "TAG_INVALID", "invalid tag '%.200s'", ref);
            return;
        }
        k = reg_tag_delete(r, ns, rt->name, ref, &err);
    }
    if (k < 0) {
        v2_error_from(req, &err);
        return;
    }
    http_req_respond(req, 202, "text/plain", "", 0);
}

/* --- listings --- */

typedef struct list_ctx {
    size_t prefix_len;
    size_t max;
    json_t *out;
    bool more;
    const char *stop_at; /* for referrers: names end at '@' */
} list_ctx;

static bool list_collect(const store_kv *kv, void *userdata)
{
    list_ctx *c = userdata;
    if (json_array_size(c->out) >= c->max) {
        c->more = true;
        return false;
    }
    json_array_append_new(c->out, json_string(kv->key + c->prefix_len));
    return true;
}

static void respond_list(http_req *req, const char *path, size_t n, list_ctx *c, json_t *o)
{
    if (c->more && json_array_size(c->out) > 0) {
        const char *last = json_string_value(json_array_get(c->out, json_array_size(c->out) - 1));
        _cleanup_free_ char *el = uri_encode(last, strlen(last), false);
        add_headerf(req, "Link", "<%s?n=%zu&last=%s>; rel=\"next\"", path, n, el);
    }
    size_t len;
    char *body = aws_json_dump(o, &len);
    http_req_respond_take(req, 200, "application/json", body, len);
}

static void tags_list(reg_registry *r, http_req *req, const reg_ns *ns, const reg_route *rt)
{
    size_t n;
    if (!parse_n(req, &n)) {
        v2_error(req, "SIZE_INVALID", "invalid n");
        return;
    }
    const char *last = http_req_query_param(req, "last");
    _cleanup_free_ char *prefix = reg_key(ns, "tag", "%s@", rt->name);
    _cleanup_free_ char *start = last ? strjoin(prefix, last) : NULL;
    _cleanup_json_ json_t *o = json_pack("{s:s, s:[]}", "name", rt->name, "tags");
    list_ctx c = { .prefix_len = strlen(prefix), .max = n, .out = json_object_get(o, "tags") };
    if (n > 0)
        store_range(r->st, prefix, start, list_collect, &c);
    _cleanup_free_ char *path = xasprintf("/v2/%s/tags/list", rt->name);
    respond_list(req, path, n, &c, o);
}

static void catalog(reg_registry *r, http_req *req, const reg_ns *ns)
{
    size_t n;
    if (!parse_n(req, &n)) {
        v2_error(req, "SIZE_INVALID", "invalid n");
        return;
    }
    if (n == SIZE_MAX)
        n = 1000;
    const char *last = http_req_query_param(req, "last");
    _cleanup_free_ char *prefix = reg_key(ns, "repo", "%s", "");
    _cleanup_free_ char *start = last ? strjoin(prefix, last) : NULL;
    _cleanup_json_ json_t *o = json_pack("{s:[]}", "repositories");
    list_ctx c = { .prefix_len = strlen(prefix),
                   .max = n,
                   .out = json_object_get(o, "repositories") };
    if (n > 0)
        store_range(r->st, prefix, start, list_collect, &c);
    respond_list(req, "/v2/_catalog", n, &c, o);
}

typedef struct referrers_ctx {
    size_t prefix_len;
    const char *filter;
    json_t *out;
} referrers_ctx;

static bool referrers_collect(const store_kv *kv, void *userdata)
{
    referrers_ctx *c = userdata;
    _cleanup_json_ json_t *v = json_loadb(kv->value, kv->len, 0, NULL);
    if (!v)
        return true;
    const char *at = js_str(v, "artifactType");
    if (c->filter && !streq_ptr(at, c->filter))
        return true;
    json_t *d = json_pack("{s:s, s:s, s:I}", "mediaType", js_str_or(v, "mediaType", ""), "digest",
                          kv->key + c->prefix_len, "size", (json_int_t) js_int(v, "size", 0));
    if (at)
        js_set_str(d, "artifactType", at);
    json_t *ann = js_obj(v, "annotations");
    if (ann)
        js_set(d, "annotations", json_incref(ann));
    json_array_append_new(c->out, d);
    return true;
}

static void referrers(reg_registry *r, http_req *req, const reg_ns *ns, const reg_route *rt)
{
    if (!reg_digest_syntax(rt->ref)) {
        v2_error(req, "DIGEST_INVALID", "invalid digest '%.200s'", rt->ref);
        return;
    }
    const char *filter = http_req_query_param(req, "artifactType");
    if (filter && !*filter)
        filter = NULL;
    _cleanup_free_ char *prefix = reg_key(ns, "referrer", "%s@%s@", rt->name, rt->ref);
    _cleanup_json_ json_t *o = json_pack("{s:i, s:s, s:[]}", "schemaVersion", 2, "mediaType",
                                         REG_MT_OCI_INDEX, "manifests");
    referrers_ctx c = { strlen(prefix), filter, json_object_get(o, "manifests") };
    store_range(r->st, prefix, NULL, referrers_collect, &c);
    if (filter)
        http_req_add_header(req, "OCI-Filters-Applied", "artifactType");
    size_t len;
    char *body = aws_json_dump(o, &len);
    http_req_respond_take(req, 200, REG_MT_OCI_INDEX, body, len);
}

/* --- routing --- */

void reg_v2_route(http_req *req, void *userdata)
{
    reg_registry *r = userdata;
    http_req_add_header(req, "Docker-Distribution-API-Version", "registry/2.0");
    reg_route rt;
    int pr = reg_route_parse(http_req_path(req), &rt);
    reg_ns ns;
    if (v2_auth(r, req, &rt, pr == 0, &ns) < 0)
        return;
    const char *m = http_req_method(req);
    bool get = streq(m, "GET") || streq(m, "HEAD");
    if (pr == -EINVAL || pr == -E2BIG) {
        v2_error(req, "NAME_INVALID", "invalid repository name");
        return;
    }
    if (pr < 0) {
        v2_error_status(req, 404, "UNSUPPORTED", NULL, "unknown registry endpoint");
        return;
    }
    if (rt.kind == REG_ROUTE_BASE) {
        if (!get) {
            v2_error_status(req, 405, "UNSUPPORTED", NULL, "method not allowed");
            return;
        }
        http_req_respond(req, 200, "application/json", "{}", 2);
        return;
    }
    if (rt.kind == REG_ROUTE_CATALOG) {
        if (!get) {
            v2_error_status(req, 405, "UNSUPPORTED", NULL, "method not allowed");
            return;
        }
        catalog(r, req, &ns);
        return;
    }
    _cleanup_json_ json_t *repo = reg_repo_get(r, &ns, rt.name);
    if (!repo) {
        v2_error_status(req, 404, "NAME_UNKNOWN", json_pack("{s:s}", "name", rt.name),
                        "The repository with name '%s' does not exist in the registry with id "
                        "'%s'",
                        rt.name, ns.account);
        return;
    }
    switch (rt.kind) {
    case REG_ROUTE_MANIFEST:
        if (get)
            manifest_get(r, req, &ns, &rt);
        else if (streq(m, "PUT"))
            manifest_put(r, req, &ns, &rt);
        else if (streq(m, "DELETE"))
            manifest_delete(r, req, &ns, &rt);
        else
            break;
        return;
    case REG_ROUTE_BLOB:
        if (get)
            blob_get(r, req, &ns, &rt);
        else if (streq(m, "DELETE"))
            blob_delete(r, req, &ns, &rt);
        else
            break;
        return;
    case REG_ROUTE_UPLOAD_NEW:
        if (streq(m, "POST")) {
            upload_start(r, req, &ns, &rt);
            return;
        }
        break;
    case REG_ROUTE_UPLOAD:
        if (streq(m, "GET"))
            upload_status(r, req, &ns, &rt, false);
        else if (streq(m, "PATCH"))
            upload_chunk(r, req, &ns, &rt, false);
        else if (streq(m, "PUT"))
            upload_chunk(r, req, &ns, &rt, true);
        else if (streq(m, "DELETE"))
            upload_status(r, req, &ns, &rt, true);
        else
            break;
        return;
    case REG_ROUTE_TAGS:
        if (get) {
            tags_list(r, req, &ns, &rt);
            return;
        }
        break;
    case REG_ROUTE_REFERRERS:
        if (get) {
            referrers(r, req, &ns, &rt);
            return;
        }
        break;
    default:
        break;
    }
    v2_error_status(req, 405, "UNSUPPORTED", NULL, "method not allowed");
}
