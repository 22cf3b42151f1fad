#include "aws.h"

#include <stdarg.h>
#include <string.h>
#include <strings.h>

#include "basic/alloc.h"
#include "basic/buf.h"
#include "basic/log.h"
#include "basic/rand.h"
#include "basic/strutil.h"
#include "basic/vec.h"
#include "digest.h"
#include "sigv4.h"

#define QUERY_BODY_CAP (1u << 20)

typedef struct path_route {
    char *prefix;
    http_route_fn fn;
    void *userdata;
} path_route;

struct aws_router {
    aws_key_lookup_fn lookup;
    void *lookup_ud;
    sk_vec services; /* const aws_service_def* */
    sk_vec paths;    /* path_route* */
    bool ready;
};

struct aws_call {
    aws_router *router;
    http_req *req;
    const aws_service_def *svc;
    const model_op *op;
    aws_op_fn fn;
    json_t *input;
    aws_ctx ctx;
    bool replied;
};

aws_router *aws_router_new(aws_key_lookup_fn lookup, void *userdata)
{
    aws_router *r = xcalloc(1, sizeof(*r));
    r->lookup = lookup;
    r->lookup_ud = userdata;
    return r;
}

static void path_route_free(void *p)
{
    path_route *pr = p;
    free(pr->prefix);
    free(pr);
}

void aws_router_free(aws_router *r)
{
    if (!r)
        return;
    sk_vec_done(&r->services, NULL);
    sk_vec_done(&r->paths, path_route_free);
    free(r);
}

void aws_router_add_service(aws_router *r, const aws_service_def *def)
{
    /* Dispatch bsearches the bindings: they must be sorted and in the model. */
    for (size_t i = 0; i < def->nops; i++) {
        if (i > 0 && strcmp(def->ops[i - 1].name, def->ops[i].name) >= 0) {
            log_error("%s: operation table not sorted at %s", def->model->name, def->ops[i].name);
            abort();
        }
        if (!model_find_op(def->model, def->ops[i].name)) {
            log_error("%s: %s is not in the model", def->model->name, def->ops[i].name);
            abort();
        }
    }
    sk_vec_push(&r->services, (void *) def);
}

void aws_router_add_path(aws_router *r, const char *prefix, http_route_fn fn, void *userdata)
{
    path_route *p = xmalloc(sizeof(*p));
    *p = (path_route){ xstrdup(prefix), fn, userdata };
    sk_vec_push(&r->paths, p);
}

void aws_router_set_ready(aws_router *r, bool ready)
{
    r->ready = ready;
}

char *aws_json_dump(const json_t *v, size_t *ret_len)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(15) | JSON_ENCODE_ANY);
    if (!s)
        oom();
    if (ret_len)
        *ret_len = strlen(s);
    return s;
}

unsigned aws_error_status(const char *type, sk_errc code)
{
    if (type) {
        if (streq(type, "MissingAuthenticationTokenException") ||
            streq(type, "AccessDeniedException"))
            return 403;
        if (streq(type, "ServerException") || streq(type, "InternalFailure") ||
            streq(type, "ServiceUnavailableException"))
            return code == SK_E_UNAVAILABLE ? 503 : 500;
        if (streq(type, "ThrottlingException"))
            return 400;
    }
    switch (code) {
    case SK_E_SYSTEM:
    case SK_E_INTERNAL:
        return 500;
    case SK_E_UNAVAILABLE:
        return 503;
    default:
        return 400;
    }
}

static void add_request_id(http_req *req, const char *request_id)
{
    if (request_id && *request_id)
        http_req_add_header(req, "x-amzn-RequestId", request_id);
}

void aws_http_error(http_req *req, unsigned status, const char *type, const char *message,
                    const char *request_id)
{
    json_t *o = json_pack("{s:s, s:s}", "__type", type, "message", message ? message : "");
    if (!o) /* not valid UTF-8: never echo it */
        o = json_pack("{s:s, s:s}", "__type", type, "message",
                      "The request could not be processed.");
    if (!o)
        o = json_pack("{s:s, s:s}", "__type", "ServerException", "message", "");
    size_t len;
    char *body = aws_json_dump(o, &len);
    json_decref(o);
    add_request_id(req, request_id);
    char et[160];
    snprintf(et, sizeof(et), "%s:", type);
    http_req_add_header(req, "x-amzn-ErrorType", et);
    http_req_respond_take(req, status, "application/x-amz-json-1.1", body, len);
}

