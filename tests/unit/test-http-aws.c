/* The AWS JSON front door end to end: an ev_loop with the HTTP server on an
 * ephemeral loopback port and aws_router in front of a tiny ECS-modelled
 * service; requests come from libcurl on a second thread (the loop stays
 * single-threaded). Checks routing, SigV4, validation and AWS error rendering. */
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "basic/alloc.h"
#include "basic/buf.h"
#include "basic/err.h"
#include "basic/strutil.h"
#include "basic/timeutil.h"
#include "shared/aws.h"
#include "shared/digest.h"
#include "shared/event.h"
#include "shared/http.h"
#include "shared/jsonutil.h"
#include "shared/sigv4.h"
#include "tap.h"

#define AKID   "AKIDSKIFFTEST"
#define SECRET "skiff-test-secret-key"
#define TARGET "AmazonEC2ContainerServiceV20141113."

/* --- the service under test --- */

static int key_lookup(void *userdata, const char *access_key, const char **ret_secret,
                      const char **ret_account)
{
    if (!streq(access_key, AKID))
        return -1;
    *ret_secret = SECRET;
    *ret_account = "123456789012";
    return 0;
}

static void op_list_clusters(aws_call *c)
{
    json_t *in = aws_call_input(c);
    json_t *out = json_pack("{s:[s], s:s, s:s}", "clusterArns",
                            "arn:aws:ecs:us-east-1:123456789012:cluster/default", "region",
                            aws_call_ctx(c)->region, "account", aws_call_ctx(c)->account);
    if (js_has(in, "maxResults"))
        js_set_int(out, "echoMaxResults", js_int(in, "maxResults", 0));
    aws_reply(c, out);
}

static void op_run_task(aws_call *c)
{
    aws_reply_error(c, "ClusterNotFoundException", "Cluster not found.");
}

static void op_stop_task(aws_call *c)
{
    sk_err err = { 0 };
    sk_err_set(&err, SK_E_INTERNAL, "secret internal detail");
    aws_reply_err(c, &err);
    sk_err_done(&err);
}

static void op_get_caller_identity(aws_call *c)
{
    const aws_ctx *ctx = aws_call_ctx(c);
    aws_reply(c, json_pack("{s:s, s:s}", "Account", ctx->account, "UserId", ctx->access_key));
}

static const aws_op_binding sts_bindings[] = {
    { "GetCallerIdentity", op_get_caller_identity },
};

static const aws_service_def sts_service = {
    .model = &model_sts,
    .protocol = AWS_PROTO_QUERY,
    .validation_error = "ValidationError",
    .fault_error = "InternalFailure",
    .client_error = "InvalidParameterValue",
    .body_cap = 4096,
    .ops = sts_bindings,
    .nops = ELEMENTSOF(sts_bindings),
};

static const aws_op_binding bindings[] = {
    { "ListClusters", op_list_clusters },
    { "RunTask", op_run_task },
    { "StopTask", op_stop_task },
};

static const aws_service_def test_service = {
    .model = &model_ecs,
    .protocol = AWS_PROTO_JSON,
    .validation_error = "InvalidParameterException",
    .fault_error = "ServerException",
    .client_error = "ClientException",
    .body_cap = 4096,
    .ops = bindings,
    .nops = ELEMENTSOF(bindings),
};

/* --- the client --- */

typedef struct creq {
    const char *method;
    const char *path;
    const char *target; /* X-Amz-Target or NULL */
    const char *ctype;  /* Content-Type or NULL */
    const char *body;   /* NULL: no body */
    size_t body_len;    /* 0: strlen(body) */
    bool sign;
    const char *akid;
    const char *secret;
    const char *service; /* signing name; NULL: ecs */
    long skew;           /* seconds added to the signing clock */
    /* results */
    long status;
    sk_buf resp;
    char rtype[128];
    char request_id[64];
    char error_type[128];
    char err[CURL_ERROR_SIZE];
} creq;

static size_t on_write(char *p, size_t size, size_t n, void *userdata)
{
    creq *r = userdata;
    sk_buf_append(&r->resp, p, size * n);
    return size * n;
}

