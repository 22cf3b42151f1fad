/* SigV4 against vectors computed independently by botocore
 * (tools/gen-sigv4-vectors.py → tests/data/sigv4-vectors.json), plus the
 * server-side checks: tampering, clock skew, presigned expiry and malformed
 * Authorization headers with the AWS error types clients expect. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "basic/alloc.h"
#include "basic/err.h"
#include "basic/strutil.h"
#include "basic/timeutil.h"
#include "shared/jsonutil.h"
#include "shared/sigv4.h"
#include "tap.h"

#define T_MISSING    "MissingAuthenticationTokenException"
#define T_INCOMPLETE "IncompleteSignatureException"
#define T_INVALID    "InvalidSignatureException"
#define MAX_HDRS     32

#define VECTORS      SKIFF_TEST_DATA_DIR "/sigv4-vectors.json"

typedef struct vreq {
    sigv4_header h[MAX_HDRS];
    sigv4_request req;
    const char *name;
} vreq;

static json_t *load_vectors(void)
{
    json_error_t jerr;
    json_t *doc = json_load_file(VECTORS, 0, &jerr);
    if (!doc)
        printf("# cannot load %s: %s (line %d)\n", VECTORS, jerr.text, jerr.line);
    return doc;
}

/* Fills r from a vector; strings stay borrowed from the JSON document. */
static void vreq_init(vreq *r, const json_t *v)
{
    *r = (vreq){ .name = js_str(v, "name") };
    size_t i, n = 0;
    json_t *h;
    json_array_foreach(js_arr(v, "headers"), i, h) {
        if (n == MAX_HDRS)
            break;
        r->h[n++] = (sigv4_header){ json_string_value(json_array_get(h, 0)),
                                    json_string_value(json_array_get(h, 1)) };
    }
    r->req = (sigv4_request){
        .method = js_str(v, "method"),
        .path = js_str(v, "path"),
        .query = js_str(v, "query"),
        .headers = r->h,
        .nheaders = n,
        .payload_hash = js_str(v, "payload_hash"),
    };
}

/* Replaces (or adds) a header value by name. */
static void vreq_set(vreq *r, const char *name, const char *value)
{
    for (size_t i = 0; i < r->req.nheaders; i++)
        if (strcasecmp(r->h[i].name, name) == 0) {
            r->h[i].value = value;
            return;
        }
    if (r->req.nheaders < MAX_HDRS)
        r->h[r->req.nheaders++] = (sigv4_header){ name, value };
}

static void vreq_del(vreq *r, const char *name)
{
    for (size_t i = 0; i < r->req.nheaders; i++)
        if (strcasecmp(r->h[i].name, name) == 0) {
            memmove(&r->h[i], &r->h[i + 1], (r->req.nheaders - i - 1) * sizeof(sigv4_header));
            r->req.nheaders--;
            return;
        }
}

static const json_t *find_vector(const json_t *doc, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(js_arr(doc, "vectors"), i, v) {
        if (streq_ptr(js_str(v, "name"), name))
            return v;
    }
    return NULL;
}

/* Prints a multi-line string as TAP diagnostics. */
static void diag(const char *label, const char *s)
{
    printf("# %s:\n#   ", label);
    for (const char *c = s ? s : "(null)"; *c; c++) {
        putchar(*c);
        if (*c == '\n')
            printf("#   ");
    }
    putchar('\n');
}

/* Parses and verifies; returns the result and leaves the error in err. */
static int parse_verify(const sigv4_request *req, const char *secret, time_t now, sk_err *err)
{
    sigv4_auth a;
    if (sigv4_parse(req, &a, err) < 0)
        return -1;
    int r = sigv4_verify(req, &a, secret, now, err);
    sigv4_auth_done(&a);
    return r;
}

#define ASSERT_ERR_TYPE(err, t)                                                                  \
    do {                                                                                         \
        if (!(err).type || strcmp((err).type, (t)) != 0)                                         \
            TAP_FAIL("error type '%s' != '%s' (message: %s)", (err).type ? (err).type : "", (t), \
                     (err).msg ? (err).msg : "");                                                \
        ASSERT_EQ((err).code, SK_E_AUTH);                                                        \
    } while (0)

#define ASSERT_MSG_HAS(err, needle)                                                          \
    do {                                                                                     \
        if (!(err).msg || !strstr((err).msg, (needle)))                                      \
            TAP_FAIL("message '%s' lacks '%s'", (err).msg ? (err).msg : "(null)", (needle)); \
    } while (0)