/* --- query protocol rendering --- */

static void xml_escape(sk_buf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<':
            sk_buf_puts(b, "&lt;");
            break;
        case '>':
            sk_buf_puts(b, "&gt;");
            break;
        case '&':
            sk_buf_puts(b, "&amp;");
            break;
        case '"':
            sk_buf_puts(b, "&quot;");
            break;
        default:
            sk_buf_putc(b, *s);
        }
    }
}

static void json_to_xml(sk_buf *b, const json_t *v)
{
    if (json_is_object(v)) {
        const char *k;
        json_t *e;
        json_object_foreach((json_t *) v, k, e) {
            sk_buf_printf(b, "<%s>", k);
            json_to_xml(b, e);
            sk_buf_printf(b, "</%s>", k);
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) {
            sk_buf_puts(b, "<member>");
            json_to_xml(b, e);
            sk_buf_puts(b, "</member>");
        }
    } else if (json_is_string(v))
        xml_escape(b, json_string_value(v));
    else if (json_is_integer(v))
        sk_buf_printf(b, "%lld", (long long) json_integer_value(v));
    else if (json_is_real(v))
        sk_buf_printf(b, "%.15g", json_real_value(v));
    else if (json_is_boolean(v))
        sk_buf_puts(b, json_is_true(v) ? "true" : "false");
}

static void query_error(http_req *req, unsigned status, const char *type, const char *message,
                        const char *request_id)
{
    sk_buf b;
    sk_buf_init(&b, 0);
    sk_buf_puts(&b, "<ErrorResponse><Error><Type>");
    sk_buf_puts(&b, status >= 500 ? "Receiver" : "Sender");
    sk_buf_puts(&b, "</Type><Code>");
    xml_escape(&b, type);
    sk_buf_puts(&b, "</Code><Message>");
    xml_escape(&b, message ? message : "");
    sk_buf_puts(&b, "</Message></Error><RequestId>");
    sk_buf_puts(&b, request_id ? request_id : "");
    sk_buf_puts(&b, "</RequestId></ErrorResponse>");
    add_request_id(req, request_id);
    size_t len = b.len;
    http_req_respond_take(req, status, "text/xml", sk_buf_steal(&b), len);
}

/* --- handler API --- */

const aws_ctx *aws_call_ctx(const aws_call *c)
{
    return &c->ctx;
}
json_t *aws_call_input(const aws_call *c)
{
    return c->input;
}
const char *aws_call_op(const aws_call *c)
{
    return c->op->name;
}
void *aws_call_userdata(const aws_call *c)
{
    return c->svc->userdata;
}
http_req *aws_call_http(const aws_call *c)
{
    return c->req;
}
const aws_service_def *aws_call_service(const aws_call *c)
{
    return c->svc;
}

void aws_reply_raw(aws_call *c, char *body, size_t len)
{
    if (c->replied) {
        free(body);
        return;
    }
    c->replied = true;
    add_request_id(c->req, c->ctx.request_id);
    http_req_respond_take(c->req, 200, "application/x-amz-json-1.1", body, len);
}

void aws_reply(aws_call *c, json_t *out)
{
    if (c->replied) {
        json_decref(out);
        return;
    }
    if (c->svc->protocol == AWS_PROTO_QUERY) {
        c->replied = true;
        const char *op = c->op->name;
        sk_buf b;
        sk_buf_init(&b, 0);
        sk_buf_printf(&b, "<%sResponse xmlns=\"https://%s.amazonaws.com/doc/%s/\"><%sResult>", op,
                      c->svc->model->name, c->svc->model->api_version, op);
        if (out)
            json_to_xml(&b, out);
        sk_buf_printf(
                &b,
                "</%sResult><ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></%sResponse>",
                op, c->ctx.request_id, op);
        json_decref(out);
        add_request_id(c->req, c->ctx.request_id);
        size_t len = b.len;
        http_req_respond_take(c->req, 200, "text/xml", sk_buf_steal(&b), len);
        return;
    }
    size_t len;
    char *body = out ? aws_json_dump(out, &len) : xstrdup("{}");
    if (!out)
        len = 2;
    json_decref(out);
    aws_reply_raw(c, body, len);
}