static void grab_header(const char *line, size_t len, const char *name, char *out, size_t outsz)
{
    size_t nl = strlen(name);
    if (len <= nl + 1 || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return;
    const char *v = line + nl + 1;
    size_t vl = len - nl - 1;
    while (vl && (*v == ' ' || *v == '\t'))
        v++, vl--;
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
        vl--;
    snprintf(out, outsz, "%.*s", (int) vl, v);
}

static size_t on_header(char *p, size_t size, size_t n, void *userdata)
{
    creq *r = userdata;
    size_t len = size * n;
    grab_header(p, len, "content-type", r->rtype, sizeof(r->rtype));
    grab_header(p, len, "x-amzn-requestid", r->request_id, sizeof(r->request_id));
    grab_header(p, len, "x-amzn-errortype", r->error_type, sizeof(r->error_type));
    return len;
}

static void perform(creq *r, unsigned port)
{
    sk_buf_init(&r->resp, 1 << 20);
    CURL *h = curl_easy_init();
    if (!h) {
        snprintf(r->err, sizeof(r->err), "curl_easy_init");
        return;
    }
    char url[256], host[64], date[17], hdr[512];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, r->path);
    snprintf(host, sizeof(host), "127.0.0.1:%u", port);
    format_amz_date(time(NULL) + r->skew, date);
    size_t blen = r->body ? (r->body_len ? r->body_len : strlen(r->body)) : 0;
    struct curl_slist *hl = NULL;
    hl = curl_slist_append(hl, "Expect:");
    hl = curl_slist_append(hl, "Accept:");
    if (r->ctype) {
        snprintf(hdr, sizeof(hdr), "Content-Type: %s", r->ctype);
        hl = curl_slist_append(hl, hdr);
    }
    if (r->target) {
        snprintf(hdr, sizeof(hdr), "X-Amz-Target: %s", r->target);
        hl = curl_slist_append(hl, hdr);
    }
    if (r->sign) {
        snprintf(hdr, sizeof(hdr), "X-Amz-Date: %s", date);
        hl = curl_slist_append(hl, hdr);
        sigv4_header hs[4];
        size_t nh = 0;
        hs[nh++] = (sigv4_header){ "Host", host };
        hs[nh++] = (sigv4_header){ "X-Amz-Date", date };
        if (r->ctype)
            hs[nh++] = (sigv4_header){ "Content-Type", r->ctype };
        if (r->target)
            hs[nh++] = (sigv4_header){ "X-Amz-Target", r->target };
        char phash[SHA256_HEX_LEN + 1];
        sha256_hex(r->body ? r->body : "", blen, phash);
        sigv4_request sr = { .method = r->method,
                             .path = r->path,
                             .query = NULL,
                             .headers = hs,
                             .nheaders = nh,
                             .payload_hash = phash };
        const char *sh = r->ctype && r->target ? "content-type;host;x-amz-date;x-amz-target"
                         : r->target           ? "host;x-amz-date;x-amz-target"
                         : r->ctype            ? "content-type;host;x-amz-date"
                                               : "host;x-amz-date";
        char *auth =
                sigv4_authorization(&sr, r->akid ? r->akid : AKID, r->secret ? r->secret : SECRET,
                                    "us-east-1", r->service ? r->service : "ecs", date, sh);
        char *line = xasprintf("Authorization: %s", auth);
        hl = curl_slist_append(hl, line);
        free(line);
        free(auth);
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
    if (r->body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long) blen);
    } else if (streq(r->method, "GET"))
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, r->err);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(h);
}

typedef struct batch {
    creq *reqs;
    size_t n;
    unsigned port;
    atomic_bool done;
} batch;

static void *client_main(void *userdata)
{
    batch *b = userdata;
    for (size_t i = 0; i < b->n; i++)
        perform(&b->reqs[i], b->port);
    atomic_store(&b->done, true);
    return NULL;
}

/* --- fixture --- */

typedef struct fixture {
    ev_loop *loop;
    aws_router *router;
    http_server *srv;
    unsigned port;
} fixture;

static bool fixture_up(fixture *f)
{
    *f = (fixture){ 0 };
    curl_global_init(CURL_GLOBAL_DEFAULT); /* reference-counted; undone in fixture_down */
    f->loop = ev_loop_new();
    f->router = aws_router_new(key_lookup, NULL);
    aws_router_add_service(f->router, &test_service);
    aws_router_add_service(f->router, &sts_service);
    http_server_config cfg = { .listen = "127.0.0.1:0",
                               .connection_timeout_sec = 10,
                               .max_connections = 16 };
    _cleanup_err_ sk_err err = { 0 };
    if (http_server_new(f->loop, &cfg, aws_router_route, f->router, &f->srv, &err) < 0) {
        printf("# http_server_new: %s\n", sk_err_msg(&err));
        return false;
    }
    f->port = http_server_port(f->srv);
    return f->port > 0;
}