TEST(vectors_loaded)
{
    _cleanup_json_ json_t *doc = load_vectors();
    ASSERT_NOT_NULL(doc);
    ASSERT_TRUE(json_array_size(js_arr(doc, "vectors")) >= 10);
    ASSERT_TRUE(js_int(doc, "now", 0) == 1700000000);
}

TEST(vectors_canonical_request)
{
    _cleanup_json_ json_t *doc = load_vectors();
    ASSERT_NOT_NULL(doc);
    size_t i;
    json_t *v;
    json_array_foreach(js_arr(doc, "vectors"), i, v) {
        vreq r;
        vreq_init(&r, v);
        _cleanup_free_ char *cr = sigv4_canonical_request(&r.req, js_str(v, "signed_headers"));
        if (!streq(cr, js_str(v, "canonical_request"))) {
            diag("got", cr);
            diag("want", js_str(v, "canonical_request"));
            TAP_FAIL("vector '%s': canonical request differs", r.name);
        }
    }
}

TEST(vectors_string_to_sign)
{
    _cleanup_json_ json_t *doc = load_vectors();
    ASSERT_NOT_NULL(doc);
    size_t i;
    json_t *v;
    json_array_foreach(js_arr(doc, "vectors"), i, v) {
        const char *amz_date = js_str(v, "amz_date");
        _cleanup_free_ char *scope = xasprintf("%.8s/%s/%s/aws4_request", amz_date,
                                               js_str(v, "region"), js_str(v, "service"));
        _cleanup_free_ char *sts =
                sigv4_string_to_sign(amz_date, scope, js_str(v, "canonical_request"));
        if (!streq(sts, js_str(v, "string_to_sign"))) {
            diag("got", sts);
            diag("want", js_str(v, "string_to_sign"));
            TAP_FAIL("vector '%s': string to sign differs", js_str(v, "name"));
        }
    }
}

TEST(vectors_signing_key)
{
    _cleanup_json_ json_t *doc = load_vectors();
    ASSERT_NOT_NULL(doc);
    size_t i;
    json_t *v;
    json_array_foreach(js_arr(doc, "vectors"), i, v) {
        char date[9];
        memcpy(date, js_str(v, "amz_date"), 8);
        date[8] = 0;
        unsigned char key[32];
        char hex[65];
        sigv4_signing_key(js_str(v, "secret"), date, js_str(v, "region"), js_str(v, "service"),
                          key);
        hex_encode(key, 32, hex);
        ASSERT_STREQ(hex, js_str(v, "signing_key"));
    }
    /* The published AWS example (Signature Version 4 documentation, IAM, us-east-1). */
    unsigned char key[32];
    char hex[65];
    sigv4_signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam",
                      key);
    hex_encode(key, 32, hex);
    ASSERT_STREQ(hex, "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
}

TEST(vectors_client_authorization)
{
    _cleanup_json_ json_t *doc = load_vectors();
    ASSERT_NOT_NULL(doc);
    size_t i, n = 0;
    json_t *v;
    json_array_foreach(js_arr(doc, "vectors"), i, v) {
        if (js_bool(v, "presigned", false))
            continue;
        vreq r;
        vreq_init(&r, v);
        vreq_del(&r, "authorization");
        _cleanup_free_ char *auth = sigv4_authorization(
                &r.req, js_str(v, "access_key"), js_str(v, "secret"), js_str(v, "region"),
                js_str(v, "service"), js_str(v, "amz_date"), js_str(v, "signed_headers"));
        if (!streq(auth, js_str(v, "authorization")))
            TAP_FAIL("vector '%s':\n#  got: %s\n# want: %s", r.name, auth,
                     js_str(v, "authorization"));
        n++;
    }
    ASSERT_TRUE(n >= 8);
}