static const char *default_type(const aws_service_def *svc, sk_errc code)
{
    switch (code) {
    case SK_E_INVALID:
        return svc ? svc->validation_error : "InvalidParameterException";
    case SK_E_NOT_FOUND:
        return "ResourceNotFoundException";
    case SK_E_EXISTS:
        return "ResourceAlreadyExistsException";
    case SK_E_CONFLICT:
        return "ConflictException";
    case SK_E_LIMIT:
        return "LimitExceededException";
    case SK_E_AUTH:
        return "AccessDeniedException";
    case SK_E_UNAVAILABLE:
    case SK_E_SYSTEM:
    case SK_E_INTERNAL:
    default:
        return svc ? svc->fault_error : "ServerException";
    }
}

void aws_reply_err(aws_call *c, const sk_err *err)
{
    if (c->replied)
        return;
    c->replied = true;
    const char *type = err->type ? err->type : default_type(c->svc, err->code);
    unsigned status = aws_error_status(type, err->code);
    const char *msg = sk_err_msg(err);
    if (status >= 500) {
        log_error("%s.%s: %s", c->svc->model->name, c->op ? c->op->name : "?", msg);
        if (err->code == SK_E_SYSTEM || err->code == SK_E_INTERNAL)
            msg = "An internal error occurred.";
    }
    if (c->svc->protocol == AWS_PROTO_QUERY)
        query_error(c->req, status, type, msg, c->ctx.request_id);
    else
        aws_http_error(c->req, status, type, msg, c->ctx.request_id);
}

void aws_reply_error(aws_call *c, const char *type, const char *fmt, ...)
{
    sk_err err = { 0 };
    va_list ap;
    va_start(ap, fmt);
    sk_err_vset(&err, SK_E_INVALID, type, fmt, ap);
    va_end(ap);
    aws_reply_err(c, &err);
    sk_err_done(&err);
}

/* --- authentication --- */

int aws_authenticate(aws_router *r, http_req *req, const void *body, size_t len,
                     const char *service, aws_ctx *ctx, sk_err *err)
{
    size_t nh = http_req_header_count(req);
    sigv4_header *hs = xcalloc(nh ? nh : 1, sizeof(sigv4_header));
    for (size_t i = 0; i < nh; i++)
        http_req_header_at(req, i, &hs[i].name, &hs[i].value);
    char payload_hash[SHA256_HEX_LEN + 1];
    const char *declared = http_req_header(req, "x-amz-content-sha256");
    if (declared && streq(declared, "UNSIGNED-PAYLOAD"))
        strcpy(payload_hash, "UNSIGNED-PAYLOAD");
    else
        sha256_hex(body, len, payload_hash);
    sigv4_request sr = {
        .method = http_req_method(req),
        .path = http_req_path(req),
        .query = http_req_query(req),
        .headers = hs,
        .nheaders = nh,
        .payload_hash = payload_hash,
    };
    sigv4_auth a;
    int ret = -1;
    if (sigv4_parse(&sr, &a, err) < 0)
        goto out;
    const char *secret = NULL, *account = NULL;
    if (r->lookup(r->lookup_ud, a.access_key, &secret, &account) < 0) {
        sk_err_typed(err, SK_E_AUTH, "UnrecognizedClientException",
                     "The security token included in the request is invalid.");
        goto out_auth;
    }
    if (service && !streq(a.service, service)) {
        sk_err_typed(err, SK_E_AUTH, "InvalidSignatureException",
                     "Credential should be scoped to correct service: '%s'. ", service);
        goto out_auth;
    }
    if (sigv4_verify(&sr, &a, secret, time(NULL), err) < 0)
        goto out_auth;
    strlcpy_s(ctx->account, account, sizeof(ctx->account));
    strlcpy_s(ctx->region, a.region, sizeof(ctx->region));
    strlcpy_s(ctx->access_key, a.access_key, sizeof(ctx->access_key));
    strlcpy_s(ctx->service, a.service, sizeof(ctx->service));
    ret = 0;
out_auth:
    sigv4_auth_done(&a);
out:
    free(hs);
    return ret;
}