static void fixture_down(fixture *f)
{
    curl_global_cleanup();
    http_server_free(f->srv);
    aws_router_free(f->router);
    ev_loop_free(f->loop);
}

/* Runs the requests from a client thread while this thread drives the loop. */
static bool run_batch(fixture *f, creq *reqs, size_t n)
{
    batch b = { .reqs = reqs, .n = n, .port = f->port };
    atomic_init(&b.done, false);
    pthread_t th;
    if (pthread_create(&th, NULL, client_main, &b) != 0)
        return false;
    usec_t deadline = now_monotonic() + 60 * USEC_PER_SEC;
    while (!atomic_load(&b.done) && now_monotonic() < deadline)
        ev_loop_run_once(f->loop, 20);
    pthread_join(th, NULL);
    return true;
}

static void creq_done(creq *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sk_buf_done(&r[i].resp);
}

static json_t *body_json(const creq *r)
{
    return r->resp.data ? json_loads(r->resp.data, 0, NULL) : NULL;
}

#define ASSERT_AWS_ERROR(r, st, type)                                                           \
    do {                                                                                        \
        if ((r).status != (st))                                                                 \
            TAP_FAIL("%s %s: status %ld != %d (%s) %s", (r).method, (r).path, (r).status, (st), \
                     (r).resp.data ? (r).resp.data : "", (r).err);                              \
        _cleanup_json_ json_t *_j = body_json(&(r));                                            \
        if (!_j)                                                                                \
            TAP_FAIL("body is not JSON: %s", (r).resp.data ? (r).resp.data : "");               \
        if (!streq_ptr(js_str(_j, "__type"), (type)))                                           \
            TAP_FAIL("__type '%s' != '%s'", js_str(_j, "__type") ? js_str(_j, "__type") : "",   \
                     (type));                                                                   \
        if (!json_is_string(json_object_get(_j, "message")))                                    \
            TAP_FAIL("no message in %s", (r).resp.data);                                        \
        ASSERT_STREQ((r).rtype, "application/x-amz-json-1.1");                                  \
        if (!startswith((r).error_type, (type)))                                                \
            TAP_FAIL("x-amzn-ErrorType '%s'", (r).error_type);                                  \
    } while (0)

TEST(healthz_and_routing)
{
    fixture f;
    if (!fixture_up(&f)) {
        fixture_down(&f);
        SKIP("cannot listen on loopback");
    }
    creq r1[] = {
        { .method = "GET", .path = "/healthz" },
    };
    ASSERT_TRUE(run_batch(&f, r1, ELEMENTSOF(r1)));
    long before = r1[0].status;
    creq_done(r1, ELEMENTSOF(r1));
    aws_router_set_ready(f.router, true);
    creq r[] = {
        { .method = "GET", .path = "/healthz" },
        { .method = "GET", .path = "/nope" },
        { .method = "GET", .path = "/" },
        { .method = "POST", .path = "/", .body = "{}", .ctype = "application/x-amz-json-1.1" },
        { .method = "POST",
          .path = "/",
          .body = "{}",
          .target = "NoSuchService_20200101.Foo",
          .ctype = "application/x-amz-json-1.1" },
    };
    ASSERT_TRUE(run_batch(&f, r, ELEMENTSOF(r)));
    fixture_down(&f);
    ASSERT_EQ(before, 503);
    ASSERT_EQ(r[0].status, 200);
    ASSERT_STREQ(r[0].resp.data, "ok\n");
    ASSERT_AWS_ERROR(r[1], 404, "UnknownOperationException");
    ASSERT_TRUE(r[1].request_id[0] != 0);
    ASSERT_AWS_ERROR(r[2], 405, "UnknownOperationException");
    ASSERT_AWS_ERROR(r[3], 400, "UnknownOperationException");
    ASSERT_AWS_ERROR(r[4], 400, "UnknownOperationException");
    creq_done(r, ELEMENTSOF(r));
}