TEST(vectors_verify_accepts)
{
    _cleanup_json_ json_t *doc = load_vectors();
    ASSERT_NOT_NULL(doc);
    time_t now = (time_t) js_int(doc, "now", 0);
    size_t i;
    json_t *v;
    json_array_foreach(js_arr(doc, "vectors"), i, v) {
        vreq r;
        vreq_init(&r, v);
        _cleanup_err_ sk_err err = { 0 };
        sigv4_auth a;
        if (sigv4_parse(&r.req, &a, &err) < 0)
            TAP_FAIL("vector '%s': parse: %s: %s", r.name, err.type, err.msg);
        bool presigned = a.presigned;
        long expires = a.expires;
        int ok = streq(a.access_key, js_str(v, "access_key")) &&
                 streq(a.region, js_str(v, "region")) && streq(a.service, js_str(v, "service")) &&
                 streq(a.amz_date, js_str(v, "amz_date")) &&
                 strncmp(a.date, js_str(v, "amz_date"), 8) == 0 &&
                 streq(a.signature, js_str(v, "signature")) &&
                 streq_ptr(a.signed_headers, js_str(v, "signed_headers"));
        int r2 = sigv4_verify(&r.req, &a, js_str(v, "secret"), now, &err);
        sigv4_auth_done(&a);
        if (!ok)
            TAP_FAIL("vector '%s': parsed fields differ", r.name);
        ASSERT_EQ(presigned, js_bool(v, "presigned", false));
        if (presigned)
            ASSERT_EQ(expires, js_int(v, "expires", -1));
        if (r2 < 0) {
            diag("error", err.msg);
            TAP_FAIL("vector '%s': verify failed: %s", r.name, err.type);
        }
    }
}