/* --- dispatch --- */

static int cmp_binding(const void *key, const void *elem)
{
    return strcmp(key, ((const aws_op_binding *) elem)->name);
}

static void call_free(http_req *req)
{
    aws_call *c = http_req_state(req);
    if (!c)
        return;
    json_decref(c->input);
    free(c);
}

static void fail_call(aws_call *c, unsigned status, const char *type, const char *msg)
{
    c->replied = true;
    if (c->svc && c->svc->protocol == AWS_PROTO_QUERY)
        query_error(c->req, status, type, msg, c->ctx.request_id);
    else
        aws_http_error(c->req, status, type, msg, c->ctx.request_id);
}

static int parse_form(const char *body, size_t len, json_t **ret)
{
    json_t *o = json_object();
    const char *p = body, *end = body + len;
    size_t n = 0;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t) (end - p));
        size_t l = amp ? (size_t) (amp - p) : (size_t) (end - p);
        if (l) {
            if (++n > 1000) {
                json_decref(o);
                return -E2BIG;
            }
            const char *eq = memchr(p, '=', l);
            size_t kl = eq ? (size_t) (eq - p) : l;
            char *k = NULL, *v = NULL;
            if (uri_decode(p, kl, true, &k, NULL) < 0 ||
                uri_decode(eq ? eq + 1 : p + l, eq ? l - kl - 1 : 0, true, &v, NULL) < 0) {
                free(k);
                free(v);
                json_decref(o);
                return -EINVAL;
            }
            json_t *js = json_string(v); /* NULL when not UTF-8 */
            json_object_set_new(o, k, js ? js : json_string(""));
            free(k);
            free(v);
        }
        p += l + 1;
    }
    *ret = o;
    return 0;
}

static void dispatch(aws_call *c, const char *opname)
{
    const aws_service_def *svc = c->svc;
    c->op = model_find_op(svc->model, opname);
    if (!c->op) {
        char msg[256];
        snprintf(msg, sizeof(msg), "%.200s", opname);
        fail_call(c, 400, "UnknownOperationException",
                  svc->protocol == AWS_PROTO_QUERY ? "Could not find operation" : NULL);
        return;
    }
    const aws_op_binding *b =
            bsearch(opname, svc->ops, svc->nops, sizeof(aws_op_binding), cmp_binding);
    if (!b) {
        char msg[256];
        snprintf(msg, sizeof(msg), "%s is not implemented by skiff.", c->op->name);
        fail_call(c, 501, "NotImplementedException", msg);
        return;
    }
    if (svc->protocol == AWS_PROTO_JSON) {
        _cleanup_err_ sk_err err = { 0 };
        if (model_validate(svc->model, c->op->input, c->input, svc->validation_error, &err) < 0) {
            aws_reply_err(c, &err);
            return;
        }
    }
    log_debug("%s.%s %s", svc->model->name, c->op->name, c->ctx.region);
    b->fn(c);
}

static const aws_service_def *find_json_service(aws_router *r, const char *target,
                                                const char **ret_op)
{
    const char *dot = strrchr(target, '.');
    if (!dot)
        return NULL;
    size_t pl = (size_t) (dot - target);
    for (size_t i = 0; i < r->services.len; i++) {
        const aws_service_def *d = r->services.items[i];
        if (d->protocol != AWS_PROTO_JSON)
            continue;
        const char *tp = d->model->target_prefix;
        if (strlen(tp) == pl && strncmp(tp, target, pl) == 0) {
            *ret_op = dot + 1;
            return d;
        }
    }
    return NULL;
}

static const aws_service_def *find_query_service(aws_router *r, const char *signing)
{
    for (size_t i = 0; i < r->services.len; i++) {
        const aws_service_def *d = r->services.items[i];
        if (d->protocol == AWS_PROTO_QUERY && streq(d->model->signing_name, signing))
            return d;
    }
    return NULL;
}