TEST(json_protocol)
{
    fixture f;
    if (!fixture_up(&f)) {
        fixture_down(&f);
        SKIP("cannot listen on loopback");
    }
    aws_router_set_ready(f.router, true);
    const char *ct = "application/x-amz-json-1.1";
    static char big[6000];
    memset(big, ' ', sizeof(big) - 1);
    big[0] = '{';
    big[sizeof(big) - 2] = '}';
    creq r[] = {
        /* 0: signed, valid */
        { .method = "POST",
          .path = "/",
          .target = TARGET "ListClusters",
          .ctype = ct,
          .body = "{\"maxResults\":5}",
          .sign = true },
        /* 1: unsigned */
        { .method = "POST",
          .path = "/",
          .target = TARGET "ListClusters",
          .ctype = ct,
          .body = "{}" },
        /* 2: wrong secret */
        { .method = "POST",
          .path = "/",
          .target = TARGET "ListClusters",
          .ctype = ct,
          .body = "{}",
          .sign = true,
          .secret = "wrong" },
        /* 3: unknown access key */
        { .method = "POST",
          .path = "/",
          .target = TARGET "ListClusters",
          .ctype = ct,
          .body = "{}",
          .sign = true,
          .akid = "AKIDUNKNOWN" },
        /* 4: clock 20 minutes ahead */
        { .method = "POST",
          .path = "/",
          .target = TARGET "ListClusters",
          .ctype = ct,
          .body = "{}",
          .sign = true,
          .skew = 20 * 60 },
        /* 5: unknown operation of a known service */
        { .method = "POST",
          .path = "/",
          .target = TARGET "NoSuchOperation",
          .ctype = ct,
          .body = "{}",
          .sign = true },
        /* 6: validation */
        { .method = "POST",
          .path = "/",
          .target = TARGET "RunTask",
          .ctype = ct,
          .body = "{}",
          .sign = true },
        /* 7: malformed JSON */
        { .method = "POST",
          .path = "/",
          .target = TARGET "ListClusters",
          .ctype = ct,
          .body = "{\"maxResults\":",
          .sign = true },
        /* 8: JSON that is not an object */
        { .method = "POST",
          .path = "/",
          .target = TARGET "ListClusters",
          .ctype = ct,
          .body = "[1]",
          .sign = true },
        /* 9: type error */
        { .method = "POST",
          .path = "/",
          .target = TARGET "ListClusters",
          .ctype = ct,
          .body = "{\"maxResults\":\"5\"}",
          .sign = true },
        /* 10: in the model but not bound */
        { .method = "POST",
          .path = "/",
          .target = TARGET "DeleteCluster",
          .ctype = ct,
          .body = "{\"cluster\":\"x\"}",
          .sign = true },
        /* 11: handler error with an explicit type */
        { .method = "POST",
          .path = "/",
          .target = TARGET "RunTask",
          .ctype = ct,
          .body = "{\"taskDefinition\":\"web\"}",
          .sign = true },
        /* 12: internal error: 500, message hidden */
        { .method = "POST",
          .path = "/",
          .target = TARGET "StopTask",
          .ctype = ct,
          .body = "{\"task\":\"t\"}",
          .sign = true },
        /* 13: body over the service cap */
        { .method = "POST",
          .path = "/",
          .target = TARGET "ListClusters",
          .ctype = ct,
          .body = big,
          .sign = true },
        /* 14: empty body means {} */
        { .method = "POST",
          .path = "/",
          .target = TARGET "ListClusters",
          .ctype = ct,
          .body = "",
          .sign = true },
        /* 15: duplicate keys are rejected */
        { .method = "POST",
          .path = "/",
          .target = TARGET "ListClusters",
          .ctype = ct,
          .body = "{\"maxResults\":1,\"maxResults\":2}",
          .sign = true },
    };
    ASSERT_TRUE(run_batch(&f, r, ELEMENTSOF(r)));
    fixture_down(&f);

    ASSERT_EQ(r[0].status, 200);
    ASSERT_STREQ(r[0].rtype, "application/x-amz-json-1.1");
    ASSERT_EQ(strlen(r[0].request_id), 36);
    _cleanup_json_ json_t *j0 = body_json(&r[0]);
    ASSERT_NOT_NULL(j0);
    ASSERT_STREQ(js_str(j0, "region"), "us-east-1");
    ASSERT_STREQ(js_str(j0, "account"), "123456789012");
    ASSERT_EQ(js_int(j0, "echoMaxResults", 0), 5);

    ASSERT_AWS_ERROR(r[1], 403, "MissingAuthenticationTokenException");
    ASSERT_EQ(strlen(r[1].request_id), 36);
    _cleanup_json_ json_t *j2 = body_json(&r[2]);
    ASSERT_STREQ(js_str(j2, "__type"), "InvalidSignatureException");
    ASSERT_TRUE(r[2].status == 400 || r[2].status == 403);
    _cleanup_json_ json_t *j3 = body_json(&r[3]);
    ASSERT_STREQ(js_str(j3, "__type"), "UnrecognizedClientException");
    ASSERT_TRUE(r[3].status == 400 || r[3].status == 403);
    _cleanup_json_ json_t *j4 = body_json(&r[4]);
    ASSERT_STREQ(js_str(j4, "__type"), "InvalidSignatureException");
    ASSERT_TRUE(strstr(js_str(j4, "message"), "Signature not yet current") != NULL);
    ASSERT_AWS_ERROR(r[5], 400, "UnknownOperationException");
    ASSERT_AWS_ERROR(r[6], 400, "InvalidParameterException");
    _cleanup_json_ json_t *j6 = body_json(&r[6]);
    ASSERT_TRUE(strstr(js_str(j6, "message"), "Member must not be null") != NULL);
    ASSERT_AWS_ERROR(r[7], 400, "SerializationException");
    ASSERT_AWS_ERROR(r[8], 400, "SerializationException");
    ASSERT_AWS_ERROR(r[9], 400, "SerializationException");
    ASSERT_EQ(r[10].status, 501);
    _cleanup_json_ json_t *j10 = body_json(&r[10]);
    ASSERT_STREQ(js_str(j10, "__type"), "NotImplementedException");
    ASSERT_AWS_ERROR(r[11], 400, "ClusterNotFoundException");
    _cleanup_json_ json_t *j11 = body_json(&r[11]);
    ASSERT_STREQ(js_str(j11, "message"), "Cluster not found.");
    ASSERT_AWS_ERROR(r[12], 500, "ServerException");
    ASSERT_TRUE(strstr(r[12].resp.data, "secret internal detail") == NULL);
    ASSERT_EQ(r[13].status, 413);
    _cleanup_json_ json_t *j13 = body_json(&r[13]);
    ASSERT_STREQ(js_str(j13, "__type"), "ClientException");
    ASSERT_EQ(r[14].status, 200);
    ASSERT_AWS_ERROR(r[15], 400, "SerializationException");
    creq_done(r, ELEMENTSOF(r));
}