TEST(verify_rejects_tampering)
{
    _cleanup_json_ json_t *doc = load_vectors();
    ASSERT_NOT_NULL(doc);
    time_t now = (time_t) js_int(doc, "now", 0);
    const json_t *v = find_vector(doc, "json-post");
    ASSERT_NOT_NULL(v);
    const char *secret = js_str(v, "secret");

    /* One flipped hex digit in the signature. */
    {
        vreq r;
        vreq_init(&r, v);
        _cleanup_free_ char *auth = xstrdup(js_str(v, "authorization"));
        char *last = auth + strlen(auth) - 1;
        *last = *last == '0' ? '1' : '0';
        vreq_set(&r, "Authorization", auth);
        _cleanup_err_ sk_err err = { 0 };
        ASSERT_FAIL(parse_verify(&r.req, secret, now, &err));
        ASSERT_ERR_TYPE(err, T_INVALID);
        ASSERT_MSG_HAS(err, "does not match the signature you provided");
        /* The message carries the canonical request for debugging. */
        ASSERT_MSG_HAS(err, js_str(v, "canonical_request"));
    }
    /* Wrong secret. */
    {
        vreq r;
        vreq_init(&r, v);
        _cleanup_err_ sk_err err = { 0 };
        ASSERT_FAIL(parse_verify(&r.req, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEX", now, &err));
        ASSERT_ERR_TYPE(err, T_INVALID);
    }
    /* A signed header changed in flight. */
    {
        vreq r;
        vreq_init(&r, v);
        vreq_set(&r, "X-Amz-Target", "AmazonEC2ContainerServiceV20141113.DeleteCluster");
        _cleanup_err_ sk_err err = { 0 };
        ASSERT_FAIL(parse_verify(&r.req, secret, now, &err));
        ASSERT_ERR_TYPE(err, T_INVALID);
    }
    /* A different body (payload hash). */
    {
        vreq r;
        vreq_init(&r, v);
        r.req.payload_hash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        _cleanup_err_ sk_err err = { 0 };
        ASSERT_FAIL(parse_verify(&r.req, secret, now, &err));
        ASSERT_ERR_TYPE(err, T_INVALID);
    }
    /* A different path or an added query parameter. */
    {
        vreq r;
        vreq_init(&r, v);
        r.req.path = "/other";
        _cleanup_err_ sk_err err = { 0 };
        ASSERT_FAIL(parse_verify(&r.req, secret, now, &err));
        ASSERT_ERR_TYPE(err, T_INVALID);
    }
    {
        vreq r;
        vreq_init(&r, v);
        r.req.query = "extra=1";
        _cleanup_err_ sk_err err = { 0 };
        ASSERT_FAIL(parse_verify(&r.req, secret, now, &err));
        ASSERT_ERR_TYPE(err, T_INVALID);
    }
    /* An unsigned header may change freely. */
    {
        vreq r;
        vreq_init(&r, v);
        vreq_set(&r, "User-Agent", "something/else");
        _cleanup_err_ sk_err err = { 0 };
        ASSERT_OK_ERR(parse_verify(&r.req, secret, now, &err), &err);
    }
    /* Tampered presigned query (another Action). */
    {
        const json_t *p = find_vector(doc, "presigned-get");
        ASSERT_NOT_NULL(p);
        vreq r;
        vreq_init(&r, p);
        _cleanup_free_ char *q = xstrdup(js_str(p, "query"));
        char *act = strstr(q, "GetCallerIdentity");
        ASSERT_NOT_NULL(act);
        act[0] = 'S';
        r.req.query = q;
        _cleanup_err_ sk_err err = { 0 };
        ASSERT_FAIL(parse_verify(&r.req, secret, now, &err));
        ASSERT_ERR_TYPE(err, T_INVALID);
    }
}

TEST(verify_credential_date_mismatch)
{
    _cleanup_json_ json_t *doc = load_vectors();
    ASSERT_NOT_NULL(doc);
    time_t now = (time_t) js_int(doc, "now", 0);
    const json_t *v = find_vector(doc, "json-post");
    ASSERT_NOT_NULL(v);
    vreq r;
    vreq_init(&r, v);
    _cleanup_free_ char *auth = xstrdup(js_str(v, "authorization"));
    char *d = strstr(auth, "/20231114/");
    ASSERT_NOT_NULL(d);
    memcpy(d + 1, "20231113", 8);
    vreq_set(&r, "Authorization", auth);
    _cleanup_err_ sk_err err = { 0 };
    ASSERT_FAIL(parse_verify(&r.req, js_str(v, "secret"), now, &err));
    ASSERT_ERR_TYPE(err, T_INVALID);
    ASSERT_MSG_HAS(err, "Date in Credential scope does not match");
}

TEST(verify_clock_skew)
{
    _cleanup_json_ json_t *doc = load_vectors();
    ASSERT_NOT_NULL(doc);
    time_t now = (time_t) js_int(doc, "now", 0);
    const json_t *v = find_vector(doc, "json-post");
    ASSERT_NOT_NULL(v);
    const char *secret = js_str(v, "secret");
    vreq r;
    vreq_init(&r, v);
    _cleanup_err_ sk_err e1 = { 0 }, e2 = { 0 }, e3 = { 0 }, e4 = { 0 };
    /* Exactly 15 minutes either way is still accepted. */
    ASSERT_OK_ERR(parse_verify(&r.req, secret, now + SIGV4_MAX_SKEW_SEC, &e1), &e1);
    ASSERT_OK_ERR(parse_verify(&r.req, secret, now - SIGV4_MAX_SKEW_SEC, &e2), &e2);
    /* The request is older than 15 minutes. */
    ASSERT_FAIL(parse_verify(&r.req, secret, now + SIGV4_MAX_SKEW_SEC + 1, &e3));
    ASSERT_ERR_TYPE(e3, T_INVALID);
    ASSERT_MSG_HAS(e3, "Signature expired: 20231114T221320Z is now earlier than");
    /* The request claims to be from more than 15 minutes in the future. */
    ASSERT_FAIL(parse_verify(&r.req, secret, now - SIGV4_MAX_SKEW_SEC - 1, &e4));
    ASSERT_ERR_TYPE(e4, T_INVALID);
    ASSERT_MSG_HAS(e4, "Signature not yet current");
}

TEST(verify_presigned_expiry)
{
    _cleanup_json_ json_t *doc = load_vectors();
    ASSERT_NOT_NULL(doc);
    time_t now = (time_t) js_int(doc, "now", 0);
    const json_t *v = find_vector(doc, "presigned-get");
    ASSERT_NOT_NULL(v);
    ASSERT_EQ(js_int(v, "expires", 0), 900);
    const char *secret = js_str(v, "secret");
    vreq r;
    vreq_init(&r, v);
    _cleanup_err_ sk_err e1 = { 0 }, e2 = { 0 }, e3 = { 0 }, e4 = { 0 };
    /* A presigned URL is good for its whole X-Amz-Expires, beyond the 15 minute skew. */
    ASSERT_OK_ERR(parse_verify(&r.req, secret, now + 900, &e1), &e1);
    ASSERT_OK_ERR(parse_verify(&r.req, secret, now - SIGV4_MAX_SKEW_SEC, &e2), &e2);
    ASSERT_FAIL(parse_verify(&r.req, secret, now + 901, &e3));
    ASSERT_ERR_TYPE(e3, T_INVALID);
    ASSERT_MSG_HAS(e3, "Signature expired");
    ASSERT_FAIL(parse_verify(&r.req, secret, now - SIGV4_MAX_SKEW_SEC - 1, &e4));
    ASSERT_ERR_TYPE(e4, T_INVALID);

    /* Longer-lived URL from the other presigned vector. */
    const json_t *w = find_vector(doc, "presigned-with-path");
    ASSERT_NOT_NULL(w);
    vreq_init(&r, w);
    _cleanup_err_ sk_err e5 = { 0 };
    ASSERT_OK_ERR(parse_verify(&r.req, secret, now + 3600, &e5), &e5);
}

/* A request with host and x-amz-date whose Authorization header is the
 * test's to choose. */
static void malformed_req(vreq *r, const char *authorization)
{
    *r = (vreq){ .name = "malformed" };
    size_t n = 0;
    r->h[n++] = (sigv4_header){ "Host", "localhost:8080" };
    r->h[n++] = (sigv4_header){ "X-Amz-Date", "20231114T221320Z" };
    if (authorization)
        r->h[n++] = (sigv4_header){ "Authorization", authorization };
    r->req = (sigv4_request){ .method = "POST",
                              .path = "/",
                              .headers = r->h,
                              .nheaders = n,
                              .payload_hash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca49"
                                              "5991b7852b855" };
}

#define SIG64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define CRED  "Credential=AKIDEXAMPLE/20231114/us-east-1/ecs/aws4_request"

static int parse_only(const char *authorization, sk_err *err)
{
    vreq r;
    malformed_req(&r, authorization);
    sigv4_auth a;
    int ret = sigv4_parse(&r.req, &a, err);
    if (ret >= 0)
        sigv4_auth_done(&a);
    return ret;
}

TEST(parse_missing_auth)
{
    _cleanup_err_ sk_err err = { 0 };
    ASSERT_FAIL(parse_only(NULL, &err));
    ASSERT_ERR_TYPE(err, T_MISSING);
    ASSERT_STREQ(err.msg, "Missing Authentication Token");
}

TEST(parse_valid_minimal)
{
    _cleanup_err_ sk_err err = { 0 };
    ASSERT_OK_ERR(parse_only("AWS4-HMAC-SHA256 " CRED ", SignedHeaders=host;x-amz-date, "
                             "Signature=" SIG64,
                             &err),
                  &err);
    /* Parameters in any order, with or without spaces after the commas. */
    ASSERT_OK_ERR(parse_only("AWS4-HMAC-SHA256 Signature=" SIG64
                             ",SignedHeaders=host;x-amz-date," CRED,
                             &err),
                  &err);
}

TEST(parse_missing_parameters)
{
    struct {
        const char *auth;
        const char *needle;
    } cases[] = {
        { "AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, Signature=" SIG64,
          "requires 'Credential' parameter" },
        { "AWS4-HMAC-SHA256 " CRED ", Signature=" SIG64, "requires 'SignedHeaders' parameter" },
        { "AWS4-HMAC-SHA256 " CRED ", SignedHeaders=host;x-amz-date",
          "requires 'Signature' parameter" },
        { "AWS4-HMAC-SHA256 ", "requires 'Credential' parameter" },
        { "AWS4-HMAC-SHA256 garbage", "requires 'Credential' parameter" },
    };
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        _cleanup_err_ sk_err err = { 0 };
        if (parse_only(cases[i].auth, &err) >= 0)
            TAP_FAIL("case %zu '%s' parsed", i, cases[i].auth);
        ASSERT_ERR_TYPE(err, T_INCOMPLETE);
        ASSERT_MSG_HAS(err, cases[i].needle);
    }
}

TEST(parse_bad_scope)
{
    const char *creds[] = {
        "Credential=AKIDEXAMPLE/20231114/us-east-1/ecs",               /* 4 parts */
        "Credential=AKIDEXAMPLE/20231114/us-east-1/ecs/aws4_reques",   /* bad terminator */
        "Credential=AKIDEXAMPLE/20231114/us-east-1/ecs/aws4_requestX", /* bad terminator */
        "Credential=AKIDEXAMPLE/2023111/us-east-1/ecs/aws4_request",   /* short date */
        "Credential=/20231114/us-east-1/ecs/aws4_request",             /* empty key id */
        "Credential=AKIDEXAMPLE/20231114//ecs/aws4_request",           /* empty region */
        "Credential=AKIDEXAMPLE/20231114/us-east-1//aws4_request",     /* empty service */
        "Credential=AKIDEXAMPLE/20231114/us_east$1/ecs/aws4_request",  /* bad region */
        "Credential=AKIDEXAMPLE",
        "Credential=",
    };
    for (size_t i = 0; i < ELEMENTSOF(creds); i++) {
        _cleanup_free_ char *auth = xasprintf(
                "AWS4-HMAC-SHA256 %s, SignedHeaders=host;x-amz-date, Signature=" SIG64, creds[i]);
        _cleanup_err_ sk_err err = { 0 };
        if (parse_only(auth, &err) >= 0)
            TAP_FAIL("'%s' parsed", creds[i]);
        ASSERT_ERR_TYPE(err, T_INCOMPLETE);
    }
    /* An access key longer than the field holds. */
    char longkey[200];
    memset(longkey, 'A', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = 0;
    _cleanup_free_ char *auth = xasprintf("AWS4-HMAC-SHA256 Credential=%s/20231114/us-east-1/ecs/"
                                          "aws4_request, SignedHeaders=host, Signature=" SIG64,
                                          longkey);
    _cleanup_err_ sk_err err = { 0 };
    ASSERT_FAIL(parse_only(auth, &err));
    ASSERT_ERR_TYPE(err, T_INCOMPLETE);
}

TEST(parse_bad_signature_and_signed_headers)
{
    const char *cases[] = {
        "AWS4-HMAC-SHA256 " CRED ", SignedHeaders=host;x-amz-date, Signature=0123",
        "AWS4-HMAC-SHA256 " CRED ", SignedHeaders=host;x-amz-date, Signature=" SIG64 "0",
        "AWS4-HMAC-SHA256 " CRED ", SignedHeaders=host;x-amz-date, Signature=",
        "AWS4-HMAC-SHA256 " CRED ", SignedHeaders=Host;X-Amz-Date, Signature=" SIG64,
        "AWS4-HMAC-SHA256 " CRED ", SignedHeaders=, Signature=" SIG64,
        "AWS4-HMAC-SHA256 " CRED ", SignedHeaders=host:x, Signature=" SIG64,
    };
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        _cleanup_err_ sk_err err = { 0 };
        if (parse_only(cases[i], &err) >= 0)
            TAP_FAIL("case %zu '%s' parsed", i, cases[i]);
        ASSERT_ERR_TYPE(err, T_INCOMPLETE);
    }
}

static char *signed_headers_list(size_t n)
{
    char *s = xstrdup("h0");
    for (size_t i = 1; i < n; i++) {
        char *t = xasprintf("%s;h%zu", s, i);
        free(s);
        s = t;
    }
    return s;
}

TEST(parse_signed_header_count_limit)
{
    _cleanup_free_ char *sh64 = signed_headers_list(64);
    _cleanup_free_ char *sh65 = signed_headers_list(65);
    _cleanup_free_ char *a64 =
            xasprintf("AWS4-HMAC-SHA256 " CRED ", SignedHeaders=%s, Signature=" SIG64, sh64);
    _cleanup_free_ char *a65 =
            xasprintf("AWS4-HMAC-SHA256 " CRED ", SignedHeaders=%s, Signature=" SIG64, sh65);
    _cleanup_err_ sk_err e1 = { 0 }, e2 = { 0 };
    ASSERT_OK_ERR(parse_only(a64, &e1), &e1);
    ASSERT_FAIL(parse_only(a65, &e2));
    ASSERT_ERR_TYPE(e2, T_INCOMPLETE);
    ASSERT_MSG_HAS(e2, "Too many SignedHeaders");
}

TEST(parse_missing_or_bad_date)
{
    vreq r;
    malformed_req(&r, "AWS4-HMAC-SHA256 " CRED ", SignedHeaders=host, Signature=" SIG64);
    vreq_del(&r, "x-amz-date");
    sigv4_auth a;
    _cleanup_err_ sk_err e1 = { 0 };
    ASSERT_FAIL(sigv4_parse(&r.req, &a, &e1));
    ASSERT_ERR_TYPE(e1, T_INCOMPLETE);
    ASSERT_MSG_HAS(e1, "X-Amz-Date");

    /* Right length, wrong content: parse passes, verify rejects before any HMAC. */
    malformed_req(&r, "AWS4-HMAC-SHA256 " CRED ", SignedHeaders=host, Signature=" SIG64);
    vreq_set(&r, "X-Amz-Date", "2023-11-14T2213Z");
    _cleanup_err_ sk_err e2 = { 0 };
    ASSERT_FAIL(parse_verify(&r.req, "secret", 1700000000, &e2));
    ASSERT_ERR_TYPE(e2, T_INCOMPLETE);
    ASSERT_MSG_HAS(e2, "ISO-8601");

    malformed_req(&r, "AWS4-HMAC-SHA256 " CRED ", SignedHeaders=host, Signature=" SIG64);
    vreq_set(&r, "X-Amz-Date", "20231114T221320");
    _cleanup_err_ sk_err e3 = { 0 };
    ASSERT_FAIL(sigv4_parse(&r.req, &a, &e3));
    ASSERT_ERR_TYPE(e3, T_INCOMPLETE);
}

TEST(parse_presigned_malformed)
{
    static const char *const queries[] = {
        /* no X-Amz-Expires */
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20231114%2Fus-east-1%2Fsts"
        "%2Faws4_request&X-Amz-Date=20231114T221320Z&X-Amz-SignedHeaders=host&X-Amz-Signature=" SIG64,
        /* no X-Amz-Signature */
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20231114%2Fus-east-1%2Fsts"
        "%2Faws4_request&X-Amz-Date=20231114T221320Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host",
        /* expires beyond 7 days */
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20231114%2Fus-east-1%2Fsts"
        "%2Faws4_request&X-Amz-Date=20231114T221320Z&X-Amz-Expires=604801&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=" SIG64,
        /* expires zero */
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20231114%2Fus-east-1%2Fsts"
        "%2Faws4_request&X-Amz-Date=20231114T221320Z&X-Amz-Expires=0&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=" SIG64,
        /* unsupported algorithm */
        "X-Amz-Algorithm=AWS4-HMAC-SHA1&X-Amz-Credential=AKIDEXAMPLE%2F20231114%2Fus-east-1%2Fsts"
        "%2Faws4_request&X-Amz-Date=20231114T221320Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=" SIG64,
        /* bad credential scope */
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20231114%2Fus-east-1"
        "&X-Amz-Date=20231114T221320Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=" SIG64,
        /* short signature */
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20231114%2Fus-east-1%2Fsts"
        "%2Faws4_request&X-Amz-Date=20231114T221320Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=abc",
    };
    for (size_t i = 0; i < ELEMENTSOF(queries); i++) {
        vreq r;
        malformed_req(&r, NULL);
        r.req.query = queries[i];
        sigv4_auth a;
        _cleanup_err_ sk_err err = { 0 };
        if (sigv4_parse(&r.req, &a, &err) >= 0) {
            sigv4_auth_done(&a);
            TAP_FAIL("query %zu parsed", i);
        }
        ASSERT_ERR_TYPE(err, T_INCOMPLETE);
    }
}

TEST(canonical_request_edge_cases)
{
    sigv4_header h[] = { { "Host", "example.com" }, { "X-Amz-Date", "20231114T221320Z" } };
    sigv4_request req = {
        .method = "GET", .path = "", .query = "", .headers = h, .nheaders = 2, .payload_hash = NULL
    };
    /* Empty path is "/", no payload hash means UNSIGNED-PAYLOAD, empty query is an empty line. */
    _cleanup_free_ char *cr = sigv4_canonical_request(&req, "host;x-amz-date");
    ASSERT_STREQ(cr, "GET\n/\n\nhost:example.com\nx-amz-date:20231114T221320Z\n\n"
                     "host;x-amz-date\nUNSIGNED-PAYLOAD");
    /* ".." above the root stays at the root; header names match case-insensitively. */
    req.path = "/../../a/..";
    h[0].name = "HOST";
    _cleanup_free_ char *cr2 = sigv4_canonical_request(&req, "host");
    ASSERT_STREQ(cr2, "GET\n/\n\nhost:example.com\n\nhost\nUNSIGNED-PAYLOAD");
    /* Lower-case escapes in the query are normalised to upper case; X-Amz-Signature is dropped. */
    req.path = "/";
    req.query = "k=%2f&X-Amz-Signature=abc";
    _cleanup_free_ char *cr3 = sigv4_canonical_request(&req, "host");
    ASSERT_STREQ(cr3, "GET\n/\nk=%2F\nhost:example.com\n\nhost\nUNSIGNED-PAYLOAD");
}

TAP_MAIN()