static void on_api_complete(http_req *req)
{
    aws_call *c = http_req_state(req);
    aws_router *r = c->router;
    size_t len;
    const char *body = http_req_body(req, &len);
    if (http_req_body_too_large(req)) {
        char msg[160];
        size_t cap = c->svc ? c->svc->body_cap : QUERY_BODY_CAP;
        uint64_t cl = http_req_content_length(req);
        if (cl != UINT64_MAX)
            snprintf(msg, sizeof(msg), "Actual length: '%llu'. Max allowed length is '%zu' bytes.",
                     (unsigned long long) cl, cap);
        else
            snprintf(msg, sizeof(msg), "Request body exceeds the maximum of %zu bytes.", cap);
        fail_call(c, 413, c->svc ? c->svc->client_error : "RequestEntityTooLarge", msg);
        return;
    }
    _cleanup_err_ sk_err err = { 0 };
    const char *signing = c->svc ? c->svc->model->signing_name : NULL;
    if (aws_authenticate(r, req, body, len, signing, &c->ctx, &err) < 0) {
        const char *type = err.type ? err.type : "AccessDeniedException";
        fail_call(c, aws_error_status(type, err.code), type, err.msg);
        return;
    }
    if (!c->svc) {
        /* Query protocol: the SigV4 scope names the service. */
        c->svc = find_query_service(r, c->ctx.service);
        if (!c->svc) {
            fail_call(c, 400, "UnknownOperationException", "Could not find operation");
            return;
        }
        json_t *form = NULL;
        if (parse_form(body, len, &form) < 0) {
            fail_call(c, 400, "MalformedQueryString", "The query string is malformed.");
            return;
        }
        c->input = form;
        const char *action = json_string_value(json_object_get(form, "Action"));
        if (!action) {
            fail_call(c, 400, "MissingAction", "Missing Action");
            return;
        }
        dispatch(c, action);
        return;
    }
    const char *target = http_req_header(req, "x-amz-target");
    const char *opname = NULL;
    find_json_service(r, target, &opname);
    if (len == 0)
        c->input = json_object();
    else {
        json_error_t jerr;
        c->input = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!c->input || !json_is_object(c->input)) {
            fail_call(c, 400, "SerializationException",
                      c->input ? "Start of structure or map expected."
                               : "Malformed JSON request body.");
            return;
        }
    }
    dispatch(c, opname);
}

static const http_req_ops api_ops = {
    .on_complete = on_api_complete,
    .on_free = call_free,
};

void aws_router_route(http_req *req, void *userdata)
{
    aws_router *r = userdata;
    const char *path = http_req_path(req);
    const char *method = http_req_method(req);
    char rid[37];
    random_uuid(rid);
    if (streq(path, "/healthz")) {
        if (r->ready)
            http_req_respond(req, 200, "text/plain", "ok\n", 3);
        else
            http_req_respond(req, 503, "text/plain", "starting\n", 9);
        return;
    }
    for (size_t i = 0; i < r->paths.len; i++) {
        path_route *p = r->paths.items[i];
        if (startswith(path, p->prefix)) {
            p->fn(req, p->userdata);
            return;
        }
    }
    if (!streq(path, "/")) {
        aws_http_error(req, 404, "UnknownOperationException", "Not found", rid);
        return;
    }
    if (!streq(method, "POST")) {
        aws_http_error(req, 405, "UnknownOperationException", "Method not allowed", rid);
        return;
    }
    aws_call *c = xcalloc(1, sizeof(*c));
    c->router = r;
    c->req = req;
    memcpy(c->ctx.request_id, rid, sizeof(rid));
    http_req_set_ops(req, &api_ops, c);
    const char *target = http_req_header(req, "x-amz-target");
    if (target) {
        const char *op;
        c->svc = find_json_service(r, target, &op);
        if (!c->svc) {
            fail_call(c, 400, "UnknownOperationException", NULL);
            return;
        }
        http_req_set_body_cap(req, c->svc->body_cap);
        return;
    }
    const char *ct = http_req_header(req, "content-type");
    if (ct && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0) {
        http_req_set_body_cap(req, QUERY_BODY_CAP);
        return;
    }
    fail_call(c, 400, "UnknownOperationException", NULL);
}