TEST(query_protocol)
{
    fixture f;
    if (!fixture_up(&f)) {
        fixture_down(&f);
        SKIP("cannot listen on loopback");
    }
    aws_router_set_ready(f.router, true);
    const char *form = "application/x-www-form-urlencoded; charset=utf-8";
    creq r[] = {
        { .method = "POST",
          .path = "/",
          .ctype = form,
          .service = "sts",
          .sign = true,
          .body = "Action=GetCallerIdentity&Version=2011-06-15" },
        { .method = "POST",
          .path = "/",
          .ctype = form,
          .service = "sts",
          .sign = true,
          .body = "Action=NoSuchAction&Version=2011-06-15" },
        { .method = "POST",
          .path = "/",
          .ctype = form,
          .service = "sts",
          .sign = true,
          .body = "Version=2011-06-15" },
        { .method = "POST",
          .path = "/",
          .ctype = form,
          .service = "sts",
          .sign = true,
          .body = "Action=%zz" },
    };
    ASSERT_TRUE(run_batch(&f, r, ELEMENTSOF(r)));
    fixture_down(&f);
    if (r[0].status != 200)
        TAP_FAIL("status %ld: %s", r[0].status, r[0].resp.data ? r[0].resp.data : "");
    ASSERT_STREQ(r[0].rtype, "text/xml");
    ASSERT_NOT_NULL(strstr(r[0].resp.data, "<GetCallerIdentityResult>"));
    ASSERT_NOT_NULL(strstr(r[0].resp.data, "<Account>123456789012</Account>"));
    ASSERT_NOT_NULL(strstr(r[0].resp.data, "<RequestId>"));
    ASSERT_EQ(r[1].status, 400);
    ASSERT_NOT_NULL(strstr(r[1].resp.data, "<Code>UnknownOperationException</Code>"));
    ASSERT_EQ(r[2].status, 400);
    ASSERT_NOT_NULL(strstr(r[2].resp.data, "<Code>MissingAction</Code>"));
    ASSERT_EQ(r[3].status, 400);
    ASSERT_NOT_NULL(strstr(r[3].resp.data, "<Code>MalformedQueryString</Code>"));
    creq_done(r, ELEMENTSOF(r));
}

TAP_MAIN()
